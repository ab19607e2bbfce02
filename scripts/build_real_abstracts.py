"""Build tests/fixtures/real/abstracts.jsonl from the verbatim real arXiv files beside it.

Sources (see tests/fixtures/real/SOURCES.md):
- ``oai/*.xml``: OAI-PMH responses in arXivRaw or arXiv format (ListRecords, GetRecord);
- ``kaggle/*.json``: lines of arXiv's metadata snapshot (one JSON object per paper);
- ``digest/*.json``: daily paper lists saved by an arXiv digest tool from the arXiv API
  (``{"papers": [{"arxiv_id": "2512.22120v1", "title", "authors": [...], "summary"}]}``;
  no categories or dates, so those fields are empty for these papers).

One JSON object per paper, sorted by ``arxiv_id`` and deduplicated on it (an OAI record wins
over a snapshot line, as it is the harvester's own format). Title and abstract are
whitespace-normalized (arXiv hard-wraps them); TeX is left as is. Dates are ISO 8601 UTC:
``submitted`` is v1's date, ``updated`` the latest version's (arXiv-format records only
carry the current version's date: both are that date). The output is deterministic.

Usage: python scripts/build_real_abstracts.py [--check]
  --check  exit 1 if the committed abstracts.jsonl differs from what the sources give.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import re
import sys
from pathlib import Path
from typing import Any

from lxml import etree

REAL_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "real"
OUTPUT = REAL_DIR / "abstracts.jsonl"
OAI = "{http://www.openarchives.org/OAI/2.0/}"
RAW = "{http://arxiv.org/OAI/arXivRaw/}"
ARX = "{http://arxiv.org/OAI/arXiv/}"


def normalize(text: str | None) -> str:
    return " ".join((text or "").split())


def rfc822_to_iso(value: str) -> str:
    """'Tue, 3 Apr 2007 22:04:11 GMT' -> '2007-04-03T22:04:11Z'."""
    parsed = email.utils.parsedate_to_datetime(value)
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


def from_oai_file(path: Path) -> list[dict[str, Any]]:
    root = etree.parse(str(path)).getroot()
    papers = []
    for record in root.iter(f"{OAI}record"):
        header = record.find(f"{OAI}header")
        if header is None or header.get("status") == "deleted":
            continue
        arxiv = record.find(f"{OAI}metadata/{ARX}arXiv")
        if arxiv is not None:
            papers.append(from_arxiv_format(arxiv, header, path))
        raw = record.find(f"{OAI}metadata/{RAW}arXivRaw")
        if raw is None:
            continue
        dates = [rfc822_to_iso(v.findtext(f"{RAW}date", "")) for v in raw.iter(f"{RAW}version")]
        papers.append(
            {
                "arxiv_id": normalize(raw.findtext(f"{RAW}id")),
                "title": normalize(raw.findtext(f"{RAW}title")),
                "abstract": normalize(raw.findtext(f"{RAW}abstract")),
                "authors": normalize(raw.findtext(f"{RAW}authors")),
                "categories": normalize(raw.findtext(f"{RAW}categories")).split(),
                "submitted": dates[0] if dates else None,
                "updated": dates[-1] if dates else None,
                "datestamp": normalize(header.findtext(f"{OAI}datestamp")),
                "source": f"oai/{path.name}",
            }
        )
    return papers


def from_arxiv_format(arxiv: etree._Element, header: etree._Element, path: Path) -> dict[str, Any]:
    """A record in the ``arXiv`` format: structured authors, ISO dates of the current version."""
    authors = []
    for author in arxiv.iter(f"{ARX}author"):
        parts = [author.findtext(f"{ARX}{n}") for n in ("forenames", "keyname", "suffix")]
        authors.append(" ".join(normalize(p) for p in parts if p))
    created = normalize(arxiv.findtext(f"{ARX}created")) or None
    updated = normalize(arxiv.findtext(f"{ARX}updated")) or created
    return {
        "arxiv_id": normalize(arxiv.findtext(f"{ARX}id")),
        "title": normalize(arxiv.findtext(f"{ARX}title")),
        "abstract": normalize(arxiv.findtext(f"{ARX}abstract")),
        "authors": ", ".join(authors),
        "categories": normalize(arxiv.findtext(f"{ARX}categories")).split(),
        # the arXiv format only has dates (of the current version), not v1's timestamp
        "submitted": created,
        "updated": updated,
        "datestamp": normalize(header.findtext(f"{OAI}datestamp")),
        "source": f"oai/{path.name}",
    }


def from_snapshot_file(path: Path) -> list[dict[str, Any]]:
    papers = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        dates = [rfc822_to_iso(v["created"]) for v in row.get("versions") or []]
        papers.append(
            {
                "arxiv_id": row["id"],
                "title": normalize(row.get("title")),
                "abstract": normalize(row.get("abstract")),
                "authors": normalize(row.get("authors")),
                "categories": normalize(row.get("categories")).split(),
                "submitted": dates[0] if dates else None,
                "updated": dates[-1] if dates else None,
                "datestamp": row.get("update_date"),
                "source": f"kaggle/{path.name}",
            }
        )
    return papers


def from_digest_file(path: Path) -> list[dict[str, Any]]:
    papers = []
    for row in json.loads(path.read_text(encoding="utf-8"))["papers"]:
        papers.append(
            {
                "arxiv_id": re.sub(r"v\d+$", "", row["arxiv_id"]),  # versionless, as elsewhere
                "title": normalize(row.get("title")),
                "abstract": normalize(row.get("summary")),
                "authors": ", ".join(normalize(a) for a in row.get("authors") or []),
                "categories": [],
                "submitted": None,
                "updated": None,
                "datestamp": None,
                "source": f"digest/{path.name}",
            }
        )
    return papers


def build() -> list[dict[str, Any]]:
    papers: dict[str, dict[str, Any]] = {}
    sources = [from_oai_file(p) for p in sorted((REAL_DIR / "oai").glob("*.xml"))]
    sources += [from_snapshot_file(p) for p in sorted((REAL_DIR / "kaggle").glob("*.json"))]
    sources += [from_digest_file(p) for p in sorted((REAL_DIR / "digest").glob("*.json"))]
    for batch in sources:
        for paper in batch:
            if paper["arxiv_id"] and paper["abstract"]:
                papers.setdefault(paper["arxiv_id"], paper)  # first source wins: OAI first
    return [papers[k] for k in sorted(papers)]


def render(papers: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(p, ensure_ascii=False, sort_keys=False) + "\n" for p in papers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    args = parser.parse_args()
    text = render(build())
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            sys.stderr.write(f"{OUTPUT} is out of date; run {Path(__file__).name}\n")
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    sys.stdout.write(f"wrote {text.count(chr(10))} papers to {OUTPUT}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
