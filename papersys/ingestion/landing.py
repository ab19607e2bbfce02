"""Landing: a page's records and the harvest cursor, committed in ONE DuckLake transaction.

That single transaction is what makes a harvest crash-safe: after a kill at any moment the
lake holds either the page and the cursor past it, or neither, so a rerun resumes from the
cursor and never loses or doubles a page.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from papersys import lake
from papersys.errors import PapersysError
from papersys.ingestion.parser import RawRecord

RAW_SCHEMA = pa.schema(
    [
        ("arxiv_id", pa.string()),
        ("datestamp", pa.date32()),
        ("set_specs", pa.list_(pa.string())),
        ("deleted", pa.bool_()),
        ("payload_xml", pa.string()),
    ]
)

RESUMABLE = ("running", "paused", "interrupted", "failed")


class CursorMoved(PapersysError):
    """Another process advanced this harvest between our read and our commit."""


@dataclass
class HarvestState:
    """The ``harvests`` row of one run, as this process knows it."""

    harvest_id: str
    source: str
    endpoint: str | None
    metadata_prefix: str | None
    set_spec: str | None
    from_date: dt.date | None
    until_date: dt.date | None
    status: str = "running"
    resumption_token: str | None = None
    pages: int = 0
    records: int = 0
    deleted_records: int = 0
    complete_list_size: int | None = None
    first_response_date: dt.datetime | None = None
    last_response_date: dt.datetime | None = None
    restarts: int = 0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> HarvestState:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in row.items() if k in names})


def new_harvest_id(source: str) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
    return f"{source}-{stamp}-{uuid.uuid4().hex[:6]}"


def records_table(records: Sequence[RawRecord]) -> pa.Table:
    return pa.Table.from_pydict(
        {
            "arxiv_id": [r.arxiv_id for r in records],
            "datestamp": [r.datestamp for r in records],
            "set_specs": [r.set_specs for r in records],
            "deleted": [r.deleted for r in records],
            "payload_xml": [r.payload_xml for r in records],
        },
        schema=RAW_SCHEMA,
    )


def find_resumable(
    con: duckdb.DuckDBPyConnection, source: str, metadata_prefix: str | None, set_spec: str | None
) -> HarvestState | None:
    """The latest unfinished harvest of this source/format/set, if any."""
    cur = con.execute(
        f"""SELECT * FROM harvests
            WHERE source = ? AND metadata_prefix IS NOT DISTINCT FROM ?
              AND set_spec IS NOT DISTINCT FROM ? AND status IN {RESUMABLE}
            ORDER BY started_at DESC LIMIT 1""",
        [source, metadata_prefix, set_spec],
    )
    row = cur.fetchone()
    if row is None:
        return None
    names = [d[0] for d in cur.description]
    return HarvestState.from_row(dict(zip(names, row, strict=True)))


def last_completed_response_date(
    con: duckdb.DuckDBPyConnection, source: str, metadata_prefix: str | None, set_spec: str | None
) -> dt.datetime | None:
    """responseDate of the first page of the last completed harvest (the incremental `from`).

    The first page's date, not the last one's: records changed while that harvest ran are
    then fetched again next time instead of being missed.
    """
    row = con.execute(
        """SELECT coalesce(first_response_date, last_response_date) FROM harvests
           WHERE source = ? AND metadata_prefix IS NOT DISTINCT FROM ?
             AND set_spec IS NOT DISTINCT FROM ? AND status = 'completed'
             AND coalesce(first_response_date, last_response_date) IS NOT NULL
           ORDER BY finished_at DESC LIMIT 1""",
        [source, metadata_prefix, set_spec],
    ).fetchone()
    return row[0] if row else None


def start_harvest(con: duckdb.DuckDBPyConnection, state: HarvestState) -> None:
    def body() -> None:
        con.execute(
            """INSERT INTO harvests (harvest_id, source, endpoint, metadata_prefix, set_spec,
                   from_date, until_date, status, resumption_token, pages, records,
                   deleted_records, started_at, updated_at, restarts)
               VALUES (?, ?, ?, ?, ?, ?, ?, 'running', NULL, 0, 0, 0, now(), now(), 0)""",
            [
                state.harvest_id,
                state.source,
                state.endpoint,
                state.metadata_prefix,
                state.set_spec,
                state.from_date,
                state.until_date,
            ],
        )

    lake.run_transaction(con, body)


def set_status(
    con: duckdb.DuckDBPyConnection,
    state: HarvestState,
    status: str,
    *,
    error: str | None = None,
    endpoint: str | None = None,
) -> None:
    """Change a harvest's status (its cursor is untouched, so it stays resumable)."""

    def body() -> None:
        con.execute(
            """UPDATE harvests SET status = ?, error = ?, updated_at = now(),
                   endpoint = coalesce(?, endpoint),
                   finished_at = CASE WHEN ? IN ('completed', 'abandoned') THEN now() END
               WHERE harvest_id = ?""",
            [status, error, endpoint, status, state.harvest_id],
        )

    lake.run_transaction(con, body)
    state.status = status


