"""Prometheus metrics computed from the lake, so they are right across processes and machines.

Everything is read from the lake's tables (``harvests``, ``harvest_pages``, ``job_runs``,
``embeddings_<model>``, the ``missing_embeddings`` view) at the moment of the scrape rather
than counted in one process's memory: several schedulers, a cron ``--once`` and a manual run
all show up. Output is the Prometheus text exposition format, either written atomically to a
textfile (for node_exporter's textfile collector) or served on ``/metrics``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb

from papersys import lake
from papersys.config import Config
from papersys.errors import PapersysError
from papersys.http_server import BackgroundHTTPServer

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@dataclass
class Metric:
    name: str
    kind: str  # counter | gauge
    help: str
    samples: list[tuple[dict[str, str], float]] = field(default_factory=list)

    def add(self, value: float | int | None, **labels: str) -> None:
        self.samples.append((labels, float(value or 0)))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def render(metrics: Iterable[Metric]) -> str:
    """The Prometheus text format (version 0.0.4)."""
    lines: list[str] = []
    for metric in metrics:
        lines.append(f"# HELP {metric.name} {metric.help}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for labels, value in metric.samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            suffix = f"{{{label_text}}}" if label_text else ""
            lines.append(f"{metric.name}{suffix} {_number(value)}")
    return "\n".join(lines) + "\n"


def _has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    row = con.execute(
        """SELECT count(*) FROM duckdb_columns()
           WHERE database_name = 'lake' AND table_name = ? AND column_name = ?""",
        [table, column],
    ).fetchone()
    return bool(row and row[0])


def collect(con: duckdb.DuckDBPyConnection, config: Config) -> list[Metric]:
    """All metrics, read from the lake through ``con``."""
    metrics: list[Metric] = []

    def new(name: str, kind: str, text: str) -> Metric:
        metric = Metric(f"papersys_{name}", kind, text)
        metrics.append(metric)
        return metric

    # Harvesting.
    records = new("harvest_records_total", "counter", "Records landed by harvests.")
    deleted = new("harvest_deleted_records_total", "counter", "Deleted-record notices landed.")
    pages = new("harvest_pages_total", "counter", "OAI-PMH pages landed.")
    harvests = new("harvests", "gauge", "Harvest runs by source and status.")
    restarts = new(
        "harvest_window_restarts_total", "counter", "Harvest windows restarted after a bad token."
    )
    for source, status, n, recs, dels, pgs in con.execute(
        """SELECT source, status, count(*), sum(records), sum(deleted_records), sum(pages)
           FROM lake.harvests GROUP BY ALL ORDER BY ALL"""
    ).fetchall():
        harvests.add(n, source=source, status=status)
        records.add(recs, source=source, status=status)
        deleted.add(dels, source=source, status=status)
        pages.add(pgs, source=source, status=status)
    if _has_column(con, "harvests", "restarts"):
        for source, n in con.execute(
            "SELECT source, coalesce(sum(restarts), 0) FROM lake.harvests GROUP BY ALL ORDER BY ALL"
        ).fetchall():
            restarts.add(n, source=source)
    http_retries = new(
        "harvest_http_retries_total", "counter", "Requests to the repository that were retried."
    )
    for table in ("harvests", "harvest_pages"):
        if lake.table_exists(con, table) and _has_column(con, table, "retries"):
            for (n,) in con.execute(
                f"SELECT coalesce(sum(retries), 0) FROM lake.{table}"
            ).fetchall():
                http_retries.add(n)
            break
    last_response = new(
        "harvest_last_response_timestamp_seconds",
        "gauge",
        "responseDate of the last page landed from the repository, per source.",
    )
    for source, epoch in con.execute(
        """SELECT source, epoch(max(last_response_date)) FROM lake.harvests
           WHERE last_response_date IS NOT NULL GROUP BY ALL ORDER BY ALL"""
    ).fetchall():
        last_response.add(epoch, source=source)
    raw = new("raw_records", "gauge", "Rows in raw_records by source.")
    for source, n in con.execute(
        "SELECT source, count(*) FROM lake.raw_records GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        raw.add(n, source=source)

    # Jobs (scheduler log).
    runs = new("job_runs_total", "counter", "Job attempts by status.")
    failures = new("job_failures_total", "counter", "Failed job attempts.")
    retries = new("job_retries_total", "counter", "Attempts after the first of a run.")
    duration_sum = new("job_duration_seconds_sum", "counter", "Total seconds spent in attempts.")
    duration_count = new("job_duration_seconds_count", "counter", "Attempts timed.")
    last_duration = new("job_last_duration_seconds", "gauge", "Duration of the last attempt.")
    last_success = new(
        "job_last_success_timestamp_seconds", "gauge", "When the job last succeeded."
    )
    if lake.table_exists(con, "job_runs"):
        for job, status, n in con.execute(
            "SELECT job, status, count(*) FROM lake.job_runs GROUP BY ALL ORDER BY ALL"
        ).fetchall():
            runs.add(n, job=job, status=status)
        for job, n_failed, n_retry, total, timed, last, success in con.execute(
            """SELECT job,
                      count(*) FILTER (status = 'failed'),
                      count(*) FILTER (attempt > 1),
                      coalesce(sum(duration_s) FILTER (status <> 'skipped'), 0),
                      count(*) FILTER (status <> 'skipped'),
                      arg_max(duration_s, finished_at) FILTER (status <> 'skipped'),
                      epoch(max(finished_at) FILTER (status = 'succeeded'))
               FROM lake.job_runs GROUP BY job ORDER BY job"""
        ).fetchall():
            failures.add(n_failed, job=job)
            retries.add(n_retry, job=job)
            duration_sum.add(total, job=job)
            duration_count.add(timed, job=job)
            if last is not None:
                last_duration.add(last, job=job)
            if success is not None:
                last_success.add(success, job=job)

    # Embeddings.
    embedded = new("embeddings", "gauge", "Vectors stored per model (documents embedded).")
    rejects = new("embedding_rejects_total", "counter", "Vectors rejected by validation.")
    for name in config.embedding.models:
        table = lake.embeddings_table(name)
        if lake.table_exists(con, table):
            row = con.execute(f"SELECT count(*) FROM lake.{table}").fetchone()
            embedded.add(row[0] if row else 0, model=name)
    for model, problem, n in con.execute(
        "SELECT model, problem, count(*) FROM lake.embedding_rejects GROUP BY ALL ORDER BY ALL"
    ).fetchall():
        rejects.add(n, model=model, problem=problem)
    gaps = new("embedding_gaps", "gauge", "Papers lacking a current vector, by model and reason.")
    if lake.table_exists(con, "missing_embeddings"):
        found = {
            (model, reason): n
            for model, reason, n in con.execute(
                "SELECT model, reason, count(*) FROM lake.missing_embeddings GROUP BY ALL"
            ).fetchall()
        }
        for name in config.embedding.models:
            for reason in ("absent", "stale", "invalid"):
                gaps.add(found.get((name, reason), 0), model=name, reason=reason)
    if lake.table_exists(con, "papers"):
        papers = new("papers", "gauge", "Papers in the normalized papers table.")
        row = con.execute("SELECT count(*) FROM lake.papers").fetchone()
        papers.add(row[0] if row else 0)

    # The lake itself.
    snapshots = new("lake_snapshots", "gauge", "DuckLake snapshots kept.")
    row = con.execute("SELECT count(*) FROM ducklake_snapshots('lake')").fetchone()
    snapshots.add(row[0] if row else 0)
    size = new("lake_data_bytes", "gauge", "Bytes of Parquet data and delete files.")
    row = con.execute(
        """SELECT coalesce(sum(file_size_bytes + delete_file_size_bytes), 0)
           FROM ducklake_table_info('lake')"""
    ).fetchone()
    size.add(row[0] if row else 0)
    return metrics


def scrape(config: Config) -> str:
    """Open the lake, collect every metric, return the exposition text."""
    tick = time.perf_counter()
    con = lake.connect(config)
    try:
        metrics = collect(con, config)
    finally:
        con.close()
    took = Metric("papersys_scrape_duration_seconds", "gauge", "Time to compute these metrics.")
    took.add(time.perf_counter() - tick)
    return render([*metrics, took])


def write_textfile(config: Config, path: Path | None = None) -> Path:
    """Write the metrics atomically (temp file + rename) for a textfile collector."""
    target = path or config.scheduler.metrics_textfile
    if target is None:
        raise PapersysError("no metrics textfile: set [scheduler].metrics_textfile or pass a path")
    text = scrape(config)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        raise PapersysError(
            f"cannot write metrics to {target}: {exc.strerror}; fix [scheduler].metrics_textfile"
        ) from None
    return target


class MetricsServer(BackgroundHTTPServer):
    """``GET /metrics`` on a port (stdlib http.server); each scrape reads the lake afresh."""

    def __init__(self, config: Config, *, host: str = "0.0.0.0", port: int | None = None) -> None:
        self.config = config
        chosen = port if port is not None else config.scheduler.metrics_port
        if chosen is None:
            raise PapersysError("no metrics port: set [scheduler].metrics_port")
        server = self
        # One scrape at a time: each opens the lake, and scrapes are cheap but not free.
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404, "try /metrics")
                    return
                try:
                    with server._lock:
                        body = scrape(server.config).encode()
                    status = 200
                except (PapersysError, duckdb.Error) as exc:
                    log.warning("metrics scrape failed: %s", exc)
                    body = f"# scrape failed: {exc}\n".encode()
                    status = 503
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # library code never prints

        try:
            httpd = ThreadingHTTPServer((host, chosen), Handler)
        except OSError as exc:
            raise PapersysError(
                f"cannot serve metrics on port {chosen}: {exc.strerror}; "
                "choose another [scheduler].metrics_port"
            ) from None
        super().__init__(httpd)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])
