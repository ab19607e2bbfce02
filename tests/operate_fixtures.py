"""Helpers shared by the operations tests: real OAI pages split for replay, a real dbt build,
legacy rows in other years, and vectors written the way the contract says."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import numpy as np
from lxml import etree

from papersys import lake
from papersys.config import Config

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "operate"
OAI = "{http://www.openarchives.org/OAI/2.0/}"
REPO_ROOT = Path(__file__).resolve().parent.parent


SAMPLE_PAGES = sorted((REPO_ROOT / "papersys" / "sample" / "oai").glob("page-*.xml"))


def oai_pages(
    sizes: list[int],
    source: Path | list[Path] = FIXTURES / "listrecords_6records_2015.xml",
    skip: int = 0,
) -> list[bytes]:
    """Real records re-paged: after ``skip`` records, ``sizes`` records per page, chained by
    resumption tokens (the last page's token is empty)."""
    sources = source if isinstance(source, list) else [source]
    root = etree.fromstring(sources[0].read_bytes())
    records = []
    for path in sources:
        body = etree.fromstring(path.read_bytes()).find(f"{OAI}ListRecords")
        assert body is not None
        records.extend(body.findall(f"{OAI}record"))
    records = records[skip:]
    list_records = root.find(f"{OAI}ListRecords")
    assert list_records is not None
    assert sum(sizes) <= len(records)
    for record in list_records.findall(f"{OAI}record"):
        list_records.remove(record)
    token = list_records.find(f"{OAI}resumptionToken")
    if token is not None:
        list_records.remove(token)
    pages: list[bytes] = []
    start = 0
    for number, size in enumerate(sizes, start=1):
        page = etree.fromstring(etree.tostring(root))
        body = page.find(f"{OAI}ListRecords")
        assert body is not None
        for record in records[start : start + size]:
            body.append(etree.fromstring(etree.tostring(record)))
        last = number == len(sizes)
        resumption = etree.SubElement(
            body, f"{OAI}resumptionToken", cursor=str(start), completeListSize=str(sum(sizes))
        )
        resumption.text = "" if last else f"page-{number + 1}"
        pages.append(etree.tostring(page, xml_declaration=True, encoding="UTF-8"))
        start += size
    return pages


def transform(config: Config) -> None:
    """A real ``dbt build`` of the project against this config's lake."""
    try:
        from papersys import transform as papersys_transform
    except ImportError:
        papersys_transform = None  # type: ignore[assignment]
    runner = getattr(papersys_transform, "run_build", None) if papersys_transform else None
    if runner is not None:
        runner(config, command="run")  # models only: the dbt data tests are tested elsewhere
        return
    from dbt.cli.main import dbtRunner

    result = dbtRunner().invoke(
        [
            "run",
            "--project-dir",
            str(REPO_ROOT / "dbt_project"),
            "--profiles-dir",
            str(REPO_ROOT),
            "--quiet",
        ]
    )
    assert result.success, result.exception


def add_legacy_papers(con: duckdb.DuckDBPyConnection, papers: list[tuple[str, int]]) -> None:
    """Legacy metadata rows (arxiv_id, year): dbt unions them into papers."""

    def body() -> None:
        for arxiv_id, year in papers:
            con.execute(
                """INSERT INTO legacy_papers (arxiv_id, title, abstract, authors, categories,
                       primary_category, submitted_at, updated_at, source_file, landed_at)
                   VALUES (?, ?, ?, ['A. Author'], ['cs.LG'], 'cs.LG', ?, ?, 'legacy.parquet',
                           now())""",
                [
                    arxiv_id,
                    f"Paper {arxiv_id}",
                    f"An abstract about {arxiv_id}.",
                    dt.date(year, 3, 1),
                    dt.date(year, 3, 1),
                ],
            )

    lake.run_transaction(con, body)


def add_vectors(
    con: duckdb.DuckDBPyConnection, config: Config, model: str = "minilm", seed: int = 0
) -> dict[str, np.ndarray]:
    """One unit vector per paper (current text hash), as embed-gaps stores them."""
    lake.ensure_model_tables(con, config)
    dim = config.embedding.models[model].dim
    rng = np.random.default_rng(seed)
    papers = con.execute("SELECT arxiv_id, text_sha256 FROM papers ORDER BY arxiv_id").fetchall()
    vectors: dict[str, np.ndarray] = {}

    def body() -> None:
        for arxiv_id, sha in papers:
            v = rng.standard_normal(dim).astype(np.float32)
            v /= np.linalg.norm(v)
            vectors[arxiv_id] = v
            con.execute(
                f"INSERT INTO {lake.embeddings_table(model)} VALUES (?, ?, ?, 'test-model', now())",
                [arxiv_id, v.tolist(), sha],
            )

    lake.run_transaction(con, body)
    return vectors
