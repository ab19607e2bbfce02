"""Replay saved OAI-PMH ListRecords pages from a real HTTP server on 127.0.0.1.

``papersys demo`` harvests the bundled sample through it (the real client, the real parser,
the real landing) and tests use it to serve fixture pages. Pages are chained by their own
resumptionTokens: page *i*'s token leads to page *i+1*, the last page has an empty token.
Like a real repository it honours ``set``/``from``/``until`` (records outside the window are
left out, an empty window answers ``noRecordsMatch``), checks the arguments and answers
unknown tokens with ``badResumptionToken``. Tokens are server state (the window of the last
initial request); ``expire_tokens`` rejects tokens until the next initial request, as the old
arXiv server did when its tokens expired.

A ``fault`` hook lets tests answer a request differently (status, headers, body, delay).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self
from urllib.parse import parse_qs, urlsplit

from lxml import etree

from papersys.errors import PapersysError
from papersys.http_server import BackgroundHTTPServer
from papersys.ingestion.parser import OAI_NS

_Q = f"{{{OAI_NS}}}"
SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample" / "oai"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (to provoke client timeouts)


@dataclass
class _Page:
    raw: bytes
    token: str
    prefix: str | None


FaultHook = Callable[[int, dict[str, str]], Reply | None]


def _error_doc(code: str, message: str, request_attrs: dict[str, str], base_url: str) -> bytes:
    root = etree.Element(f"{_Q}OAI-PMH", nsmap={None: OAI_NS})
    etree.SubElement(root, f"{_Q}responseDate").text = dt.datetime.now(dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    request = etree.SubElement(root, f"{_Q}request", request_attrs)
    request.text = base_url
    error = etree.SubElement(root, f"{_Q}error", code=code)
    error.text = message
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


class OAIReplay:
    """The repository logic: which bytes answer which query."""

    def __init__(self, pages: list[bytes]) -> None:
        if not pages:
            raise PapersysError("no OAI pages to replay; give at least one ListRecords page")
        self.pages: list[_Page] = []
        for raw in pages:
            root = etree.fromstring(raw)
            token_elem = root.find(f".//{_Q}resumptionToken")
            token = (token_elem.text or "").strip() if token_elem is not None else ""
            payload = root.find(f".//{_Q}metadata/*")
            prefix = None
            if payload is not None and isinstance(payload.tag, str):
                prefix = etree.QName(payload).localname
            self.pages.append(_Page(raw=raw, token=token, prefix=prefix))
        self.next_page = {p.token: i + 1 for i, p in enumerate(self.pages[:-1]) if p.token}
        self.prefix = next((p.prefix for p in self.pages if p.prefix), "arXivRaw")
        self.window: dict[str, str] = {}
        self.tokens_expired = False
        self._lock = threading.Lock()

    @classmethod
    def from_dir(cls, directory: Path) -> Self:
        files = sorted(directory.glob("*.xml"))
        if not files:
            raise PapersysError(
                f"no OAI pages (*.xml) in {directory}; reinstall papersys or pass a directory"
            )
        return cls([f.read_bytes() for f in files])

    def expire_tokens(self) -> None:
        with self._lock:
            self.tokens_expired = True

    def respond(self, params: dict[str, list[str]], base_url: str) -> bytes:
        with self._lock:
            return self._respond(params, base_url)

    def _respond(self, multi: dict[str, list[str]], base_url: str) -> bytes:
        attrs = {k: v[0] for k, v in multi.items()}
        repeated = [k for k, v in multi.items() if len(v) > 1]
        if repeated:
            return _error_doc("badArgument", f"repeated argument {repeated[0]}", {}, base_url)
        verb = attrs.get("verb")
        if verb != "ListRecords":
            return _error_doc("badVerb", f"unsupported verb {verb!r}", {}, base_url)
        token = attrs.get("resumptionToken")
        if token is not None:
            if len(attrs) != 2:
                return _error_doc(
                    "badArgument", "resumptionToken is an exclusive argument", attrs, base_url
                )
            index = self.next_page.get(token)
            if index is None or self.tokens_expired:
                return _error_doc(
                    "badResumptionToken",
                    "The resumptionToken supplied is illegal for this repository",
                    attrs,
                    base_url,
                )
            return self._page(index, base_url, attrs)
        allowed = {"verb", "metadataPrefix", "set", "from", "until"}
        unknown = sorted(set(attrs) - allowed)
        if unknown:
            return _error_doc(
                "badArgument", f"Verb 'ListRecords', illegal argument '{unknown[0]}'.", {}, base_url
            )
        prefix = attrs.get("metadataPrefix")
        if not prefix:
            return _error_doc("badArgument", "metadataPrefix is required", attrs, base_url)
        if prefix != self.prefix:
            return _error_doc(
                "cannotDisseminateFormat",
                f"Format '{prefix}' is not available from this replay",
                attrs,
                base_url,
            )
        for key in ("from", "until"):
            if key in attrs:
                try:
                    dt.date.fromisoformat(attrs[key])
                except ValueError:
                    return _error_doc("badArgument", f"bad {key} date", attrs, base_url)
        self.window = {k: attrs[k] for k in ("set", "from", "until") if k in attrs}
        self.tokens_expired = False
        if self.window and not any(self._filtered(p.raw)[1] for p in self.pages):
            return _error_doc(
                "noRecordsMatch",
                "The combination of the values of the from, until, set and metadataPrefix "
                "arguments results in an empty list.",
                attrs,
                base_url,
            )
        return self._page(0, base_url, attrs)

    def _page(self, index: int, base_url: str, attrs: dict[str, str]) -> bytes:
        raw = self.pages[index].raw
        if not self.window:
            return raw
        return self._filtered(raw)[0]

    def _keep(self, header: etree._Element) -> bool:
        datestamp = (header.findtext(f"{_Q}datestamp") or "").strip()[:10]
        if "from" in self.window and datestamp < self.window["from"]:
            return False
        if "until" in self.window and datestamp > self.window["until"]:
            return False
        wanted = self.window.get("set")
        if wanted:
            specs = [(s.text or "").strip() for s in header.iterfind(f"{_Q}setSpec")]
            return any(s == wanted or s.startswith(wanted + ":") for s in specs)
        return True

    def _filtered(self, raw: bytes) -> tuple[bytes, int]:
        root = etree.fromstring(raw)
        kept = 0
        for record in root.iterfind(f".//{_Q}record"):
            header = record.find(f"{_Q}header")
            if header is not None and self._keep(header):
                kept += 1
                continue
            parent = record.getparent()
            if parent is not None:
                parent.remove(record)
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8"), kept


class ReplayServer(BackgroundHTTPServer):
    """A threaded HTTP server on 127.0.0.1 answering OAI-PMH requests from an ``OAIReplay``."""

    def __init__(
        self,
        replay: OAIReplay,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        fault: FaultHook | None = None,
    ) -> None:
        self.replay = replay
        self.fault = fault
        self.requests: list[dict[str, str]] = []
        self.request_times: list[float] = []
        self.user_agents: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server._handle(self)

            def log_message(self, format: str, *args: object) -> None:
                return  # quiet: library code never prints

        super().__init__(ThreadingHTTPServer((host, port), Handler))

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/oai"

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        multi = parse_qs(parts.query, keep_blank_values=True)
        flat = {k: v[0] for k, v in multi.items()}
        self.requests.append(flat)
        self.request_times.append(time.monotonic())
        self.user_agents.append(handler.headers.get("User-Agent", ""))
        reply: Reply | None = None
        if self.fault is not None:
            reply = self.fault(len(self.requests), flat)
        if reply is None:
            reply = Reply(body=self.replay.respond(multi, self.url))
        if reply.delay:
            time.sleep(reply.delay)
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", "text/xml; charset=utf-8")
            handler.send_header("Content-Length", str(len(reply.body)))
            for key, value in reply.headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)
