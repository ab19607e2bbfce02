"""Run the pipeline's jobs on cron schedules: one holder per job across processes, retries, a log.

* Schedules are five-field cron expressions in UTC (``minute hour day-of-month month
  day-of-week``) from ``[scheduler.jobs.<name>]``; ``parse_cron`` is a small parser (lists,
  ranges, steps, month/day names, ``@daily`` and friends).
* A job never runs twice at once: before running, a process takes the job's lease in the
  lake (``job_leases``). Taking it is an UPDATE of the job's row, so two processes racing for
  it conflict at commit and only one wins, on one machine or many. A heartbeat renews the
  lease while the job runs; a lease whose holder died expires (at once when the holder was on
  this host and its process is gone).
* Every attempt is appended to ``job_runs`` (status, duration, error, a JSON detail), which is
  what ``papersys status`` and the metrics read.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import duckdb

from papersys import lake
from papersys.config import Config
from papersys.errors import ConfigError, PapersysError, UsageError

log = logging.getLogger(__name__)

UTC = dt.UTC
# How long a lease lasts without a heartbeat; the heartbeat renews it three times per period.
DEFAULT_LEASE_SECONDS = 900.0
# The longest the run loop sleeps at once, so a stop request is noticed promptly.
MAX_IDLE_SLEEP = 60.0

# ---------------------------------------------------------------------------------------------
# Cron expressions
# ---------------------------------------------------------------------------------------------

_MONTH_NAMES = {
    name: i + 1
    for i, name in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    )
}
_DAY_NAMES = {name: i for i, name in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# (field name, lowest, highest, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTH_NAMES),
    ("day of week", 0, 7, _DAY_NAMES),
)


class CronError(ValueError):
    """An invalid cron expression; the message says which field and why."""


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def _day_matches(self, day: dt.date) -> bool:
        weekday = (day.weekday() + 1) % 7  # Python: Monday = 0; cron: Sunday = 0
        dom = day.day in self.days
        dow = weekday in self.weekdays
        # Classic cron: when both day fields are restricted, either one matching is enough.
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def matches(self, when: dt.datetime) -> bool:
        when = _as_utc(when)
        return (
            when.minute in self.minutes
            and when.hour in self.hours
            and when.month in self.months
            and self._day_matches(when.date())
        )

    def next_after(self, when: dt.datetime) -> dt.datetime:
        """The first matching minute strictly after ``when`` (UTC)."""
        start = _as_utc(when).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        day = start.date()
        # Leap days on a given weekday can be 28 years apart; nothing valid is further away.
        for _ in range(366 * 29):
            if day.month in self.months and self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = dt.datetime(
                            day.year, day.month, day.day, hour, minute, tzinfo=UTC
                        )
                        if candidate >= start:
                            return candidate
            day += dt.timedelta(days=1)
        raise CronError(f"cron {self.expression!r} never matches a real date")


def _parse_value(text: str, low: int, high: int, names: dict[str, int], field_name: str) -> int:
    key = text.lower()
    if key in names:
        return names[key]
    if not text.isdigit():
        raise CronError(f"{field_name} {text!r} is not a number")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{field_name} {value} is out of range {low}-{high}")
    return value


def _parse_field(text: str, low: int, high: int, names: dict[str, int], name: str) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"empty item in {name} field {text!r}")
        body, _, step_text = part.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name} step {step_text!r} must be a positive number")
            step = int(step_text)
        if body == "*":
            first, last = low, high
        elif "-" in body:
            a, _, b = body.partition("-")
            first = _parse_value(a, low, high, names, name)
            last = _parse_value(b, low, high, names, name)
            if last < first:
                raise CronError(f"{name} range {body!r} runs backwards")
        else:
            first = _parse_value(body, low, high, names, name)
            # 'a/n' means every n-th value from a to the end of the range.
            last = high if step_text else first
        values.update(range(first, last + 1, step))
    return values


def parse_cron(expression: str) -> CronSchedule:
    """Parse a five-field cron expression (UTC) or an @macro; raise CronError if invalid."""
    text = " ".join(expression.split())
    expanded = _MACROS.get(text.lower(), text)
    fields = expanded.split(" ")
    if len(fields) != 5:
        raise CronError(
            f"cron {expression!r} has {len(fields)} fields; use five: "
            "minute hour day-of-month month day-of-week (e.g. '30 4 * * 1-5')"
        )
    parsed = [
        _parse_field(value, low, high, names, name)
        for value, (name, low, high, names) in zip(fields, _FIELDS, strict=True)
    ]
    weekdays = {d % 7 for d in parsed[4]}  # 7 is Sunday too
    schedule = CronSchedule(
        expression=text,
        minutes=frozenset(parsed[0]),
        hours=frozenset(parsed[1]),
        days=frozenset(parsed[2]),
        months=frozenset(parsed[3]),
        weekdays=frozenset(weekdays),
        days_restricted=not fields[2].startswith("*"),
        weekdays_restricted=not fields[4].startswith("*"),
    )
    schedule.next_after(dt.datetime(2000, 1, 1, tzinfo=UTC))  # e.g. '0 0 31 2 *' never fires
    return schedule


def _as_utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# ---------------------------------------------------------------------------------------------
# Jobs
# ---------------------------------------------------------------------------------------------

JobFunction = Callable[[Config], dict[str, Any]]


@dataclass(frozen=True)
class Job:
    name: str
    description: str
    run: JobFunction
    # Lower runs first when several jobs are due at the same time.
    priority: int


def _job_ingest(config: Config) -> dict[str, Any]:
    from papersys.ingestion.harvest import harvest

    results = harvest(config)
    return {
        "harvests": len(results),
        "pages": sum(r.pages for r in results),
        "records": sum(r.records for r in results),
        "deleted": sum(r.deleted for r in results),
    }


def _job_transform(config: Config) -> dict[str, Any]:
    from papersys import transform

    result = transform.run_build(config)
    return _plain(result)


def _embed(config: Config, reasons: tuple[str, ...]) -> dict[str, Any]:
    from papersys.embedding.runner import embed_gaps

    models: dict[str, dict[str, Any]] = {}
    for reason in reasons:
        for run in embed_gaps(config, reason=reason):
            entry = models.setdefault(run.model, {"gaps": 0, "embedded": 0, "rejected": 0})
            entry["gaps"] += run.total_gaps
            entry["embedded"] += run.embedded
            entry["rejected"] += len(run.rejects)
            if run.status == "busy":
                # Another embed-gaps run holds this model: it is filling these gaps.
                entry["busy"] = True
    return {"models": models, "reasons": list(reasons)}


def _job_embed(config: Config) -> dict[str, Any]:
    return _embed(config, ("absent",))


def _job_embedding_backfill(config: Config) -> dict[str, Any]:
    return _embed(config, ("stale", "invalid"))


def _job_maintain(config: Config) -> dict[str, Any]:
    from papersys import snapshots

    con = lake.connect(config)
    try:
        return _plain(snapshots.maintain(con, config))
    finally:
        con.close()


def _plain(result: Any) -> dict[str, Any]:
    """A job's result as a JSON-friendly dict for job_runs.detail."""
    if result is None:
        return {}
    if isinstance(result, dict):
        return result
    if hasattr(result, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(result)
    if isinstance(result, list):
        return {"results": [_plain(r) for r in result]}
    return {"result": str(result)}


JOBS: dict[str, Job] = {
    job.name: job
    for job in (
        Job("ingest", "harvest new and changed records from arXiv", _job_ingest, 0),
        Job("transform", "dbt build: papers, gaps, coverage", _job_transform, 1),
        Job("embed", "embed papers that have no vector yet", _job_embed, 2),
        Job(
            "embedding_backfill",
            "re-embed stale and invalid vectors (lower priority)",
            _job_embedding_backfill,
            3,
        ),
        Job("maintain", "merge small files, expire old snapshots", _job_maintain, 4),
    )
}


def check_jobs(config: Config, jobs: dict[str, Job] | None = None) -> dict[str, CronSchedule]:
    """Validate ``[scheduler.jobs]``: known job names and valid cron expressions."""
    known = jobs if jobs is not None else JOBS
    schedules: dict[str, CronSchedule] = {}
    for name, spec in config.scheduler.jobs.items():
        if name not in known:
            raise ConfigError(
                f"[scheduler.jobs.{name}]: unknown job; known jobs: {', '.join(known)}"
            )
        try:
            schedules[name] = parse_cron(spec.cron)
        except CronError as exc:
            raise ConfigError(f"[scheduler.jobs.{name}].cron: {exc}") from None
    return schedules


# ---------------------------------------------------------------------------------------------
# Leases
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lease:
    job: str
    holder: str
    host: str
    pid: int
    expires_at: dt.datetime


@dataclass(frozen=True)
class LeaseInfo:
    job: str
    holder: str | None
    host: str | None
    pid: int | None
    acquired_at: dt.datetime | None
    expires_at: dt.datetime | None


def read_leases(con: duckdb.DuckDBPyConnection) -> list[LeaseInfo]:
    rows = con.execute(
        """SELECT job, any_value(holder), any_value(host), any_value(pid),
                  any_value(acquired_at), any_value(expires_at)
           FROM lake.job_leases GROUP BY job ORDER BY job"""
    ).fetchall()
    return [LeaseInfo(*row) for row in rows]


def acquire_lease(
    con: duckdb.DuckDBPyConnection,
    job: str,
    *,
    now: dt.datetime,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> tuple[Lease | None, LeaseInfo | None]:
    """Take the job's lease; return (lease, None), or (None, current holder) if it is held."""
    holder, host, pid = lake.new_lease_holder()
    expires = now + dt.timedelta(seconds=lease_seconds)

    def ensure_row() -> None:
        row = con.execute("SELECT count(*) FROM lake.job_leases WHERE job = ?", [job]).fetchone()
        if not row or not row[0]:
            con.execute("INSERT INTO lake.job_leases (job) VALUES (?)", [job])

    lake.run_transaction(con, ensure_row)

    def take() -> tuple[Lease | None, LeaseInfo | None]:
        # Rows of one job all carry the same holder (a racing first INSERT may leave two).
        rows = con.execute(
            """SELECT job, holder, host, pid, acquired_at, expires_at FROM lake.job_leases
               WHERE job = ? AND holder IS NOT NULL""",
            [job],
        ).fetchall()
        for row in rows:
            info = LeaseInfo(*row)
            live = info.expires_at is not None and _as_utc(info.expires_at) > now
            if live and lake.lease_holder_alive(info.host, info.pid):
                return None, info
        con.execute(
            """UPDATE lake.job_leases SET holder = ?, host = ?, pid = ?, acquired_at = ?,
                   renewed_at = ?, expires_at = ? WHERE job = ?""",
            [holder, host, pid, now, now, expires, job],
        )
        return Lease(job, holder, host, pid, expires), None

    return lake.run_transaction(con, take)


def renew_lease(
    con: duckdb.DuckDBPyConnection,
    lease: Lease,
    *,
    now: dt.datetime,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> bool:
    """Push the lease's expiry forward; False if it is no longer ours."""
    expires = now + dt.timedelta(seconds=lease_seconds)

    def body() -> bool:
        row = con.execute(
            """UPDATE lake.job_leases SET renewed_at = ?, expires_at = ?
               WHERE job = ? AND holder = ?""",
            [now, expires, lease.job, lease.holder],
        ).fetchone()
        return bool(row and row[0])

    return lake.run_transaction(con, body)


def release_lease(con: duckdb.DuckDBPyConnection, lease: Lease) -> None:
    def body() -> None:
        con.execute(
            """UPDATE lake.job_leases SET holder = NULL, host = NULL, pid = NULL,
                   acquired_at = NULL, renewed_at = NULL, expires_at = NULL
               WHERE job = ? AND holder = ?""",
            [lease.job, lease.holder],
        )

    lake.run_transaction(con, body)


def _heartbeat_main(
    config: Config, lease: Lease, lease_seconds: float, stop: Any, parent_pid: int
) -> None:
    """Body of the heartbeat process: renew the lease until told to stop or orphaned."""
    interval = lease_seconds / 3
    con: duckdb.DuckDBPyConnection | None = None
    try:
        while not stop.wait(interval):
            if os.getppid() != parent_pid:
                return  # the scheduler died: let the lease expire
            try:
                if con is None:
                    con = lake.connect(config, migrate=False)
                if not renew_lease(
                    con, lease, now=dt.datetime.now(UTC), lease_seconds=lease_seconds
                ):
                    log.error("the %s lease was taken over by another process", lease.job)
                    return
            except (duckdb.Error, PapersysError) as exc:
                log.warning("could not renew the %s lease: %s", lease.job, exc)
    finally:
        if con is not None:
            con.close()


class _Heartbeat:
    """Renews a lease while the job runs, from a separate process.

    A process, not a thread: DuckDB connections to the same SQLite catalog from one process
    lock each other out, while separate processes take turns like any other writers.
    """

    def __init__(self, config: Config, lease: Lease, lease_seconds: float) -> None:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self._stop = ctx.Event()
        self._process = ctx.Process(
            target=_heartbeat_main,
            args=(config, lease, lease_seconds, self._stop, os.getpid()),
            name=f"papersys-lease-{lease.job}",
            daemon=True,
        )

    def __enter__(self) -> _Heartbeat:
        self._process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.terminate()  # stuck on the catalog: the lease is released anyway
            self._process.join(timeout=5)


# ---------------------------------------------------------------------------------------------
# Running jobs
# ---------------------------------------------------------------------------------------------


@dataclass
class JobRun:
    run_id: str
    job: str
    trigger: str
    attempt: int
    status: str  # succeeded | failed | skipped
    started_at: dt.datetime
    finished_at: dt.datetime
    duration_s: float
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobOutcome:
    job: str
    status: str  # succeeded | failed | skipped
    runs: list[JobRun]
    held_by: str | None = None

    @property
    def error(self) -> str | None:
        return self.runs[-1].error if self.runs else None


@dataclass(frozen=True)
class SchedulerEvent:
    kind: str  # started | attempt_failed | finished | skipped | sleeping
    job: str | None
    message: str
    at: dt.datetime


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
    return message[:1000]


def record_run(con: duckdb.DuckDBPyConnection, run: JobRun) -> None:
    host = socket.gethostname()

    def body() -> None:
        con.execute(
            "INSERT INTO lake.job_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run.run_id,
                run.job,
                run.trigger,
                run.attempt,
                run.status,
                run.started_at,
                run.finished_at,
                run.duration_s,
                host,
                os.getpid(),
                run.error,
                json.dumps(run.detail, default=str) if run.detail else None,
            ],
        )

    lake.run_transaction(con, body)


def last_runs(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """The latest attempt of each job, plus its success/failure counts."""
    if not lake.table_exists(con, "job_runs"):
        return []
    cur = con.execute(
        """SELECT job, status, trigger, attempt, started_at, finished_at, duration_s, error,
                  count(*) FILTER (status = 'succeeded') OVER w AS succeeded,
                  count(*) FILTER (status = 'failed') OVER w AS failed,
                  max(finished_at) FILTER (status = 'succeeded') OVER w AS last_success
           FROM lake.job_runs
           WINDOW w AS (PARTITION BY job)
           QUALIFY row_number() OVER (PARTITION BY job ORDER BY finished_at DESC) = 1
           ORDER BY job"""
    )
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


Clock = Callable[[], dt.datetime]
Sleep = Callable[[float], None]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(UTC)


class Scheduler:
    """Runs jobs once (``run_job``) or on their cron schedules (``run``).

    ``clock`` and ``sleep`` are injectable so the loop can be driven by a fake clock.
    Library code never prints: progress goes to ``on_event``.
    """

    def __init__(
        self,
        config: Config,
        *,
        jobs: dict[str, Job] | None = None,
        clock: Clock = _utc_now,
        sleep: Sleep = time.sleep,
        on_event: Callable[[SchedulerEvent], None] | None = None,
        lease_seconds: float | None = None,
        metrics_hook: Callable[[], None] | None = None,
        heartbeat: bool = True,
    ) -> None:
        self.config = config
        self.jobs = jobs if jobs is not None else JOBS
        self.schedules = check_jobs(config, self.jobs)
        self.clock = clock
        self.sleep = sleep
        self.on_event = on_event
        self.lease_seconds = lease_seconds or config.scheduler.lease_seconds
        self.metrics_hook = metrics_hook
        # Off only where a job is known to be short (tests driving the loop with a fake clock).
        self.heartbeat = heartbeat

    def _emit(self, kind: str, job: str | None, message: str) -> None:
        if self.on_event is not None:
            self.on_event(SchedulerEvent(kind, job, message, self.clock()))

    def run_job(self, name: str, trigger: str = "once") -> JobOutcome:
        """Run one job now (with its retries) unless another process holds its lease."""
        if name not in self.jobs:
            raise UsageError(f"unknown job '{name}'; jobs: {', '.join(self.jobs)}")
        job = self.jobs[name]
        spec = self.config.scheduler.jobs.get(name)
        retries = spec.retries if spec else 0
        retry_delay = spec.retry_delay if spec else 0.0
        # No connection stays open while the job runs: the job opens its own, and two
        # connections of one process to a SQLite catalog can lock each other out.
        con = lake.connect(self.config)
        try:
            lease, held = acquire_lease(
                con, name, now=self.clock(), lease_seconds=self.lease_seconds
            )
            if lease is None:
                holder = held.holder if held else "another process"
                now = self.clock()
                skipped = JobRun(
                    uuid.uuid4().hex,
                    name,
                    trigger,
                    0,
                    "skipped",
                    now,
                    now,
                    0.0,
                    error=f"already running ({holder})",
                )
                record_run(con, skipped)
                self._emit("skipped", name, f"{name} is already running ({holder}); skipped")
                return JobOutcome(name, "skipped", [skipped], held_by=holder)
        finally:
            con.close()
        try:
            if not self.heartbeat:
                return self._attempts(job, trigger, retries, retry_delay)
            with _Heartbeat(self.config, lease, self.lease_seconds):
                return self._attempts(job, trigger, retries, retry_delay)
        finally:
            con = lake.connect(self.config, migrate=False)
            try:
                release_lease(con, lease)
            finally:
                con.close()
            if self.metrics_hook is not None:
                try:
                    self.metrics_hook()
                except PapersysError as exc:
                    log.warning("could not write metrics: %s", exc)

    def _attempts(
        self,
        job: Job,
        trigger: str,
        retries: int,
        retry_delay: float,
    ) -> JobOutcome:
        run_id = uuid.uuid4().hex
        runs: list[JobRun] = []
        for attempt in range(1, retries + 2):
            started = self.clock()
            tick = time.perf_counter()
            self._emit("started", job.name, f"{job.name}: attempt {attempt} of {retries + 1}")
            status, error, detail = "succeeded", None, {}
            final = False
            try:
                detail = _plain(job.run(self.config))
            except (UsageError, ConfigError) as exc:
                # Bad configuration does not get better by retrying.
                status, error, final = "failed", _one_line(exc), True
            except Exception as exc:
                status, error = "failed", _one_line(exc)
                log.debug("job %s attempt %d failed", job.name, attempt, exc_info=True)
            finished = self.clock()
            elapsed = time.perf_counter() - tick
            duration = max(elapsed, (finished - started).total_seconds())
            run = JobRun(
                run_id,
                job.name,
                trigger,
                attempt,
                status,
                started,
                finished,
                duration,
                error,
                detail,
            )
            con = lake.connect(self.config, migrate=False)
            try:
                record_run(con, run)
            finally:
                con.close()
            runs.append(run)
            if status == "succeeded":
                self._emit("finished", job.name, f"{job.name}: succeeded in {duration:.1f}s")
                return JobOutcome(job.name, "succeeded", runs)
            self._emit("attempt_failed", job.name, f"{job.name}: attempt {attempt}: {error}")
            if final or attempt > retries:
                break
            self.sleep(retry_delay * 2 ** (attempt - 1))
        self._emit("finished", job.name, f"{job.name}: failed after {len(runs)} attempt(s)")
        return JobOutcome(job.name, "failed", runs)

    def next_runs(self, after: dt.datetime) -> dict[str, dt.datetime]:
        return {
            name: schedule.next_after(after)
            for name, schedule in self.schedules.items()
            if self.config.scheduler.jobs[name].enabled
        }

    def run(
        self,
        *,
        stop: threading.Event | None = None,
        until: dt.datetime | None = None,
        only: Iterable[str] | None = None,
    ) -> list[JobOutcome]:
        """Run due jobs until ``stop`` is set (or the clock passes ``until``).

        Jobs due together run one after another by priority (ingest, transform, embed,
        backfill), so a day's transform sees that day's harvest. A fire missed while another
        job ran is run once, late, not once per missed slot.
        """
        wanted = set(only) if only is not None else None
        upcoming = {
            name: when
            for name, when in self.next_runs(self.clock()).items()
            if wanted is None or name in wanted
        }
        outcomes: list[JobOutcome] = []
        if not upcoming:
            raise ConfigError("no enabled jobs under [scheduler.jobs]; nothing to schedule")
        while not (stop is not None and stop.is_set()):
            now = self.clock()
            if until is not None and now >= until:
                break
            due = sorted(
                (name for name, when in upcoming.items() if when <= now),
                key=lambda n: self.jobs[n].priority,
            )
            if not due:
                wake = min(upcoming.values())
                if until is not None:
                    wake = min(wake, until)
                wait = min(max((wake - now).total_seconds(), 0.0), MAX_IDLE_SLEEP)
                self._emit("sleeping", None, f"next: {min(upcoming, key=upcoming.__getitem__)}")
                if stop is not None:
                    stop.wait(wait)
                else:
                    self.sleep(wait)
                continue
            for name in due:
                if stop is not None and stop.is_set():
                    break
                outcomes.append(self.run_job(name, trigger="schedule"))
                upcoming[name] = self.schedules[name].next_after(self.clock())
        return outcomes
