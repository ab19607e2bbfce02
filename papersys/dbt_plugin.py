"""dbt-duckdb plugin: open the papersys lake inside dbt's DuckDB connection.

dbt-duckdb calls ``configure_connection`` before it runs the profile's ``attach:`` entries, so
the lake is attached here the way ``papersys.lake.connect`` does it: extensions loaded from
the pinned PyPI packages (no network), the catalog and data path taken from papersys's config
(``PAPERSYS_CONFIG`` / ``./papersys.toml`` / ``PAPERSYS_LAKE_ROOT``; ``papersys transform`` hands
over its own config instead), schema migrations applied and every configured embedding model
registered. A bare ``dbt build`` therefore works on a fresh clone, offline, on the same lake as
``papersys transform``.
"""

from __future__ import annotations

from typing import Any

from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection

from papersys import lake
from papersys.config import Config, load_config

_current: Config | None = None


def set_config(config: Config | None) -> Config | None:
    """Use ``config`` for connections opened from now on (None: look it up); return the old one."""
    global _current
    previous, _current = _current, config
    return previous


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        # Optional `config: {config_file: ...}` in the profile; else papersys's own lookup.
        self.config_file = plugin_config.get("config_file")

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        config = _current if _current is not None else load_config(self.config_file)
        lake.prepare_connection(conn, config.lake)
        conn.execute(f"USE {lake.LAKE_ALIAS}")
        lake.apply_migrations(conn)
        lake.ensure_model_tables(conn, config)
        # dbt's temporary relations belong in the in-memory database, not the lake catalog.
        conn.execute("USE memory")
