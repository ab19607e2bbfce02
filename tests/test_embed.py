"""embed-gaps: validation, batching, the runner on a contract-shaped gap view, leases, the
spawned worker protocol and the CLI. Encoding uses the packaged all-MiniLM-L6-v2, offline."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import duckdb
import numpy as np
import pytest
from lxml import etree
from typer.testing import CliRunner

from papersys import lake
from papersys.cli import app
from papersys.config import PACKAGED_MINILM, Config, EmbeddingModelConfig, load_config
from papersys.embedding import embed_gaps, store
from papersys.embedding.backends import (
    EncoderError,
    SentenceTransformerEncoder,
    plan_batches,
)
from papersys.embedding.models import packaged_minilm_path, resolve_model_source
from papersys.embedding.runner import InlineEncoder
from papersys.embedding.validation import validate_vectors
from papersys.embedding.worker import IsolatedEncoder
from papersys.errors import ConfigError, LakeError, UsageError

FIXTURE_XML = (
    Path(__file__).resolve().parent / "fixtures" / "operate" / "listrecords_6records_2015.xml"
)
RAW = "{http://arxiv.org/OAI/arXivRaw/}"


@functools.cache
def real_papers() -> list[tuple[str, str, str]]:
    """(arxiv_id, title, abstract) of the real arXivRaw records in the test fixtures."""
    tree = etree.parse(str(FIXTURE_XML))
    out = []
    for elem in tree.iter(f"{RAW}arXivRaw"):
        arxiv_id = elem.findtext(f"{RAW}id")
        title = " ".join((elem.findtext(f"{RAW}title") or "").split())
        abstract = " ".join((elem.findtext(f"{RAW}abstract") or "").split())
        out.append((arxiv_id, title, abstract))
    assert len(out) >= 5
    return out


def paper_texts(n: int, *, titles_only: bool = False) -> list[tuple[str, int, str]]:
    """n papers (id, year, text) built from the real abstracts, cycled with distinct ids."""
    base = real_papers()
    rows = []
    for i in range(n):
        _, title, abstract = base[i % len(base)]
        if titles_only:
            abstract = ""
        text = f"{title}. {abstract}" if i < len(base) else f"{title} (part {i}). {abstract}"
        rows.append((f"2401.{i:05d}", 2023 + i % 2, text))
    return rows


def create_gap_view(
    con: duckdb.DuckDBPyConnection, papers: list[tuple[str, int, str]], model: str = "minilm"
) -> None:
    """A test_papers table and a missing_embeddings view with exactly the contract's columns.

    Mirrors the dbt view's rules: absent = no vector, stale = a vector for other text,
    invalid = no vector and a rejected one on record.
    """

    def body() -> None:
        con.execute(
            "CREATE TABLE IF NOT EXISTS test_papers (arxiv_id VARCHAR, year INTEGER, text VARCHAR)"
        )
        con.execute("DELETE FROM test_papers")
        con.executemany("INSERT INTO test_papers VALUES (?, ?, ?)", [list(p) for p in papers])

    lake.run_transaction(con, body)
    lake.ensure_model_tables(con, load_config())
    table = lake.embeddings_table(model)
    con.execute(
        f"""CREATE OR REPLACE VIEW missing_embeddings AS
        SELECT '{model}'::VARCHAR AS model, p.arxiv_id, p.year, p.text,
               sha256(p.text) AS text_sha256,
               CASE WHEN p.arxiv_id IN (SELECT arxiv_id FROM {table}) THEN 'stale'
                    WHEN p.arxiv_id IN (SELECT arxiv_id FROM embedding_rejects
                                        WHERE model = '{model}') THEN 'invalid'
                    ELSE 'absent' END AS reason
        FROM test_papers p
        ANTI JOIN {table} e ON e.arxiv_id = p.arxiv_id AND e.text_sha256 = sha256(p.text)"""
    )


def set_text(con: duckdb.DuckDBPyConnection, arxiv_id: str, text: str) -> None:
    lake.run_transaction(
        con,
        lambda: con.execute("UPDATE test_papers SET text = ? WHERE arxiv_id = ?", [text, arxiv_id]),
    )


def fetch(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    return con.execute(sql, params or []).fetchall()


class SharedEncoder:
    """The session's MiniLM encoder; closing the run must not unload it for the next test."""

    def __init__(self, encoder: SentenceTransformerEncoder) -> None:
        self.inner = encoder
        self.info = encoder.info
        self.calls: list[list[str]] = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return self.inner.encode(texts)

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def minilm() -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(load_config(path=None).embedding.models["minilm"])


