"""Harvesting arXiv: OAI-PMH client, streaming parser, crash-safe landing, RSS, replay server."""

from papersys.ingestion.harvest import HarvestResult, PageProgress, harvest
from papersys.ingestion.oai import IngestError, OAIClient, OAIProtocolError
from papersys.ingestion.parser import RawRecord, parse_metadata, parse_page
from papersys.ingestion.rss import ingest_rss

__all__ = [
    "HarvestResult",
    "IngestError",
    "OAIClient",
    "OAIProtocolError",
    "PageProgress",
    "RawRecord",
    "harvest",
    "ingest_rss",
    "parse_metadata",
    "parse_page",
]
