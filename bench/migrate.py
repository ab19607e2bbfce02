"""Peak memory and speed of `papersys migrate legacy` on a realistic legacy year.

Builds a shape-A year file (default 300,000 papers with 1024-d and 1792-d float32 vectors, a
third of them NaN, row groups of 50,000 rows: 3.4 GB of vectors), then measures, each in a
fresh process so that peak RSS belongs to that phase alone:

  baseline   the legacy way: pq.read_table() of the whole file, vectors to numpy
  dry run    papersys migrate legacy --dry-run (read + validate, no writes)
  migrate    papersys migrate legacy into an empty lake (DuckLake writes included)

and prints seconds, rows/s, peak RSS, and the ratio of each peak to the baseline's.
Goal: peak RSS < 2 GB for the migration.

    .venv/bin/python bench/migrate.py                 # 300k rows
    .venv/bin/python bench/migrate.py --rows 50000    # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Peak RSS from VmHWM: getrusage's ru_maxrss would include the parent's RSS at fork.
CHILD = r"""
import json, sys, time
mode, path, lake_root, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
started = time.perf_counter()
rows = 0
if mode == "baseline":
    import numpy as np
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    vectors = [
        np.asarray(table.column(c).combine_chunks().flatten().to_numpy(zero_copy_only=False))
        for c in ("jasper_v1", "conan_v1")
    ]
    rows = table.num_rows
else:
    import os
    os.environ["PAPERSYS_LAKE_ROOT"] = lake_root
    from papersys.config import load_config
    from papersys.migration import migrate_legacy
    result = migrate_legacy(
        load_config(),
        str(__import__("pathlib").Path(path).parent),
        dry_run=(mode == "dry-run"),
        model_specs=[
            "jasper_v1=NovaSearch/jasper_en_vision_language_v1:1024",
            "conan_v1=TencentBAC/Conan-embedding-v1:1792",
        ],
        batch_size=batch,
    )
    rows = result.totals["rows"]
    extra = result.totals
seconds = time.perf_counter() - started
with open("/proc/self/status") as status:
    peak_mb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
out = {"seconds": seconds, "rows": rows, "peak_mb": peak_mb}
if mode != "baseline":
    out.update(extra)
print(json.dumps(out))
"""


def run_child(mode: str, path: Path, lake_root: Path, batch: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), str(lake_root), str(batch)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["killed"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--row-group", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--no-baseline", action="store_true", help="skip the whole-file load")
    parser.add_argument(
        "--dir", type=Path, default=None, help="work folder, kept (default: a temp dir, removed)"
    )
    args = parser.parse_args()

    if args.dir is None:
        with tempfile.TemporaryDirectory(prefix="papersys-bench-migrate-") as tmp:
            run(args, Path(tmp))
    else:
        run(args, args.dir)
        print(f"(work folder {args.dir} kept; delete it when done)")


def run(args: argparse.Namespace, work: Path) -> None:
    """Build the year file under ``work``, then measure each phase in its own process."""
    sys.path.insert(0, str(REPO))
    from tests.legacy_fixtures import big_shape_a

    source = work / "source"
    source.mkdir(parents=True, exist_ok=True)
    path = source / "2024.parquet"
    started = time.perf_counter()
    big_shape_a(path, args.rows, row_group=args.row_group)
    size_gb = path.stat().st_size / 1e9
    vectors_gb = args.rows * (1024 + 1792) * 4 / 1e9
    print(
        f"built {path} in {time.perf_counter() - started:.0f} s: {args.rows:,} rows, "
        f"{size_gb:.2f} GB on disk, {vectors_gb:.2f} GB of float32 vectors, "
        f"row groups of {args.row_group:,}"
    )
    results: dict[str, dict] = {}
    phases = ["dry-run", "migrate"] if args.no_baseline else ["baseline", "dry-run", "migrate"]
    for mode in phases:
        results[mode] = run_child(mode, path, work / f"lake-{mode}", args.batch_size)
    base = results.get("baseline", {}).get("peak_mb")
    print(f"\n{'phase':<10} {'seconds':>8} {'rows/s':>10} {'peak RSS MB':>12} {'vs baseline':>12}")
    for mode, r in results.items():
        if "error" in r:
            print(f"{mode:<10} failed: {r['error']}")
            continue
        ratio = f"{r['peak_mb'] / base:.2f}x" if base else "-"
        rate = r["rows"] / r["seconds"] if r["seconds"] else 0
        print(f"{mode:<10} {r['seconds']:>8.1f} {rate:>10,.0f} {r['peak_mb']:>12,.0f} {ratio:>12}")
    migrate = results.get("migrate", {})
    if "vectors_stored" in migrate:
        print(
            f"\nmigrate: {migrate['papers_landed']:,} papers, "
            f"{migrate['vectors_stored']:,} vectors stored, "
            f"{migrate['vectors_rejected']:,} rejected, {migrate['defects']:,} defects"
        )
    peak = migrate.get("peak_mb")
    if peak:
        verdict = "OK" if peak < 2048 else "OVER"
        print(f"goal: migrate peak RSS < 2048 MB: {peak:,.0f} MB {verdict}")


if __name__ == "__main__":
    main()
