from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from papersys import lake
from papersys import scheduler as sched
from papersys.cli import app
from papersys.config import Config, JobSchedule, load_config
from papersys.errors import ConfigError, UsageError
from tests.operate_fixtures import oai_pages

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- cron ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("30 4 * * 1-5", "2026-11-27 05:00", "2026-11-30 04:30"),  # Friday -> Monday
        ("30 4 * * 1-5", "2026-11-30 04:29", "2026-11-30 04:30"),
        ("30 4 * * 1-5", "2026-11-30 04:30", "2026-12-01 04:30"),  # strictly after
        ("*/15 * * * *", "2026-01-01 10:07", "2026-01-01 10:15"),
        ("5/20 * * * *", "2026-01-01 10:26", "2026-01-01 10:45"),
        ("0 0 29 feb *", "2026-03-01 00:00", "2028-02-29 00:00"),
        ("0 12 * * sun", "2026-11-24 00:00", "2026-11-29 12:00"),
        ("0 12 * * 7", "2026-11-24 00:00", "2026-11-29 12:00"),  # 7 is Sunday too
        ("0 0 1,15 * *", "2026-11-02 00:00", "2026-11-15 00:00"),
        ("@daily", "2026-12-31 23:59", "2027-01-01 00:00"),
        ("@hourly", "2026-01-01 10:00", "2026-01-01 11:00"),
        ("0 9-17/4 * * *", "2026-01-01 09:00", "2026-01-01 13:00"),
    ],
)
def test_cron_next_after(expression: str, after: str, expected: str) -> None:
    assert sched.parse_cron(expression).next_after(at(after)) == at(expected)


def test_cron_day_fields_or_when_both_restricted() -> None:
    # Classic cron: the 13th of the month OR any Friday.
    schedule = sched.parse_cron("0 0 13 * 5")
    assert schedule.matches(at("2026-11-13 00:00"))  # a Friday the 13th
    assert schedule.matches(at("2026-11-20 00:00"))  # a Friday
    assert schedule.matches(at("2026-12-13 00:00"))  # a Sunday the 13th
    assert not schedule.matches(at("2026-12-14 00:00"))
    # Only one restricted: it alone decides.
    assert sched.parse_cron("0 0 * * 5").matches(at("2026-11-20 00:00"))
    assert not sched.parse_cron("0 0 * * 5").matches(at("2026-11-13 00:01"))


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "has 4 fields"),
        ("61 * * * *", "minute 61 is out of range 0-59"),
        ("0 24 * * *", "hour 24 is out of range"),
        ("0 0 0 * *", "day of month 0 is out of range"),
        ("0 0 * 13 *", "month 13 is out of range"),
        ("0 0 * * 8", "day of week 8 is out of range"),
        ("5-1 * * * *", "runs backwards"),
        ("*/0 * * * *", "step '0' must be a positive number"),
        ("x * * * *", "minute 'x' is not a number"),
        ("1,,2 * * * *", "empty item"),
        ("0 0 31 2 *", "never matches"),
    ],
)
def test_cron_errors_name_the_field(expression: str, message: str) -> None:
    with pytest.raises(sched.CronError, match=message):
        sched.parse_cron(expression)


def test_config_rejects_a_bad_cron_with_the_job_name(tmp_path: Path) -> None:
    file = tmp_path / "papersys.toml"
    file.write_text('[scheduler.jobs.ingest]\ncron = "30 25 * * *"\n')
    with pytest.raises(ConfigError, match=r"scheduler\.jobs\.ingest\.cron: .*hour 25"):
        load_config(file)


def test_unknown_job_name_is_a_config_error(config: Config) -> None:
    config.scheduler.jobs["harvest_all"] = JobSchedule(cron="@daily")  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match=r"\[scheduler\.jobs\.harvest_all\]: unknown job"):
        sched.Scheduler(config)


# --- leases ----------------------------------------------------------------------------------


def test_lease_is_exclusive_until_released_or_expired(con) -> None:
    now = at("2026-01-01 10:00")
    first, _ = sched.acquire_lease(con, "ingest", now=now, lease_seconds=60)
    assert first is not None
    second, held = sched.acquire_lease(con, "ingest", now=now, lease_seconds=60)
    assert second is None and held is not None and held.holder == first.holder
    # Another job is independent.
    other, _ = sched.acquire_lease(con, "transform", now=now)
    assert other is not None
    # Renewal keeps it; after expiry (no renewal) it can be taken over.
    assert sched.renew_lease(con, first, now=now + dt.timedelta(seconds=50), lease_seconds=60)
    blocked, _ = sched.acquire_lease(con, "ingest", now=now + dt.timedelta(seconds=100))
    assert blocked is None
    taken, _ = sched.acquire_lease(con, "ingest", now=now + dt.timedelta(seconds=111))
    assert taken is not None and taken.holder != first.holder
    # The old holder can no longer renew or release it.
    assert not sched.renew_lease(con, first, now=now + dt.timedelta(seconds=112))
    sched.release_lease(con, first)
    assert {i.job: i.holder for i in sched.read_leases(con)}["ingest"] == taken.holder
    sched.release_lease(con, taken)
    again, _ = sched.acquire_lease(con, "ingest", now=now + dt.timedelta(seconds=113))
    assert again is not None