@pytest.fixture
def factory(minilm):
    """encoder_factory for embed_gaps that reuses the session's model (loading costs seconds)."""
    made: list[SharedEncoder] = []

    def make(model: EmbeddingModelConfig, isolate: bool) -> InlineEncoder:
        shared = SharedEncoder(minilm)
        made.append(shared)
        return InlineEncoder(shared)

    make.made = made
    return make


@pytest.fixture
def small_chunks(config: Config) -> Config:
    config.embedding.chunk_size = 4
    return config


# ---------------------------------------------------------------- validation and batching


def test_validate_vectors_names_every_bad_vector():
    good = np.ones(4, dtype=np.float32)
    vectors = [
        good,
        [1.0, float("nan"), 0.0, 1.0],
        [0.0] * 4,
        [1.0, 2.0],
        [1.0, float("inf"), 1, 1],
    ]
    problems = {p.index: p.problem for p in validate_vectors(vectors, 4)}
    assert problems == {1: "non_finite", 2: "zero", 3: "wrong_dim", 4: "non_finite"}
    assert validate_vectors(np.ones((3, 4), dtype=np.float32), 4) == []
    assert {p.problem for p in validate_vectors(np.ones((2, 5)), 4)} == {"wrong_dim"}


def test_plan_batches_respects_token_budget_longest_first():
    lengths = [10, 200, 50, 200, 7, 120, 64, 64, 3]
    batches = plan_batches(lengths, batch_size=64, token_budget=256)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= 256
    assert lengths[batches[0][0]] == 200
    # Without a budget, batches are cut by count.
    assert [len(b) for b in plan_batches(lengths, batch_size=4, token_budget=None)] == [4, 4, 1]


def test_default_model_resolves_to_packaged_copy(config: Config):
    model = config.embedding.models["minilm"]
    assert model.model == PACKAGED_MINILM
    packaged = packaged_minilm_path()
    assert packaged is not None and (packaged / "config.json").is_file()
    assert resolve_model_source(model) == str(packaged)
    missing = EmbeddingModelConfig(model="./no/such/model", dim=8)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_model_source(missing)


def test_encoder_matches_plain_sentence_transformers(minilm):
    from sentence_transformers import SentenceTransformer

    texts = [t for _, _, t in paper_texts(12)] + ["short", ""]
    ours = minilm.encode(texts)
    plain = SentenceTransformer(str(packaged_minilm_path()), device="cpu").encode(
        texts, normalize_embeddings=True
    )
    assert ours.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-4)
    assert float((ours * plain).sum(axis=1).min()) >= 0.999


# ---------------------------------------------------------------- runner


