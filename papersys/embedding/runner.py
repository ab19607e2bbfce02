"""embed-gaps: fill every gap in ``missing_embeddings`` for the chosen models.

Per model: take the model's lease, load the encoder (in-process, or in ONE spawned worker
for vLLM or ``isolate=True``), then stream chunks of gaps: sort each chunk by text length,
encode, validate every vector, write the chunk in one transaction. While the worker encodes
chunk k+1 the parent writes chunk k. Killing the run at any point loses at most the chunks
not yet committed; a rerun picks up exactly what is still missing.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import duckdb
import numpy as np

from papersys import lake
from papersys.config import Config, EmbeddingModelConfig, check_model_name
from papersys.embedding.backends import Encoder, EncoderInfo, build_encoder
from papersys.embedding.store import (
    DEFAULT_LEASE_SECONDS,
    REASONS,
    Gap,
    LeaseHolder,
    Reject,
    acquire_lease,
    count_gaps,
    iter_gap_chunks,
    release_lease,
    renew_lease,
    require_gaps_view,
    write_chunk,
)
from papersys.embedding.validation import validate_vectors
from papersys.embedding.worker import IsolatedEncoder
from papersys.errors import UsageError

log = logging.getLogger(__name__)


@dataclass
class ModelRun:
    """What one model's run did; ``status`` is done, dry_run or busy."""

    model: str
    model_id: str
    status: str = "done"
    gaps: dict[str, int] = field(default_factory=dict)
    embedded: int = 0
    replaced: int = 0
    skipped: int = 0
    rejects: list[Reject] = field(default_factory=list)
    seconds: float = 0.0
    encoder: EncoderInfo | None = None
    holder: LeaseHolder | None = None

    @property
    def total_gaps(self) -> int:
        return sum(self.gaps.values())

    @property
    def processed(self) -> int:
        return self.embedded + self.skipped + len(self.rejects)

    @property
    def docs_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds > 0 else 0.0


class ProgressCallback(Protocol):
    def __call__(self, model: str, done: int, total: int) -> None: ...


class _ChunkEncoder(Protocol):
    info: EncoderInfo

    def submit(self, texts: Sequence[str]) -> int: ...
    def receive(self) -> np.ndarray | list[np.ndarray]: ...
    def close(self) -> None: ...


class InlineEncoder:
    """Runs an in-process encoder behind the worker's submit/receive interface."""

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder
        self.info = encoder.info
        self._queue: deque[Sequence[str]] = deque()

    def submit(self, texts: Sequence[str]) -> int:
        self._queue.append(texts)
        return len(self._queue)

    def receive(self) -> np.ndarray | list[np.ndarray]:
        return self._encoder.encode(self._queue.popleft())

    def close(self) -> None:
        self._encoder.close()


EncoderFactory = Callable[[EmbeddingModelConfig, bool], _ChunkEncoder]


def default_encoder_factory(model: EmbeddingModelConfig, isolate: bool) -> _ChunkEncoder:
    if isolate:
        return IsolatedEncoder(model)
    return InlineEncoder(build_encoder(model))


def check_options(limit: int | None, reason: str | None) -> None:
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be at least 1 (got {limit})")
    if reason is not None and reason not in REASONS:
        raise UsageError(f"--reason must be one of {', '.join(REASONS)} (got '{reason}')")


