"""The migration report read back from the lake (what `papersys migrate report` prints)."""

from __future__ import annotations

import json

from papersys import lake
from papersys.config import Config
from papersys.errors import PapersysError
from papersys.migration.legacy import FileStats, IssueCount, MigrationResult, ModelTarget


def load_report(config: Config, run_id: str | None = None) -> MigrationResult:
    """The given run, else the latest completed one, with its files and defect counts."""
    con = lake.connect(config)
    try:
        if run_id is None:
            row = con.execute(
                """SELECT run_id FROM migration_runs WHERE status = 'completed'
                   ORDER BY started_at DESC LIMIT 1"""
            ).fetchone()
            if row is None:
                raise PapersysError(
                    "no completed legacy migration in the lake;"
                    " run `papersys migrate legacy SOURCE`"
                )
            run_id = row[0]
        run = con.execute(
            "SELECT source, shape, status, manifest, started_at, finished_at FROM migration_runs"
            " WHERE run_id = ?",
            [run_id],
        ).fetchone()
        if run is None:
            raise PapersysError(
                f"no migration run '{run_id}'; see `papersys migrate report --runs`"
            )
        source, shape, status, manifest_json, started_at, finished_at = run
        manifest = json.loads(manifest_json) if manifest_json else {}
        files = [
            FileStats(
                file=r[0],
                role=r[1],
                year=r[2],
                model=r[3],
                rows=r[4],
                papers_landed=r[5],
                vectors_stored=r[6],
                vectors_rejected=r[7],
                sha256=r[8] or "",
                bytes=r[9] or 0,
                vector_type=r[10],
            )
            for r in con.execute(
                """SELECT file, role, year, model, rows, papers_landed, vectors_stored,
                          vectors_rejected, sha256, bytes, vector_type
                   FROM migration_files WHERE run_id = ? ORDER BY rowid""",
                [run_id],
            ).fetchall()
        ]
        issues = [
            IssueCount(
                file=r[0], year=r[1], model=r[2], kind=r[3], count=int(r[4]), examples=r[5] or []
            )
            for r in con.execute(
                """SELECT file, year, model, kind, sum(rows),
                          list(arxiv_id ORDER BY arxiv_id) FILTER (arxiv_id IS NOT NULL)[1:5]
                   FROM migration_defects WHERE run_id = ?
                   GROUP BY ALL ORDER BY file, kind""",
                [run_id],
            ).fetchall()
        ]
        models = [
            ModelTarget(alias, m["name"], m["model_id"], m["dim"])
            for alias, m in manifest.get("models", {}).items()
        ]
        result = MigrationResult(
            source=source,
            shape=shape,
            dry_run=False,
            run_id=run_id,
            status=status,
            models=models,
            files=files,
            issues=issues,
            manifest=manifest,
        )
        if started_at and finished_at:
            result.elapsed_s = (finished_at - started_at).total_seconds()
        return result
    finally:
        con.close()


def list_runs(config: Config, limit: int = 20) -> list[dict[str, object]]:
    con = lake.connect(config)
    try:
        cur = con.execute(
            """SELECT run_id, source, shape, status, started_at, finished_at, error
               FROM migration_runs ORDER BY started_at DESC LIMIT ?""",
            [limit],
        )
        cols = [d[0] for d in cur.description]
        return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]
    finally:
        con.close()
