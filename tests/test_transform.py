"""dbt project end to end: real `dbt build` runs on a temporary lake.

One lake per module: the first build is the bare `dbt build --project-dir dbt_project` CLI (as a
user on a fresh clone would run it, offline), later runs go through `papersys.transform`
(incremental, then a full refresh that must give the same papers). Raw records are landed with
plain SQL from the real arXivRaw fixtures and variants derived from them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from lxml import etree

from papersys import lake
from papersys.config import Config, load_config
from papersys.errors import PapersysError
from tests.conftest import FIXTURES, REPO_ROOT

OAI_NS = "{http://www.openarchives.org/OAI/2.0/}"
LISTRECORDS = FIXTURES / "real" / "oai" / "arxivraw_listrecords_6records_2015.xml"
GETRECORD = FIXTURES / "real" / "oai" / "arxivraw_getrecord_1302.2146.xml"
EXCERPT = FIXTURES / "oai" / "real_arxivraw_listrecords_excerpt.xml"


def fixture_payloads(path: Path) -> dict[str, tuple[str, str]]:
    """arxiv_id -> (datestamp, <arXivRaw> element verbatim) from a real OAI response."""
    root = etree.parse(str(path)).getroot()
    out: dict[str, tuple[str, str]] = {}
    for record in root.iter(f"{OAI_NS}record"):
        header = record.find(f"{OAI_NS}header")
        ident = header.findtext(f"{OAI_NS}identifier").removeprefix("oai:arXiv.org:")
        metadata = record.find(f"{OAI_NS}metadata")
        payload = etree.tostring(metadata[0], encoding="unicode", with_tail=False)
        out[ident] = (header.findtext(f"{OAI_NS}datestamp"), payload)
    return out


def arxiv_format_payload(arxiv_id: str) -> str:
    return (
        '<arXiv xmlns="http://arxiv.org/OAI/arXiv/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        f"<id>{arxiv_id}</id><created>2019-01-02</created><updated>2019-03-04</updated>"
        "<authors><author><keyname>O'Neil</keyname><forenames>Cathy</forenames></author>"
        "<author><keyname>Erd&#337;s</keyname><forenames>P.</forenames>"
        "<suffix>Jr</suffix></author></authors>"
        "<title>Weapons of   Math &amp; Destruction:\n  a &lt;survey&gt;</title>"
        "<categories>cs.CY stat.ML</categories><license>http://creativecommons.org/licenses/by/4.0/"
        "</license><abstract>  Line one\nline two &#x2014; end.\n</abstract></arXiv>"
    )


def raw_row(
    arxiv_id: str,
    datestamp: str,
    payload: str | None,
    *,
    prefix: str = "arXivRaw",
    source: str = "oai",
) -> tuple[Any, ...]:
    return (arxiv_id, datestamp, payload is None, prefix, payload, source)


def land(con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]]) -> None:
    def body() -> None:
        con.executemany(
            """INSERT INTO raw_records (arxiv_id, datestamp, set_specs, deleted, metadata_prefix,
                   payload_xml, source, harvest_id, landed_at)
               VALUES (?, ?, ['physics'], ?, ?, ?, ?, 'test', now())""",
            rows,
        )

    lake.run_transaction(con, body)


def land_legacy(con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]]) -> None:
    def body() -> None:
        for row in rows:
            con.execute(
                """INSERT INTO legacy_papers (arxiv_id, title, abstract, authors, categories,
                       primary_category, submitted_at, updated_at, license, embedded_text,
                       source_file, migration_run_id, landed_at)
                   VALUES (?, ?, ?, ?, ?, NULL, ?, NULL, NULL, NULL, 'test.parquet', 'm1',
                           now())""",
                [
                    row["arxiv_id"],
                    row["title"],
                    row["abstract"],
                    row["authors"],
                    row["categories"],
                    row["submitted_at"],
                ],
            )

    lake.run_transaction(con, body)


def papers(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    cur = con.execute("SELECT * FROM lake.papers ORDER BY arxiv_id")
    names = [d[0] for d in cur.description]
    return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("dbt") / "lake"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PAPERSYS_LAKE_ROOT", str(root))
        mp.delenv("PAPERSYS_CONFIG", raising=False)
        mp.chdir(root.parent)
        config = load_config()
        con = lake.connect(config)
        yield {"root": root, "config": config, "con": con}
        con.close()


@pytest.fixture(scope="module")
def first_build(env: dict[str, Any]) -> dict[str, Any]:
    """Land the initial records and run the bare dbt CLI, as on a fresh clone."""
    con = env["con"]
    listed = fixture_payloads(LISTRECORDS)
    listed.update(fixture_payloads(GETRECORD))
    _, payload_0471 = fixture_payloads(EXCERPT)["0704.0471"]
    rows = [raw_row(i, d, p) for i, (d, p) in listed.items()]
    # An older harvest of 0704.0471 with another title: the later datestamp must win.
    rows.append(raw_row("0704.0471", "2010-01-01", payload_0471.replace("Density", "OLD Density")))
    # Old-style id, derived from a real record.
    old_style = (
        payload_0471.replace("<id>0704.0471</id>", "<id>hep-th/9901001</id>")
        .replace("Tue, 3 Apr 2007", "Fri, 1 Jan 1999")
        .replace("nucl-ex nucl-th", "hep-th")
    )
    rows.append(raw_row("hep-th/9901001", "2005-10-01", old_style))
    # A versioned id in the header still maps to the versionless paper.
    rows.append(
        raw_row(
            "0801.0001v2",
            "2009-01-01",
            old_style.replace("<id>hep-th/9901001</id>", "<id>0801.0001</id>").replace(
                "Fri, 1 Jan 1999", "Tue, 1 Jan 2008"
            ),
        )
    )
    # Deleted: a record, then a later tombstone.
    rows.append(raw_row("0801.0002", "2009-01-01", old_style))
    rows.append(raw_row("0801.0002", "2012-05-05", None))
    # arXiv format (structured authors).
    rows.append(
        raw_row("1901.00001", "2019-03-05", arxiv_format_payload("1901.00001"), prefix="arXiv")
    )
    # RSS items are left to OAI.
    rows.append(raw_row("2401.99999", "2024-01-02", "<entry>rss</entry>", source="rss"))
    land(con, rows)
    land_legacy(
        con,
        [
            {
                "arxiv_id": "1702.00001",
                "title": " Legacy  only\npaper ",
                "abstract": "An abstract\n from a legacy dataset.",
                "authors": ["Ada Lovelace"],
                "categories": ["cs.LG", "stat.ML"],
                "submitted_at": dt.date(2017, 2, 1),
            },
            {
                "arxiv_id": "1302.2146",
                "title": "Legacy title that OAI overrides",
                "abstract": "x",
                "authors": ["Nobody"],
                "categories": ["hep-ph"],
                "submitted_at": dt.date(2013, 2, 8),
            },
        ],
    )
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "dbt"), "build", "--project-dir", "dbt_project"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "PAPERSYS_LAKE_ROOT": str(env["root"]),
            "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
    return {"stdout": proc.stdout, "listed": listed, "papers": papers(con)}


def test_bare_dbt_build_runs_offline_with_all_tests(first_build: dict[str, Any]) -> None:
    out = first_build["stdout"]
    assert "Completed successfully" in out
    assert "ERROR=0" in out
    assert "unit_test" in out and "PASS" in out


def test_papers_ids_dedup_and_tombstones(first_build: dict[str, Any]) -> None:
    got = first_build["papers"]
    expected = set(first_build["listed"]) | {
        "hep-th/9901001",
        "0801.0001",
        "1901.00001",
        "1702.00001",
    }
    assert set(got) == expected
    assert "0801.0002" not in got  # tombstoned
    assert "2401.99999" not in got  # RSS only


def test_arxivraw_fields_from_real_record(first_build: dict[str, Any]) -> None:
    p = first_build["papers"]["1302.2146"]
    assert p["title"] == "The Same-Sign Dilepton Signature of RPV/MFV SUSY"
    assert p["authors"] == ["Joshua Berger", "Maxim Perelstein", "Michael Saelim", "Philip Tanedo"]
    assert p["categories"] == ["hep-ph", "hep-ex"]
    assert p["primary_category"] == "hep-ph"
    assert p["submitted_at"] == dt.date(2013, 2, 8)
    assert p["updated_at"] == dt.date(2013, 4, 2)
    assert p["version_count"] == 2
    assert p["year"] == 2013
    assert p["license"] == "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"
    assert p["metadata_source"] == "oai"  # OAI wins over the legacy row
    assert p["abstract"].startswith("The lack of observation of superpartners")
    assert "\n" not in p["abstract"] and "  " not in p["abstract"]
    text = p["title"] + "\n" + p["abstract"]
    assert p["text_sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_latest_datestamp_wins_and_entities_decoded(first_build: dict[str, Any]) -> None:
    p = first_build["papers"]["0704.0471"]
    assert p["title"].startswith("Density dependence")  # not the older "OLD Density"
    assert p["title"].endswith("A Dynamical and Statistical model perspective")
    assert 'extremely " stiff " and " soft "' in p["abstract"]
    assert p["authors"] == ["D.V. Shetty", "S.J. Yennello", "G.A. Souliotis"]
    assert p["doi"] == "10.1103/PhysRevC.76.024606 10.1103/PhysRevC.76.039902"
    assert p["journal_ref"].startswith("Phys.Rev.C76:024606")
    assert p["datestamp"] == dt.date(2014, 11, 18)


def test_old_style_and_versioned_ids(first_build: dict[str, Any]) -> None:
    got = first_build["papers"]
    assert got["hep-th/9901001"]["year"] == 1999
    assert got["hep-th/9901001"]["primary_category"] == "hep-th"
    assert got["0801.0001"]["submitted_at"] == dt.date(2008, 1, 1)


def test_arxiv_format_record(first_build: dict[str, Any]) -> None:
    p = first_build["papers"]["1901.00001"]
    assert p["metadata_format"] == "arXiv"
    assert p["authors"] == ["Cathy O'Neil", "P. Erdős Jr"]
    assert p["title"] == "Weapons of Math & Destruction: a <survey>"
    assert p["abstract"] == "Line one line two — end."
    assert p["submitted_at"] == dt.date(2019, 1, 2)
    assert p["updated_at"] == dt.date(2019, 3, 4)
    assert p["version_count"] is None
    assert p["categories"] == ["cs.CY", "stat.ML"]


def test_legacy_only_paper(first_build: dict[str, Any]) -> None:
    p = first_build["papers"]["1702.00001"]
    assert p["metadata_source"] == "legacy"
    assert p["title"] == "Legacy only paper"
    assert p["abstract"] == "An abstract from a legacy dataset."
    assert p["primary_category"] == "cs.LG"
    assert p["year"] == 2017
    expected = hashlib.sha256(b"Legacy only paper\nAn abstract from a legacy dataset.").hexdigest()
    assert p["text_sha256"] == expected


def test_papers_partitioned_by_year(env: dict[str, Any], first_build: dict[str, Any]) -> None:
    files = [str(p) for p in (env["root"] / "data").rglob("*.parquet") if "papers" in str(p)]
    assert any("year=2013" in f for f in files), files
    assert any("year=1999" in f for f in files), files


def test_missing_embeddings_reasons_and_coverage(
    env: dict[str, Any], first_build: dict[str, Any]
) -> None:
    con = env["con"]
    got = first_build["papers"]
    fresh, stale, invalid = "1302.2146", "0704.0471", "hep-th/9901001"

    def body() -> None:
        con.execute(
            "INSERT INTO embeddings_minilm VALUES (?, [1.0, 2.0], ?, 'm', now())",
            [fresh, got[fresh]["text_sha256"]],
        )
        con.execute(
            "INSERT INTO embeddings_minilm VALUES (?, [1.0, 2.0], 'old-text-hash', 'm', now())",
            [stale],
        )
        con.execute(
            "INSERT INTO embedding_rejects"
            " VALUES ('minilm', ?, NULL, 'nan', 'legacy', NULL, now())",
            [invalid],
        )

    lake.run_transaction(con, body)
    rows = con.execute(
        "SELECT arxiv_id, reason, text, text_sha256, year FROM lake.missing_embeddings"
        " WHERE model = 'minilm'"
    ).fetchall()
    reasons = {r[0]: r[1] for r in rows}
    assert fresh not in reasons
    assert reasons[stale] == "stale"
    assert reasons[invalid] == "invalid"
    assert {reasons[i] for i in got if i not in {fresh, stale, invalid}} == {"absent"}
    assert len(rows) == len(got) - 1
    for arxiv_id, _, text, sha, year in rows:
        assert hashlib.sha256(text.encode("utf-8")).hexdigest() == sha
        assert year == got[arxiv_id]["year"]
    coverage = con.execute(
        "SELECT sum(papers), sum(embedded), sum(missing) FROM lake.embedding_coverage"
        " WHERE model = 'minilm'"
    ).fetchall()[0]
    assert coverage == (len(got), 1, len(got) - 1)
    year_2013 = con.execute(
        "SELECT papers, embedded FROM lake.embedding_coverage"
        " WHERE model = 'minilm' AND year = 2013"
    ).fetchall()[0]
    assert year_2013[1] == 1


@pytest.fixture(scope="module")
def second_build(env: dict[str, Any], first_build: dict[str, Any]) -> dict[str, Any]:
    """A daily increment through papersys.transform, with a newly configured model."""
    from papersys.transform import run_build

    con = env["con"]
    before = papers(con)
    _, payload_2146 = fixture_payloads(GETRECORD)["1302.2146"]
    new_version = payload_2146.replace(
        "</version><title>",
        '</version><version version="v3"><date>Mon, 5 May 2014 10:00:00 GMT</date>'
        "<size>1kb</size></version><title>",
    ).replace("The Same-Sign Dilepton", "Revised: The Same-Sign Dilepton")
    _, payload_0471 = fixture_payloads(EXCERPT)["0704.0471"]
    land(
        con,
        [
            raw_row("1302.2146", "2014-05-06", new_version),
            raw_row("0704.0471", "2015-01-01", None),  # withdrawn
            raw_row("1901.00001", "2000-01-01", payload_0471),  # older datestamp: ignored
            raw_row(
                "1501.00002",
                "2015-01-05",
                payload_0471.replace("<id>0704.0471</id>", "<id>1501.00002</id>").replace(
                    "Tue, 3 Apr 2007", "Mon, 5 Jan 2015"
                ),
            ),
        ],
    )
    land_legacy(
        con,
        [
            {
                "arxiv_id": "1703.00003",
                "title": "Another legacy paper",
                "abstract": "Abstract.",
                "authors": ["Grace Hopper"],
                "categories": ["cs.PL"],
                "submitted_at": dt.date(2017, 3, 3),
            }
        ],
    )
    config: Config = load_config(
        overrides={
            "embedding.models": {
                "minilm": env["config"].embedding.models["minilm"].model_dump(),
                "tiny": {"model": "some/tiny-model", "dim": 8},
            }
        }
    )
    seen: list[tuple[str, str]] = []
    result = run_build(config, on_node=lambda name, status: seen.append((name, status)))
    return {"result": result, "before": before, "after": papers(con), "seen": seen}


def test_incremental_run_applies_only_changes(second_build: dict[str, Any]) -> None:
    before, after = second_build["before"], second_build["after"]
    assert second_build["result"].ok
    revised = after["1302.2146"]
    assert revised["title"].startswith("Revised: ")
    assert revised["version_count"] == 3
    assert revised["updated_at"] == dt.date(2014, 5, 5)
    assert revised["submitted_at"] == dt.date(2013, 2, 8)
    assert revised["text_sha256"] != before["1302.2146"]["text_sha256"]
    assert "0704.0471" not in after  # tombstone removed it
    assert after["1901.00001"] == before["1901.00001"]  # older record did not override
    assert after["1501.00002"]["year"] == 2015
    assert after["1703.00003"]["metadata_source"] == "legacy"
    # Untouched papers are the very same rows (not rebuilt).
    for arxiv_id in ("hep-th/9901001", "0801.0001", "1702.00001"):
        assert after[arxiv_id] == before[arxiv_id]


def test_incremental_run_reports_nodes_and_covers_new_model(
    env: dict[str, Any], second_build: dict[str, Any]
) -> None:
    result = second_build["result"]
    names = {n.name for n in result.nodes}
    assert {"papers", "missing_embeddings", "embedding_coverage"} <= names
    assert any(n.resource_type == "unit_test" for n in result.nodes)
    assert result.models_registered == ["minilm", "tiny"]
    assert ("papers", "started") in second_build["seen"]
    con = env["con"]
    after = second_build["after"]
    tiny = con.execute(
        "SELECT count(*), min(reason), max(reason) FROM lake.missing_embeddings"
        " WHERE model = 'tiny'"
    ).fetchall()[0]
    assert tiny == (len(after), "absent", "absent")
    stale = con.execute(
        "SELECT reason FROM lake.missing_embeddings"
        " WHERE model = 'minilm' AND arxiv_id = '1302.2146'"
    ).fetchall()[0]
    assert stale == ("stale",)  # its text changed since the vector was made


def test_full_refresh_matches_incremental(
    env: dict[str, Any], second_build: dict[str, Any]
) -> None:
    from papersys.transform import run_build

    result = run_build(env["config"], command="run", select=["papers"], full_refresh=True)
    assert result.ok
    rebuilt = papers(env["con"])
    incremental = second_build["after"]
    assert set(rebuilt) == set(incremental)
    for arxiv_id, row in rebuilt.items():
        expected = {k: v for k, v in incremental[arxiv_id].items() if k != "landed_at"}
        assert {k: v for k, v in row.items() if k != "landed_at"} == expected, arxiv_id


def test_failing_data_test_raises_one_line(
    env: dict[str, Any], second_build: dict[str, Any]
) -> None:
    from papersys.transform import run_build

    _, payload = fixture_payloads(GETRECORD)["1302.2146"]
    untitled = payload.replace("<id>1302.2146</id>", "<id>1302.9999</id>")
    untitled = untitled[: untitled.index("<title>")] + untitled[untitled.index("</title>") + 8 :]
    land(env["con"], [raw_row("1302.9999", "2014-01-01", untitled)])
    with pytest.raises(PapersysError) as info:
        run_build(env["config"], select=["papers"])
    message = str(info.value)
    assert "\n" not in message
    assert "not_blank_papers_title" in message


def test_attach_sql_opens_the_lake_read_only(
    env: dict[str, Any], second_build: dict[str, Any]
) -> None:
    con = duckdb.connect()
    try:
        con.execute((REPO_ROOT / "sql" / "attach.sql").read_text())  # cwd is the lake's parent
        count = con.execute("SELECT count(*) FROM papers").fetchall()[0][0]
        assert count == len(papers(env["con"])) > 0
        assert con.execute("SELECT count(*) FROM missing_embeddings").fetchall()[0][0] > 0
        with pytest.raises(duckdb.Error):
            con.execute("DELETE FROM papers")
    finally:
        con.close()


def test_duckdb_shell_runs_attach_sql_and_the_handy_queries(
    env: dict[str, Any], second_build: dict[str, Any]
) -> None:
    """What the README tells users to do: `duckdb -init sql/attach.sql`, then sql/queries.sql."""
    shell = Path(sys.executable).parent / "duckdb"  # installed by the duckdb-cli dependency
    attach = str(REPO_ROOT / "sql" / "attach.sql")

    def run_shell(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(shell), "-batch", "-init", attach, "-csv", "-bail", *args],
            cwd=env["root"].parent,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    result = run_shell("-c", "SELECT count(*) AS n FROM papers")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["n", str(len(papers(env["con"])))]
    result = run_shell("-f", str(REPO_ROOT / "sql" / "queries.sql"))
    assert result.returncode == 0 and "Error" not in result.stderr, result.stderr
    # Every query ran and printed its header (csv mode).
    for header in ("year,papers,revised", "model,papers,embedded,pct", "snapshot_id,"):
        assert header in result.stdout, result.stdout


def test_transform_cli_help() -> None:
    from typer.testing import CliRunner

    from papersys.cli import app

    out = CliRunner().invoke(app, ["transform", "--help"])
    assert out.exit_code == 0
    assert "--full-refresh" in out.output and "--select" in out.output


def test_unknown_command_is_usage_error(env: dict[str, Any]) -> None:
    from papersys.errors import UsageError
    from papersys.transform import run_build

    with pytest.raises(UsageError):
        run_build(env["config"], command="seed")
