"""Several machines on one lake: a PostgreSQL catalog and a shared data path.

A real PostgreSQL server (started here on 127.0.0.1) holds the DuckLake catalog and a local
directory stands in for object storage. ``papersys ingest`` and ``papersys embed-gaps`` run at
the same time as two separate processes, as they would on two machines; afterwards every
record and every vector is there exactly once.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from papersys import lake
from papersys import scheduler as sched
from papersys.config import Config, load_config
from papersys.ingestion.replay import OAIReplay, ReplayServer
from tests.operate_fixtures import SAMPLE_PAGES, oai_pages
from tests.pg import PostgresServer

PAPERSYS = str(Path(sys.executable).parent / "papersys")
FIRST = 48  # papers landed and transformed before the concurrent phase
SECOND = 40  # papers harvested while embed-gaps runs


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def shared_lake(postgres: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A papersys.toml for a Postgres-catalog lake; every test gets its own database."""
    dbname = f"lake_{os.getpid()}_{time.monotonic_ns()}"
    subprocess.run(
        [
            str(postgres.bin_dir / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(postgres.port),
            "-U",
            postgres.user,
            dbname,
        ],
        check=True,
        capture_output=True,
    )
    libpq = f"dbname={dbname} host=127.0.0.1 port={postgres.port} user={postgres.user}"
    config_file = tmp_path / "papersys.toml"
    config_file.write_text(
        f"""[lake]
catalog = "postgres:{libpq}"
data_path = "{tmp_path / "object-store"}/"

[ingestion]
request_spacing = 0.3
max_retries = 1

[embedding]
chunk_size = 8
"""
    )
    monkeypatch.setenv("PAPERSYS_CONFIG", str(config_file))
    monkeypatch.delenv("PAPERSYS_LAKE_ROOT", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return config_file


def _papersys(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PAPERSYS, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )


def _finish(process: subprocess.Popen[str], timeout: float = 300) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    return output


@pytest.mark.slow
def test_ingest_and_embed_gaps_at_once_on_a_postgres_catalog(shared_lake: Path) -> None:
    config = load_config(shared_lake)
    assert config.lake.catalog_uri.startswith("ducklake:postgres:")
    first = OAIReplay(oai_pages([24, 24], SAMPLE_PAGES))
    second = OAIReplay(oai_pages([5] * 8, SAMPLE_PAGES, skip=FIRST))
    # The second harvest lands its first page, then waits until embed-gaps has committed
    # vectors, so the two processes are certainly writing during the same period.
    embedding_started = threading.Event()

    def hold_after_first_page(request_no: int, params: dict[str, str]) -> None:
        if request_no >= 2:
            embedding_started.wait(timeout=120)

    with (
        ReplayServer(first) as server_a,
        ReplayServer(second, fault=hold_after_first_page) as server_b,
    ):
        _finish(_papersys("ingest", "--endpoint", server_a.url))
        _finish(_papersys("transform"))
        con = lake.connect(config)
        gaps = con.execute("SELECT count(*) FROM missing_embeddings").fetchone()[0]
        first_ids = {r[0] for r in con.execute("SELECT arxiv_id FROM papers").fetchall()}
        con.close()
        assert gaps == FIRST and len(first_ids) == FIRST

        # The two "machines": a paced harvest and the embedder, at the same time.
        ingest = _papersys("ingest", "--endpoint", server_b.url, "--from", "2005-09-16")
        embed = _papersys("embed-gaps")
        watcher = lake.connect(config)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and embed.poll() is None:
            if lake.table_exists(watcher, "embeddings_minilm"):
                row = watcher.execute("SELECT count(*) FROM embeddings_minilm").fetchone()
                if row and row[0] > 0:
                    break
            time.sleep(0.2)
        watcher.close()
        embedding_started.set()
        _finish(ingest)
        _finish(embed)

    con = lake.connect(config)
    raw_total, raw_distinct = con.execute(
        "SELECT count(*), count(DISTINCT arxiv_id) FROM raw_records"
    ).fetchone()
    assert (raw_total, raw_distinct) == (FIRST + SECOND, FIRST + SECOND)
    statuses = con.execute("SELECT status, count(*) FROM harvests GROUP BY 1").fetchall()
    assert statuses == [("completed", 2)]
    vec_total, vec_distinct = con.execute(
        "SELECT count(*), count(DISTINCT arxiv_id) FROM embeddings_minilm"
    ).fetchone()
    assert (vec_total, vec_distinct) == (FIRST, FIRST)
    embedded_ids = {r[0] for r in con.execute("SELECT arxiv_id FROM embeddings_minilm").fetchall()}
    assert embedded_ids == first_ids
    # They really overlapped: pages landed while vectors were being written.
    pages_from, pages_to = con.execute(
        """SELECT min(p.landed_at), max(p.landed_at) FROM harvest_pages p
           JOIN harvests h USING (harvest_id) WHERE h.from_date IS NOT NULL"""
    ).fetchone()
    vectors_from, vectors_to = con.execute(
        "SELECT min(embedded_at), max(embedded_at) FROM embeddings_minilm"
    ).fetchone()
    assert max(pages_from, vectors_from) < min(pages_to, vectors_to), (
        pages_from,
        pages_to,
        vectors_from,
        vectors_to,
    )
    con.close()

    # The next round picks up the rest: every paper embedded exactly once.
    _finish(_papersys("transform"))
    _finish(_papersys("embed-gaps"))
    con = lake.connect(config)
    assert con.execute(
        "SELECT count(*), count(DISTINCT arxiv_id) FROM embeddings_minilm"
    ).fetchone() == (FIRST + SECOND, FIRST + SECOND)
    assert con.execute("SELECT count(*) FROM missing_embeddings").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM papers").fetchone()[0] == FIRST + SECOND
    con.close()


def _take_lease(args: tuple[str, float]) -> str | None:
    config_file, start_at = args
    os.environ["PAPERSYS_CONFIG"] = config_file
    from papersys import lake as lk
    from papersys import scheduler as sc
    from papersys.config import load_config as load

    c = lk.connect(load())
    time.sleep(max(0.0, start_at - time.time()))
    lease, _ = sc.acquire_lease(c, "embed", now=dt.datetime.now(dt.UTC), lease_seconds=600)
    c.close()
    return lease.holder if lease else None


def test_job_lease_is_exclusive_across_processes_on_postgres(shared_lake: Path) -> None:
    config: Config = load_config(shared_lake)
    lake.connect(config).close()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        start_at = time.time() + 4.0
        holders = pool.map(_take_lease, [(str(shared_lake), start_at)] * 3)
    winners = [h for h in holders if h]
    assert len(winners) == 1, holders
    con = lake.connect(config)
    assert [i.holder for i in sched.read_leases(con) if i.job == "embed"] == winners
    con.close()