def embed_gaps(
    config: Config,
    models: Sequence[str] | None = None,
    *,
    limit: int | None = None,
    year: int | None = None,
    reason: str | None = None,
    dry_run: bool = False,
    isolate: bool | None = None,
    on_progress: ProgressCallback | None = None,
    on_model_start: Callable[[ModelRun], None] | None = None,
    encoder_factory: EncoderFactory = default_encoder_factory,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
    con: duckdb.DuckDBPyConnection | None = None,
) -> list[ModelRun]:
    """Fill the gaps of each model (all configured models by default); one ModelRun each.

    ``limit`` caps the papers per model; ``isolate`` runs the encoder in a spawned worker
    (always for vLLM). A model whose lease another run holds is skipped as ``busy``.
    """
    names = list(models) if models else list(config.embedding.models)
    for name in names:
        check_model_name(name)  # before any SQL sees it
        config.model_config_for(name)
    check_options(limit, reason)
    own = con is None
    connection = lake.connect(config) if con is None else con
    try:
        lake.ensure_model_tables(connection, config)
        require_gaps_view(connection)
        return [
            _run_model(
                connection,
                config,
                name,
                limit=limit,
                year=year,
                reason=reason,
                dry_run=dry_run,
                isolate=isolate,
                on_progress=on_progress,
                on_model_start=on_model_start,
                encoder_factory=encoder_factory,
                lease_seconds=lease_seconds,
            )
            for name in names
        ]
    finally:
        if own:
            connection.close()


def _run_model(
    con: duckdb.DuckDBPyConnection,
    config: Config,
    name: str,
    *,
    limit: int | None,
    year: int | None,
    reason: str | None,
    dry_run: bool,
    isolate: bool | None,
    on_progress: ProgressCallback | None,
    on_model_start: Callable[[ModelRun], None] | None,
    encoder_factory: EncoderFactory,
    lease_seconds: float,
) -> ModelRun:
    model = config.model_config_for(name)
    run = ModelRun(name, model.model)
    run.gaps = count_gaps(con, name, year=year, reason=reason)
    total = min(run.total_gaps, limit) if limit is not None else run.total_gaps
    if dry_run:
        run.status = "dry_run"
        return run
    lease, holder = acquire_lease(con, name, lease_seconds=lease_seconds)
    if lease is None:
        run.status = "busy"
        run.holder = holder
        return run
    started = time.perf_counter()
    encoder: _ChunkEncoder | None = None
    try:
        if on_model_start is not None:
            on_model_start(run)
        if total == 0:
            return run
        encoder = encoder_factory(model, model.backend == "vllm" if isolate is None else isolate)
        run.encoder = encoder.info
        renew_lease(con, lease, lease_seconds=lease_seconds)  # loading may take minutes
        started = time.perf_counter()
        # A worker process can encode the next chunk while this one is written.
        depth = 1 if isinstance(encoder, InlineEncoder) else 2
        chunks = iter_gap_chunks(
            con,
            name,
            chunk_size=config.embedding.chunk_size,
            year=year,
            reason=reason,
            limit=limit,
        )
        in_flight: deque[list[Gap]] = deque()

        def feed() -> None:
            chunk = next(chunks, None)
            if chunk:
                chunk.sort(key=lambda g: len(g.text))
                encoder.submit([g.text for g in chunk])
                in_flight.append(chunk)

        for _ in range(depth):
            feed()
        done = 0
        if on_progress is not None:
            on_progress(name, 0, total)
        while in_flight:
            chunk = in_flight.popleft()
            vectors = encoder.receive()
            feed()
            problems = validate_vectors(vectors, model.dim)
            for p in problems:
                log.warning("model %s: rejected %s: %s", name, chunk[p.index].arxiv_id, p.detail)
            written = write_chunk(
                con,
                model=name,
                model_id=model.model,
                dim=model.dim,
                gaps=chunk,
                vectors=vectors,
                problems=problems,
                lease=lease,
                lease_seconds=lease_seconds,
            )
            run.embedded += written.embedded
            run.replaced += written.replaced
            run.skipped += written.skipped
            run.rejects.extend(written.rejects)
            done += len(chunk)
            if on_progress is not None:
                on_progress(name, done, max(total, done))
        return run
    finally:
        run.seconds = time.perf_counter() - started
        if encoder is not None:
            encoder.close()
        try:
            release_lease(con, lease)
        except duckdb.Error as exc:  # it expires on its own; never mask the real outcome
            log.warning("model %s: could not release the lease: %s", name, exc)