def restart_window(con: duckdb.DuckDBPyConnection, state: HarvestState) -> None:
    """The token was rejected: forget it and count a restart (landed records get skipped)."""

    def body() -> None:
        _check_cursor(con, state)
        con.execute(
            """UPDATE harvests SET resumption_token = NULL, restarts = coalesce(restarts, 0) + 1,
                   updated_at = now() WHERE harvest_id = ?""",
            [state.harvest_id],
        )

    lake.run_transaction(con, body)
    state.resumption_token = None
    state.restarts += 1


@dataclass(frozen=True)
class Landed:
    records: int
    deleted: int
    skipped: int


def land_page(
    con: duckdb.DuckDBPyConnection,
    state: HarvestState,
    records: Sequence[RawRecord],
    *,
    next_token: str | None,
    response_date: dt.datetime | None,
    complete_list_size: int | None,
    final_status: str = "running",
) -> Landed:
    """Append the page's records and move the cursor past the page, in one transaction.

    With ``state.restarts > 0`` (the window was restarted after a rejected token) records
    this harvest already landed (same id and datestamp) are skipped, so no page lands twice.
    """
    table = records_table(records)
    dedupe = state.restarts > 0

    def body() -> Landed:
        fresh = _unseen(con, state, table) if dedupe else table
        landed = fresh.num_rows
        deleted = int(pc.sum(fresh["deleted"]).as_py() or 0) if landed else 0
        # The cursor moves only if nobody else moved it since we read it (checked in the
        # same statement: two processes on one harvest cannot both land a page).
        moved = con.execute(
            """UPDATE harvests SET
                   resumption_token = ?, pages = pages + 1, records = records + ?,
                   deleted_records = deleted_records + ?,
                   complete_list_size = coalesce(?, complete_list_size),
                   first_response_date = coalesce(first_response_date, ?),
                   last_response_date = coalesce(?, last_response_date),
                   status = ?, error = NULL, updated_at = now(),
                   finished_at = CASE WHEN ? = 'completed' THEN now() END
               WHERE harvest_id = ? AND pages = ?
                 AND resumption_token IS NOT DISTINCT FROM ?""",
            [
                next_token,
                landed,
                deleted,
                complete_list_size,
                response_date,
                response_date,
                final_status,
                final_status,
                state.harvest_id,
                state.pages,
                state.resumption_token,
            ],
        ).fetchone()
        if not moved or moved[0] != 1:
            raise _moved(state)
        if landed:
            con.register("_page_records", fresh)
            try:
                con.execute(
                    """INSERT INTO raw_records
                       SELECT arxiv_id, datestamp, set_specs, deleted, ?, payload_xml, ?, ?,
                              now()
                       FROM _page_records""",
                    [state.metadata_prefix, state.source, state.harvest_id],
                )
            finally:
                con.unregister("_page_records")
        skipped = len(records) - landed
        page_row = (state.harvest_id, state.pages + 1, next_token, landed, deleted, skipped)
        con.execute(
            "INSERT INTO harvest_pages VALUES (?, ?, ?, ?, ?, ?, ?, now())",
            [*page_row, response_date],
        )
        return Landed(landed, deleted, skipped)

    result = lake.run_transaction(con, body)
    state.resumption_token = next_token
    state.pages += 1
    state.records += result.records
    state.deleted_records += result.deleted
    state.complete_list_size = complete_list_size or state.complete_list_size
    state.first_response_date = state.first_response_date or response_date
    state.last_response_date = response_date or state.last_response_date
    state.status = final_status
    return result


def _moved(state: HarvestState) -> CursorMoved:
    return CursorMoved(
        f"harvest {state.harvest_id} was advanced by another process; "
        "run only one `papersys ingest` per set and format at a time"
    )


def _unseen(con: duckdb.DuckDBPyConnection, state: HarvestState, table: pa.Table) -> pa.Table:
    """The page's records this harvest has not landed yet (after a window restart)."""
    con.register("_page_candidates", table)
    try:
        return (
            con.execute(
                """SELECT p.* FROM _page_candidates p
                   WHERE NOT EXISTS (
                       SELECT 1 FROM raw_records r
                       WHERE r.harvest_id = ? AND r.arxiv_id = p.arxiv_id
                         AND r.datestamp IS NOT DISTINCT FROM p.datestamp
                         AND r.deleted = p.deleted)""",
                [state.harvest_id],
            )
            .arrow()
            .read_all()
        )
    finally:
        con.unregister("_page_candidates")


def _check_cursor(con: duckdb.DuckDBPyConnection, state: HarvestState) -> None:
    """Inside a transaction: nobody else moved this harvest's cursor."""
    row = con.execute(
        "SELECT pages, resumption_token FROM harvests WHERE harvest_id = ?",
        [state.harvest_id],
    ).fetchone()
    if row is None or int(row[0]) != state.pages or row[1] != state.resumption_token:
        raise _moved(state)
