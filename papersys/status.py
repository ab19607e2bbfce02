"""What is in the lake: plain data for `papersys status` (the CLI renders it)."""

from __future__ import annotations

from typing import Any

from papersys import lake
from papersys.config import Config


def collect_status(config: Config, recent_harvests: int = 10) -> dict[str, Any]:
    con = lake.connect(config)
    try:
        raw = con.execute(
            """SELECT source, count(*) AS records, count(DISTINCT arxiv_id) AS papers,
                      count(*) FILTER (deleted) AS deleted, max(datestamp) AS latest_datestamp
               FROM raw_records GROUP BY source ORDER BY source"""
        ).fetchall()
        cols = ["source", "records", "papers", "deleted", "latest_datestamp"]
        harvest_cur = con.execute(
            """SELECT harvest_id, source, status, metadata_prefix, set_spec, from_date, until_date,
                      pages, records, deleted_records, complete_list_size, resumption_token,
                      last_response_date, started_at, finished_at, error
               FROM harvests ORDER BY started_at DESC LIMIT ?""",
            [recent_harvests],
        )
        hcols = [d[0] for d in harvest_cur.description]
        harvests = [dict(zip(hcols, row, strict=True)) for row in harvest_cur.fetchall()]
        return {
            "lake": {
                "catalog": config.lake.catalog_uri,
                "data_path": config.lake.data_uri,
                "schema_version": lake.schema_version(con),
            },
            "raw_records": [dict(zip(cols, row, strict=True)) for row in raw],
            "harvests": harvests,
        }
    finally:
        con.close()
