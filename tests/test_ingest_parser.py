"""The streaming OAI-PMH parser and payload fields, on real arXiv responses."""

from __future__ import annotations

import datetime as dt

import oai_server
import pytest
from conftest import FIXTURES
from lxml import etree

from papersys.ingestion.parser import (
    MalformedPage,
    parse_metadata,
    parse_page,
    versionless,
)
from papersys.ingestion.rss import parse_feed

DERIVED = FIXTURES / "oai"


def test_real_listrecords_page() -> None:
    page = parse_page((DERIVED / "real_arxivraw_listrecords_excerpt.xml").read_bytes())
    assert page.error is None
    assert page.response_date == dt.datetime(2015, 1, 6, 20, 49, 59, tzinfo=dt.UTC)
    assert page.resumption_token == "726959|1001"
    assert page.complete_list_size == 58011
    assert page.cursor == 0
    assert not page.is_last
    [record] = page.records
    assert record.arxiv_id == "0704.0471"
    assert record.datestamp == dt.date(2014, 11, 18)
    assert record.set_specs == ["physics:nucl-ex", "physics:nucl-th"]
    assert record.deleted is False
    # The metadata child byte for byte: its own namespace declarations, entities as sent.
    payload = record.payload_xml
    assert payload is not None
    assert payload.startswith('<arXivRaw xmlns="http://arxiv.org/OAI/arXivRaw/"')
    assert payload.endswith("</abstract></arXivRaw>")
    assert "extremely &quot; stiff &quot; and &quot; soft &quot;" in payload
    assert "<title>Density dependence of the symmetry energy and the nuclear equation of\n" in (
        payload
    )


def _content(elem: etree._Element) -> list[tuple]:
    """Every element's tag, attributes, text and tail (the root's own tail aside)."""
    items = [(e.tag, dict(e.attrib), e.text, e.tail) for e in elem.iter()]
    tag, attrib, text, _ = items[0]
    return [(tag, attrib, text, None), *items[1:]]


def test_every_real_record_round_trips_verbatim() -> None:
    """Each payload is the real file's metadata element: same tags, attributes and text."""
    ns = {"o": "http://www.openarchives.org/OAI/2.0/"}
    for path in oai_server.real_listrecords_files():
        raw = path.read_bytes()
        page = parse_page(raw)
        assert page.records, path
        tree = etree.fromstring(raw)
        originals = {
            rec.findtext("o:header/o:identifier", namespaces=ns).split(":")[-1]: rec.find(
                "o:metadata/*", namespaces=ns
            )
            for rec in tree.iterfind(".//o:record", namespaces=ns)
        }
        for record in page.records:
            assert record.payload_xml is not None
            assert record.payload_xml.encode() in raw  # byte for byte
            parsed = etree.fromstring(record.payload_xml.encode())
            original = originals[record.arxiv_id]
            assert _content(parsed) == _content(original), (path, record.arxiv_id)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        (DERIVED / "real_error_badresumptiontoken.xml", "badResumptionToken"),
        (DERIVED / "real_error_norecordsmatch.xml", "noRecordsMatch"),
    ],
)
def test_real_error_responses(path, code) -> None:
    page = parse_page(path.read_bytes())
    assert page.error is not None
    assert page.error.code == code
    assert page.error.message
    assert page.records == []


def test_error_code_in_single_quotes() -> None:
    body = (
        b"<?xml version='1.0'?><OAI-PMH xmlns='http://www.openarchives.org/OAI/2.0/'>"
        b"<responseDate>2025-03-01T00:00:00Z</responseDate><request>x</request>"
        b"<error code='badArgument'>until too far ahead</error></OAI-PMH>"
    )
    page = parse_page(body)
    assert page.error is not None and page.error.code == "badArgument"
    assert page.error.message == "until too far ahead"


