"""Benchmark the dbt transform: full build, a daily increment, the gap query, peak memory.

    python bench/transform.py --papers 3000000             # goals: full <= 60 s, 10k <= 10 s,
    python bench/transform.py --papers 300000 --reuse      # gap query <= 1 s

Each stage runs in its own process so its peak RSS is its own (os.wait4). Baselines measured
in the same run: a plain scan of every payload (the floor any build pays to read the raw data)
and, on a sample, three ways to parse payloads: the SQL macros the models use (split_part
per element), one regular expression per element, and lxml in Python (the dbt Python model
alternative).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

SAMPLE = 20_000


def _config(lake_root: Path) -> Any:
    os.environ["PAPERSYS_LAKE_ROOT"] = str(lake_root)
    from papersys.config import load_config

    return load_config()


def stage_generate(lake_root: Path, papers: int) -> dict[str, Any]:
    from generate_raw_records import generate

    from papersys import lake

    con = lake.connect(_config(lake_root))
    start = time.perf_counter()
    generate(con, papers)
    return {"seconds": time.perf_counter() - start}


def stage_changes(lake_root: Path, papers: int, changes: int) -> dict[str, Any]:
    from generate_raw_records import generate_changes

    from papersys import lake

    con = lake.connect(_config(lake_root))
    start = time.perf_counter()
    generate_changes(con, papers, changes)
    return {"seconds": time.perf_counter() - start}


def stage_build(lake_root: Path, full_refresh: bool) -> dict[str, Any]:
    from papersys.transform import run_build

    result = run_build(_config(lake_root), full_refresh=full_refresh)
    by_name = {n.name: n.seconds for n in result.nodes}
    tests = sum(n.seconds for n in result.nodes if n.resource_type in {"test", "unit_test"})
    return {"seconds": result.seconds, "papers_model": by_name.get("papers"), "tests": tests}


def _best(con: Any, sql: str, params: list[Any], repeat: int = 3) -> tuple[float, Any]:
    best = float("inf")
    out = None
    for _ in range(repeat):
        start = time.perf_counter()
        out = con.execute(sql, params).fetchall()
        best = min(best, time.perf_counter() - start)
    return best, out


def stage_queries(lake_root: Path) -> dict[str, Any]:
    from papersys import lake
    from papersys.dbt_plugin import register_functions

    con = lake.connect(_config(lake_root))
    register_functions(con)
    papers = con.execute("SELECT count(*) FROM papers").fetchall()[0][0]
    gap_count, rows = _best(
        con,
        "SELECT reason, count(*) FROM missing_embeddings WHERE model = ? GROUP BY reason",
        ["minilm"],
    )
    gap_page, page = _best(
        con,
        "SELECT arxiv_id, text, text_sha256 FROM missing_embeddings WHERE model = ? "
        "ORDER BY arxiv_id LIMIT 2048",
        ["minilm"],
    )
    scan, _ = _best(con, "SELECT sum(length(payload_xml)) FROM raw_records", [], repeat=1)
    # Parse strategies on a sample of payloads.
    con.execute(
        f"CREATE TEMP TABLE sample AS SELECT * FROM raw_records WHERE NOT deleted LIMIT {SAMPLE}"
    )
    # The models' own SQL (compiled by dbt) applied to the sample only.
    compiled = ROOT / "dbt_project/target/compiled/papersys/models/staging/int_arxiv_records.sql"
    parse_sql = compiled.read_text().replace('"lake"."main"."int_latest_records"', "sample_rows")
    con.execute(
        "CREATE TEMP TABLE sample_rows AS SELECT rowid AS raw_row_id, arxiv_id, datestamp, "
        "deleted, metadata_prefix, payload_xml, landed_at FROM raw_records "
        f"WHERE NOT deleted LIMIT {SAMPLE}"
    )
    start = time.perf_counter()
    con.execute(f"CREATE TEMP TABLE parsed_sql AS {parse_sql}")
    sql_seconds = time.perf_counter() - start
    fields = [
        "title",
        "abstract",
        "authors",
        "categories",
        "doi",
        "journal-ref",
        "comments",
        "license",
    ]
    regexp_cols = ", ".join(
        f"regexp_extract(payload_xml, '<{f}>([^<]*)</{f}>', 1) AS f{i}"
        for i, f in enumerate(fields)
    )
    start = time.perf_counter()
    con.execute(f"CREATE TEMP TABLE parsed_regexp AS SELECT {regexp_cols} FROM sample")
    regexp_extract_seconds = time.perf_counter() - start
    split_cols = ", ".join(
        f"split_part(split_part(payload_xml, '<{f}>', 2), '</{f}>', 1) AS f{i}"
        for i, f in enumerate(fields)
    )
    start = time.perf_counter()
    con.execute(f"CREATE TEMP TABLE parsed_split AS SELECT {split_cols} FROM sample")
    split_extract_seconds = time.perf_counter() - start
    payloads = [r[0] for r in con.execute("SELECT payload_xml FROM sample").fetchall()]
    from lxml import etree

    start = time.perf_counter()
    for payload in payloads:
        root = etree.fromstring(payload.encode("utf-8"))
        values = {child.tag.rsplit("}", 1)[-1]: child.text for child in root}
        " ".join((values.get("abstract") or "").split())
    lxml_seconds = time.perf_counter() - start
    return {
        "papers": papers,
        "gap_count_seconds": gap_count,
        "gaps": dict(rows or []),
        "gap_page_seconds": gap_page,
        "gap_page_rows": len(page or []),
        "raw_scan_seconds": scan,
        "sample": len(payloads),
        "parse_sql_seconds": sql_seconds,
        "extract_split_part_seconds": split_extract_seconds,
        "extract_regexp_seconds": regexp_extract_seconds,
        "parse_lxml_seconds": lxml_seconds,
    }


def run_stage(args: list[str]) -> tuple[dict[str, Any], float]:
    """Run this script with --stage ...; return its JSON result and its peak RSS in MiB."""
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"stage {args} failed with exit code {proc.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    return result, usage.ru_maxrss / 1024  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=300_000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--lake", type=Path, default=ROOT / ".bench" / "transform-lake")
    parser.add_argument("--reuse", action="store_true", help="keep an already generated lake")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    args = parser.parse_args()
    lake_root = args.lake.resolve()

    if args.stage:
        if args.stage == "generate":
            out = stage_generate(lake_root, args.papers)
        elif args.stage == "changes":
            out = stage_changes(lake_root, args.papers, args.changes)
        elif args.stage == "full":
            out = stage_build(lake_root, full_refresh=True)
        elif args.stage == "incremental":
            out = stage_build(lake_root, full_refresh=False)
        else:
            out = stage_queries(lake_root)
        print(json.dumps(out))
        return

    common = [
        "--papers",
        str(args.papers),
        "--changes",
        str(args.changes),
        "--lake",
        str(lake_root),
    ]
    print(
        f"transform benchmark: {args.papers:,} papers, {args.changes:,} changed, lake {lake_root}"
    )
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    if not (args.reuse and (lake_root / "catalog.sqlite").exists()):
        if lake_root.exists():
            import shutil

            shutil.rmtree(lake_root)
        gen, gen_rss = run_stage(["--stage", "generate", *common])
        print(
            f"generate {args.papers:,} raw records: {gen['seconds']:.1f}s (peak {gen_rss:.0f} MiB)"
        )
    full, full_rss = run_stage(["--stage", "full", *common])
    changes, _ = run_stage(["--stage", "changes", *common])
    incr, incr_rss = run_stage(["--stage", "incremental", *common])
    q, q_rss = run_stage(["--stage", "queries", *common])

    n, sample = q["papers"], q["sample"]

    def row(label: str, seconds: float, goal: str = "", rss: float | None = None) -> None:
        memory = f"{rss:8.0f} MiB" if rss is not None else ""
        print(f"{label:40s} {seconds:9.2f} {goal:>6s} {memory:>12s}")

    print()
    print(f"{'stage':40s} {'seconds':>9s} {'goal':>6s} {'peak RSS':>12s}")
    row("full build: papers model", full["papers_model"], "", full_rss)
    row("full build: dbt build, all nodes+tests", full["seconds"], "60")
    row(f"land {args.changes:,} changed records", changes["seconds"])
    row("incremental: papers model", incr["papers_model"], "", incr_rss)
    row("incremental: dbt build, all nodes+tests", incr["seconds"], "10")
    row("gap query, one model (count by reason)", q["gap_count_seconds"], "1", q_rss)
    row("gap query, first 2048-row page", q["gap_page_seconds"])
    print()
    print(f"papers: {n:,}; gaps for minilm: {q['gaps']}")
    print("baselines (same run):")
    scan = q["raw_scan_seconds"]
    ratio = full["papers_model"] / scan
    print(f"  plain scan of every payload: {scan:.2f}s; full papers build = {ratio:.1f}x that")
    print(f"  full papers build: {n / full['papers_model']:,.0f} papers/s")
    share = incr["papers_model"] / full["papers_model"]
    print(f"  incremental papers model: {share:.1%} of the full one")
    sql_rate = sample / q["parse_sql_seconds"]
    lxml_rate = sample / q["parse_lxml_seconds"]
    print(f"  parse {sample:,} payloads, all fields, the models' SQL: {sql_rate:,.0f}/s")
    print(
        f"  lxml in Python, element texts only (dbt Python model route): {lxml_rate:,.0f}/s "
        f"(SQL/lxml = {sql_rate / lxml_rate:.2f})"
    )
    split_s, regexp_s = q["extract_split_part_seconds"], q["extract_regexp_seconds"]
    print(
        f"  extract 8 elements: split_part {split_s:.2f}s, regexp_extract {regexp_s:.2f}s "
        f"({regexp_s / split_s:.1f}x slower)"
    )


if __name__ == "__main__":
    main()
