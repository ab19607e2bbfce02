"""Generate N synthetic arXiv records into a lake's ``raw_records`` (for benchmarks).

The records look like arXivRaw OAI payloads of realistic size (~1.7 KB): new-style ids
(``0704.00001``) and about 5% old-style ids (``hep-th/9901001``), 1-4 versions with RFC-822 dates,
one to eight authors in arXivRaw's single string (with ", and", affiliations), 1-3 categories,
abstracts hard-wrapped like arXiv's, some DOIs and journal refs, XML entities. They are built
in DuckDB (vectorized, no Python loop) and landed through DuckLake in large transactions.

    python scripts/generate_raw_records.py --papers 3000000            # full load
    python scripts/generate_raw_records.py --papers 3000000 --changes 10000  # a daily increment
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from papersys import lake
from papersys.config import load_config

_WORDS = [
    "quantum",
    "field",
    "theory",
    "lattice",
    "gauge",
    "symmetry",
    "model",
    "neural",
    "network",
    "learning",
    "graph",
    "algorithm",
    "optimal",
    "bound",
    "convergence",
    "stochastic",
    "process",
    "spectral",
    "analysis",
    "dark",
    "matter",
    "galaxy",
    "cluster",
    "redshift",
    "survey",
    "black",
    "hole",
    "entropy",
    "string",
    "brane",
    "duality",
    "topological",
    "phase",
    "transition",
    "superconductivity",
    "magnetic",
    "spin",
    "chain",
    "entanglement",
    "measurement",
    "noise",
    "robust",
    "estimator",
    "regression",
    "kernel",
    "manifold",
    "curvature",
    "operator",
    "algebra",
    "category",
    "sheaf",
    "cohomology",
    "prime",
    "number",
    "conjecture",
    "proof",
    "we",
    "show",
    "that",
    "the",
    "of",
    "and",
    "a",
    "in",
    "for",
    "with",
    "on",
    "by",
]
_CATEGORIES = [
    "cs.LG",
    "cs.AI",
    "cs.CV",
    "cs.CL",
    "math.AG",
    "math.PR",
    "math.CO",
    "hep-th",
    "hep-ph",
    "astro-ph.CO",
    "astro-ph.GA",
    "cond-mat.str-el",
    "cond-mat.mes-hall",
    "quant-ph",
    "gr-qc",
    "stat.ML",
    "math.NA",
    "physics.optics",
    "nucl-th",
    "q-bio.NC",
    "econ.EM",
    "eess.SP",
]
_OLD_ARCHIVES = [
    "hep-th",
    "hep-ph",
    "hep-lat",
    "astro-ph",
    "cond-mat",
    "gr-qc",
    "quant-ph",
    "math",
    "nucl-th",
]
_NAMES = [
    "A. Smith",
    "B. Jones",
    "C. Müller",
    "D. Zhang",
    "E. García",
    "F. Rossi",
    "G. Ivanov",
    "H. Tanaka",
    "I. Kim",
    "J. Dubois",
    "K. Nowak",
    "L. Silva",
    "M. Chen",
    "N. Patel",
    "O. Hansen",
    "P. Costa",
    "Q. Li",
    "R. Cohen",
    "S. Yilmaz",
    "T. Nguyen",
]

# Pool sizes: texts are drawn from pools (with the paper's number mixed in, so every title is
# unique) because building 3M fresh abstracts word by word would dominate the generation time.
_POOL = 4096


def _setup_pools(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE OR REPLACE TEMP TABLE gen_words AS SELECT unnest(?) AS w", [_WORDS])
    con.execute(
        """CREATE OR REPLACE TEMP TABLE gen_pool AS
        SELECT i,
          (SELECT string_agg(w, ' ') FROM (
              SELECT w FROM gen_words ORDER BY hash(w, i, 't') LIMIT 9)) AS title,
          (SELECT string_agg(line, chr(10)) FROM (
              SELECT (SELECT string_agg(w, ' ') FROM (
                  SELECT w FROM gen_words ORDER BY hash(w, i, l) LIMIT 11)) AS line
              FROM range(12) r(l))) AS abstract
        FROM range(?) t(i)""",
        [_POOL],
    )


def _records_sql(first: int, count: int, datestamp_sql: str, version_bump: int) -> str:
    """SELECT of raw_records rows for papers first..first+count-1."""
    cats = "[" + ", ".join(f"'{c}'" for c in _CATEGORIES) + "]"
    archives = "[" + ", ".join(f"'{a}'" for a in _OLD_ARCHIVES) + "]"
    names = "[" + ", ".join(f"'{n}'" for n in _NAMES) + "]"
    return f"""
    WITH base AS (
      SELECT i,
        i % 20 = 0 AS old_style,
        -- new style: ~13,000 papers a month from 2007-04; old style 1991-2007.
        CASE WHEN i % 20 = 0
          THEN date '1991-08-01' + to_months(((i // 20) // 9 // 100) % 188)::INTERVAL
          ELSE date '2007-04-01' + to_months((i // 13000) % 225)::INTERVAL END AS month,
        (hash(i) >> 1)::BIGINT AS h
      FROM range({first}, {first + count}) t(i)
    ), ids AS (
      SELECT *,
        CASE WHEN old_style
          THEN {archives}[1 + (i // 20) % 9] || '/' || strftime(month, '%y%m')
               || lpad(((((i // 20) // 9) % 100) + 1)::VARCHAR, 3, '0')
          ELSE strftime(month, '%y%m') || '.' || lpad((i % 13000 + 1)::VARCHAR, 5, '0') END
          AS arxiv_id,
        month + to_days((h % 27)::INTEGER) + to_seconds((h % 86400)::INTEGER) AS v1,
        1 + (h >> 8) % 3 + {version_bump} AS versions,
        1 + (h >> 12) % 8 AS n_authors,
        1 + (h >> 16) % 3 AS n_cats
      FROM base
    ), payloads AS (
      SELECT ids.i, arxiv_id, v1, versions,
        '<arXivRaw xmlns="http://arxiv.org/OAI/arXivRaw/" '
        || 'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        || 'xsi:schemaLocation="http://arxiv.org/OAI/arXivRaw/ http://arxiv.org/OAI/arXivRaw.xsd">'
        || '<id>' || arxiv_id || '</id><submitter>' || {names}[1 + h % 20] || '</submitter>'
        || (SELECT string_agg('<version version="v' || (v + 1) || '"><date>'
              || strftime(v1 + to_days((v * 37)::INTEGER), '%a, %-d %b %Y %H:%M:%S GMT')
              || '</date><size>' || (100 + (h >> v) % 900) || 'kb</size>'
              || '<source_type>D</source_type></version>', '')
            FROM range(versions) r(v))
        || '<title>' || p.title || ' number ' || ids.i
        || CASE WHEN h % 10 = 0 THEN ' &amp; more' ELSE '' END || '</title>'
        || '<authors>' || array_to_string(list_transform(range(n_authors),
              k -> {names}[1 + (h + k * 7) % 20]
                   || CASE WHEN k = 0 AND h % 5 = 0 THEN ' (Univ. of Somewhere, Lab)' ELSE '' END
                   || CASE WHEN k = n_authors - 2 THEN ', and ' WHEN k < n_authors - 1 THEN ', '
                           ELSE '' END), '') || '</authors>'
        || '<categories>' || array_to_string(list_transform(range(n_cats),
              k -> {cats}[1 + (h + k * 5) % 22]), ' ') || '</categories>'
        || '<comments>' || (5 + h % 40) || ' pages, ' || (h % 12) || ' figures</comments>'
        || CASE WHEN h % 3 = 0 THEN '<journal-ref>Phys. Rev. D ' || (h % 110) || ', '
              || (h % 99999) || ' (' || year(v1) || ')</journal-ref>'
              || '<doi>10.1103/PhysRevD.' || (h % 110) || '.' || (h % 99999) || '</doi>'
           ELSE '' END
        || '<license>http://arxiv.org/licenses/nonexclusive-distrib/1.0/</license>'
        || '<abstract>  ' || p.abstract
        || CASE WHEN h % 10 = 1 THEN ' with &lt;x&gt; = ' ELSE ' with x = ' END || (h % 1000)
        || chr(10)
        || '</abstract></arXivRaw>' AS payload_xml
      FROM ids JOIN gen_pool p ON p.i = ids.h % {_POOL}
    )
    SELECT arxiv_id, {datestamp_sql} AS datestamp, ['physics'] AS set_specs, false AS deleted,
      'arXivRaw' AS metadata_prefix, payload_xml, 'oai' AS source,
      'synthetic' AS harvest_id, now() AS landed_at
    FROM payloads
    """


def generate(
    con: duckdb.DuckDBPyConnection,
    papers: int,
    *,
    first: int = 0,
    batch: int = 500_000,
    progress: bool = False,
) -> int:
    """Land ``papers`` synthetic records (papers first..first+papers-1); one txn per batch."""
    _setup_pools(con)
    done = 0
    while done < papers:
        count = min(batch, papers - done)
        sql = _records_sql(first + done, count, "(v1 + to_days(37 * (versions - 1)))::DATE", 0)
        lake.run_transaction(con, lambda sql=sql: con.execute(f"INSERT INTO raw_records {sql}"))
        done += count
        if progress:
            print(f"  landed {done:,}/{papers:,}", file=sys.stderr)
    return done


def generate_changes(
    con: duckdb.DuckDBPyConnection, papers: int, changes: int, *, deleted_share: float = 0.01
) -> int:
    """Land a daily increment: ``changes`` records for existing papers (a new version, a later
    datestamp, a few tombstones) spread over the whole id range, in one transaction."""
    _setup_pools(con)
    stride = max(1, papers // changes)
    picked = f"(SELECT * FROM range(0, {papers}, {stride}) LIMIT {changes})"
    sql = _records_sql(0, papers, "current_date", 1).replace(
        f"FROM range(0, {papers}) t(i)", f"FROM {picked} t(i)"
    )
    every = max(1, round(1 / deleted_share)) if deleted_share > 0 else 0

    def body() -> None:
        con.execute(f"INSERT INTO raw_records {sql}")
        if every:
            # Tombstones: the header says deleted, no payload.
            con.execute(
                f"""INSERT INTO raw_records
                SELECT arxiv_id, current_date + 1, set_specs, true, metadata_prefix, NULL,
                       source, harvest_id, landed_at
                FROM raw_records
                WHERE datestamp = current_date AND harvest_id = 'synthetic'
                  AND hash(arxiv_id) % {every} = 0"""
            )

    lake.run_transaction(con, body)
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, required=True, help="papers in the full load")
    parser.add_argument(
        "--changes", type=int, default=0, help="land a daily increment of this many instead"
    )
    parser.add_argument("--config", default=None, help="papersys config (lake location)")
    args = parser.parse_args()
    con = lake.connect(load_config(args.config))
    start = time.perf_counter()
    if args.changes:
        generate_changes(con, args.papers, args.changes)
        what = f"{args.changes:,} changed records"
    else:
        generate(con, args.papers, progress=True)
        what = f"{args.papers:,} records"
    print(f"landed {what} in {time.perf_counter() - start:.1f}s")


if __name__ == "__main__":
    main()
