"""Streaming parser for OAI-PMH ListRecords pages (lxml ``iterparse`` with element clearing).

A page is walked record by record: each ``<record>`` is turned into a :class:`RawRecord` and
then cleared and detached, so memory stays flat in the page size (no DOM of the whole page
is kept). The record's metadata child (``<arXivRaw>`` or ``<arXiv>``) is serialized verbatim
into ``payload_xml``; deleted headers become tombstones with no payload. OAI errors arrive as
HTTP 200 with an ``<error code=...>`` element and are returned, not raised, so the caller
decides what ``noRecordsMatch`` means.

``payload_xml`` is the element exactly as the server sent it (a byte slice of the page, checked
to be that element and self-contained), else lxml's serialization of it.
``parse_metadata`` turns a payload back into the fields listed in ARXIV_OAI.md (both formats).
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from lxml import etree

OAI_NS = "http://www.openarchives.org/OAI/2.0/"
ARXIV_RAW_NS = "http://arxiv.org/OAI/arXivRaw/"
ARXIV_NS = "http://arxiv.org/OAI/arXiv/"
ID_PREFIX = "oai:arXiv.org:"

_RECORD = f"{{{OAI_NS}}}record"
_HEADER = f"{{{OAI_NS}}}header"
_IDENTIFIER = f"{{{OAI_NS}}}identifier"
_DATESTAMP = f"{{{OAI_NS}}}datestamp"
_SETSPEC = f"{{{OAI_NS}}}setSpec"
_METADATA = f"{{{OAI_NS}}}metadata"
_TOKEN = f"{{{OAI_NS}}}resumptionToken"
_RESPONSE_DATE = f"{{{OAI_NS}}}responseDate"
_ERROR = f"{{{OAI_NS}}}error"
_ROOT = f"{{{OAI_NS}}}OAI-PMH"
_VERSION_SUFFIX = re.compile(r"v\d+$")


class MalformedPage(ValueError):
    """The response is not a well-formed OAI-PMH document."""


@dataclass(slots=True)
class RawRecord:
    arxiv_id: str
    datestamp: dt.date | None
    set_specs: list[str]
    deleted: bool
    payload_xml: str | None


@dataclass(slots=True)
class OAIErrorInfo:
    code: str
    message: str


@dataclass(slots=True)
class Page:
    records: list[RawRecord] = field(default_factory=list)
    response_date: dt.datetime | None = None
    # None: no <resumptionToken> element at all; "": the empty token of the last page.
    resumption_token: str | None = None
    complete_list_size: int | None = None
    cursor: int | None = None
    error: OAIErrorInfo | None = None

    @property
    def is_last(self) -> bool:
        return not self.resumption_token

    @property
    def deleted_count(self) -> int:
        return sum(1 for r in self.records if r.deleted)


def arxiv_id_from_identifier(identifier: str) -> str:
    """``oai:arXiv.org:0704.0471`` -> ``0704.0471``; old-style ``math/0102001`` kept whole."""
    identifier = identifier.strip()
    return identifier[len(ID_PREFIX) :] if identifier.startswith(ID_PREFIX) else identifier


def versionless(arxiv_id: str) -> str:
    return _VERSION_SUFFIX.sub("", arxiv_id.strip())


def parse_date(text: str | None) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text.strip()[:10])
    except ValueError:
        return None


def parse_datetime(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    value = text.strip()
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


class _PayloadSlicer:
    """Finds each record's metadata element in the raw page bytes, to keep it byte for byte.

    The parser walks the page in order; so does this scan (plain ``bytes.find``, cheaper than
    re-serializing). A span is used only when it is certainly this record's and stands alone:
    found after the record's ``<identifier>`` element and ``</header>``, starting with the
    element's own start tag and ending with its end tag, and that start tag declaring every
    namespace the span uses. Otherwise (or for a page not in UTF-8) lxml serializes the element:
    the same XML, not necessarily the same bytes.
    """

    __slots__ = ("data", "enabled", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        head = data[:200].lower()
        self.enabled = not head.startswith(b"<?xml") or (
            b"encoding" not in head.split(b"?>", 1)[0] or b"utf-8" in head.split(b"?>", 1)[0]
        )

    def take(self, identifier: str, child: etree._Element) -> str | None:
        if not self.enabled:
            return None
        data = self.data
        # Anchor on this record: its whole <identifier> element (an id can be a prefix of
        # another's), its </header>, then <metadata> right after.
        found = data.find(b">" + identifier.strip().encode() + b"</identifier>", self.pos)
        header_end = data.find(b"</header>", found) if found >= 0 else -1
        if header_end < 0:
            return None
        start = header_end + 9
        while data[start : start + 1] in (b" ", b"\n", b"\r", b"\t"):
            start += 1
        if not data.startswith(b"<metadata>", start):
            return None
        close = data.find(b"</metadata>", start)
        if close < 0:
            return None
        self.pos = close + 11
        span = data[start + 10 : close].strip()
        name = etree.QName(child).localname.encode()
        tag_end = span.find(b">")
        if (
            tag_end < 0
            or not span.startswith(b"<" + name)
            or span[len(name) + 1 : len(name) + 2] not in (b" ", b">", b"\n", b"\t", b"\r")
            or not span.endswith(b"</" + name + b">")
        ):
            return None
        if b"<![CDATA[" in span:
            return None  # lxml turns CDATA into escaped text, which the dbt staging decodes
        start_tag = span[:tag_end]
        for prefix, uri in child.nsmap.items():
            declared = b"xmlns" + (b":" + prefix.encode() if prefix else b"") + b'="'
            if declared + uri.encode() + b'"' in start_tag:
                continue
            # Declared outside the span: fine only if the span never uses it (a conservative
            # check: any "x:" after "<", "/" or whitespace counts as a use).
            if prefix is None or re.search(rb"[<\s/]" + re.escape(prefix.encode()) + rb":", span):
                return None
        try:
            return span.decode("utf-8")
        except UnicodeDecodeError:
            return None


def _record_from_element(elem: etree._Element, slicer: _PayloadSlicer | None = None) -> RawRecord:
    # Direct child walks instead of find(): this runs once per record (millions).
    header = None
    metadata = None
    for child in elem:
        tag = child.tag
        if tag == _HEADER:
            header = child
        elif tag == _METADATA:
            metadata = child
    if header is None:
        raise MalformedPage("record without <header>")
    identifier = datestamp = None
    set_specs: list[str] = []
    for child in header:
        tag = child.tag
        if tag == _SETSPEC:
            if child.text:
                set_specs.append(child.text.strip())
        elif tag == _IDENTIFIER:
            identifier = child.text
        elif tag == _DATESTAMP:
            datestamp = child.text
    if not identifier:
        raise MalformedPage("record header without <identifier>")
    deleted = header.get("status") == "deleted"
    payload: str | None = None
    if not deleted and metadata is not None:
        for child in metadata:
            if isinstance(child.tag, str):
                if slicer is not None:
                    payload = slicer.take(identifier, child)
                if payload is None:
                    payload = etree.tostring(child, encoding="unicode", with_tail=False)
                break
    return RawRecord(
        arxiv_id=arxiv_id_from_identifier(identifier),
        datestamp=parse_date(datestamp),
        set_specs=set_specs,
        deleted=deleted,
        payload_xml=payload,
    )


def iter_page(data: bytes, page: Page) -> Iterator[RawRecord]:
    """Yield the page's records one at a time, filling ``page``'s token/date/error as seen."""
    events = etree.iterparse(
        io.BytesIO(data),
        events=("start", "end"),
        tag=(_ROOT, _RECORD, _TOKEN, _RESPONSE_DATE, _ERROR),
        resolve_entities=False,
        no_network=True,
        huge_tree=True,
    )
    seen_root = False
    slicer = _PayloadSlicer(data)
    try:
        for event, elem in events:
            if event == "start":
                if elem.tag == _ROOT:
                    seen_root = True
                continue
            tag = elem.tag
            if tag == _RECORD:
                record = _record_from_element(elem, slicer)
                # Free what was parsed so far: memory stays flat in the page size.
                elem.clear(keep_tail=False)
                parent = elem.getparent()
                if parent is not None:
                    while elem.getprevious() is not None:
                        del parent[0]
                yield record
            elif tag == _TOKEN:
                page.resumption_token = (elem.text or "").strip()
                page.complete_list_size = _int_or_none(elem.get("completeListSize"))
                page.cursor = _int_or_none(elem.get("cursor"))
            elif tag == _RESPONSE_DATE:
                page.response_date = parse_datetime(elem.text)
            elif tag == _ERROR:
                page.error = OAIErrorInfo(
                    code=elem.get("code", "unknown"), message=" ".join((elem.text or "").split())
                )
    except etree.XMLSyntaxError as exc:
        raise MalformedPage(str(exc).splitlines()[0] if str(exc) else "invalid XML") from None
    if not seen_root:
        raise MalformedPage("not an OAI-PMH response (no <OAI-PMH> root element)")


def parse_page(data: bytes) -> Page:
    """Parse a whole ListRecords (or error) response."""
    page = Page()
    page.records = list(iter_page(data, page))
    return page


# --- payload fields -----------------------------------------------------------------------


def _text(elem: etree._Element | None) -> str | None:
    if elem is None or elem.text is None:
        return None
    return elem.text


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    joined = " ".join(value.split())
    return joined or None


def _rfc822(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def parse_metadata(payload_xml: str) -> dict[str, Any]:
    """All fields of an ``<arXivRaw>`` or ``<arXiv>`` payload as plain Python values.

    Text fields are whitespace-normalized except ``abstract_raw``/``authors_raw``; dates are
    parsed (arXivRaw versions are RFC 822, arXiv ``created``/``updated`` are ISO dates).
    """
    root = etree.fromstring(payload_xml.encode("utf-8"))
    ns = root.tag[1:].split("}")[0] if root.tag.startswith("{") else ""
    q = (lambda name: f"{{{ns}}}{name}") if ns else (lambda name: name)

    def field_text(name: str) -> str | None:
        return _text(root.find(q(name)))

    categories = (_clean(field_text("categories")) or "").split()
    doi = _clean(field_text("doi"))
    fields: dict[str, Any] = {
        "format": "arXivRaw" if ns == ARXIV_RAW_NS else "arXiv" if ns == ARXIV_NS else ns,
        "arxiv_id": _clean(field_text("id")),
        "title": _clean(field_text("title")),
        "abstract": _clean(field_text("abstract")),
        "abstract_raw": field_text("abstract"),
        "categories": categories,
        "primary_category": categories[0] if categories else None,
        "comments": _clean(field_text("comments")),
        "proxy": _clean(field_text("proxy")),
        "report_no": _clean(field_text("report-no")),
        "msc_class": _clean(field_text("msc-class")),
        "acm_class": _clean(field_text("acm-class")),
        "journal_ref": _clean(field_text("journal-ref")),
        "doi": doi,
        "dois": doi.split() if doi else [],
        "license": _clean(field_text("license")),
    }
    if fields["format"] == "arXivRaw":
        versions = []
        for v in root.iterfind(q("version")):
            versions.append(
                {
                    "version": v.get("version"),
                    "date": _rfc822(_text(v.find(q("date")))),
                    "size": _clean(_text(v.find(q("size")))),
                    "source_type": _clean(_text(v.find(q("source_type")))),
                }
            )
        authors_raw = field_text("authors")
        fields.update(
            submitter=_clean(field_text("submitter")),
            authors_raw=authors_raw,
            authors=_split_raw_authors(authors_raw),
            versions=versions,
            submitted_at=versions[0]["date"] if versions else None,
            updated_at=versions[-1]["date"] if versions else None,
        )
    else:
        authors = []
        for a in root.iterfind(f"{q('authors')}/{q('author')}"):
            parts = [
                _clean(_text(a.find(q("forenames")))),
                _clean(_text(a.find(q("keyname")))),
                _clean(_text(a.find(q("suffix")))),
            ]
            authors.append(" ".join(p for p in parts if p))
        fields.update(
            authors=authors,
            # arXiv format: <created> is the current version's date, not v1's.
            created=parse_date(field_text("created")),
            updated=parse_date(field_text("updated")),
        )
    return fields


_AUTHOR_SPLIT = re.compile(r",\s*(?:and\s+)?|\s+and\s+")


def _split_raw_authors(raw: str | None) -> list[str]:
    """Split arXivRaw's one-string author list ("A, B, and C") on commas and 'and'."""
    if not raw:
        return []
    text = " ".join(raw.split())
    # Affiliations in parentheses may contain commas; keep them with their author.
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth = max(0, depth - 1)
        elif depth == 0:
            match = _AUTHOR_SPLIT.match(text, i)
            if match and match.end() > i:
                parts.append(text[start:i])
                start = i = match.end()
                continue
        i += 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]
