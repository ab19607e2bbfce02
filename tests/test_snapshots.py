from __future__ import annotations

import datetime as dt

import pytest
from typer.testing import CliRunner

from papersys import lake
from papersys import snapshots as snaps
from papersys.cli import app
from papersys.config import Config
from papersys.errors import PapersysError, UsageError


def _land(con, ids: list[str], source: str = "oai") -> None:
    # One INSERT per call: more than DuckLake's inlining limit (10 rows) makes a Parquet file.
    con.execute(
        "INSERT INTO raw_records SELECT unnest(?::VARCHAR[]), DATE '2024-01-02', ['cs'], "
        "false, 'arXivRaw', '<x/>', ?, 'h1', now()",
        [ids, source],
    )


def _ids(con, table: str = "raw_records") -> list[str]:
    return [r[0] for r in con.execute(f"SELECT arxiv_id FROM {table} ORDER BY 1").fetchall()]


def test_snapshots_are_listed_newest_first_with_changes_by_table_name(con) -> None:
    _land(con, ["2401.00001"])
    rows = snaps.snapshot_rows(con, limit=2)
    assert rows[0]["snapshot_id"] > rows[1]["snapshot_id"]
    assert "raw_records" in rows[0]["changes"]


def test_rollback_restores_rows_in_one_new_snapshot(con) -> None:
    _land(con, ["2401.00001", "2401.00002"])
    target = snaps.current_snapshot(con)
    _land(con, ["2401.00003"])
    con.execute("DELETE FROM raw_records WHERE arxiv_id = '2401.00001'")
    con.execute("CREATE TABLE scratch (x INTEGER)")
    con.execute("INSERT INTO scratch VALUES (1), (2)")
    con.execute("ALTER TABLE raw_records ADD COLUMN note VARCHAR")
    con.execute("UPDATE raw_records SET note = 'later'")
    con.execute(
        "INSERT INTO job_runs VALUES ('r', 'ingest', 'once', 1, 'succeeded', now(), now(), "
        "1.0, 'h', 1, NULL, NULL)"
    )
    before = snaps.current_snapshot(con)

    plan = snaps.plan_rollback(con, target)
    by_table = {t.table: t for t in plan.tables}
    assert set(by_table) == {"raw_records", "scratch"}  # job_runs is never rolled back
    assert (by_table["raw_records"].rows_now, by_table["raw_records"].rows_then) == (2, 2)
    assert not by_table["scratch"].existed_then

    result = snaps.rollback(con, target)
    assert result.snapshot == before + 1  # the whole rollback is one commit
    assert _ids(con) == ["2401.00001", "2401.00002"]
    # The schema stays: the later column is kept, empty for the restored rows.
    assert con.execute("SELECT count(*) FROM raw_records WHERE note IS NULL").fetchone()[0] == 2
    assert con.execute("SELECT count(*) FROM scratch").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM job_runs").fetchone()[0] == 1
    last = snaps.list_snapshots(con, 1)[0]
    assert last.commit_message == f"rollback to snapshot {target}"

    # And a rollback can itself be rolled back.
    snaps.rollback(con, before)
    assert _ids(con) == ["2401.00002", "2401.00003"]
    assert con.execute("SELECT count(*) FROM scratch").fetchone()[0] == 2


def test_rollback_is_all_or_nothing(con, monkeypatch: pytest.MonkeyPatch) -> None:
    _land(con, ["2401.00001"])
    target = snaps.current_snapshot(con)
    _land(con, ["2401.00002"])
    lake.ensure_model_tables(con, _config_of(con))
    con.execute(
        "INSERT INTO embeddings_minilm VALUES ('2401.00002', [1.0, 0.0], 'sha', 'm', now())"
    )
    head = snaps.current_snapshot(con)
    real_execute = con.execute
    seen: list[str] = []

    class Flaky:
        """Fails the second table's restore, after the first one was rewritten."""

        def __getattr__(self, name: str):
            return getattr(con, name)

        def execute(self, sql: str, *args):
            if sql.startswith("DELETE FROM"):
                seen.append(sql)
                if len(seen) == 2:
                    raise RuntimeError("disk full")
            return real_execute(sql, *args)

    with pytest.raises(RuntimeError, match="disk full"):
        snaps.rollback(Flaky(), target)  # type: ignore[arg-type]
    assert len(seen) == 2
    assert snaps.current_snapshot(con) == head
    assert _ids(con) == ["2401.00001", "2401.00002"]
    assert _ids(con, "embeddings_minilm") == ["2401.00002"]


