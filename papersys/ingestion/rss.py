"""Today's announcements from arXiv's RSS/Atom feeds, landed into ``raw_records`` (source='rss').

``https://rss.arxiv.org/{rss|atom}/{cats}`` (categories joined with '+') lists one announcement
day: items typed ``new``, ``cross``, ``replace`` or ``replace-cross``. Each item/entry is stored
verbatim as ``payload_xml`` with its versionless arXiv id and the announcement date as
datestamp. The feed complements OAI (it is there hours earlier) but does not replace it.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from dataclasses import dataclass

from lxml import etree

from papersys import lake
from papersys.config import Config
from papersys.errors import UsageError
from papersys.ingestion.landing import HarvestState, land_page, new_harvest_id, start_harvest
from papersys.ingestion.oai import OAIClient
from papersys.ingestion.parser import (
    MalformedPage,
    RawRecord,
    arxiv_id_from_identifier,
    versionless,
)

ATOM_NS = "http://www.w3.org/2005/Atom"
ARXIV_ATOM_NS = "http://arxiv.org/schemas/atom"
CATEGORY_RE = re.compile(r"^[a-z-]+(\.[A-Za-z-]+)?$")
_ABS_RE = re.compile(r"arxiv\.org/abs/([^?#\s]+)")


@dataclass
class FeedItem:
    record: RawRecord
    announce_type: str | None


@dataclass
class Feed:
    format: str  # 'rss' or 'atom'
    items: list[FeedItem]
    published: dt.date | None


@dataclass
class RssResult:
    harvest_id: str | None
    url: str
    records: int
    announce_types: dict[str, int]
    dry_run: bool


def feed_url(base: str, categories: str) -> str:
    cats = [c for c in re.split(r"[+,]", categories.strip()) if c]
    if not cats:
        raise UsageError("--rss: give categories such as cs.AI+cs.LG")
    for cat in cats:
        if not CATEGORY_RE.fullmatch(cat):
            raise UsageError(f"--rss: {cat!r} is not an arXiv category such as cs.AI or hep-th")
    return f"{base.rstrip('/')}/{'+'.join(cats)}"


def _local(tag: object) -> str:
    return etree.QName(tag).localname if isinstance(tag, str) else ""


def _child_text(elem: etree._Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            return (child.text or "").strip() or None
    return None


def _announce_date(value: str | None) -> dt.date | None:
    """The announcement date as arXiv states it (its own time zone, US Eastern)."""
    if not value:
        return None
    value = value.strip()
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        return parsedate_to_datetime(value).date()
    except (TypeError, ValueError):
        return None


def _arxiv_id(item: etree._Element) -> str | None:
    for name in ("guid", "id"):
        text = _child_text(item, name)
        if text and text.startswith("oai:"):
            return versionless(arxiv_id_from_identifier(text))
    for child in item:
        if _local(child.tag) == "link":
            href = child.get("href") or (child.text or "")
            match = _ABS_RE.search(href)
            if match:
                return versionless(match.group(1))
    return None


def parse_feed(data: bytes) -> Feed:
    """Parse an arXiv RSS 2.0 or Atom feed; raise MalformedPage when it is neither."""
    try:
        root = etree.parse(
            io.BytesIO(data), etree.XMLParser(resolve_entities=False, no_network=True)
        ).getroot()
    except etree.XMLSyntaxError as exc:
        raise MalformedPage(str(exc).splitlines()[0] if str(exc) else "invalid XML") from None
    kind = _local(root.tag)
    if kind == "rss":
        channel = next((c for c in root if _local(c.tag) == "channel"), None)
        if channel is None:
            raise MalformedPage("RSS feed without <channel>")
        container, item_name, date_names = channel, "item", ("pubDate",)
        feed_date = _announce_date(_child_text(channel, "pubDate")) or _announce_date(
            _child_text(channel, "lastBuildDate")
        )
        fmt = "rss"
    elif kind == "feed":
        container, item_name, date_names = root, "entry", ("published", "updated")
        feed_date = _announce_date(_child_text(root, "updated"))
        fmt = "atom"
    else:
        raise MalformedPage(f"not an RSS or Atom feed (root element <{kind}>)")
    items: list[FeedItem] = []
    for elem in container:
        if _local(elem.tag) != item_name:
            continue
        arxiv_id = _arxiv_id(elem)
        if arxiv_id is None:
            continue
        date = None
        for name in date_names:
            date = _announce_date(_child_text(elem, name))
            if date:
                break
        items.append(
            FeedItem(
                record=RawRecord(
                    arxiv_id=arxiv_id,
                    datestamp=date or feed_date,
                    set_specs=[],
                    deleted=False,
                    payload_xml=etree.tostring(elem, encoding="unicode", with_tail=False),
                ),
                announce_type=_child_text(elem, "announce_type"),
            )
        )
    return Feed(format=fmt, items=items, published=feed_date)


def ingest_rss(
    config: Config,
    categories: str,
    *,
    dry_run: bool = False,
    endpoint: str | None = None,
    client: OAIClient | None = None,
) -> RssResult:
    """Fetch one feed; land its items and complete its ``harvests`` row in one transaction."""
    url = feed_url(endpoint or config.ingestion.rss_endpoint, categories)
    own_client = client is None
    http = client or OAIClient(config.ingestion)
    try:
        url, feed, _ = http.get(url, {}, parse_feed)
    finally:
        if own_client:
            http.close()
    types: dict[str, int] = {}
    for item in feed.items:
        key = item.announce_type or "unknown"
        types[key] = types.get(key, 0) + 1
    if dry_run:
        return RssResult(None, url, len(feed.items), types, True)
    con = lake.connect(config)
    try:
        state = HarvestState(
            harvest_id=new_harvest_id("rss"),
            source="rss",
            endpoint=url,
            metadata_prefix=feed.format,
            set_spec="+".join(c for c in re.split(r"[+,]", categories.strip()) if c),
            from_date=feed.published,
            until_date=feed.published,
        )
        start_harvest(con, state)
        landed = land_page(
            con,
            state,
            [item.record for item in feed.items],
            next_token=None,
            response_date=dt.datetime.now(dt.UTC),
            complete_list_size=len(feed.items),
            final_status="completed",
        )
    finally:
        con.close()
    return RssResult(state.harvest_id, url, landed.records, types, False)
