"""CPU embedding throughput: plain ``SentenceTransformer.encode`` vs papersys, same texts, same run.

    .venv/bin/python bench/embed.py [--n 2000] [--repeats 2] [--lake]

Texts are real arXiv abstracts (tests/fixtures/real/abstracts.jsonl, embedded as
"title\\nabstract" like the dbt view hands them out); when the file holds fewer than --n
papers they are cycled and the report says so. Prints docs/s for each, the ratio, the minimum
cosine between the two sets of vectors and peak RSS. ``--lake`` also times the whole
embed-gaps path (gap view -> encode -> validated transactional writes) on a temporary lake.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
ABSTRACTS = [
    REPO / "tests" / "fixtures" / "real" / "abstracts.jsonl",
    REPO.parent / "shared" / "fixtures" / "real" / "abstracts.jsonl",
]


def load_texts(n: int) -> tuple[list[str], int, Path]:
    for path in ABSTRACTS:
        if path.is_file():
            break
    else:
        sys.exit(f"no abstracts.jsonl found in {', '.join(map(str, ABSTRACTS))}")
    papers = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    texts = [f"{p.get('title') or ''}\n{p.get('abstract') or ''}" for p in papers]
    return [texts[i % len(texts)] for i in range(n)], len(texts), path


def peak_rss_mib() -> float:
    # ru_maxrss is KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(repeats: int, fn):
    best = float("inf")
    result = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def bench_lake(texts: list[str]) -> float:
    """docs/s of embed_gaps end to end (view read, encode, validate, one txn per chunk)."""
    from papersys import lake
    from papersys.config import load_config
    from papersys.embedding import embed_gaps

    with tempfile.TemporaryDirectory(prefix="papersys-bench-") as tmp:
        os.environ["PAPERSYS_LAKE_ROOT"] = str(Path(tmp) / "lake")
        config = load_config()
        con = lake.connect(config)
        lake.ensure_model_tables(con, config)
        con.execute("CREATE TABLE bench_papers (arxiv_id VARCHAR, year INTEGER, text VARCHAR)")
        con.executemany(
            "INSERT INTO bench_papers VALUES (?, 2024, ?)",
            [[f"2401.{i:05d}", t] for i, t in enumerate(texts)],
        )
        con.execute(
            """CREATE VIEW missing_embeddings AS
               SELECT 'minilm' AS model, p.arxiv_id, p.year, p.text,
                      sha256(p.text) AS text_sha256, 'absent' AS reason
               FROM bench_papers p ANTI JOIN embeddings_minilm e USING (arxiv_id)"""
        )
        [run] = embed_gaps(config, con=con)
        con.close()
        return run.docs_per_second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="texts to embed (default 2000)")
    parser.add_argument("--repeats", type=int, default=2, help="best of N timings (default 2)")
    parser.add_argument("--lake", action="store_true", help="also time embed-gaps end to end")
    parser.add_argument(
        "--budgets",
        default="",
        help="comma-separated extra token budgets to compare (e.g. 2048,4096,32768)",
    )
    args = parser.parse_args()

    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    from papersys.config import Config
    from papersys.embedding.backends import SentenceTransformerEncoder
    from papersys.embedding.models import packaged_minilm_path

    texts, unique, source = load_texts(args.n)
    cycled = f" (cycled from {unique} unique papers)" if unique < args.n else ""
    print(f"texts: {len(texts)} real abstracts from {source.relative_to(REPO.parent)}{cycled}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu {os.cpu_count()}")

    model_config = Config().embedding.models["minilm"]
    plain = SentenceTransformer(str(packaged_minilm_path()), device="cpu")
    ours = SentenceTransformerEncoder(model_config)
    fp32 = SentenceTransformerEncoder(model_config.model_copy(update={"dtype": "float32"}))
    # Warm up every path (first calls allocate and pick kernels).
    warm = texts[:64]
    plain.encode(warm, normalize_embeddings=True)
    ours.encode(warm)
    fp32.encode(warm)
    rss_before = peak_rss_mib()

    t_plain, v_plain = best_of(
        args.repeats, lambda: plain.encode(texts, batch_size=32, normalize_embeddings=True)
    )
    t_ours, v_ours = best_of(args.repeats, lambda: ours.encode(texts))
    t_fp32, v_fp32 = best_of(args.repeats, lambda: fp32.encode(texts))

    def min_cos(a: np.ndarray, b: np.ndarray) -> float:
        return float((a * b).sum(axis=1).min())

    n = len(texts)
    rows = [
        ("plain SentenceTransformer.encode (batch 32, fp32)", t_plain, None),
        (
            f"papersys {ours.info.dtype} (token budget {model_config.token_budget}, length-sorted)",
            t_ours,
            min_cos(v_plain, v_ours),
        ),
        (
            f"papersys float32 (token budget {model_config.token_budget})",
            t_fp32,
            min_cos(v_plain, v_fp32),
        ),
    ]
    print()
    print(f"{'pipeline':58} {'docs/s':>8} {'ratio':>6} {'min cos':>9}")
    for label, seconds, cos in rows:
        ratio = t_plain / seconds
        cos_text = f"{cos:.6f}" if cos is not None else "-"
        print(f"{label:58} {n / seconds:8.1f} {ratio:5.2f}x {cos_text:>9}")
    for budget in [int(b) for b in args.budgets.split(",") if b.strip()]:
        variant = SentenceTransformerEncoder(
            model_config.model_copy(update={"token_budget": budget})
        )
        variant.encode(warm)
        seconds, vectors = best_of(args.repeats, lambda v=variant: v.encode(texts))
        label = f"papersys {variant.info.dtype} (token budget {budget})"
        print(
            f"{label:58} {n / seconds:8.1f} {t_plain / seconds:5.2f}x "
            f"{min_cos(v_plain, vectors):9.6f}"
        )
    if args.lake:
        rate = bench_lake(texts)
        print(
            f"{'papersys embed-gaps end to end (lake read + write)':58} {rate:8.1f} "
            f"{rate / (n / t_plain):5.2f}x {'':>9}"
        )
    print()
    print(f"peak RSS: {peak_rss_mib():.0f} MiB (after loading + warm-up {rss_before:.0f} MiB)")
    goal_ratio = round(t_plain / t_ours, 2)
    goal_cos = min_cos(v_plain, v_ours)
    met = goal_ratio >= 1.3 and goal_cos >= 0.999
    print(
        f"goal >= 1.30x and min cosine >= 0.999: ratio {goal_ratio:.2f}x, cosine "
        f"{goal_cos:.6f} -> {'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
