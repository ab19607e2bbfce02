"""embed-gaps with real processes: kill -9 mid-run then rerun, two runs at once, racing leases."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from test_embed import create_gap_view, paper_texts

from papersys import lake
from papersys.config import Config, load_config

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-c", "from papersys.cli import main; main()"]


@pytest.fixture
def process_config(lake_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    config_file = tmp_path / "papersys.toml"
    config_file.write_text("[embedding]\nchunk_size = 10\n", encoding="utf-8")
    monkeypatch.setenv("PAPERSYS_CONFIG", str(config_file))
    return load_config()


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}


def _count(config: Config, con: object | None = None) -> tuple[int, int]:
    connection = con or lake.connect(config)
    try:
        row = connection.execute(
            "SELECT count(*), count(DISTINCT arxiv_id) FROM embeddings_minilm"
        ).fetchone()
        return int(row[0]), int(row[1])
    finally:
        if con is None:
            connection.close()


def _prepare(config: Config, n: int) -> None:
    con = lake.connect(config)
    try:
        # Titles only: these tests are about processes, not encoding speed.
        create_gap_view(con, paper_texts(n, titles_only=True))
    finally:
        con.close()


def test_kill_9_mid_run_then_rerun_continues_without_duplicates(process_config: Config):
    """Killed with its encoder in a worker process: the worker goes too, the rerun continues."""
    n = 200
    _prepare(process_config, n)
    proc = subprocess.Popen(
        [*CLI, "embed-gaps", "--isolate"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    watcher = lake.connect(process_config)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if _count(process_config, watcher)[0] >= 10:
                break
            time.sleep(0.1)
        assert proc.poll() is None, f"finished before it could be killed: {proc.communicate()}"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the encoder should run in a worker process"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        # The orphaned worker notices its parent is gone and exits on its own.
        _, alive = psutil.wait_procs(children, timeout=30)
        assert not alive, f"worker processes outlived the killed run: {alive}"
    finally:
        watcher.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    total, distinct = _count(process_config)
    assert 10 <= total < n and total == distinct
    assert total % 10 == 0  # only whole chunks were ever committed
    # The killed run's lease names a dead process on this host: the rerun takes it at once.
    rerun = subprocess.run(
        [*CLI, "embed-gaps"], env=_env(), capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{n - total:,} absent" in rerun.stdout
    assert _count(process_config) == (n, n)


def test_two_runs_for_one_model_never_double_write(process_config: Config):
    n = 60
    _prepare(process_config, n)
    procs = [
        subprocess.Popen(
            [*CLI, "embed-gaps"],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outcomes = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        outcomes.append((proc.returncode, out, err))
    assert _count(process_config) == (n, n)
    codes = sorted(code for code, _, _ in outcomes)
    # One run does the work; the other is refused while the first holds the model's lease
    # (or, started late, finds nothing left to do).
    assert codes in ([0, 1], [0, 0]), outcomes
    for code, _out, err in outcomes:
        if code == 1:
            assert "being embedded by another run" in err
            assert "Traceback" not in err


RACE = """
import sys, time
from papersys import lake
from papersys.config import load_config
from papersys.embedding import store
con = lake.connect(load_config())
time.sleep(max(0.0, float(sys.argv[1]) - time.time()))
lease, holder = store.acquire_lease(con, "minilm")
print("won" if lease else "busy", flush=True)
time.sleep(3)  # hold it while the others decide
"""


def test_racing_lease_takers_have_exactly_one_winner(process_config: Config):
    con = lake.connect(process_config)
    lake.ensure_model_tables(con, process_config)
    con.close()
    start_at = time.time() + 4
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(start_at)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(out.strip())
    assert sorted(results) == ["busy", "busy", "won"]