def _config_of(con) -> Config:
    from papersys.config import load_config

    return load_config()


def test_rollback_refuses_unknown_snapshots_and_stale_plans(con) -> None:
    _land(con, ["2401.00001"])
    target = snaps.current_snapshot(con)
    _land(con, ["2401.00002"])
    with pytest.raises(UsageError, match="snapshot 9999 does not exist or has expired"):
        snaps.plan_rollback(con, 9999)
    with pytest.raises(PapersysError, match="the lake moved on"):
        snaps.rollback(con, target, expected_current=target)
    assert _ids(con) == ["2401.00001", "2401.00002"]


def test_rollback_cli_asks_first(config: Config) -> None:
    con = lake.connect(config)
    _land(con, ["2401.00001"])
    target = snaps.current_snapshot(con)
    _land(con, ["2401.00002"])
    con.close()
    runner = CliRunner()
    refused = runner.invoke(app, ["rollback", "--to", str(target)], input="n\n")
    assert refused.exit_code == 1
    assert "raw_records" in refused.output and "not rolled back" in refused.output
    con = lake.connect(config)
    assert _ids(con) == ["2401.00001", "2401.00002"]
    con.close()
    done = runner.invoke(app, ["rollback", "--to", str(target), "--yes"])
    assert done.exit_code == 0, done.output
    assert "rolled back 1 table(s)" in done.output
    con = lake.connect(config)
    assert _ids(con) == ["2401.00001"]
    con.close()
    missing = runner.invoke(app, ["rollback", "--to", "123456", "--yes"])
    assert missing.exit_code == 2 and "does not exist" in missing.output
    listing = runner.invoke(app, ["snapshots", "--limit", "3"])
    assert listing.exit_code == 0 and f"rollback to snapshot {target}" in listing.output


def test_maintain_merges_files_and_expires_old_snapshots(config: Config) -> None:
    con = lake.connect(config)
    # Many small commits past the inlining limit: many small Parquet files.
    for batch in range(8):
        _land(con, [f"2401.{batch:02d}{i:03d}" for i in range(20)])
    before_ids = _ids(con)
    old = snaps.current_snapshot(con)
    files_before, _ = snaps._files_and_bytes(con)
    assert files_before >= 8

    kept = snaps.maintain(con, config, retention_days=30)
    assert kept.files_after < files_before
    assert kept.snapshots_after >= kept.snapshots_before  # nothing old enough to expire
    assert _ids(con) == before_ids
    # Recent snapshots still time-travel.
    at_old = con.execute(f"SELECT count(*) FROM raw_records AT (VERSION => {old})").fetchone()
    assert at_old[0] == 160

    future = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    result = snaps.maintain(con, config, retention_days=0, now=future)
    assert result.snapshots_after == 1
    assert _ids(con) == before_ids
    with pytest.raises(UsageError, match="has expired"):
        snaps.plan_rollback(con, old)
    con.close()
    ok = CliRunner().invoke(app, ["maintain", "--retention-days", "0"])
    assert ok.exit_code == 0, ok.output
    assert "snapshots" in ok.output


def test_rollback_of_parquet_backed_rows(con) -> None:
    first = [f"2402.{i:05d}" for i in range(50)]
    _land(con, first)
    target = snaps.current_snapshot(con)
    _land(con, [f"2403.{i:05d}" for i in range(50)])
    con.execute("DELETE FROM raw_records WHERE arxiv_id < '2402.00025'")
    assert snaps._files_and_bytes(con)[0] >= 2
    snaps.rollback(con, target)
    assert _ids(con) == first