def test_lease_of_a_dead_local_process_is_taken_over(con) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    pid = int(dead.stdout)
    host = sched.socket.gethostname()
    now = at("2026-01-01 10:00")
    con.execute(
        """UPDATE job_leases SET holder = ?, host = ?, pid = ?, acquired_at = ?,
               expires_at = ? WHERE job = 'transform'""",
        [f"{host}:{pid}:dead", host, pid, now, now + dt.timedelta(hours=1)],
    )
    lease, held = sched.acquire_lease(con, "transform", now=now)
    assert lease is not None, held
    # A holder on another host is trusted until its lease expires.
    con.execute(
        """UPDATE job_leases SET holder = 'elsewhere:1:x', host = 'elsewhere', pid = 1,
               expires_at = ? WHERE job = 'embed'""",
        [now + dt.timedelta(hours=1)],
    )
    blocked, held = sched.acquire_lease(con, "embed", now=now)
    assert blocked is None and held is not None and held.holder == "elsewhere:1:x"


def _race_for_lease(args: tuple[str, str, int]) -> str | None:
    import os
    import time

    root, start_at, _ = args
    os.environ["PAPERSYS_LAKE_ROOT"] = root
    from papersys import lake as lk
    from papersys import scheduler as sc
    from papersys.config import load_config as load

    c = lk.connect(load())
    time.sleep(max(0.0, float(start_at) - time.time()))
    lease, _ = sc.acquire_lease(c, "ingest", now=dt.datetime.now(dt.UTC), lease_seconds=600)
    c.close()
    return lease.holder if lease else None


def test_only_one_of_several_processes_gets_the_lease(tmp_path: Path) -> None:
    import time

    root = str(tmp_path / "lake")
    lake.connect(load_config(overrides={"lake.root": root})).close()
    start_at = str(time.time() + 4.0)  # all processes try at the same moment
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(3) as pool:
        holders = pool.map(_race_for_lease, [(root, start_at, i) for i in range(3)])
    winners = [h for h in holders if h]
    assert len(winners) == 1, holders
    c = lake.connect(load_config(overrides={"lake.root": root}))
    assert [i.holder for i in sched.read_leases(c) if i.job == "ingest"] == winners
    c.close()


# --- the scheduler with a fake clock ------------------------------------------------------


class FakeClock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += dt.timedelta(seconds=seconds)

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def _configure(config: Config, **crons: str) -> Config:
    config.scheduler.jobs = {
        name: JobSchedule(cron=cron, retries=2, retry_delay=10.0)  # type: ignore[attr-defined]
        for name, cron in crons.items()
    }
    return config


def test_jobs_run_on_schedule_by_priority_and_are_logged(config: Config) -> None:
    clock = FakeClock(at("2026-11-30 03:59"))  # a Monday
    calls: list[tuple[str, dt.datetime]] = []

    def job(name: str, seconds: float) -> sched.Job:
        def run(cfg: Config) -> dict:
            calls.append((name, clock.now))
            clock.advance(seconds)  # the job takes this long
            return {"name": name}

        return sched.Job(name, name, run, sched.JOBS[name].priority)

    jobs = {
        "ingest": job("ingest", 45 * 60),
        "transform": job("transform", 60),
        "embed": job("embed", 60),
    }
    config = _configure(
        config, ingest="0 4 * * 1-5", transform="30 4 * * 1-5", embed="*/20 4-5 * * 1-5"
    )
    runner = sched.Scheduler(config, jobs=jobs, clock=clock, sleep=clock.sleep, heartbeat=False)
    runner.run(until=at("2026-11-30 06:00"))
    times = [(n, t.strftime("%H:%M")) for n, t in calls]
    # 04:00 ingest and embed are both due: ingest first. Ingest runs until 04:45, so the
    # 04:20 and 04:40 embeds and the 04:30 transform are late: run once each, by priority.
    assert times == [
        ("ingest", "04:00"),
        ("embed", "04:45"),
        ("transform", "04:46"),
        ("embed", "05:00"),
        ("embed", "05:20"),
        ("embed", "05:40"),
    ]
    con = lake.connect(config)
    rows = con.execute(
        "SELECT job, status, attempt, trigger, detail FROM job_runs ORDER BY started_at, job"
    ).fetchall()
    con.close()
    assert [r[0] for r in rows] == [n for n, _ in calls]
    assert {r[1] for r in rows} == {"succeeded"} and {r[3] for r in rows} == {"schedule"}
    assert json.loads(rows[0][4]) == {"name": "ingest"}


