"""OAI-PMH harvests: incremental by default, resumable after any crash.

For each set, ``harvest`` either resumes the latest unfinished harvest of that set and format
from its stored resumptionToken, or starts a new one whose ``from`` defaults to the date of
the last completed harvest's responseDate (no `until`). Every page lands with the cursor in
one transaction (see ``landing``). A rejected token (``badResumptionToken``: server-state
tokens expire) restarts the window; records already landed by this harvest are then skipped.
``noRecordsMatch`` means there is nothing in the window: the harvest completes with 0 records.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import duckdb

from papersys import lake
from papersys.config import Config
from papersys.errors import UsageError
from papersys.ingestion.landing import (
    HarvestState,
    find_resumable,
    land_page,
    last_completed_response_date,
    new_harvest_id,
    restart_window,
    set_status,
    start_harvest,
)
from papersys.ingestion.oai import IngestError, OAIClient, OAIProtocolError

log = logging.getLogger(__name__)

EARLIEST_DATESTAMP = dt.date(2005, 9, 16)
# A token rejected again right after a restart would loop forever; give up after this many.
MAX_WINDOW_RESTARTS = 3


@dataclass
class PageProgress:
    """Sent to ``on_page`` after each page (landed, or parsed in a dry run)."""

    harvest_id: str
    set_spec: str | None
    page_no: int
    page_records: int
    records: int
    deleted: int
    skipped: int
    complete_list_size: int | None
    # Position in the whole list when the server says (cursor + page size), else None.
    list_position: int | None
    url: str
    last: bool


@dataclass
class HarvestResult:
    harvest_id: str | None
    set_spec: str | None
    metadata_prefix: str
    from_date: dt.date | None
    until_date: dt.date | None
    status: str
    pages: int = 0
    records: int = 0
    deleted: int = 0
    skipped: int = 0
    incremental: bool = False
    resumed: bool = False
    restarts: int = 0
    nothing_new: bool = False
    dry_run: bool = False
    complete_list_size: int | None = None
    response_date: dt.datetime | None = None
    notes: list[str] = field(default_factory=list)


def parse_cli_date(value: str | None, option: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{option} {value!r}: use a date as YYYY-MM-DD") from None


def validate_window(from_date: dt.date | None, until_date: dt.date | None) -> None:
    if from_date and from_date < EARLIEST_DATESTAMP:
        raise UsageError(
            f"--from {from_date}: arXiv's earliest datestamp is {EARLIEST_DATESTAMP}; "
            "use that date (or leave --from out)"
        )
    if from_date and until_date and until_date < from_date:
        raise UsageError(f"--until {until_date} is before --from {from_date}")
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    if until_date and until_date > tomorrow:
        raise UsageError(f"--until {until_date} is in the future; arXiv rejects it")


def harvest(
    config: Config,
    *,
    sets: Sequence[str] | None = None,
    metadata_prefix: str | None = None,
    from_date: dt.date | None = None,
    until_date: dt.date | None = None,
    max_pages: int | None = None,
    dry_run: bool = False,
    endpoint: str | None = None,
    on_page: Callable[[PageProgress], None] | None = None,
    client: OAIClient | None = None,
) -> list[HarvestResult]:
    """Harvest every requested set (default: config sets, else all of arXiv), one after another.

    Raises ``IngestError`` (after marking the harvest failed, cursor kept) when the server
    cannot be reached, keeps sending malformed pages, or answers with an OAI error.
    """
    validate_window(from_date, until_date)
    if max_pages is not None and max_pages < 1:
        raise UsageError(f"--max-pages {max_pages}: give at least 1")
    prefix = metadata_prefix or config.ingestion.metadata_prefix
    if prefix not in ("arXivRaw", "arXiv"):
        raise UsageError(f"--format {prefix!r}: use arXivRaw or arXiv")
    set_list: list[str | None] = list(sets) if sets else list(config.ingestion.sets) or [None]
    own_client = client is None
    oai = client or OAIClient(config.ingestion, endpoint=endpoint)
    con = lake.connect(config)
    try:
        return [
            _harvest_set(
                con,
                oai,
                set_spec=set_spec,
                prefix=prefix,
                from_date=from_date,
                until_date=until_date,
                max_pages=max_pages,
                dry_run=dry_run,
                on_page=on_page,
            )
            for set_spec in set_list
        ]
    finally:
        con.close()
        if own_client:
            oai.close()


def _plan(
    con: duckdb.DuckDBPyConnection,
    oai: OAIClient,
    *,
    set_spec: str | None,
    prefix: str,
    from_date: dt.date | None,
    until_date: dt.date | None,
) -> tuple[HarvestState, HarvestResult, HarvestState | None]:
    """Resume the unfinished harvest of this set/format, or define a new one.

    Returns (state, result, superseded): ``superseded`` is an unfinished harvest with a
    different window that the new one replaces.
    """
    explicit = from_date is not None or until_date is not None
    unfinished = find_resumable(con, "oai", prefix, set_spec)
    result_base = {"set_spec": set_spec, "metadata_prefix": prefix, "status": "running"}
    if unfinished is not None:
        same_window = (unfinished.from_date, unfinished.until_date) == (from_date, until_date)
        if not explicit or same_window:
            result = HarvestResult(
                harvest_id=unfinished.harvest_id,
                from_date=unfinished.from_date,
                until_date=unfinished.until_date,
                resumed=True,
                restarts=unfinished.restarts or 0,
                **result_base,
            )
            result.pages = unfinished.pages
            result.records = unfinished.records
            result.deleted = unfinished.deleted_records
            unfinished.restarts = unfinished.restarts or 0
            return unfinished, result, None
    incremental = False
    if from_date is None and until_date is None:
        last = last_completed_response_date(con, "oai", prefix, set_spec)
        if last is not None:
            from_date = last.astimezone(dt.UTC).date()
            incremental = True
    state = HarvestState(
        harvest_id=new_harvest_id("oai"),
        source="oai",
        endpoint=oai.endpoint,
        metadata_prefix=prefix,
        set_spec=set_spec,
        from_date=from_date,
        until_date=until_date,
    )
    result = HarvestResult(
        harvest_id=state.harvest_id,
        from_date=from_date,
        until_date=until_date,
        incremental=incremental,
        **result_base,
    )
    if unfinished is not None:
        result.notes.append(
            f"abandoned unfinished harvest {unfinished.harvest_id} (different window)"
        )
    return state, result, unfinished


def _harvest_set(
    con: duckdb.DuckDBPyConnection,
    oai: OAIClient,
    *,
    set_spec: str | None,
    prefix: str,
    from_date: dt.date | None,
    until_date: dt.date | None,
    max_pages: int | None,
    dry_run: bool,
    on_page: Callable[[PageProgress], None] | None,
) -> HarvestResult:
    state, result, abandon = _plan(
        con, oai, set_spec=set_spec, prefix=prefix, from_date=from_date, until_date=until_date
    )
    is_new = not result.resumed
    result.dry_run = dry_run
    if not dry_run:
        if abandon is not None:
            set_status(con, abandon, "abandoned", error="superseded by a harvest with a new window")
        if is_new:
            start_harvest(con, state)
        else:
            set_status(con, state, "running", endpoint=oai.endpoint)
    pages_this_run = 0
    try:
        while True:
            fetched = oai.list_records(
                metadata_prefix=prefix,
                set_spec=set_spec,
                from_date=state.from_date,
                until_date=state.until_date,
                resumption_token=state.resumption_token,
            )
            page = fetched.page
            result.response_date = page.response_date or result.response_date
            if page.error is not None:
                code = page.error.code
                if code == "noRecordsMatch":
                    # Empty window: nothing new (an incremental run) or nothing there at all.
                    result.nothing_new = True
                    if not dry_run:
                        _finish_empty(con, state, page.response_date)
                    result.status = "completed"
                    break
                if code == "badResumptionToken" and state.resumption_token:
                    if state.restarts >= MAX_WINDOW_RESTARTS:
                        raise OAIProtocolError(
                            code,
                            f"{page.error.message} (window restarted {state.restarts} times)",
                            fetched.url,
                        )
                    log.warning("resumptionToken rejected; restarting the window %s", fetched.url)
                    if dry_run:
                        state.resumption_token = None
                        state.restarts += 1
                    else:
                        restart_window(con, state)
                    result.restarts = state.restarts
                    continue
                raise OAIProtocolError(code, page.error.message, fetched.url)
            next_token = page.resumption_token or None
            pages_this_run += 1
            last = next_token is None
            paused = not last and max_pages is not None and pages_this_run >= max_pages
            if dry_run:
                landed_records, landed_deleted, skipped = (
                    len(page.records),
                    page.deleted_count,
                    0,
                )
                state.pages += 1
                state.resumption_token = next_token
                state.complete_list_size = page.complete_list_size or state.complete_list_size
            else:
                landed = land_page(
                    con,
                    state,
                    page.records,
                    next_token=next_token,
                    response_date=page.response_date,
                    complete_list_size=page.complete_list_size,
                    final_status="completed" if last else "paused" if paused else "running",
                )
                landed_records, landed_deleted, skipped = (
                    landed.records,
                    landed.deleted,
                    landed.skipped,
                )
            result.pages += 1
            result.records += landed_records
            result.deleted += landed_deleted
            result.skipped += skipped
            result.complete_list_size = state.complete_list_size
            if on_page is not None:
                position = page.cursor + len(page.records) if page.cursor is not None else None
                on_page(
                    PageProgress(
                        harvest_id=state.harvest_id,
                        set_spec=set_spec,
                        page_no=state.pages,
                        page_records=len(page.records),
                        records=result.records,
                        deleted=result.deleted,
                        skipped=result.skipped,
                        complete_list_size=state.complete_list_size,
                        list_position=position,
                        url=fetched.url,
                        last=last,
                    )
                )
            if last:
                result.status = "completed"
                break
            if paused:
                result.status = "paused"
                result.notes.append(
                    f"stopped after {pages_this_run} page(s) (--max-pages); "
                    "run again to continue from the cursor"
                )
                break
    except KeyboardInterrupt:
        if not dry_run:
            set_status(con, state, "interrupted", error="interrupted")
        raise
    except IngestError as exc:
        if not dry_run:
            set_status(con, state, "failed", error=str(exc))
        raise
    result.harvest_id = state.harvest_id if not dry_run or not is_new else None
    return result


def _finish_empty(
    con: duckdb.DuckDBPyConnection, state: HarvestState, response_date: dt.datetime | None
) -> None:
    def body() -> None:
        con.execute(
            """UPDATE harvests SET status = 'completed', resumption_token = NULL,
                   first_response_date = coalesce(first_response_date, ?),
                   last_response_date = coalesce(?, last_response_date),
                   error = NULL, updated_at = now(), finished_at = now()
               WHERE harvest_id = ?""",
            [response_date, response_date, state.harvest_id],
        )

    lake.run_transaction(con, body)
    state.status = "completed"