def test_deleted_header_is_a_tombstone() -> None:
    page = parse_page((DERIVED / "arxivraw_with_deleted.xml").read_bytes())
    live, dead = page.records
    assert live.deleted is False and live.payload_xml is not None
    assert dead.arxiv_id == "0704.0472"
    assert dead.deleted is True
    assert dead.payload_xml is None
    assert dead.datestamp == dt.date(2014, 11, 19)
    assert page.resumption_token == "" and page.is_last
    assert page.deleted_count == 1


@pytest.mark.parametrize(
    "body",
    [
        (DERIVED / "truncated_listrecords.xml").read_bytes(),
        b"<html><body>503 Service Unavailable</body></html>",
        b"",
        b"<OAI-PMH xmlns='http://www.openarchives.org/OAI/2.0/'><ListRecords><record>"
        b"<header><datestamp>2020-01-01</datestamp></header></record></ListRecords></OAI-PMH>",
    ],
)
def test_malformed_pages_raise(body) -> None:
    with pytest.raises(MalformedPage):
        parse_page(body)


def test_parser_frees_records_as_it_goes() -> None:
    """Streaming: records already handed out are freed (only parser read-ahead remains)."""
    records = oai_server.derived_records(300)
    [page_bytes] = oai_server.build_pages(records, 300)
    from papersys.ingestion import parser

    seen_sizes: list[int] = []
    original = parser._record_from_element

    def spy(elem: etree._Element, slicer=None):
        # Earlier records are either detached or cleared (emptied).
        seen_sizes.append(sum(len(e) for e in elem.itersiblings(preceding=True)))
        return original(elem, slicer)

    parser._record_from_element = spy
    try:
        page = parse_page(page_bytes)
    finally:
        parser._record_from_element = original
    assert len(page.records) == 300
    assert max(seen_sizes) == 0  # nothing before the current record is kept


def test_arxivraw_fields() -> None:
    page = parse_page((DERIVED / "real_arxivraw_listrecords_excerpt.xml").read_bytes())
    fields = parse_metadata(page.records[0].payload_xml or "")
    assert fields["format"] == "arXivRaw"
    assert fields["arxiv_id"] == "0704.0471"
    assert fields["submitter"] == "Dinesh Shetty"
    assert fields["authors"] == ["D.V. Shetty", "S.J. Yennello", "G.A. Souliotis"]
    assert fields["authors_raw"] == "D.V. Shetty, S.J. Yennello, and G.A. Souliotis"
    assert fields["title"] == (
        "Density dependence of the symmetry energy and the nuclear equation of state: "
        "A Dynamical and Statistical model perspective"
    )
    assert fields["categories"] == ["nucl-ex", "nucl-th"]
    assert fields["primary_category"] == "nucl-ex"
    assert fields["dois"] == ["10.1103/PhysRevC.76.024606", "10.1103/PhysRevC.76.039902"]
    assert fields["journal_ref"].startswith("Phys.Rev.C76:024606")
    assert fields["comments"] == "16 pages, 14 figures"
    assert fields["license"] is None
    assert fields["abstract"].startswith("The density dependence of the symmetry energy")
    assert '" stiff "' in fields["abstract"]  # entities decoded
    assert fields["abstract_raw"].startswith("  The density")
    assert fields["submitted_at"] == dt.datetime(2007, 4, 3, 22, 4, 11, tzinfo=dt.UTC)
    assert [v["version"] for v in fields["versions"]] == ["v1"]
    assert fields["versions"][0]["size"] == "294kb"


def test_arxivraw_multiple_versions_and_source_type() -> None:
    records = {
        r.arxiv_id: r
        for path in oai_server.real_listrecords_files()
        for r in parse_page(path.read_bytes()).records
    }
    if "0704.0716" not in records:
        pytest.skip("multi-version real record not available")
    fields = parse_metadata(records["0704.0716"].payload_xml or "")
    assert [v["version"] for v in fields["versions"]] == ["v1", "v2", "v3", "v4"]
    assert fields["submitted_at"].date() == dt.date(2007, 4, 5)
    assert fields["updated_at"].date() == dt.date(2008, 11, 14)
    assert fields["msc_class"] == "05A15, 05A16"
    assert fields["license"] == "http://arxiv.org/licenses/nonexclusive-distrib/1.0/"