def test_fills_every_gap_then_has_nothing_left(con, small_chunks, factory):
    papers = paper_texts(10)
    create_gap_view(con, papers)
    progress: list[tuple[int, int]] = []
    [run] = embed_gaps(
        small_chunks,
        con=con,
        encoder_factory=factory,
        on_progress=lambda m, done, total: progress.append((done, total)),
    )
    assert (run.status, run.embedded, run.rejects, run.gaps) == ("done", 10, [], {"absent": 10})
    assert progress[0] == (0, 10) and progress[-1] == (10, 10)
    rows = fetch(
        con, "SELECT arxiv_id, embedding, text_sha256, model_id FROM embeddings_minilm ORDER BY 1"
    )
    assert [r[0] for r in rows] == [p[0] for p in papers]
    texts = {p[0]: p[2] for p in papers}
    import hashlib

    for arxiv_id, vector, sha, model_id in rows:
        assert len(vector) == 384 and all(map(np.isfinite, vector))
        assert sha == hashlib.sha256(texts[arxiv_id].encode()).hexdigest()
        assert model_id == PACKAGED_MINILM
    # Each chunk was encoded shortest text first (sorted by length within the chunk).
    for call in factory.made[0].calls:
        assert [len(t) for t in call] == sorted(len(t) for t in call)
    [again] = embed_gaps(small_chunks, con=con, encoder_factory=factory)
    assert (again.embedded, again.total_gaps) == (0, 0)
    assert fetch(con, "SELECT count(*) FROM embeddings_minilm") == [(10,)]


def test_stale_rows_are_replaced_not_duplicated(con, small_chunks, factory):
    create_gap_view(con, paper_texts(6))
    embed_gaps(small_chunks, con=con, encoder_factory=factory)
    before = dict(fetch(con, "SELECT arxiv_id, embedding FROM embeddings_minilm"))
    set_text(con, "2401.00002", "A completely different abstract about protein folding.")
    [run] = embed_gaps(small_chunks, con=con, encoder_factory=factory)
    assert (run.gaps, run.embedded, run.replaced) == ({"stale": 1}, 1, 1)
    after = dict(fetch(con, "SELECT arxiv_id, embedding FROM embeddings_minilm"))
    assert len(after) == 6 and fetch(con, "SELECT count(*) FROM embeddings_minilm") == [(6,)]
    assert after["2401.00002"] != before["2401.00002"]
    assert after["2401.00001"] == before["2401.00001"]


def test_limit_year_and_reason_filters(con, small_chunks, factory):
    create_gap_view(con, paper_texts(9))
    [run] = embed_gaps(small_chunks, con=con, encoder_factory=factory, year=2024)
    assert run.embedded == 4  # odd positions are 2024
    assert {
        r[0]
        for r in fetch(
            con, "SELECT DISTINCT year FROM test_papers t JOIN embeddings_minilm e USING (arxiv_id)"
        )
    } == {2024}
    [run] = embed_gaps(small_chunks, con=con, encoder_factory=factory, limit=3)
    assert (run.embedded, fetch(con, "SELECT count(*) FROM embeddings_minilm")) == (3, [(7,)])
    [run] = embed_gaps(small_chunks, con=con, encoder_factory=factory, reason="stale")
    assert run.embedded == 0
    [run] = embed_gaps(small_chunks, con=con, encoder_factory=factory, dry_run=True)
    assert (run.status, run.gaps, run.embedded) == ("dry_run", {"absent": 2}, 0)
    assert fetch(con, "SELECT count(*) FROM embeddings_minilm") == [(7,)]


class CorruptingEncoder(SharedEncoder):
    """Real vectors, except for the texts it is told to spoil (what a broken model emits)."""

    def __init__(self, encoder, spoil: dict[str, str]) -> None:
        super().__init__(encoder)
        self.spoil = spoil

    def encode(self, texts):
        vectors = list(self.inner.encode(texts))
        for i, text in enumerate(texts):
            kind = self.spoil.get(text)
            if kind == "nan":
                vectors[i] = vectors[i].copy()
                vectors[i][3] = np.nan
            elif kind == "zero":
                vectors[i] = np.zeros_like(vectors[i])
            elif kind == "short":
                vectors[i] = vectors[i][:100]
        return vectors


