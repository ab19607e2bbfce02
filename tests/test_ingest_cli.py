"""`papersys ingest` / `papersys demo` end to end, including kill -9 mid-harvest and resume."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import oai_server
import pytest
from conftest import FIXTURES, REPO_ROOT
from typer.testing import CliRunner

from papersys import lake
from papersys.cli import app
from papersys.config import load_config
from papersys.ingestion.replay import SAMPLE_DIR, OAIReplay, ReplayServer, Reply

runner = CliRunner(env={"COLUMNS": "250"})


@pytest.fixture(scope="module")
def lake_template(tmp_path_factory):
    return tmp_path_factory.mktemp("lake-template")


@pytest.fixture
def config_file(lake_root: Path, lake_template: Path) -> Path:
    oai_server.copy_migrated_lake(lake_root, lake_template)
    path = lake_root.parent / "papersys.toml"
    path.write_text(
        "[ingestion]\n"
        "request_spacing = 0.0\n"
        "backoff_base = 0.01\n"
        "max_retries = 2\n"
        'contact = "cli-tests@example.org"\n',
        encoding="utf-8",
    )
    return path


def invoke(config_file: Path, *args: str):
    return runner.invoke(app, ["--config", str(config_file), *args])


def raw_counts(config_file: Path) -> tuple[int, int, int]:
    con = lake.connect(load_config(config_file))
    try:
        row = con.execute(
            """SELECT count(*), count(DISTINCT arxiv_id),
                      (SELECT count(*) FROM (SELECT arxiv_id FROM raw_records
                                             GROUP BY ALL HAVING count(*) > 1))
               FROM raw_records"""
        ).fetchone()
    finally:
        con.close()
    return int(row[0]), int(row[1]), int(row[2])


def test_ingest_command_and_status(config_file: Path) -> None:
    pages = oai_server.build_pages(oai_server.derived_records(25, deleted_every=5), 10)
    with ReplayServer(OAIReplay(pages)) as server:
        result = invoke(config_file, "ingest", "--endpoint", server.url)
    assert result.exit_code == 0, result.output
    assert "completed" in result.output and "25" in result.output
    assert raw_counts(config_file) == (25, 25, 0)
    status = invoke(config_file, "status", "--json")
    assert status.exit_code == 0
    assert '"status": "completed"' in status.output
    assert '"deleted": 5' in status.output


def test_ingest_max_pages_shows_the_cursor_in_status(config_file: Path) -> None:
    pages = oai_server.build_pages(oai_server.derived_records(30), 10, token_style="server")
    with ReplayServer(OAIReplay(pages)) as server:
        result = invoke(config_file, "ingest", "--endpoint", server.url, "--max-pages", "1")
    assert result.exit_code == 0, result.output
    assert "paused" in result.output and "--max-pages" in result.output
    status = invoke(config_file, "status")
    assert "726959|11" in status.output  # the stored resumptionToken


def test_ingest_dry_run(config_file: Path) -> None:
    pages = oai_server.build_pages(oai_server.derived_records(12), 10)
    with ReplayServer(OAIReplay(pages)) as server:
        result = invoke(config_file, "ingest", "--endpoint", server.url, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output
    assert raw_counts(config_file) == (0, 0, 0)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2024-13-01"], "use a date as YYYY-MM-DD"),
        (["--format", "oai_dc"], "arXivRaw or arXiv"),
        (["--rss", "cs.AI+not a cat"], "not an arXiv category"),
        (["--rss", "cs.AI", "--set", "cs"], "--rss takes no"),
    ],
)
def test_ingest_usage_errors(config_file: Path, args: list[str], message: str) -> None:
    result = invoke(config_file, "ingest", *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_ingest_failure_is_one_line_exit_1(config_file: Path) -> None:
    with ReplayServer(OAIReplay([b"<x/>"]), fault=lambda n, p: Reply(status=503)) as server:
        result = invoke(config_file, "ingest", "--endpoint", server.url)
    assert result.exit_code == 1
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "HTTP 503" in error_lines[0]


def test_ingest_rss_command(config_file: Path) -> None:
    body = (FIXTURES / "oai" / "rss_hep-ph+hep-ex.xml").read_bytes()
    with ReplayServer(OAIReplay([b"<x/>"]), fault=lambda n, p: Reply(body=body)) as server:
        config_file.write_text(
            config_file.read_text() + f'rss_endpoint = "{server.url}"\n', encoding="utf-8"
        )
        result = invoke(config_file, "ingest", "--rss", "hep-ph+hep-ex")
        assert server.requests and server.user_agents[0].endswith("mailto:cli-tests@example.org)")
    assert result.exit_code == 0, result.output
    assert "landed 2 announcements" in result.output
    assert "cross 1, replace 1" in result.output


def test_help_texts() -> None:
    for command in ("ingest", "demo"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0
    text = runner.invoke(app, ["ingest", "--help"]).output
    for option in ("--set", "--format", "--from", "--until", "--max-pages", "--dry-run", "--rss"):
        assert option in text


def test_demo_replays_the_bundled_sample(config_file: Path) -> None:
    pages = sorted(SAMPLE_DIR.glob("*.xml"))
    expected = sum(p.read_bytes().count(b"<record>") for p in pages)
    assert pages and expected > 0
    result = invoke(config_file, "demo")
    assert result.exit_code == 0, result.output
    assert f"replaying {len(pages)} OAI-PMH pages" in result.output
    assert f"{expected} records" in result.output
    assert "raw records" in result.output  # the status that follows
    assert raw_counts(config_file) == (expected, expected, 0)
    # A second demo is an incremental harvest of the same sample: nothing lands twice.
    again = invoke(config_file, "demo")
    assert again.exit_code == 0, again.output
    assert raw_counts(config_file)[0] == expected


def test_demo_with_another_sample(config_file: Path, tmp_path: Path) -> None:
    sample = oai_server.write_pages(
        oai_server.build_pages(oai_server.derived_records(23), 10), tmp_path / "sample"
    )
    result = invoke(config_file, "demo", "--sample", str(sample))
    assert result.exit_code == 0, result.output
    assert raw_counts(config_file) == (23, 23, 0)
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke(config_file, "demo", "--sample", str(empty))
    assert result.exit_code == 1 and "no OAI pages" in result.output


@pytest.mark.slow
def test_kill_9_mid_harvest_then_resume_exact_counts(config_file: Path) -> None:
    """SIGKILL a real `papersys ingest` at random moments; reruns lose and double nothing."""
    total = 200
    records = oai_server.derived_records(total, deleted_every=9)
    pages = oai_server.build_pages(records, 5, token_style="stateless")  # 40 pages
    config_file.write_text(
        config_file.read_text().replace("request_spacing = 0.0", "request_spacing = 0.02"),
        encoding="utf-8",
    )
    reached = threading.Event()
    kill_after = {"requests": 0}

    def fault(n: int, params: dict[str, str]) -> None:
        if n >= kill_after["requests"]:
            reached.set()
        return None

    env = {**os.environ, "PAPERSYS_CONFIG": str(config_file)}
    command = [str(Path(sys.executable).with_name("papersys")), "ingest"]
    rng = random.Random(7)
    kills = 0
    with ReplayServer(OAIReplay(pages), fault=fault) as server:
        for _ in range(3):
            kill_after["requests"] = len(server.requests) + rng.randint(3, 8)
            reached.clear()
            proc = subprocess.Popen(
                [*command, "--endpoint", server.url],
                env=env,
                cwd=REPO_ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                if reached.wait(timeout=60):
                    # Land anywhere: between requests, mid-parse or mid-commit.
                    threading.Event().wait(rng.uniform(0.0, 0.06))
                    proc.send_signal(signal.SIGKILL)
                    kills += 1
                proc.wait(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
        assert kills == 3
        final = subprocess.run(
            [*command, "--endpoint", server.url],
            env=env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert final.returncode == 0, final.stderr
    rows, papers, doubled = raw_counts(config_file)
    assert (rows, papers, doubled) == (total, total, 0)
    con = lake.connect(load_config(config_file))
    try:
        harvests = con.execute("SELECT status, pages, records, restarts FROM harvests").fetchall()
        page_nos = [
            r[0] for r in con.execute("SELECT page_no FROM harvest_pages ORDER BY 1").fetchall()
        ]
        deleted = con.execute("SELECT count(*) FROM raw_records WHERE deleted").fetchone()[0]
    finally:
        con.close()
    assert harvests == [("completed", 40, total, 0)]  # one harvest, resumed each time
    assert page_nos == list(range(1, 41))  # every page landed exactly once
    assert deleted == total // 9
