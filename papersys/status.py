"""What is in the lake: plain data for `papersys status` (the CLI renders it)."""

from __future__ import annotations

from typing import Any

import duckdb

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
                **_lake_size(con),
            },
            "raw_records": [dict(zip(cols, row, strict=True)) for row in raw],
            "harvests": harvests,
            "coverage": _coverage(con),
            "jobs": _jobs(con),
        }
    finally:
        con.close()


def _lake_size(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    files, data_bytes = con.execute(
        """SELECT coalesce(sum(file_count + delete_file_count), 0),
                  coalesce(sum(file_size_bytes + delete_file_size_bytes), 0)
           FROM ducklake_table_info('lake')"""
    ).fetchone() or (0, 0)
    snapshots, current = con.execute(
        "SELECT count(*), max(snapshot_id) FROM ducklake_snapshots('lake')"
    ).fetchone() or (0, None)
    return {
        "data_files": int(files),
        "data_bytes": int(data_bytes),
        "snapshots": int(snapshots),
        "current_snapshot": current,
    }


def _coverage(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Embedding coverage per model x year (the dbt view), once `papersys transform` ran."""
    if not lake.table_exists(con, "embedding_coverage"):
        return []
    cur = con.execute(
        """SELECT model, year, papers, embedded, missing,
                  round(100.0 * embedded / nullif(papers, 0), 1) AS percent
           FROM lake.embedding_coverage ORDER BY model, year"""
    )
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def _jobs(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Each job's last attempt (from job_runs) and who holds it now (job_leases)."""
    from papersys.scheduler import last_runs, read_leases

    runs = {r["job"]: r for r in last_runs(con)}
    leases = (
        {lease.job: lease for lease in read_leases(con)}
        if lake.table_exists(con, "job_leases")
        else {}
    )
    jobs = []
    for name in sorted(set(runs) | {n for n, lease in leases.items() if lease.holder}):
        row = dict(runs.get(name, {"job": name}))
        lease = leases.get(name)
        row["running_on"] = lease.holder if lease and lease.holder else None
        jobs.append(row)
    return jobs