def test_bad_vectors_are_reported_and_never_stored(con, small_chunks, minilm):
    papers = paper_texts(8)
    create_gap_view(con, papers)
    spoil = {papers[1][2]: "nan", papers[4][2]: "zero", papers[6][2]: "short"}
    [run] = embed_gaps(
        small_chunks,
        con=con,
        encoder_factory=lambda m, i: InlineEncoder(CorruptingEncoder(minilm, spoil)),
    )
    rejected = {r.arxiv_id: r.problem for r in run.rejects}
    assert rejected == {"2401.00001": "non_finite", "2401.00004": "zero", "2401.00006": "wrong_dim"}
    assert run.embedded == 5
    stored = {r[0] for r in fetch(con, "SELECT arxiv_id FROM embeddings_minilm")}
    assert stored.isdisjoint(rejected) and len(stored) == 5
    recorded = fetch(
        con, "SELECT arxiv_id, problem, source, model FROM embedding_rejects ORDER BY 1"
    )
    assert recorded == [
        ("2401.00001", "non_finite", "embed", "minilm"),
        ("2401.00004", "zero", "embed", "minilm"),
        ("2401.00006", "wrong_dim", "embed", "minilm"),
    ]
    # They stay gaps (now 'invalid') and a healthy model fills them on the next run.
    [again] = embed_gaps(
        small_chunks, con=con, encoder_factory=lambda m, i: InlineEncoder(SharedEncoder(minilm))
    )
    assert again.gaps == {"invalid": 3} and again.embedded == 3


class FailingEncoder(SharedEncoder):
    def __init__(self, encoder, fail_on_call: int) -> None:
        super().__init__(encoder)
        self.fail_on_call = fail_on_call

    def encode(self, texts):
        if len(self.calls) + 1 == self.fail_on_call:
            raise RuntimeError("device lost")
        return super().encode(texts)


def test_failure_mid_run_keeps_whole_chunks_and_rerun_continues(con, small_chunks, minilm):
    create_gap_view(con, paper_texts(10))
    with pytest.raises(RuntimeError, match="device lost"):
        embed_gaps(
            small_chunks,
            con=con,
            encoder_factory=lambda m, i: InlineEncoder(FailingEncoder(minilm, 3)),
        )
    assert fetch(con, "SELECT count(*) FROM embeddings_minilm") == [(8,)]  # two whole chunks
    # The lease was released on the way out: the rerun is not blocked and only does the rest.
    assert fetch(con, "SELECT holder FROM embedding_leases WHERE model = 'minilm'") == [(None,)]
    [run] = embed_gaps(
        small_chunks, con=con, encoder_factory=lambda m, i: InlineEncoder(SharedEncoder(minilm))
    )
    assert (run.gaps, run.embedded) == ({"absent": 2}, 2)
    assert fetch(con, "SELECT count(*), count(DISTINCT arxiv_id) FROM embeddings_minilm") == [
        (10, 10)
    ]


def test_model_names_and_options_are_checked_before_any_sql(config: Config, monkeypatch):
    def no_lake(*a, **k):
        raise AssertionError("the lake must not be opened")

    monkeypatch.setattr(lake, "connect", no_lake)
    with pytest.raises(ConfigError, match="invalid model name"):
        embed_gaps(config, ["minilm; DROP TABLE papers"])
    with pytest.raises(ConfigError, match="unknown embedding model 'other'"):
        embed_gaps(config, ["other"])
    with pytest.raises(UsageError, match="--reason"):
        embed_gaps(config, reason="old")
    with pytest.raises(UsageError, match="--limit"):
        embed_gaps(config, limit=0)


def test_missing_view_is_a_clear_error(con, config):
    with pytest.raises(LakeError, match="papersys transform"):
        embed_gaps(config, con=con, encoder_factory=lambda m, i: pytest.fail("no encoding"))


# ---------------------------------------------------------------- leases


def test_live_lease_makes_a_second_run_busy(con, small_chunks, factory):
    create_gap_view(con, paper_texts(4))
    lease, holder = store.acquire_lease(con, "minilm")
    assert lease is not None and holder is None
    [run] = embed_gaps(small_chunks, con=con, encoder_factory=factory)
    assert run.status == "busy" and run.embedded == 0 and run.holder.pid == os.getpid()
    assert "pid" in run.holder.describe()
    assert not factory.made  # the model was never loaded
    store.release_lease(con, lease)
    [run] = embed_gaps(small_chunks, con=con, encoder_factory=factory)
    assert (run.status, run.embedded) == ("done", 4)


