"""Build papersys/sample/oai/page-NNN.xml, the bundled demo sample, from real arXiv data.

The pages are OAI-PMH ListRecords responses in arXivRaw format, chained by resumptionTokens
(the last page has an empty ``<resumptionToken/>``), which ``papersys demo`` replays from a
local server. Records come from tests/fixtures/real (see its SOURCES.md):

- real arXivRaw ``<record>`` elements from ``oai/*.xml``, copied byte for byte;
- papers of ``kaggle/*.json`` (arXiv's metadata snapshot) rendered as arXivRaw records,
  mapped as described in papersys/sample/README.md.

Records are ordered as arXiv orders them, by (datestamp, identifier). The output depends only
on the source files, so running this again gives identical bytes.

Usage: python scripts/build_demo_sample.py [--pages N] [--check]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parent.parent
REAL_DIR = ROOT / "tests" / "fixtures" / "real"
OUT_DIR = ROOT / "papersys" / "sample" / "oai"

OAI_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xsi:schemaLocation="http://www.openarchives.org/OAI/2.0/ '
    'http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd">\n'
)
RAW_OPEN = (
    ' <arXivRaw xmlns="http://arxiv.org/OAI/arXivRaw/" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xsi:schemaLocation="http://arxiv.org/OAI/arXivRaw/ http://arxiv.org/OAI/arXivRaw.xsd">\n'
)
# Fixed so that the pages are reproducible; the replay server does not look at it.
RESPONSE_DATE = "2024-01-01T00:00:00Z"
BASE_URL = "http://export.arxiv.org/oai2"
TOKEN_PREFIX = "papersys-demo"

RECORD_RE = re.compile(rb"<record>.*?</record>", re.DOTALL)
IDENTIFIER_RE = re.compile(rb"<identifier>oai:arXiv\.org:([^<]+)</identifier>")
DATESTAMP_RE = re.compile(rb"<datestamp>([^<]+)</datestamp>")

# arXiv archives that are published under the "physics" set (physics:<archive>).
PHYSICS_ARCHIVES = {
    "astro-ph",
    "cond-mat",
    "gr-qc",
    "hep-ex",
    "hep-lat",
    "hep-ph",
    "hep-th",
    "math-ph",
    "nlin",
    "nucl-ex",
    "nucl-th",
    "physics",
    "quant-ph",
}
# Optional arXivRaw elements in the order arXiv writes them, with their snapshot keys.
OPTIONAL_FIELDS = [
    ("comments", "comments"),
    ("report-no", "report-no"),
    ("journal-ref", "journal-ref"),
    ("doi", "doi"),
    ("license", "license"),
]


def set_specs(categories: str) -> list[str]:
    """Set memberships of a paper's categories, as arXiv's OAI headers list them."""
    specs = set()
    for category in categories.split():
        archive = category.split(".")[0]
        if archive in PHYSICS_ARCHIVES:
            specs.add(f"physics:{archive}")
        if archive == "math-ph" or archive == "math":
            specs.add("math")
        if archive not in PHYSICS_ARCHIVES and archive != "math":
            specs.add(archive)
    return sorted(specs)


def real_records() -> dict[str, tuple[str, bytes]]:
    """Verbatim <record> elements of the real arXivRaw responses: id -> (datestamp, bytes)."""
    records: dict[str, tuple[str, bytes]] = {}
    for path in sorted((REAL_DIR / "oai").glob("*.xml")):
        data = path.read_bytes()
        if b"http://arxiv.org/OAI/arXivRaw/" not in data:
            continue
        for match in RECORD_RE.finditer(data):
            block = match.group(0)
            ident = IDENTIFIER_RE.search(block)
            stamp = DATESTAMP_RE.search(block)
            if ident and stamp:
                records.setdefault(ident.group(1).decode(), (stamp.group(1).decode(), block))
    return records


def text_element(name: str, value: str) -> str:
    return f"<{name}>{escape(value)}</{name}>"


def derived_record(row: dict) -> tuple[str, bytes]:
    """One snapshot line rendered as an arXivRaw <record>."""
    header = [
        "<record>",
        "<header>",
        f" <identifier>oai:arXiv.org:{escape(row['id'])}</identifier>",
        f" <datestamp>{escape(row['update_date'])}</datestamp>",
    ]
    header += [f" <setSpec>{spec}</setSpec>" for spec in set_specs(row["categories"])]
    header += ["</header>", "<metadata>"]
    body = [text_element("id", row["id"])]
    if row.get("submitter"):
        body.append(text_element("submitter", row["submitter"]))
    for version in row.get("versions") or []:
        body.append(
            f'<version version="{escape(version["version"])}">'
            f"{text_element('date', version['created'])}</version>"
        )
    body.append(text_element("title", row["title"]))
    body.append(text_element("authors", row["authors"]))
    body.append(text_element("categories", row["categories"]))
    for element, key in OPTIONAL_FIELDS:
        if row.get(key):
            body.append(text_element(element, row[key]))
    body.append(text_element("abstract", row["abstract"]))
    lines = [*header, RAW_OPEN.rstrip("\n"), " " + "".join(body) + "</arXivRaw>"]
    lines += ["</metadata>", "</record>"]
    return row["update_date"], "\n".join(lines).encode("utf-8")


def derived_records() -> dict[str, tuple[str, bytes]]:
    records: dict[str, tuple[str, bytes]] = {}
    for path in sorted((REAL_DIR / "kaggle").glob("*.json")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                records.setdefault(row["id"], derived_record(row))
    return records


def build_pages(page_count: int) -> list[bytes]:
    records = derived_records()
    records.update(real_records())  # a real arXivRaw record replaces a derived one
    ordered = sorted(records.items(), key=lambda item: (item[1][0], item[0]))
    total = len(ordered)
    per_page = -(-total // page_count)
    pages = []
    for index in range(page_count):
        chunk = ordered[index * per_page : (index + 1) * per_page]
        if not chunk:
            break
        cursor = index * per_page
        if index == 0:
            request = f'<request verb="ListRecords" metadataPrefix="arXivRaw">{BASE_URL}</request>'
        else:
            previous = f"{TOKEN_PREFIX}|{cursor}"
            request = (
                f'<request verb="ListRecords" resumptionToken="{previous}">{BASE_URL}</request>'
            )
        next_cursor = cursor + len(chunk)
        if next_cursor < total:
            token = (
                f'<resumptionToken cursor="{cursor}" completeListSize="{total}">'
                f"{TOKEN_PREFIX}|{next_cursor}</resumptionToken>"
            )
        else:
            token = "<resumptionToken/>"
        parts = [
            OAI_HEAD.encode(),
            f"<responseDate>{RESPONSE_DATE}</responseDate>\n{request}\n<ListRecords>\n".encode(),
            b"\n".join(block for _, (_, block) in chunk),
            f"\n{token}\n</ListRecords>\n</OAI-PMH>\n".encode(),
        ]
        pages.append(b"".join(parts))
    return pages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=3, help="number of pages (default 3)")
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    args = parser.parse_args()
    pages = build_pages(args.pages)
    wanted = {f"page-{i + 1:03d}.xml": page for i, page in enumerate(pages)}
    if args.check:
        present = {p.name: p.read_bytes() for p in OUT_DIR.glob("*.xml")}
        if present != wanted:
            sys.stderr.write(f"{OUT_DIR} is out of date; run {Path(__file__).name}\n")
            return 1
        return 0
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for stale in OUT_DIR.glob("*.xml"):
        if stale.name not in wanted:
            stale.unlink()
    for name, page in wanted.items():
        (OUT_DIR / name).write_bytes(page)
    sys.stdout.write(f"wrote {len(pages)} pages to {OUT_DIR}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