def test_arxiv_format_fields() -> None:
    page = parse_page((DERIVED / "arxiv_format_listrecords.xml").read_bytes())
    first, second = (parse_metadata(r.payload_xml or "") for r in page.records)
    assert first["format"] == "arXiv"
    assert first["authors"] == ["D. V. Shetty", "S. J. Yennello", "G. A. Souliotis"]
    assert first["created"] == dt.date(2007, 4, 3)
    assert first["updated"] is None
    assert second["authors"] == ["Christoph Richard"]
    assert second["updated"] == dt.date(2008, 11, 14)
    assert second["categories"] == ["math-ph", "math.MP"]


def test_raw_author_lists_with_affiliations() -> None:
    from papersys.ingestion.parser import _split_raw_authors

    assert _split_raw_authors("A. One (Univ. X, Y), B. Two and C. Three") == [
        "A. One (Univ. X, Y)",
        "B. Two",
        "C. Three",
    ]
    assert _split_raw_authors("Alexander Anderson") == ["Alexander Anderson"]
    assert _split_raw_authors(None) == []


def test_versionless_ids() -> None:
    assert versionless("2203.01250v3") == "2203.01250"
    assert versionless("math/0102001v2") == "math/0102001"
    assert versionless("0704.0471") == "0704.0471"


@pytest.mark.parametrize("name", ["rss_hep-ph+hep-ex.xml", "atom_hep-ph+hep-ex.xml"])
def test_feeds(name) -> None:
    feed = parse_feed((DERIVED / name).read_bytes())
    ids = [i.record.arxiv_id for i in feed.items]
    assert ids[:2] == ["1302.2146", "0704.0471"]  # versionless
    assert all(i.record.datestamp == dt.date(2013, 4, 2) for i in feed.items)
    assert feed.items[0].announce_type == "replace"
    payload = feed.items[0].record.payload_xml or ""
    assert "Same-Sign Dilepton" in payload and "announce_type" in payload
    assert feed.format == ("rss" if name.startswith("rss") else "atom")


def test_feed_that_is_not_a_feed() -> None:
    with pytest.raises(MalformedPage):
        parse_feed(b"<html><body>maintenance</body></html>")


def test_real_arxiv_format_record() -> None:
    path = FIXTURES / "real" / "oai" / "arxiv_listrecords_astro-ph_1record_2013.xml"
    if not path.exists():
        pytest.skip("real arXiv-format response not available")
    page = parse_page(path.read_bytes())
    assert page.resumption_token is None and page.is_last  # no token element at all
    [record] = page.records
    assert (record.arxiv_id, record.datestamp, record.set_specs) == (
        "0801.3931",
        dt.date(2013, 3, 26),
        ["physics:astro-ph"],
    )
    fields = parse_metadata(record.payload_xml or "")
    assert fields["format"] == "arXiv"
    assert fields["authors"] == ["T. Manos", "E. Athanassoula"]
    assert fields["created"] == dt.date(2008, 1, 25)
    assert fields["title"] == "Dynamical study of 2D and 3D barred galaxy models"
    assert fields["comments"].startswith("8 pages, 3 figures, to appear in the proceedings")
    assert '"Chaos in Astronomy"' in fields["comments"]
    assert fields["doi"] == "10.1007/978-3-540-75826-6_11"
    assert "Poincar\\'{e}" in fields["abstract"]  # TeX left as is


def _one_record_page(metadata: str, declaration: str = '<?xml version="1.0" encoding="UTF-8"?>'):
    return (
        f'{declaration}\n<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/" '
        'xmlns:x="http://example.org/x"><responseDate>2025-01-01T00:00:00Z</responseDate>'
        "<ListRecords><record><header><identifier>oai:arXiv.org:2501.00001</identifier>"
        f"<datestamp>2025-01-01</datestamp></header><metadata>{metadata}</metadata></record>"
        "<resumptionToken/></ListRecords></OAI-PMH>"
    )