def test_expired_or_dead_holders_lose_the_lease(con):
    lease, _ = store.acquire_lease(con, "minilm", lease_seconds=0.01)
    import time

    time.sleep(0.05)
    taken, holder = store.acquire_lease(con, "minilm")
    assert taken is not None and holder is None and taken.holder != lease.holder
    # A holder on this host whose process is gone (kill -9) is dead at once, whatever the expiry.
    lake.run_transaction(
        con,
        lambda: con.execute(
            "UPDATE embedding_leases SET pid = 99999999, expires_at = now() + INTERVAL 1 HOUR"
        ),
    )
    again, holder = store.acquire_lease(con, "minilm")
    assert again is not None and holder is None


def test_a_run_whose_lease_was_taken_writes_nothing(con, small_chunks, minilm):
    create_gap_view(con, paper_texts(4))
    lake.ensure_model_tables(con, small_chunks)
    lease, _ = store.acquire_lease(con, "minilm", lease_seconds=0.01)
    import time

    time.sleep(0.05)
    thief, _ = store.acquire_lease(con, "minilm")
    assert thief is not None
    gaps = next(store.iter_gap_chunks(con, "minilm", chunk_size=4))
    vectors = minilm.encode([g.text for g in gaps])
    with pytest.raises(store.LeaseLost, match="rerun"):
        store.write_chunk(
            con,
            model="minilm",
            model_id=PACKAGED_MINILM,
            dim=384,
            gaps=gaps,
            vectors=vectors,
            problems=[],
            lease=lease,
        )
    assert fetch(con, "SELECT count(*) FROM embeddings_minilm") == [(0,)]


def test_rechecks_gaps_inside_the_write_transaction(con, small_chunks, minilm):
    """A chunk read before another writer filled it is not written twice."""
    create_gap_view(con, paper_texts(4))
    lake.ensure_model_tables(con, small_chunks)
    gaps = next(store.iter_gap_chunks(con, "minilm", chunk_size=4))
    vectors = minilm.encode([g.text for g in gaps])
    kwargs = dict(
        model="minilm",
        model_id=PACKAGED_MINILM,
        dim=384,
        gaps=gaps,
        vectors=vectors,
        problems=[],
        lease=None,
    )
    first = store.write_chunk(con, **kwargs)
    second = store.write_chunk(con, **kwargs)
    assert (first.embedded, second.embedded, second.skipped) == (4, 0, 4)
    assert fetch(con, "SELECT count(*) FROM embeddings_minilm") == [(4,)]


# ---------------------------------------------------------------- worker subprocess


@pytest.mark.slow
def test_isolated_worker_encodes_in_a_spawned_process(minilm):
    config = load_config().embedding.models["minilm"]
    texts = [t for _, _, t in paper_texts(6)]
    with IsolatedEncoder(config) as worker:
        assert worker.pid not in (None, os.getpid())
        assert worker.info.backend == "sentence_transformers"
        # Submissions may run ahead of results; answers come back in order.
        worker.submit(texts[:3])
        worker.submit(texts[3:])
        first, second = worker.receive(), worker.receive()
        process = worker._process
    assert not process.is_alive() and process.exitcode == 0  # stopped cleanly on close
    ours = np.vstack([first, second])
    local = minilm.encode(texts)
    assert float((ours * local).sum(axis=1).min()) >= 0.9999


@pytest.mark.slow
def test_worker_load_failure_is_one_clear_error():
    bad = EmbeddingModelConfig(model=str(Path(__file__).parent), dim=8)  # not a model
    with pytest.raises(EncoderError, match="embedding worker could not load") as info:
        IsolatedEncoder(bad)
    assert "\n" not in str(info.value)