def test_failed_attempts_are_retried_with_backoff_then_logged(config: Config) -> None:
    clock = FakeClock(at("2026-01-01 00:00"))
    attempts: list[dt.datetime] = []

    def flaky(cfg: Config) -> dict:
        attempts.append(clock.now)
        if len(attempts) < 3:
            raise RuntimeError(f"upstream hiccup {len(attempts)}\nsecond line")
        return {"ok": True}

    config = _configure(config, ingest="@daily")
    jobs = {"ingest": sched.Job("ingest", "x", flaky, 0)}
    outcome = sched.Scheduler(
        config, jobs=jobs, clock=clock, sleep=clock.sleep, heartbeat=False
    ).run_job("ingest")
    assert outcome.status == "succeeded"
    assert [r.attempt for r in outcome.runs] == [1, 2, 3]
    assert clock.sleeps == [10.0, 20.0]  # retry_delay, doubled
    con = lake.connect(config)
    rows = con.execute("SELECT attempt, status, error FROM job_runs ORDER BY attempt").fetchall()
    lease = {i.job: i.holder for i in sched.read_leases(con)}["ingest"]
    con.close()
    assert rows == [
        (1, "failed", "RuntimeError: upstream hiccup 1"),
        (2, "failed", "RuntimeError: upstream hiccup 2"),
        (3, "succeeded", None),
    ]
    assert lease is None  # released after the run


def test_retries_run_out_and_usage_errors_are_not_retried(config: Config) -> None:
    clock = FakeClock(at("2026-01-01 00:00"))
    config = _configure(config, ingest="@daily", transform="@daily")

    def broken(cfg: Config) -> dict:
        raise RuntimeError("down")

    def misconfigured(cfg: Config) -> dict:
        raise UsageError("--from 1990-01-01: too early")

    jobs = {
        "ingest": sched.Job("ingest", "x", broken, 0),
        "transform": sched.Job("transform", "x", misconfigured, 1),
    }
    runner = sched.Scheduler(config, jobs=jobs, clock=clock, sleep=clock.sleep, heartbeat=False)
    failed = runner.run_job("ingest")
    assert failed.status == "failed" and len(failed.runs) == 3
    assert failed.error == "RuntimeError: down"
    once = runner.run_job("transform")
    assert once.status == "failed" and len(once.runs) == 1


def test_a_job_held_elsewhere_is_skipped_and_logged(config: Config) -> None:
    config = _configure(config, embed="@daily")
    ran: list[int] = []
    jobs = {"embed": sched.Job("embed", "x", lambda c: ran.append(1) or {}, 2)}
    con = lake.connect(config)
    lease, _ = sched.acquire_lease(con, "embed", now=dt.datetime.now(UTC))
    assert lease is not None
    outcome = sched.Scheduler(config, jobs=jobs).run_job("embed")
    assert outcome.status == "skipped" and outcome.held_by == lease.holder
    assert ran == []
    row = con.execute("SELECT status, error FROM job_runs").fetchone()
    assert row == ("skipped", f"already running ({lease.holder})")
    con.close()


def test_unknown_job_for_once_is_a_usage_error(config: Config) -> None:
    with pytest.raises(UsageError, match="unknown job 'nope'"):
        sched.Scheduler(config).run_job("nope")


# --- real jobs ---------------------------------------------------------------------------


def test_real_ingest_job_against_a_local_replay(config: Config) -> None:
    from papersys.ingestion.replay import OAIReplay, ReplayServer

    replay = OAIReplay(oai_pages([2, 4]))
    with ReplayServer(replay) as server:
        config.ingestion.endpoint = server.url  # type: ignore[misc]
        config.ingestion.request_spacing = 0.0  # type: ignore[misc]
        config.ingestion.metadata_prefix = replay.prefix  # type: ignore[misc,assignment]
        outcome = sched.Scheduler(config).run_job("ingest")
    assert outcome.status == "succeeded", outcome.error
    con = lake.connect(config)
    landed = con.execute("SELECT count(*) FROM raw_records").fetchone()[0]
    detail = json.loads(con.execute("SELECT detail FROM job_runs").fetchone()[0])
    con.close()
    assert landed > 0
    assert detail["records"] == landed and detail["pages"] == len(replay.pages)


