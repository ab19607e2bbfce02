"""dbt-duckdb plugin: open the papersys lake inside dbt's DuckDB connection.

dbt-duckdb calls ``configure_connection`` before it runs the profile's ``attach:`` entries, so
the lake is attached here the way ``papersys.lake.connect`` does it: extensions loaded from
the pinned PyPI packages (no network), the catalog and data path taken from papersys's config
(``PAPERSYS_CONFIG`` / ``./papersys.toml`` / ``PAPERSYS_LAKE_ROOT``; ``papersys transform`` hands
over its own config instead), schema migrations applied and every configured embedding model
registered. A bare ``dbt build`` therefore works on a fresh clone, offline, on the same lake as
``papersys transform``.

It also registers ``papersys_normalize_text(VARCHAR)``, the whitespace normalization of titles
and abstracts (the text that gets embedded and hashed): a vectorized Arrow function on polars'
regex engine, about 2.5x cheaper than DuckDB's ``regexp_replace`` on hard-wrapped abstracts,
which made it the largest single cost of a full build.
"""

from __future__ import annotations

from typing import Any

import duckdb
import polars as pl
import pyarrow as pa
from dbt.adapters.duckdb.plugins import BasePlugin

from papersys import lake
from papersys.config import Config, load_config

_current: Config | None = None

NORMALIZE_TEXT_FUNCTION = "papersys_normalize_text"
# Runs of whitespace, or one whitespace character that is not a plain space: single spaces
# (most of them) are left alone, which is what makes this fast.
_WHITESPACE_TO_FOLD = r"\s\s+|[^\S ]"


def set_config(config: Config | None) -> Config | None:
    """Use ``config`` for connections opened from now on (None: look it up); return the old one."""
    global _current
    previous, _current = _current, config
    return previous


def normalize_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Fold every run of whitespace (Unicode) to one space and trim; NULL stays NULL."""
    series = pl.Series(values=values)
    folded = series.str.replace_all(_WHITESPACE_TO_FOLD, " ").str.strip_chars()
    return folded.to_arrow().cast(pa.string())


def register_functions(conn: duckdb.DuckDBPyConnection) -> None:
    """Register papersys's SQL functions on a connection (idempotent)."""
    exists = conn.execute(
        "SELECT count(*) FROM duckdb_functions() WHERE function_name = ?",
        [NORMALIZE_TEXT_FUNCTION],
    ).fetchall()[0][0]
    if not exists:
        conn.create_function(
            NORMALIZE_TEXT_FUNCTION,
            normalize_text,
            ["VARCHAR"],
            "VARCHAR",
            type="arrow",
            side_effects=False,
        )


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        # Optional `config: {config_file: ...}` in the profile; else papersys's own lookup.
        self.config_file = plugin_config.get("config_file")

    def configure_connection(self, conn: duckdb.DuckDBPyConnection) -> None:
        config = _current if _current is not None else load_config(self.config_file)
        lake.prepare_connection(conn, config.lake)
        conn.execute(f"USE {lake.LAKE_ALIAS}")
        lake.apply_migrations(conn)
        lake.ensure_model_tables(conn, config)
        register_functions(conn)
        # dbt's temporary relations belong in the in-memory database, not the lake catalog.
        conn.execute("USE memory")

    def configure_cursor(self, cursor: duckdb.DuckDBPyConnection) -> None:
        register_functions(cursor)