def test_vllm_backend_is_only_imported_in_the_worker(con, config):
    """The vLLM path runs in the spawned worker; the parent never imports vllm (or CUDA)."""
    config.embedding.models["minilm"] = config.embedding.models["minilm"].model_copy(
        update={"backend": "vllm"}
    )
    create_gap_view(con, paper_texts(2))
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(EncoderError, match=r"pip install 'papersys\[vllm\]'"):
            embed_gaps(config, con=con)
    else:  # pragma: no cover - only where vLLM is installed (a GPU machine)
        pytest.skip("vLLM installed: the GPU test covers it")
    assert "vllm" not in sys.modules
    import torch

    assert not torch.cuda.is_initialized()


# ---------------------------------------------------------------- CLI


def test_cli_dry_run_run_and_errors(con, lake_root, config, monkeypatch):
    create_gap_view(con, paper_texts(5))
    con.close()
    runner = CliRunner(env={"COLUMNS": "200"})
    result = runner.invoke(app, ["embed-gaps", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "dry run" in result.output and "minilm" in result.output
    result = runner.invoke(app, ["embed-gaps", "--model", "minilm", "--limit", "3"])
    assert result.exit_code == 0, result.output
    assert "embedded" in result.output and "docs/s" in result.output
    check = lake.connect(config)
    assert fetch(check, "SELECT count(*) FROM embeddings_minilm") == [(3,)]
    check.close()
    bad = runner.invoke(app, ["embed-gaps", "--reason", "old"])
    assert bad.exit_code == 2 and "--reason" in bad.output
    bad = runner.invoke(app, ["embed-gaps", "--model", "Bad-Name"])
    assert bad.exit_code == 2 and "invalid model name" in bad.output
    assert "Traceback" not in bad.output


@pytest.mark.slow
def test_worker_error_and_ctrl_c_shut_the_worker_down_cleanly(con, small_chunks):
    create_gap_view(con, paper_texts(12, titles_only=True))
    workers: list[IsolatedEncoder] = []

    def isolated(model: EmbeddingModelConfig, isolate: bool) -> IsolatedEncoder:
        assert isolate
        workers.append(IsolatedEncoder(model))
        return workers[-1]

    def interrupt(model: str, done: int, total: int) -> None:
        if done >= 4:
            raise KeyboardInterrupt  # what Ctrl-C raises in the parent

    with pytest.raises(KeyboardInterrupt):
        embed_gaps(
            small_chunks, con=con, isolate=True, encoder_factory=isolated, on_progress=interrupt
        )
    [worker] = workers
    assert not worker._process.is_alive()
    assert fetch(con, "SELECT count(*) FROM embeddings_minilm") == [(4,)]  # the committed chunk
    assert fetch(con, "SELECT holder FROM embedding_leases") == [(None,)]

    # An encoding error in the worker comes back as one line; the worker is stopped.
    worker = IsolatedEncoder(small_chunks.embedding.models["minilm"])
    try:
        with pytest.raises(EncoderError, match="embedding worker failed") as info:
            worker.encode([None])  # not text: the model raises inside the worker
        assert "\n" not in str(info.value)
    finally:
        worker.close()
    assert not worker._process.is_alive()


@pytest.mark.gpu
def test_vllm_backend_on_a_gpu(con, small_chunks, minilm):
    """Where vLLM and a CUDA device exist: the whole run encodes in the spawned vLLM worker."""
    pytest.importorskip("vllm")
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    papers = paper_texts(40)
    create_gap_view(con, papers)
    small_chunks.embedding.models["minilm"] = small_chunks.embedding.models["minilm"].model_copy(
        update={"backend": "vllm", "device": "cuda"}
    )
    [run] = embed_gaps(small_chunks, con=con)
    assert (run.embedded, run.rejects, run.encoder.backend) == (40, [], "vllm")
    stored = dict(fetch(con, "SELECT arxiv_id, embedding FROM embeddings_minilm"))
    reference = minilm.encode([text for _, _, text in papers])
    ours = np.array([stored[arxiv_id] for arxiv_id, _, _ in papers], dtype=np.float32)
    assert float((ours * reference).sum(axis=1).min()) >= 0.99