def test_schedule_once_cli_exit_codes(lake_root: Path, tmp_path: Path) -> None:
    # Nothing listens on this port: the ingest job fails (no retries configured) -> exit 1.
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "papersys.toml").write_text(
        f'[ingestion]\nendpoint = "http://127.0.0.1:{port}/oai"\nmax_retries = 0\n'
        "request_spacing = 0\ntimeout = 2\n"
        '[scheduler.jobs.ingest]\ncron = "@daily"\nretries = 0\n'
        '[scheduler.jobs.maintain]\ncron = "@weekly"\n'
    )
    runner = CliRunner()
    failed = runner.invoke(app, ["schedule", "--once", "ingest"])
    assert failed.exit_code == 1, failed.output
    assert "failed ingest" in failed.output
    ok = runner.invoke(app, ["schedule", "--once", "maintain"])
    assert ok.exit_code == 0, ok.output
    assert "succeeded maintain" in ok.output
    bad = runner.invoke(app, ["schedule", "--once", "nope"])
    assert bad.exit_code == 2 and "unknown job 'nope'" in bad.output
    listing = runner.invoke(app, ["schedule", "--list"])
    assert listing.exit_code == 0 and "maintain" in listing.output
    con = lake.connect(load_config(tmp_path / "papersys.toml"))
    rows = con.execute("SELECT job, status FROM job_runs ORDER BY finished_at").fetchall()
    con.close()
    assert rows == [("ingest", "failed"), ("maintain", "succeeded")]


def test_heartbeat_keeps_the_lease_while_the_job_writes(config: Config) -> None:
    config = _configure(config, ingest="@daily")
    seen: list[str | None] = []

    def busy(cfg: Config) -> dict:
        # The job commits on its own connection while the heartbeat process renews the lease;
        # it goes on until it sees a renewal (the heartbeat process needs a moment to start).
        c = lake.connect(cfg)
        renewed, written = False, 0
        deadline = time.monotonic() + 90
        try:
            while not renewed and time.monotonic() < deadline:
                lake.run_transaction(
                    c,
                    lambda n=written: c.execute(
                        "INSERT INTO raw_records VALUES (?, NULL, [], false, 'arXivRaw', "
                        "'<x/>', 'oai', 'h', now())",
                        [f"2401.{n:05d}"],
                    ),
                )
                written += 1
                time.sleep(0.1)
                renewed = c.execute(
                    "SELECT max(renewed_at) > max(acquired_at) FROM job_leases WHERE job = 'ingest'"
                ).fetchone()[0]
            seen.extend(i.holder for i in sched.read_leases(c) if i.job == "ingest")
        finally:
            c.close()
        return {"renewed": bool(renewed), "written": written}

    jobs = {"ingest": sched.Job("ingest", "x", busy, 0)}
    outcome = sched.Scheduler(config, jobs=jobs, lease_seconds=0.9).run_job("ingest")
    assert outcome.status == "succeeded", outcome.error
    detail = outcome.runs[-1].detail
    assert detail["renewed"] is True
    assert seen and seen[0] is not None
    con = lake.connect(config)
    assert con.execute("SELECT count(*) FROM raw_records").fetchone()[0] == detail["written"]
    assert {i.job: i.holder for i in sched.read_leases(con)}["ingest"] is None
    con.close()


@pytest.mark.slow
def test_real_transform_embed_and_backfill_jobs(config: Config) -> None:
    from papersys.ingestion.harvest import harvest
    from papersys.ingestion.replay import OAIReplay, ReplayServer

    replay = OAIReplay(oai_pages([6]))
    with ReplayServer(replay) as server:
        config.ingestion.endpoint = server.url  # type: ignore[misc]
        config.ingestion.request_spacing = 0.0  # type: ignore[misc]
        harvest(config, metadata_prefix=replay.prefix)
    runner = sched.Scheduler(config)
    for job in ("transform", "embed", "embedding_backfill"):
        outcome = runner.run_job(job)
        assert outcome.status == "succeeded", (job, outcome.error)
    con = lake.connect(config)
    assert con.execute("SELECT count(*) FROM embeddings_minilm").fetchone()[0] == 6
    assert con.execute("SELECT count(*) FROM missing_embeddings").fetchone()[0] == 0
    details = dict(
        con.execute("SELECT job, detail FROM job_runs WHERE status = 'succeeded'").fetchall()
    )
    con.close()
    assert json.loads(details["embed"])["models"]["minilm"]["embedded"] == 6
    assert json.loads(details["embedding_backfill"])["models"]["minilm"]["embedded"] == 0
