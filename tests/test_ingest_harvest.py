"""Harvests against a real HTTP server on 127.0.0.1 serving pages derived from real responses."""

from __future__ import annotations

import datetime as dt
import email.utils
import time

import oai_server
import pytest
from conftest import FIXTURES

from papersys import lake
from papersys.config import load_config
from papersys.errors import UsageError
from papersys.ingestion.harvest import harvest
from papersys.ingestion.oai import IngestError, OAIClient, OAIProtocolError, retry_after_seconds
from papersys.ingestion.replay import OAIReplay, ReplayServer, Reply
from papersys.ingestion.rss import ingest_rss

DERIVED = FIXTURES / "oai"


@pytest.fixture(scope="module")
def lake_template(tmp_path_factory):
    return tmp_path_factory.mktemp("lake-template")


@pytest.fixture
def fast_config(lake_root, lake_template):
    oai_server.copy_migrated_lake(lake_root, lake_template)
    return load_config(
        overrides={
            "ingestion.request_spacing": 0.0,
            "ingestion.backoff_base": 0.01,
            "ingestion.backoff_max": 0.05,
            "ingestion.max_retries": 3,
            "ingestion.timeout": 5.0,
            "ingestion.contact": "harvest-tests@example.org",
        }
    )


class RecordingSleep:
    """Stands in for time.sleep: records the waits the client asks for."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def lake_counts(config) -> dict:
    con = lake.connect(config)
    try:
        total, distinct, deleted = con.execute(
            "SELECT count(*), count(DISTINCT arxiv_id), count(*) FILTER (deleted) FROM raw_records"
        ).fetchone()
        dup_rows = con.execute(
            """SELECT count(*) FROM (SELECT arxiv_id, datestamp FROM raw_records
               GROUP BY ALL HAVING count(*) > 1)"""
        ).fetchone()[0]
        harvests = con.execute(
            """SELECT harvest_id, status, pages, records, deleted_records, resumption_token,
                      restarts, from_date FROM harvests ORDER BY started_at"""
        ).fetchall()
        pages = con.execute(
            "SELECT harvest_id, page_no, records, skipped_records FROM harvest_pages ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()
    return {
        "rows": total,
        "papers": distinct,
        "deleted": deleted,
        "duplicates": dup_rows,
        "harvests": harvests,
        "pages": pages,
    }


def serve(pages, fault=None) -> ReplayServer:
    return ReplayServer(OAIReplay(pages), fault=fault)


# --- paging --------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["stateless", "server"])
def test_paging_lands_every_record_once(fast_config, style) -> None:
    records = oai_server.derived_records(47)
    pages = oai_server.build_pages(records, 10, token_style=style)
    progress = []
    with serve(pages) as server:
        [result] = harvest(fast_config, endpoint=server.url, on_page=progress.append)
    assert result.status == "completed"
    assert (result.pages, result.records, result.deleted) == (5, 47, 0)
    counts = lake_counts(fast_config)
    assert (counts["rows"], counts["papers"], counts["duplicates"]) == (47, 47, 0)
    [(_, status, n_pages, n_records, _, token, restarts, from_date)] = counts["harvests"]
    assert (status, n_pages, n_records, token, restarts, from_date) == (
        "completed",
        5,
        47,
        None,
        0,
        None,
    )
    assert [p[1:3] for p in counts["pages"]] == [(1, 10), (2, 10), (3, 10), (4, 10), (5, 7)]
    # OAI-PMH: the first request carries the arguments, later ones only the token.
    assert server.requests[0] == {"verb": "ListRecords", "metadataPrefix": "arXivRaw"}
    assert all(set(r) == {"verb", "resumptionToken"} for r in server.requests[1:])
    assert len(server.requests) == 5
    assert "mailto:harvest-tests@example.org" in server.user_agents[0]
    assert [p.records for p in progress] == [10, 20, 30, 40, 47]
    if style == "server":
        # completeListSize known: positions drive the progress bar's ETA.
        assert [p.list_position for p in progress] == [10, 20, 30, 40, 47]
        assert progress[0].complete_list_size == 47
    else:
        assert progress[0].complete_list_size is None


def test_landed_payload_is_the_metadata_element(fast_config) -> None:
    pages = [(DERIVED / "real_arxivraw_listrecords_excerpt.xml").read_bytes()]
    pages[0] = pages[0].replace(b">726959|1001<", b"><")  # make it the last page
    with serve(pages) as server:
        harvest(fast_config, endpoint=server.url)
    con = lake.connect(fast_config)
    try:
        row = con.execute(
            """SELECT arxiv_id, datestamp, set_specs, deleted, metadata_prefix, source,
                      payload_xml FROM raw_records"""
        ).fetchone()
    finally:
        con.close()
    arxiv_id, datestamp, set_specs, deleted, prefix, source, payload = row
    assert (arxiv_id, datestamp, set_specs, deleted, prefix, source) == (
        "0704.0471",
        dt.date(2014, 11, 18),
        ["physics:nucl-ex", "physics:nucl-th"],
        False,
        "arXivRaw",
        "oai",
    )
    assert payload.startswith("<arXivRaw ") and "<authors>D.V. Shetty" in payload


def test_deleted_records_land_as_tombstones(fast_config) -> None:
    pages = [(DERIVED / "arxivraw_with_deleted.xml").read_bytes()]
    with serve(pages) as server:
        [result] = harvest(fast_config, endpoint=server.url)
    assert (result.records, result.deleted) == (2, 1)
    con = lake.connect(fast_config)
    try:
        rows = con.execute(
            "SELECT arxiv_id, deleted, payload_xml IS NULL FROM raw_records ORDER BY arxiv_id"
        ).fetchall()
    finally:
        con.close()
    assert rows == [("0704.0471", False, False), ("0704.0472", True, True)]


def test_arxiv_format(fast_config) -> None:
    pages = [(DERIVED / "arxiv_format_listrecords.xml").read_bytes()]
    with serve(pages) as server:
        [result] = harvest(fast_config, endpoint=server.url, metadata_prefix="arXiv")
        assert server.requests[0]["metadataPrefix"] == "arXiv"
    assert result.records == 2
    con = lake.connect(fast_config)
    try:
        prefixes = con.execute("SELECT DISTINCT metadata_prefix FROM raw_records").fetchall()
    finally:
        con.close()
    assert prefixes == [("arXiv",)]


def test_sets_and_window_are_sent_and_filtered(fast_config) -> None:
    pages = [(DERIVED / "arxivraw_with_deleted.xml").read_bytes()]
    with serve(pages) as server:
        results = harvest(
            fast_config,
            endpoint=server.url,
            sets=["physics:nucl-ex", "math"],
            from_date=dt.date(2014, 11, 1),
            until_date=dt.date(2014, 11, 30),
        )
        assert server.requests[0] == {
            "verb": "ListRecords",
            "metadataPrefix": "arXivRaw",
            "set": "physics:nucl-ex",
            "from": "2014-11-01",
            "until": "2014-11-30",
        }
    nucl, math = results
    assert (nucl.set_spec, nucl.records, nucl.status) == ("physics:nucl-ex", 2, "completed")
    # The replay answers noRecordsMatch for an empty set: success with nothing landed.
    assert (math.set_spec, math.records, math.nothing_new, math.status) == (
        "math",
        0,
        True,
        "completed",
    )


# --- politeness and retries ------------------------------------------------------------------


def test_request_spacing_between_requests(fast_config) -> None:
    config = load_config(overrides={"ingestion.request_spacing": 0.2})
    pages = oai_server.build_pages(oai_server.derived_records(4), 1)
    with serve(pages) as server:
        harvest(config, endpoint=server.url)
    gaps = [b - a for a, b in zip(server.request_times, server.request_times[1:], strict=False)]
    assert len(gaps) == 3
    # Measured where the server receives requests (sending jitter aside).
    assert min(gaps) >= 0.15


def test_503_retry_after_seconds_is_honoured(fast_config) -> None:
    pages = oai_server.build_pages(oai_server.derived_records(3), 10)

    def fault(n, params):
        if n == 1:
            return Reply(status=503, headers={"Retry-After": "1"}, body=b"busy")
        return None

    with serve(pages, fault) as server:
        [result] = harvest(fast_config, endpoint=server.url)
    assert result.records == 3
    assert len(server.requests) == 2
    assert server.request_times[1] - server.request_times[0] >= 0.95


def test_429_retry_after_http_date(fast_config) -> None:
    pages = oai_server.build_pages(oai_server.derived_records(3), 10)
    sleep = RecordingSleep()

    def fault(n, params):
        if n == 1:
            when = email.utils.format_datetime(
                dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30), usegmt=True
            )
            return Reply(status=429, headers={"Retry-After": when})
        return None

    with serve(pages, fault) as server:
        client = OAIClient(fast_config.ingestion, endpoint=server.url, sleep=sleep)
        [result] = harvest(fast_config, client=client)
        client.close()
    assert result.records == 3
    assert len(sleep.calls) == 1
    assert 28 <= sleep.calls[0] <= 30.5


def test_retry_after_parsing() -> None:
    now = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds("Sat, 01 Mar 2025 12:00:10 GMT", now) == 10
    assert retry_after_seconds("Sat, 01 Mar 2025 11:00:00 GMT", now) == 0
    assert retry_after_seconds("soon", now) is None
    assert retry_after_seconds(None, now) is None


def test_5xx_and_timeouts_back_off_exponentially_with_jitter(fast_config) -> None:
    config = load_config(
        overrides={
            "ingestion.request_spacing": 0.0,
            "ingestion.backoff_base": 1.0,
            "ingestion.backoff_max": 100.0,
            "ingestion.max_retries": 5,
            "ingestion.timeout": 0.5,
        }
    )
    pages = oai_server.build_pages(oai_server.derived_records(3), 10)
    sleep = RecordingSleep()

    def fault(n, params):
        if n == 1:
            return Reply(status=500)
        if n == 2:
            return Reply(delay=2.0, body=pages[0])  # the client times out first
        if n == 3:
            return Reply(status=502)
        return None

    with serve(pages, fault) as server:
        client = OAIClient(config.ingestion, endpoint=server.url, sleep=sleep)
        [result] = harvest(config, client=client)
        client.close()
    assert result.records == 3
    assert len(sleep.calls) == 3
    for attempt, delay in enumerate(sleep.calls, start=1):
        base = 2 ** (attempt - 1)
        assert 0.5 * base <= delay <= 1.5 * base


def test_retries_exhausted_is_one_clear_error_and_resumable(fast_config) -> None:
    records = oai_server.derived_records(30)
    pages = oai_server.build_pages(records, 10)
    down = {"on": True}

    def fault(n, params):
        if "resumptionToken" in params and down["on"]:
            return Reply(status=503)
        return None

    with serve(pages, fault) as server:
        with pytest.raises(IngestError) as err:
            harvest(fast_config, endpoint=server.url)
        message = str(err.value)
        assert "\n" not in message
        assert server.url in message and "HTTP 503" in message
        assert "gave up after 4 attempts" in message
        counts = lake_counts(fast_config)
        [(_, status, n_pages, n_records, _, token, _, _)] = counts["harvests"]
        assert (status, n_pages, n_records, counts["rows"]) == ("failed", 1, 10, 10)
        assert token  # the cursor is kept
        down["on"] = False
        [result] = harvest(fast_config, endpoint=server.url)
    assert result.resumed and result.status == "completed"
    counts = lake_counts(fast_config)
    assert (counts["rows"], counts["papers"], len(counts["harvests"])) == (30, 30, 1)


def test_malformed_page_is_retried(fast_config) -> None:
    records = oai_server.derived_records(20)
    pages = oai_server.build_pages(records, 10)

    def fault(n, params):
        if n == 2:
            return Reply(body=pages[1][: len(pages[1]) // 2])
        return None

    with serve(pages, fault) as server:
        [result] = harvest(fast_config, endpoint=server.url)
        assert len(server.requests) == 3
    assert result.records == 20
    assert lake_counts(fast_config)["rows"] == 20


def test_persistently_malformed_page_is_reported_with_its_url(fast_config) -> None:
    truncated = (DERIVED / "truncated_listrecords.xml").read_bytes()
    with (
        serve([b"<x/>"], lambda n, p: Reply(body=truncated)) as server,
        pytest.raises(IngestError) as err,
    ):
        harvest(fast_config, endpoint=server.url)
    message = str(err.value)
    assert message.startswith(f"{server.url}?verb=ListRecords&metadataPrefix=arXivRaw")
    assert "malformed" in message and "\n" not in message
    [(_, status, *_rest)] = lake_counts(fast_config)["harvests"]
    assert status == "failed"


def test_oai_error_is_reported(fast_config) -> None:
    real = (DERIVED / "real_error_norecordsmatch.xml").read_bytes()
    body = real.replace(b'code="noRecordsMatch"', b'code="badArgument"')
    with (
        serve([b"<x/>"], lambda n, p: Reply(body=body)) as server,
        pytest.raises(OAIProtocolError) as err,
    ):
        harvest(fast_config, endpoint=server.url)
    assert err.value.code == "badArgument"
    assert server.url in str(err.value)


def test_cannot_disseminate_format(fast_config) -> None:
    pages = oai_server.build_pages(oai_server.derived_records(2), 10)
    with serve(pages) as server, pytest.raises(OAIProtocolError) as err:
        harvest(fast_config, endpoint=server.url, metadata_prefix="arXiv")
    assert err.value.code == "cannotDisseminateFormat"


def test_http_404_is_not_retried(fast_config) -> None:
    with serve([b"<x/>"], lambda n, p: Reply(status=404)) as server:
        with pytest.raises(IngestError, match="HTTP 404"):
            harvest(fast_config, endpoint=server.url)
        assert len(server.requests) == 1


# --- tokens, windows, incremental ------------------------------------------------------------


def test_bad_resumption_token_mid_harvest_restarts_the_window(fast_config) -> None:
    records = oai_server.derived_records(50, deleted_every=7)
    pages = oai_server.build_pages(records, 10, token_style="server")
    replay = OAIReplay(pages)

    def fault(n, params):
        if n == 3:  # the server forgot its tokens (they expired) before page 3
            replay.expire_tokens()
        return None

    with ReplayServer(replay, fault=fault) as server:
        [result] = harvest(fast_config, endpoint=server.url)
        initial = [r for r in server.requests if "metadataPrefix" in r]
    assert len(initial) == 2  # the window was requested again
    assert result.status == "completed"
    assert result.restarts == 1
    assert result.skipped == 20  # pages 1-2 came again and were not landed twice
    counts = lake_counts(fast_config)
    assert (counts["rows"], counts["papers"], counts["duplicates"]) == (50, 50, 0)
    assert counts["deleted"] == 7
    [(_, status, n_pages, n_records, n_deleted, _, restarts, _)] = counts["harvests"]
    assert (status, n_records, n_deleted, restarts) == ("completed", 50, 7, 1)
    assert n_pages == 7  # 2 + 5 pages fetched after the restart
    assert [p[2:] for p in counts["pages"]] == [
        (10, 0),
        (10, 0),
        (0, 10),
        (0, 10),
        (10, 0),
        (10, 0),
        (10, 0),
    ]


def test_resume_with_an_expired_token_restarts_the_window(fast_config) -> None:
    """A stopped harvest whose server-state token expired meanwhile: restart, skip, finish."""
    records = oai_server.derived_records(40, deleted_every=6)
    pages = oai_server.build_pages(records, 10, token_style="server")
    replay = OAIReplay(pages)
    with ReplayServer(replay) as server:
        [part] = harvest(fast_config, endpoint=server.url, max_pages=3)
        assert (part.status, part.records) == ("paused", 30)
        replay.expire_tokens()  # e.g. the next day: the old server's tokens are gone
        [rest] = harvest(fast_config, endpoint=server.url)
    assert rest.resumed and rest.restarts == 1 and rest.status == "completed"
    assert rest.skipped == 30
    counts = lake_counts(fast_config)
    assert (counts["rows"], counts["papers"], counts["duplicates"]) == (40, 40, 0)
    assert counts["deleted"] == 40 // 6


def test_token_rejected_forever_gives_up(fast_config) -> None:
    records = oai_server.derived_records(20)
    pages = oai_server.build_pages(records, 10, token_style="server")
    replay = OAIReplay(pages)

    def fault(n, params):
        if "resumptionToken" in params:
            replay.expire_tokens()
        return None

    with (
        ReplayServer(replay, fault=fault) as server,
        pytest.raises(OAIProtocolError, match="badResumptionToken"),
    ):
        harvest(fast_config, endpoint=server.url)
    counts = lake_counts(fast_config)
    assert (counts["rows"], counts["duplicates"]) == (10, 0)


def test_incremental_from_last_response_date_and_no_records_match(fast_config) -> None:
    old = oai_server.derived_records(20, start=dt.date(2023, 12, 1))
    pages = oai_server.build_pages(old, 10, response_date="2024-01-03T21:00:00Z")
    with serve(pages) as server:
        [first] = harvest(fast_config, endpoint=server.url)
    assert (first.incremental, first.records, first.from_date) == (False, 20, None)
    # Next run: from = date of the last completed harvest's responseDate; nothing newer.
    with serve(pages) as server:
        [second] = harvest(fast_config, endpoint=server.url)
        assert server.requests[0]["from"] == "2024-01-03"
    assert second.incremental and second.nothing_new
    assert (second.status, second.records, second.from_date) == (
        "completed",
        0,
        dt.date(2024, 1, 3),
    )
    # A third run starts from the empty run's responseDate, and lands only what changed.
    newer = [*old, *oai_server.derived_records(5, start=dt.date(2030, 1, 1))]
    with serve(oai_server.build_pages(newer, 10)) as server:
        [third] = harvest(fast_config, endpoint=server.url)
        today = dt.datetime.now(dt.UTC).date().isoformat()
        assert server.requests[0]["from"] == today
    assert third.records == 5
    counts = lake_counts(fast_config)
    assert counts["rows"] == 25
    assert [h[1] for h in counts["harvests"]] == ["completed"] * 3


def test_real_no_records_match_response(fast_config) -> None:
    body = (DERIVED / "real_error_norecordsmatch.xml").read_bytes()
    with serve([b"<x/>"], lambda n, p: Reply(body=body)) as server:
        [result] = harvest(fast_config, endpoint=server.url, from_date=dt.date(2015, 6, 1))
    assert result.nothing_new and result.status == "completed" and result.records == 0


def test_max_pages_then_resume(fast_config) -> None:
    records = oai_server.derived_records(35)
    pages = oai_server.build_pages(records, 10)
    with serve(pages) as server:
        [part] = harvest(fast_config, endpoint=server.url, max_pages=2)
        assert (part.status, part.pages, part.records) == ("paused", 2, 20)
        [rest] = harvest(fast_config, endpoint=server.url)
    assert rest.resumed and rest.status == "completed"
    assert rest.pages == 4 and rest.records == 35  # totals of the harvest
    counts = lake_counts(fast_config)
    assert (counts["rows"], counts["papers"], len(counts["harvests"])) == (35, 35, 1)


def test_new_window_abandons_unfinished_harvest(fast_config) -> None:
    pages = oai_server.build_pages(oai_server.derived_records(30), 10)
    with serve(pages) as server:
        harvest(fast_config, endpoint=server.url, max_pages=1)
        [other] = harvest(fast_config, endpoint=server.url, from_date=dt.date(2024, 1, 1))
    assert not other.resumed and other.notes
    statuses = [h[1] for h in lake_counts(fast_config)["harvests"]]
    assert statuses == ["abandoned", "completed"]


def test_dry_run_lands_nothing(fast_config) -> None:
    pages = oai_server.build_pages(oai_server.derived_records(25, deleted_every=5), 10)
    with serve(pages) as server:
        [result] = harvest(fast_config, endpoint=server.url, dry_run=True)
    assert (result.dry_run, result.pages, result.records, result.deleted) == (True, 3, 25, 5)
    assert result.harvest_id is None
    counts = lake_counts(fast_config)
    assert (counts["rows"], counts["harvests"]) == (0, [])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"from_date": dt.date(2001, 1, 1)}, "earliest datestamp"),
        ({"from_date": dt.date(2024, 2, 1), "until_date": dt.date(2024, 1, 1)}, "before"),
        ({"until_date": dt.date.today() + dt.timedelta(days=5)}, "future"),
        ({"max_pages": 0}, "max-pages"),
        ({"metadata_prefix": "oai_dc"}, "arXivRaw or arXiv"),
    ],
)
def test_bad_options(fast_config, kwargs, match) -> None:
    with pytest.raises(UsageError, match=match):
        harvest(fast_config, endpoint="http://127.0.0.1:9/oai", **kwargs)


def test_unreachable_endpoint(fast_config) -> None:
    with pytest.raises(IngestError, match="connection failed"):
        harvest(fast_config, endpoint="http://127.0.0.1:9/oai")


def test_one_connection_is_reused(fast_config) -> None:
    """All pages of a harvest go over one kept-alive connection."""
    pages = oai_server.build_pages(oai_server.derived_records(30), 10)
    ports: list[object] = []
    with serve(pages) as server:
        client = OAIClient(fast_config.ingestion, endpoint=server.url)
        client._client.event_hooks["response"] = [
            lambda r: ports.append(r.extensions["network_stream"].get_extra_info("client_addr"))
        ]
        harvest(fast_config, client=client)
        client.close()
    assert len(ports) == 3 and len(set(ports)) == 1


# --- RSS ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rss_hep-ph+hep-ex.xml", "atom_hep-ph+hep-ex.xml"])
def test_rss_lands_announcements(fast_config, name) -> None:
    body = (DERIVED / name).read_bytes()
    with serve([b"<x/>"], lambda n, p: Reply(body=body)) as server:
        base = server.url.rsplit("/", 1)[0] + "/atom"
        result = ingest_rss(fast_config, "hep-ph+hep-ex", endpoint=base)
    assert result.url == base + "/hep-ph+hep-ex"
    assert result.records == body.count(b"announce_type>") // 2
    con = lake.connect(fast_config)
    try:
        rows = con.execute(
            """SELECT arxiv_id, datestamp, source, deleted, metadata_prefix,
                      payload_xml LIKE '%Announce Type%' FROM raw_records ORDER BY arxiv_id"""
        ).fetchall()
        harvest_row = con.execute(
            "SELECT source, status, set_spec, records FROM harvests"
        ).fetchone()
    finally:
        con.close()
    fmt = "rss" if name.startswith("rss") else "atom"
    assert rows[0] == ("0704.0471", dt.date(2013, 4, 2), "rss", False, fmt, True)
    assert {r[0] for r in rows} >= {"1302.2146", "0704.0471"}
    assert harvest_row == ("rss", "completed", "hep-ph+hep-ex", result.records)


def test_rss_bad_categories(fast_config) -> None:
    with pytest.raises(UsageError, match="not an arXiv category"):
        ingest_rss(fast_config, "cs.AI+../../etc")


def test_rss_dry_run(fast_config) -> None:
    body = (DERIVED / "atom_hep-ph+hep-ex.xml").read_bytes()
    with serve([b"<x/>"], lambda n, p: Reply(body=body)) as server:
        result = ingest_rss(fast_config, "hep-ph", endpoint=server.url, dry_run=True)
    assert result.dry_run and result.records == 3
    assert result.announce_types == {"cross": 1, "replace": 1, "replace-cross": 1}
    assert lake_counts(fast_config)["rows"] == 0


def test_spacing_timer_is_monotonic_and_cheap(fast_config) -> None:
    """Zero spacing adds no waits (tests rely on it); positive spacing always waits."""
    sleep = RecordingSleep()
    client = OAIClient(fast_config.ingestion, endpoint="http://127.0.0.1:9/", sleep=sleep)
    client._last_request = time.monotonic()
    client._space()
    assert sleep.calls == []
    spaced = load_config(overrides={"ingestion.request_spacing": 3.0}).ingestion
    client = OAIClient(spaced, endpoint="http://127.0.0.1:9/", sleep=sleep)
    client._last_request = time.monotonic()
    client._space()
    assert len(sleep.calls) == 1 and 2.9 <= sleep.calls[0] <= 3.0
