"""Fixture pages for harvester tests, derived from real arXiv OAI-PMH responses.

Real ``<record>`` elements are taken verbatim from the real ListRecords responses under
``tests/fixtures/real/oai`` and ``tests/fixtures/oai/real_*``; derived records keep a real record's
text and change only its identifier (header and ``<id>``) and datestamp, so pages of any
length can be chained with either token style:

- ``stateless``: the new arXiv service's style, an URL-encoded query plus ``skip``;
- ``server``: the old server's ``726959|1001`` state tokens (with cursor/completeListSize).

The pages are served by ``papersys.ingestion.replay`` (a real HTTP server on 127.0.0.1).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from urllib.parse import quote

from conftest import FIXTURES

RECORD_RE = re.compile(rb"<record>.*?</record>", re.S)
IDENT_RE = re.compile(rb"<identifier>oai:arXiv\.org:([^<]+)</identifier>")
DATESTAMP_RE = re.compile(rb"<datestamp>[^<]*</datestamp>")
DERIVED = FIXTURES / "oai"

PAGE_HEAD = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/" '
    b'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    b'xsi:schemaLocation="http://www.openarchives.org/OAI/2.0/ '
    b'http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd">\n'
)


def real_listrecords_files() -> list[Path]:
    files = sorted((FIXTURES / "real" / "oai").glob("*listrecords*.xml"))
    files += sorted((FIXTURES / "oai").glob("real_*listrecords*.xml"))
    return files


def real_records(prefix: str = "arXivRaw") -> list[bytes]:
    """Verbatim real <record> elements of the given format, deduplicated on identifier."""
    marker = f"<{prefix} ".encode()
    seen: set[bytes] = set()
    records: list[bytes] = []
    for path in real_listrecords_files():
        for match in RECORD_RE.finditer(path.read_bytes()):
            record = match.group(0)
            ident = IDENT_RE.search(record)
            if ident is None or ident.group(1) in seen:
                continue
            if b'status="deleted"' not in record and marker not in record:
                continue
            seen.add(ident.group(1))
            records.append(record)
    assert records, "no real arXiv records found in the fixtures"
    return records


def derive_record(template: bytes, new_id: str, datestamp: dt.date) -> bytes:
    """A real record with another identifier and datestamp (everything else verbatim)."""
    old_id = IDENT_RE.search(template)
    assert old_id is not None
    record = template.replace(
        b"oai:arXiv.org:" + old_id.group(1), b"oai:arXiv.org:" + new_id.encode()
    )
    record = record.replace(
        b"<id>" + old_id.group(1) + b"</id>", b"<id>" + new_id.encode() + b"</id>"
    )
    return DATESTAMP_RE.sub(f"<datestamp>{datestamp.isoformat()}</datestamp>".encode(), record, 1)


def tombstone(arxiv_id: str, datestamp: dt.date, set_spec: str = "cs") -> bytes:
    """A deleted record as OAI-PMH sends it: a header with status="deleted", no metadata."""
    return (
        f'<record>\n<header status="deleted">\n <identifier>oai:arXiv.org:{arxiv_id}</identifier>\n'
        f" <datestamp>{datestamp.isoformat()}</datestamp>\n <setSpec>{set_spec}</setSpec>\n"
        "</header>\n</record>"
    ).encode()


def derived_records(
    count: int, *, start: dt.date = dt.date(2024, 1, 2), deleted_every: int = 0
) -> list[bytes]:
    """``count`` real-shaped records with ids 2401.00001... in (datestamp, id) order."""
    templates = real_records()
    out: list[bytes] = []
    for i in range(count):
        arxiv_id = f"2401.{i + 1:05d}"
        datestamp = start + dt.timedelta(days=i // 10)
        if deleted_every and (i + 1) % deleted_every == 0:
            out.append(tombstone(arxiv_id, datestamp))
        else:
            out.append(derive_record(templates[i % len(templates)], arxiv_id, datestamp))
    return out


def token_for(style: str, page_index: int, page_size: int, prefix: str) -> str:
    skip = (page_index + 1) * page_size
    if style == "stateless":
        return quote(f"metadataPrefix={prefix}&skip={skip}", safe="")
    return f"726959|{skip + 1}"


def build_pages(
    records: list[bytes],
    page_size: int,
    *,
    token_style: str = "stateless",
    prefix: str = "arXivRaw",
    response_date: str = "2024-03-01T10:00:00Z",
) -> list[bytes]:
    """Chain ``records`` into ListRecords pages; the last page has an empty token."""
    pages: list[bytes] = []
    chunks = [records[i : i + page_size] for i in range(0, len(records), page_size)] or [[]]
    for index, chunk in enumerate(chunks):
        last = index == len(chunks) - 1
        token = "" if last else token_for(token_style, index, page_size, prefix)
        attrs = ""
        if token_style == "server":
            attrs = f' cursor="{index * page_size}" completeListSize="{len(records)}"'
        body = [
            PAGE_HEAD,
            f"<responseDate>{response_date}</responseDate>\n".encode(),
            f'<request verb="ListRecords" metadataPrefix="{prefix}">'
            "https://oaipmh.arxiv.org/oai</request>\n<ListRecords>\n".encode(),
            b"\n".join(chunk),
            f"\n<resumptionToken{attrs}>{token}</resumptionToken>\n".encode(),
            b"</ListRecords>\n</OAI-PMH>\n",
        ]
        pages.append(b"".join(body))
    return pages


def write_pages(pages: list[bytes], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for i, page in enumerate(pages, start=1):
        (directory / f"page-{i:03d}.xml").write_bytes(page)
    return directory


_TEMPLATE: dict[str, Path] = {}


def copy_migrated_lake(root: Path, scratch: Path) -> None:
    """Give ``root`` a lake already at the current schema (copies a once-migrated catalog).

    Migrating a fresh lake costs ~0.5 s; harvester tests need many fresh lakes.
    """
    import shutil
    import sqlite3

    from papersys import lake
    from papersys.config import LakeConfig, load_config

    if "root" not in _TEMPLATE:
        template = scratch / "template-lake"
        config = load_config()
        config.lake = LakeConfig(root=template)
        lake.connect(config).close()
        _TEMPLATE["root"] = template
    shutil.copytree(_TEMPLATE["root"], root, dirs_exist_ok=True)
    # DuckLake records its data path in the catalog: point the copy at its own directory.
    with sqlite3.connect(root / "catalog.sqlite") as catalog:
        updated = catalog.execute(
            "UPDATE ducklake_metadata SET value = ? WHERE key = 'data_path'",
            [str(root / "data") + "/"],
        ).rowcount
    assert updated == 1
