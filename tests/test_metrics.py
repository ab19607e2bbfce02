from __future__ import annotations

import re
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from papersys import lake, metrics
from papersys import scheduler as sched
from papersys.cli import app
from papersys.config import Config, JobSchedule
from papersys.ingestion.harvest import harvest
from papersys.ingestion.replay import OAIReplay, ReplayServer
from tests.operate_fixtures import oai_pages

SAMPLE_LINE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
    r'(,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*)\})? (?P<value>-?[0-9.e+-]+|NaN|[+-]Inf)$'
)


def parse_exposition(text: str) -> dict[str, dict[frozenset, float]]:
    """A strict reader of the Prometheus text format: every line must be valid."""
    samples: dict[str, dict[frozenset, float]] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge"), line
            typed.add(name)
            continue
        match = SAMPLE_LINE.match(line)
        assert match, f"not a valid sample line: {line!r}"
        assert match["name"] in typed, f"sample before its TYPE: {line!r}"
        labels = frozenset(re.findall(r'([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        samples.setdefault(match["name"], {})[labels] = float(match["value"])
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[name][frozenset(labels.items())]


def _ingest(config: Config, sizes: list[int]) -> None:
    replay = OAIReplay(oai_pages(sizes))
    with ReplayServer(replay) as server:
        config.ingestion.endpoint = server.url  # type: ignore[misc]
        config.ingestion.request_spacing = 0.0  # type: ignore[misc]
        harvest(config, metadata_prefix=replay.prefix)


def test_metrics_reflect_harvests_and_job_runs(config: Config) -> None:
    _ingest(config, [2, 2, 2])
    config.scheduler.jobs = {"ingest": JobSchedule(cron="@daily", retries=1, retry_delay=0)}
    calls: list[int] = []

    def flaky(cfg: Config) -> dict:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return {}

    runner = sched.Scheduler(config, jobs={"ingest": sched.Job("ingest", "x", flaky, 0)})
    assert runner.run_job("ingest").status == "succeeded"

    samples = parse_exposition(metrics.scrape(config))
    assert value(samples, "papersys_harvest_records_total", source="oai", status="completed") == 6
    assert value(samples, "papersys_harvest_pages_total", source="oai", status="completed") == 3
    assert value(samples, "papersys_raw_records", source="oai") == 6
    assert value(samples, "papersys_job_runs_total", job="ingest", status="failed") == 1
    assert value(samples, "papersys_job_runs_total", job="ingest", status="succeeded") == 1
    assert value(samples, "papersys_job_failures_total", job="ingest") == 1
    assert value(samples, "papersys_job_retries_total", job="ingest") == 1
    assert value(samples, "papersys_job_duration_seconds_count", job="ingest") == 2
    assert value(samples, "papersys_job_last_success_timestamp_seconds", job="ingest") > 1.7e9
    assert value(samples, "papersys_lake_snapshots") > 5
    assert value(samples, "papersys_lake_data_bytes") >= 0


def test_metrics_count_work_done_by_other_processes(config: Config) -> None:
    # A separate process runs a job; this process's scrape sees it (read from the lake).
    done = subprocess.run(
        [str(Path(sys.executable).parent / "papersys"), "schedule", "--once", "maintain"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    samples = parse_exposition(metrics.scrape(config))
    assert value(samples, "papersys_job_runs_total", job="maintain", status="succeeded") == 1


def test_gap_and_embedding_metrics_per_model(config: Config) -> None:
    from tests.operate_fixtures import add_vectors, transform

    _ingest(config, [6])
    transform(config)
    con = lake.connect(config)
    con.execute("CREATE TEMP TABLE keep AS SELECT arxiv_id FROM papers ORDER BY arxiv_id LIMIT 4")
    add_vectors(con, config)
    con.execute("DELETE FROM embeddings_minilm WHERE arxiv_id NOT IN (SELECT * FROM temp.keep)")
    con.close()
    samples = parse_exposition(metrics.scrape(config))
    assert value(samples, "papersys_embeddings", model="minilm") == 4
    assert value(samples, "papersys_embedding_gaps", model="minilm", reason="absent") == 2
    assert value(samples, "papersys_embedding_gaps", model="minilm", reason="stale") == 0
    assert value(samples, "papersys_papers") == 6


def test_textfile_is_written_atomically_and_cli_prints(config: Config, tmp_path: Path) -> None:
    target = tmp_path / "node" / "papersys.prom"
    metrics.write_textfile(config, target)
    text = target.read_text()
    parse_exposition(text)
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]
    result = CliRunner().invoke(app, ["metrics"])
    assert result.exit_code == 0
    parse_exposition(result.output)
    with pytest.raises(Exception, match="no metrics textfile"):
        metrics.write_textfile(config)


def test_scheduler_writes_the_textfile_after_each_job(config: Config, tmp_path: Path) -> None:
    target = tmp_path / "prom" / "papersys.prom"
    config.scheduler.metrics_textfile = target
    config.scheduler.jobs = {"maintain": JobSchedule(cron="@daily")}
    runner = sched.Scheduler(config, metrics_hook=lambda: metrics.write_textfile(config))
    runner.run_job("maintain")
    samples = parse_exposition(target.read_text())
    assert value(samples, "papersys_job_runs_total", job="maintain", status="succeeded") == 1


def test_metrics_http_endpoint(config: Config) -> None:
    _ingest(config, [3])
    with metrics.MetricsServer(config, host="127.0.0.1", port=0) as server:
        url = f"http://127.0.0.1:{server.port}"
        with urllib.request.urlopen(f"{url}/metrics", timeout=30) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            samples = parse_exposition(response.read().decode())
        assert value(samples, "papersys_raw_records", source="oai") == 3
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{url}/other", timeout=30)
        assert missing.value.code == 404


def test_label_values_are_escaped() -> None:
    metric = metrics.Metric("papersys_x", "gauge", "help")
    metric.add(1, source='a"b\\c\nd')
    text = metrics.render([metric])
    assert 'source="a\\"b\\\\c\\nd"' in text
    parse_exposition(text)