@pytest.mark.parametrize(
    ("metadata", "byte_exact"),
    [
        # Self-contained (the root's unused x: prefix aside): kept byte for byte, entities as sent.
        (
            '<arXivRaw xmlns="http://arxiv.org/OAI/arXivRaw/"><title>A &amp; B</title></arXivRaw>',
            True,
        ),
        # Uses a prefix declared on the page's root: serialized by lxml with the declaration.
        (
            '<arXivRaw xmlns="http://arxiv.org/OAI/arXivRaw/"><x:note>n</x:note></arXivRaw>',
            False,
        ),
        # No namespace declaration of its own (inherits the OAI one): serialized by lxml.
        ("<arXivRaw><title>T</title></arXivRaw>", False),
        # CDATA: serialized by lxml as escaped text (what the dbt staging decodes).
        (
            '<arXivRaw xmlns="http://arxiv.org/OAI/arXivRaw/"><title><![CDATA[a<b]]></title>'
            "</arXivRaw>",
            False,
        ),
        # A comment holding the closing tag text: the span is not the element, lxml serializes.
        (
            '<arXivRaw xmlns="http://arxiv.org/OAI/arXivRaw/"><!-- </metadata> --></arXivRaw>',
            False,
        ),
    ],
)
def test_payload_is_exact_or_a_standalone_serialization(metadata, byte_exact) -> None:
    [record] = parse_page(_one_record_page(metadata).encode()).records
    payload = record.payload_xml or ""
    assert (payload == metadata) is byte_exact
    standalone = etree.fromstring(payload.encode())  # always parses on its own
    original = etree.fromstring(_one_record_page(metadata).encode()).find(
        ".//{http://www.openarchives.org/OAI/2.0/}metadata"
    )[0]
    assert _content(standalone) == _content(original)
    # Every namespace the element uses resolves the same way on its own.
    used = {e.tag.split("}")[0] for e in original.iter() if isinstance(e.tag, str)}
    assert used <= {"{" + uri for uri in standalone.nsmap.values()}


def test_payload_of_a_latin1_page() -> None:
    metadata = '<arXivRaw xmlns="http://arxiv.org/OAI/arXivRaw/"><title>Poincaré</title></arXivRaw>'
    page = _one_record_page(metadata, '<?xml version="1.0" encoding="ISO-8859-1"?>')
    [record] = parse_page(page.encode("latin-1")).records
    assert "<title>Poincaré</title>" in (record.payload_xml or "")


def test_payload_never_taken_from_a_record_whose_id_extends_this_one() -> None:
    # The first record's metadata cannot be sliced (a comment before it), so the scan does not
    # move past it; the second record's id is a prefix of the first's and must not match it:
    # the second payload is still found, byte for byte (the entity as sent).
    ns = 'xmlns="http://arxiv.org/OAI/arXivRaw/"'
    page = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/">'
        "<responseDate>2025-01-01T00:00:00Z</responseDate><ListRecords>"
        "<record><header><identifier>oai:arXiv.org:2501.00012</identifier>"
        "<datestamp>2025-01-01</datestamp></header><!-- first --><metadata>"
        f"<arXivRaw {ns}><title>First</title></arXivRaw></metadata></record>"
        "<record><header><identifier>oai:arXiv.org:2501.0001</identifier>"
        "<datestamp>2025-01-01</datestamp></header><metadata>"
        f"<arXivRaw {ns}><title>&quot;Second&quot;</title></arXivRaw></metadata></record>"
        "<resumptionToken/></ListRecords></OAI-PMH>"
    ).encode()
    first, second = parse_page(page).records
    assert "<title>First</title>" in (first.payload_xml or "")
    assert second.payload_xml == f"<arXivRaw {ns}><title>&quot;Second&quot;</title></arXivRaw>"
