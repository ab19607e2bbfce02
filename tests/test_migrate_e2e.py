"""Legacy migration end to end: dbt sees the migrated data and the report; memory stays flat."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from papersys import lake
from papersys.config import Config
from papersys.migration import migrate_legacy
from tests import legacy_fixtures as lf
from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_dbt_sees_legacy_papers_invalid_vectors_and_the_report(config: Config, tmp_path: Path):
    from papersys.transform import run_build

    source = lf.build_shape_a(tmp_path / "legacy_a")
    migrate_legacy(config, str(source), model_specs=lf.A_MODELS)
    run_build(config)  # the whole project: papers, missing_embeddings, migration models, tests
    con = lake.connect(config)
    try:
        papers = {r[0] for r in con.execute("SELECT arxiv_id FROM papers").fetchall()}
        assert papers == lf.A_PAPERS
        missing = dict(
            con.execute(
                "SELECT arxiv_id, reason FROM missing_embeddings WHERE model = 'jasper_v1'"
            ).fetchall()
        )
        # Rejected vectors are 'invalid'; every stored legacy vector counts as fresh, because
        # the fixture's titles/abstracts are whitespace-normalized, as dbt hashes them.
        assert missing == dict.fromkeys(lf.A_JASPER_REJECTS, "invalid")
        conan = dict(
            con.execute(
                "SELECT arxiv_id, reason FROM missing_embeddings WHERE model = 'conan_v1'"
            ).fetchall()
        )
        assert conan == {"2401.00001": "invalid", "2301.00005": "absent"}
        report = {
            (r[0], r[1]): r[2:]
            for r in con.execute(
                """SELECT file, model, rows_read, papers_landed, vectors_stored,
                          vectors_rejected, nan, zero, wrong_dim, defects
                   FROM migration_report"""
            ).fetchall()
        }
        assert report[("2023.parquet", "jasper_v1")] == (9, 0, 5, 3, 1, 1, 1, 3)
        assert report[("2024.parquet", None)] == (4, 4, 0, 0, 0, 0, 0, 3)
        issues = con.execute(
            "SELECT kind, sum(rows) FROM migration_issues GROUP BY kind ORDER BY kind"
        ).fetchall()
        expected: dict[str, int] = {}
        for (_, _, kind), n in lf.A_EXPECTED_DEFECTS.items():
            expected[kind] = expected.get(kind, 0) + n
        assert dict(issues) == expected
    finally:
        con.close()


# Peak RSS of this process alone: VmHWM belongs to the process image (getrusage's ru_maxrss
# would include the parent's RSS at fork, kept across exec).
PEAK_CHILD = r"""
import json, sys
from papersys.config import load_config
from papersys.migration import migrate_legacy
result = migrate_legacy(load_config(), sys.argv[1], dry_run=True, batch_size=2048, model_specs=[
    "jasper_v1=NovaSearch/jasper_en_vision_language_v1:1024",
    "conan_v1=TencentBAC/Conan-embedding-v1:1792",
])
print(json.dumps({"rows": result.totals["rows"], "nan": sum(
    i.count for i in result.issues if i.kind == "nan"),
    "peak_mb": int(next(line.split()[1] for line in open("/proc/self/status")
                       if line.startswith("VmHWM:"))) / 1024}))
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_memory_is_flat_in_the_size_of_a_year(tmp_path: Path):
    """A year 4x larger (single row group, 1024-d + 1792-d) must not raise the peak by more
    than a fraction of its extra vectors: the file is streamed, never loaded."""
    peaks = {}
    for rows in (6_000, 24_000):
        folder = tmp_path / f"y{rows}"
        folder.mkdir()
        lf.big_shape_a(folder / "2024.parquet", rows, row_group=rows)
        proc = subprocess.run(
            [sys.executable, "-c", PEAK_CHILD, str(folder)],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env={**os.environ, "PAPERSYS_LAKE_ROOT": str(tmp_path / "lake")},
            check=True,
        )
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert out["rows"] == rows and out["nan"] == 2 * (rows // 3)
        peaks[rows] = out["peak_mb"]
    extra_vectors_mb = (24_000 - 6_000) * (1024 + 1792) * 4 / 2**20  # ~193 MB
    assert peaks[24_000] - peaks[6_000] < 0.5 * extra_vectors_mb, peaks
    assert peaks[24_000] < 2048, peaks


def test_wrapper_script_runs_migrate_legacy(tmp_path: Path):
    script = REPO_ROOT / "scripts" / "migrate_reference_embeddings.py"
    source = lf.build_shape_c(tmp_path / "legacy_c")
    models = [arg for spec in lf.C_MODELS for arg in ("--model", spec)]
    proc = subprocess.run(
        [sys.executable, str(script), str(source), "--dry-run", *models],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PAPERSYS_LAKE_ROOT": str(tmp_path / "lake")},
    )
    assert proc.returncode == 0, proc.stderr
    assert "dry run (nothing written)" in proc.stdout and "unknown_id" in proc.stdout
    assert not (tmp_path / "lake").exists()
