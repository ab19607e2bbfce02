"""DuckLake snapshots: list them, roll the lake's data back to one, and keep the lake tidy.

Every commit to the lake is a snapshot, and DuckLake can read any table as of one
(``AT (VERSION => n)``) but has no in-place rollback. ``rollback`` builds one: in a single
transaction it replaces the content of every table that changed after snapshot *n* with its
content as of *n* (tables created after *n* are emptied). It commits whole or not at all, it is
itself a new snapshot (so a rollback can be rolled back), and the schema stays as it is now:
tables and columns added later are kept, only their rows go back.

Operational tables are left alone: ``schema_migrations`` (the schema is not rolled back),
``job_runs`` (the log keeps its history, the rollback included) and ``job_leases``.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import duckdb

from papersys import lake
from papersys.config import Config
from papersys.errors import PapersysError, UsageError

log = logging.getLogger(__name__)

# Never rolled back: the schema version, the run log and the job leases.
KEEP_TABLES = frozenset({"schema_migrations", "job_runs", "job_leases"})
_META = f"__ducklake_metadata_{lake.LAKE_ALIAS}"
# Snapshot change kinds that name a table by id and change its rows.
_DATA_CHANGES = (
    "tables_inserted_into",
    "tables_deleted_from",
    "inlined_insert",
    "inlined_delete",
    "tables_altered",
)


@dataclass(frozen=True)
class Snapshot:
    snapshot_id: int
    snapshot_time: dt.datetime
    schema_version: int
    changes: dict[str, list[str]]
    author: str | None
    commit_message: str | None


def list_snapshots(con: duckdb.DuckDBPyConnection, limit: int | None = None) -> list[Snapshot]:
    """Snapshots, newest first."""
    sql = f"""SELECT snapshot_id, snapshot_time, schema_version, changes, author, commit_message
              FROM ducklake_snapshots('{lake.LAKE_ALIAS}') ORDER BY snapshot_id DESC"""
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [
        Snapshot(int(sid), when, int(schema), dict(changes or {}), author, message)
        for sid, when, schema, changes, author, message in con.execute(sql).fetchall()
    ]


def current_snapshot(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute(f"SELECT id FROM ducklake_current_snapshot('{lake.LAKE_ALIAS}')").fetchone()
    return int(row[0]) if row else 0


def describe_changes(changes: dict[str, list[str]], table_names: dict[int, str]) -> str:
    """Snapshot changes in words, with table ids turned into names."""
    parts: list[str] = []
    for kind, values in sorted(changes.items()):
        names = []
        for value in values:
            names.append(
                table_names.get(int(value), value) if value.isdigit() else value.split(".")[-1]
            )
        parts.append(f"{kind.replace('_', ' ')}: {', '.join(names)}")
    return "; ".join(parts)


def table_names_by_id(con: duckdb.DuckDBPyConnection) -> dict[int, str]:
    """Every table id the catalog has known (dropped ones too) and its name."""
    return {
        int(tid): name
        for tid, name in con.execute(
            f"SELECT table_id, table_name FROM {_META}.ducklake_table"
        ).fetchall()
    }


@dataclass
class TablePlan:
    table: str
    rows_now: int
    rows_then: int  # 0 when the table did not exist at the snapshot
    existed_then: bool


@dataclass
class RollbackPlan:
    target: int
    current: int
    target_time: dt.datetime
    tables: list[TablePlan] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.tables


def _tables_now(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        name
        for (name,) in con.execute(
            """SELECT table_name FROM duckdb_tables()
               WHERE database_name = ? AND schema_name = 'main' ORDER BY table_name""",
            [lake.LAKE_ALIAS],
        ).fetchall()
    ]


def _tables_at(con: duckdb.DuckDBPyConnection, snapshot: int) -> set[str]:
    return {
        name
        for (name,) in con.execute(
            f"""SELECT table_name FROM {_META}.ducklake_table
                WHERE begin_snapshot <= ? AND (end_snapshot IS NULL OR end_snapshot > ?)""",
            [snapshot, snapshot],
        ).fetchall()
    }


def _changed_since(con: duckdb.DuckDBPyConnection, snapshot: int) -> set[str]:
    """Names of tables whose rows or definition changed in a snapshot after ``snapshot``."""
    names = table_names_by_id(con)
    changed: set[str] = set()
    for snap in list_snapshots(con):
        if snap.snapshot_id <= snapshot:
            continue
        for kind, values in snap.changes.items():
            for value in values:
                if kind in _DATA_CHANGES and value.isdigit():
                    changed.add(names.get(int(value), value))
                elif kind in ("tables_created", "tables_dropped"):
                    changed.add(names.get(int(value), value) if value.isdigit() else value)
    return {name.split(".")[-1] for name in changed}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def plan_rollback(con: duckdb.DuckDBPyConnection, target: int) -> RollbackPlan:
    """What ``rollback`` would do: the tables it would rewrite, rows now and at ``target``."""
    snaps = {s.snapshot_id: s for s in list_snapshots(con)}
    current = max(snaps) if snaps else 0
    if target not in snaps:
        kept = f"{min(snaps)}-{current}" if snaps else "none"
        raise UsageError(
            f"snapshot {target} does not exist or has expired (kept: {kept}); "
            "see `papersys snapshots`"
        )
    plan = RollbackPlan(target, current, snaps[target].snapshot_time)
    if target == current:
        return plan
    existed = _tables_at(con, target)
    changed = _changed_since(con, target)
    for table in _tables_now(con):
        if table in KEEP_TABLES or table not in changed:
            continue
        rows_now = _count(con, f"lake.{_quote(table)}")
        rows_then = (
            _count(con, f"lake.{_quote(table)} AT (VERSION => {target})") if table in existed else 0
        )
        if rows_now == 0 and rows_then == 0:
            continue  # empty then and now: nothing to restore
        plan.tables.append(TablePlan(table, rows_now, rows_then, table in existed))
    return plan


def _count(con: duckdb.DuckDBPyConnection, relation: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {relation}").fetchone()
    return int(row[0]) if row else 0


@dataclass
class RollbackResult:
    plan: RollbackPlan
    snapshot: int  # the new snapshot that holds the rolled-back state


def rollback(
    con: duckdb.DuckDBPyConnection, target: int, *, expected_current: int | None = None
) -> RollbackResult:
    """Make the lake's data what it was at snapshot ``target``, in one transaction.

    ``expected_current`` guards a confirmed plan: if someone committed in between, stop
    instead of rolling back changes the user has not seen.
    """
    plan = plan_rollback(con, target)
    if expected_current is not None and plan.current != expected_current:
        raise PapersysError(
            f"the lake moved on (snapshot {plan.current}, not {expected_current}) while "
            "confirming; run the rollback again to see the new plan"
        )
    if plan.empty:
        return RollbackResult(plan, plan.current)

    # DuckLake reads `AT (VERSION => n)` through the transaction's own deletes, so the rows
    # as of the target are staged in temp tables (outside the lake) before anything is deleted.
    staged: dict[str, tuple[str, str]] = {}
    try:
        for number, item in enumerate(plan.tables):
            if not item.existed_then:
                continue
            name = f"lake.{_quote(item.table)}"
            # Columns as they were at the snapshot; later ones get their defaults (NULL).
            columns = [
                row[0]
                for row in con.execute(
                    f"DESCRIBE SELECT * FROM {name} AT (VERSION => {target})"
                ).fetchall()
            ]
            column_list = ", ".join(_quote(c) for c in columns)
            temp = f"temp.main.papersys_rollback_{number}"
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE papersys_rollback_{number} AS "
                f"SELECT {column_list} FROM {name} AT (VERSION => {target})"
            )
            staged[item.table] = (temp, column_list)

        def body() -> int:
            if current_snapshot(con) != plan.current:
                raise PapersysError(
                    f"the lake changed during the rollback (now past snapshot {plan.current}); "
                    "run it again"
                )
            con.execute(
                f"CALL {lake.LAKE_ALIAS}.set_commit_message('papersys', ?)",
                [f"rollback to snapshot {target}"],
            )
            for item in plan.tables:
                name = f"lake.{_quote(item.table)}"
                con.execute(f"DELETE FROM {name}")
                if item.table in staged:
                    temp, column_list = staged[item.table]
                    con.execute(
                        f"INSERT INTO {name} ({column_list}) SELECT {column_list} FROM {temp}"
                    )
            return plan.current

        lake.run_transaction(con, body, retries=0)
    finally:
        for temp, _ in staged.values():
            con.execute(f"DROP TABLE IF EXISTS {temp}")
    log.info("rolled back %d table(s) to snapshot %d", len(plan.tables), target)
    return RollbackResult(plan, current_snapshot(con))


@dataclass
class MaintainResult:
    files_before: int
    files_after: int
    snapshots_before: int
    snapshots_after: int
    expired_before: dt.datetime | None
    bytes_before: int
    bytes_after: int


def _files_and_bytes(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    row = con.execute(
        f"""SELECT coalesce(sum(file_count + delete_file_count), 0),
                   coalesce(sum(file_size_bytes + delete_file_size_bytes), 0)
            FROM ducklake_table_info('{lake.LAKE_ALIAS}')"""
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _snapshot_count(con: duckdb.DuckDBPyConnection) -> int:
    return _count(con, f"ducklake_snapshots('{lake.LAKE_ALIAS}')")


def maintain(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    *,
    retention_days: float | None = None,
    now: dt.datetime | None = None,
) -> MaintainResult:
    """Merge small files, expire snapshots older than the retention, delete unused files.

    Each step is DuckLake's own transaction; readers see the same rows before and after.
    Snapshots inside the retention window stay available to time travel and rollback.
    """
    days = config.lake.snapshot_retention_days if retention_days is None else retention_days
    if days < 0:
        raise UsageError(f"retention {days} days: give 0 or more")
    moment = now or dt.datetime.now(dt.UTC)
    cutoff = moment - dt.timedelta(days=days)
    files_before, bytes_before = _files_and_bytes(con)
    snapshots_before = _snapshot_count(con)
    alias = lake.LAKE_ALIAS
    try:
        # Small inlined inserts live in the catalog; write them out as Parquet first.
        con.execute(f"CALL ducklake_flush_inlined_data('{alias}')")
        con.execute(f"CALL ducklake_merge_adjacent_files('{alias}')")
        con.execute(f"CALL ducklake_expire_snapshots('{alias}', older_than => ?)", [cutoff])
        con.execute(f"CALL ducklake_cleanup_old_files('{alias}', cleanup_all => true)")
    except duckdb.Error as exc:
        if lake.is_conflict(exc):
            raise PapersysError(
                "maintenance conflicted with a concurrent writer; run `papersys maintain` again"
            ) from None
        raise
    files_after, bytes_after = _files_and_bytes(con)
    return MaintainResult(
        files_before,
        files_after,
        snapshots_before,
        _snapshot_count(con),
        cutoff,
        bytes_before,
        bytes_after,
    )


def snapshot_rows(con: duckdb.DuckDBPyConnection, limit: int | None = None) -> list[dict[str, Any]]:
    """Snapshots as plain dicts with their changes described by table name."""
    names = table_names_by_id(con)
    return [
        {
            "snapshot_id": s.snapshot_id,
            "snapshot_time": s.snapshot_time,
            "schema_version": s.schema_version,
            "changes": describe_changes(s.changes, names),
            "author": s.author,
            "commit_message": s.commit_message,
        }
        for s in list_snapshots(con, limit)
    ]
