"""A polite OAI-PMH client on httpx.

Politeness, as arXiv asks: one connection, at least ``request_spacing`` seconds between the
starts of two requests, ``Retry-After`` honoured on 503/429 (seconds or an HTTP date),
exponential backoff with jitter on timeouts, connection errors and other 5xx, and a
User-Agent naming the tool and a contact address. Pages that are not well-formed XML are
fetched again (same backoff) and finally reported with their URL.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Self, TypeVar

import httpx

from papersys.config import IngestionConfig
from papersys.errors import PapersysError
from papersys.ingestion.parser import Page, parse_page

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
# A Retry-After beyond this is treated as a refusal rather than waited out.
MAX_RETRY_AFTER = 24 * 3600.0


class IngestError(PapersysError):
    """A harvest could not go on (network, server or protocol problem)."""


class OAIProtocolError(IngestError):
    """The repository answered with an OAI-PMH error we cannot continue past."""

    def __init__(self, code: str, message: str, url: str) -> None:
        self.code = code
        self.url = url
        super().__init__(f"OAI-PMH error {code} from {url}: {message}")


@dataclass(frozen=True)
class Fetched:
    url: str
    page: Page
    attempts: int
    seconds: float
    size: int


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date; None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return max(0.0, (when - now).total_seconds())


class OAIClient:
    """Fetches and parses OAI-PMH pages; one instance = one connection, spacing enforced."""

    def __init__(
        self,
        config: IngestionConfig,
        *,
        endpoint: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.config = config
        self.endpoint = endpoint or config.endpoint
        self._sleep = sleep
        self._clock = clock
        self._last_request: float | None = None
        self.requests = 0
        self.waited = 0.0
        self._client = httpx.Client(
            headers={"User-Agent": config.effective_user_agent, "Accept": "application/xml"},
            timeout=httpx.Timeout(config.timeout),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            follow_redirects=True,
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def list_records(
        self,
        *,
        metadata_prefix: str,
        set_spec: str | None = None,
        from_date: dt.date | None = None,
        until_date: dt.date | None = None,
        resumption_token: str | None = None,
    ) -> Fetched:
        """One ListRecords page; with a token, the token is the only argument (OAI-PMH rule)."""
        params: dict[str, str] = {"verb": "ListRecords"}
        if resumption_token:
            params["resumptionToken"] = resumption_token
        else:
            params["metadataPrefix"] = metadata_prefix
            if set_spec:
                params["set"] = set_spec
            if from_date:
                params["from"] = from_date.isoformat()
            if until_date:
                params["until"] = until_date.isoformat()
        return self.fetch(params)

    def fetch(self, params: dict[str, str]) -> Fetched:
        """GET the endpoint with ``params`` and parse the OAI-PMH page (retried if malformed)."""
        started = self._clock()
        url, (page, size), attempts = self.get(self.endpoint, params, _parse_sized)
        return Fetched(url, page, attempts, self._clock() - started, size)

    def get(
        self, base_url: str, params: dict[str, str], parse: Callable[[bytes], T]
    ) -> tuple[str, T, int]:
        """GET with politeness and retries; ``parse`` raising ValueError means a bad body.

        Returns (url, parsed, attempts).
        """
        url = str(httpx.URL(base_url, params=params)) if params else base_url
        attempt = 0
        last_problem = ""
        while True:
            self._space()
            attempt += 1
            self.requests += 1
            self._last_request = self._clock()
            delay: float | None = None
            try:
                response = self._client.get(base_url, params=params or None)
            except httpx.TimeoutException:
                last_problem = f"timed out after {self.config.timeout:g} s"
            except httpx.TransportError as exc:
                last_problem = f"connection failed ({exc.__class__.__name__}: {exc})"
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return url, parse(response.content), attempt
                    except ValueError as exc:
                        last_problem = f"malformed response ({exc})"
                elif status in RETRY_STATUSES:
                    last_problem = f"HTTP {status}"
                    if status in (429, 503):
                        delay = retry_after_seconds(response.headers.get("Retry-After"))
                        if delay is not None and delay > MAX_RETRY_AFTER:
                            raise IngestError(
                                f"{url}: HTTP {status} with Retry-After {delay:.0f} s; "
                                "the server asks us to stop, try again later"
                            )
                else:
                    raise IngestError(
                        f"{url}: HTTP {status} {response.reason_phrase}; "
                        "check ingestion.endpoint in the config and the harvest options"
                    )
            if attempt > self.config.max_retries:
                raise IngestError(
                    f"{url}: {last_problem} (gave up after {attempt} attempts); "
                    "rerun `papersys ingest` later: the harvest resumes from its cursor"
                )
            if delay is None:
                delay = self._backoff(attempt)
            log.warning("%s: %s; retrying in %.1f s", url, last_problem, delay)
            self._wait(delay)

    def _backoff(self, attempt: int) -> float:
        base = self.config.backoff_base * (2 ** (attempt - 1))
        return min(self.config.backoff_max, base) * random.uniform(0.5, 1.5)

    def _space(self) -> None:
        if self._last_request is None:
            return
        remaining = self.config.request_spacing - (self._clock() - self._last_request)
        if remaining > 0:
            self._wait(remaining)

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self.waited += seconds
            self._sleep(seconds)


def _parse_sized(body: bytes) -> tuple[Page, int]:
    return parse_page(body), len(body)  # MalformedPage is a ValueError: fetched again
