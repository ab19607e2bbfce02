"""Lake side of embed-gaps: read gaps in chunks, write each chunk in one transaction, lease.

* Gaps come from the ``missing_embeddings`` view with keyset pagination on ``arxiv_id``
  (one bounded query per chunk, no transaction held open), so memory stays flat however
  many gaps there are.
* A chunk is written in ONE transaction: renew the model's lease (a run that lost it writes
  nothing), re-check which gaps are still gaps, delete the stale rows being replaced,
  insert the valid vectors, record the rejected ones in ``embedding_rejects``.
* The lease (``embedding_leases``) makes concurrent runs for one model safe: taking it is an
  UPDATE of the model's row, so two takers conflict at commit and only one wins. A lease
  expires after ``lease_seconds`` without renewal, at once if its holder was a process on
  this host that no longer exists (kill -9, then rerun: it continues).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from papersys import lake
from papersys.embedding.validation import Problem
from papersys.errors import LakeError, PapersysError

GAPS_VIEW = "missing_embeddings"
REASONS = ("absent", "stale", "invalid")
DEFAULT_LEASE_SECONDS = 900.0
UTC = dt.UTC


class LeaseLost(PapersysError):
    """Another run took this model's lease (ours had expired): stop writing."""


@dataclass(frozen=True)
class Gap:
    arxiv_id: str
    year: int | None
    text: str
    text_sha256: str
    reason: str


@dataclass(frozen=True)
class Lease:
    model: str
    holder: str
    host: str
    pid: int


@dataclass(frozen=True)
class LeaseHolder:
    model: str
    holder: str
    host: str | None
    pid: int | None
    acquired_at: dt.datetime | None
    expires_at: dt.datetime | None

    def describe(self) -> str:
        until = self.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC") if self.expires_at else "?"
        return f"pid {self.pid} on {self.host}, lease until {until}"


@dataclass(frozen=True)
class Reject:
    arxiv_id: str
    text_sha256: str
    problem: str
    detail: str


@dataclass(frozen=True)
class ChunkWrite:
    embedded: int
    replaced: int
    skipped: int
    rejects: list[Reject]


def require_gaps_view(con: duckdb.DuckDBPyConnection) -> None:
    if not lake.table_exists(con, GAPS_VIEW):
        raise LakeError(
            f"the lake has no {GAPS_VIEW} view yet; run `papersys transform` (dbt build) first"
        )


def _filters(
    model: str, year: int | None, reason: str | None, after: str | None = None
) -> tuple[str, list[object]]:
    clauses = ["model = ?"]
    params: list[object] = [model]
    if year is not None:
        clauses.append("year = ?")
        params.append(year)
    if reason is not None:
        clauses.append("reason = ?")
        params.append(reason)
    if after is not None:
        clauses.append("arxiv_id > ?")
        params.append(after)
    return " AND ".join(clauses), params


def count_gaps(
    con: duckdb.DuckDBPyConnection, model: str, *, year: int | None, reason: str | None
) -> dict[str, int]:
    """Gaps per reason for one model (a single pass over the view)."""
    where, params = _filters(model, year, reason)
    rows = con.execute(
        f"SELECT reason, count(*) FROM {lake.LAKE_ALIAS}.{GAPS_VIEW} WHERE {where} GROUP BY reason",
        params,
    ).fetchall()
    return {str(r): int(n) for r, n in rows}


def iter_gap_chunks(
    con: duckdb.DuckDBPyConnection,
    model: str,
    *,
    chunk_size: int,
    year: int | None = None,
    reason: str | None = None,
    limit: int | None = None,
) -> Iterator[list[Gap]]:
    """Chunks of gaps in arxiv_id order; each is one bounded query (keyset pagination)."""
    after: str | None = None
    remaining = limit
    while remaining is None or remaining > 0:
        size = chunk_size if remaining is None else min(chunk_size, remaining)
        where, params = _filters(model, year, reason, after)
        rows = con.execute(
            f"""SELECT arxiv_id, year, text, text_sha256, reason
                FROM {lake.LAKE_ALIAS}.{GAPS_VIEW} WHERE {where}
                ORDER BY arxiv_id LIMIT ?""",
            [*params, size],
        ).fetchall()
        if not rows:
            return
        after = rows[-1][0]
        seen: set[str] = set()
        chunk: list[Gap] = []
        for arxiv_id, year_, text, sha, why in rows:
            if arxiv_id in seen:  # one gap per paper even if the view lists it twice
                continue
            seen.add(arxiv_id)
            chunk.append(Gap(arxiv_id, year_, text or "", sha, why))
        if remaining is not None:
            remaining -= len(chunk)
        yield chunk
        if len(rows) < size:
            return


# ---------------------------------------------------------------- lease


def _as_utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def acquire_lease(
    con: duckdb.DuckDBPyConnection,
    model: str,
    *,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> tuple[Lease | None, LeaseHolder | None]:
    """Take the model's lease: (lease, None), or (None, the live holder) when it is held."""
    holder, host, pid = lake.new_lease_holder()

    def ensure_row() -> None:
        row = con.execute(
            f"SELECT count(*) FROM {lake.LAKE_ALIAS}.embedding_leases WHERE model = ?", [model]
        ).fetchone()
        if not row or not row[0]:
            con.execute(
                f"INSERT INTO {lake.LAKE_ALIAS}.embedding_leases (model) VALUES (?)", [model]
            )

    lake.run_transaction(con, ensure_row)

    def take() -> tuple[Lease | None, LeaseHolder | None]:
        now = dt.datetime.now(UTC)
        # Racing first INSERTs may leave two rows for a model; the UPDATE below covers both.
        rows = con.execute(
            f"""SELECT model, holder, host, pid, acquired_at, expires_at
                FROM {lake.LAKE_ALIAS}.embedding_leases
                WHERE model = ? AND holder IS NOT NULL""",
            [model],
        ).fetchall()
        for row in rows:
            info = LeaseHolder(*row)
            live = info.expires_at is not None and _as_utc(info.expires_at) > now
            if live and lake.lease_holder_alive(info.host, info.pid):
                return None, info
        con.execute(
            f"""UPDATE {lake.LAKE_ALIAS}.embedding_leases
                SET holder = ?, host = ?, pid = ?, acquired_at = ?, renewed_at = ?,
                    expires_at = ? WHERE model = ?""",
            [holder, host, pid, now, now, now + dt.timedelta(seconds=lease_seconds), model],
        )
        return Lease(model, holder, host, pid), None

    return lake.run_transaction(con, take)


def _renew_in_transaction(
    con: duckdb.DuckDBPyConnection, lease: Lease, lease_seconds: float
) -> None:
    now = dt.datetime.now(UTC)
    row = con.execute(
        f"""UPDATE {lake.LAKE_ALIAS}.embedding_leases SET renewed_at = ?, expires_at = ?
            WHERE model = ? AND holder = ?""",
        [now, now + dt.timedelta(seconds=lease_seconds), lease.model, lease.holder],
    ).fetchone()
    if not row or not row[0]:
        raise LeaseLost(
            f"model '{lease.model}': another embed-gaps run took over this run's expired lease; "
            "stopped without writing this chunk (rerun to continue)"
        )


def renew_lease(
    con: duckdb.DuckDBPyConnection, lease: Lease, *, lease_seconds: float = DEFAULT_LEASE_SECONDS
) -> None:
    lake.run_transaction(con, lambda: _renew_in_transaction(con, lease, lease_seconds))


def release_lease(con: duckdb.DuckDBPyConnection, lease: Lease) -> None:
    def body() -> None:
        con.execute(
            f"""UPDATE {lake.LAKE_ALIAS}.embedding_leases
                SET holder = NULL, host = NULL, pid = NULL, acquired_at = NULL,
                    renewed_at = NULL, expires_at = NULL
                WHERE model = ? AND holder = ?""",
            [lease.model, lease.holder],
        )

    lake.run_transaction(con, body)


# ---------------------------------------------------------------- chunk writes


def _vector_table(
    gaps: Sequence[Gap], vectors: Sequence[np.ndarray] | np.ndarray, keep: Sequence[int], dim: int
) -> pa.Table:
    if len(keep):
        values = np.ascontiguousarray(
            np.stack([np.asarray(vectors[i], dtype=np.float32) for i in keep])
        ).reshape(-1)
    else:
        values = np.zeros(0, dtype=np.float32)
    offsets = np.arange(0, (len(keep) + 1) * dim, dim, dtype=np.int32)
    return pa.table(
        {
            "arxiv_id": pa.array([gaps[i].arxiv_id for i in keep], pa.string()),
            "embedding": pa.ListArray.from_arrays(pa.array(offsets), pa.array(values)),
            "text_sha256": pa.array([gaps[i].text_sha256 for i in keep], pa.string()),
        }
    )


def write_chunk(
    con: duckdb.DuckDBPyConnection,
    *,
    model: str,
    model_id: str,
    dim: int,
    gaps: Sequence[Gap],
    vectors: Sequence[np.ndarray] | np.ndarray,
    problems: Sequence[Problem],
    lease: Lease | None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> ChunkWrite:
    """Store one encoded chunk in one transaction (see the module docstring)."""
    if len(vectors) != len(gaps):
        raise LakeError(f"model '{model}': {len(vectors)} vectors for {len(gaps)} texts")
    table = f"{lake.LAKE_ALIAS}.{lake.embeddings_table(model)}"
    bad = {p.index: p for p in problems}
    rejects = [
        Reject(gaps[i].arxiv_id, gaps[i].text_sha256, p.problem, p.detail) for i, p in bad.items()
    ]
    view = f"embed_chunk_{uuid.uuid4().hex}"

    def body() -> ChunkWrite:
        if lease is not None:
            _renew_in_transaction(con, lease, lease_seconds)
        ids = [g.arxiv_id for g in gaps]
        current = dict(
            con.execute(
                f"SELECT arxiv_id, text_sha256 FROM {table} WHERE arxiv_id IN (SELECT unnest(?))",
                [ids],
            ).fetchall()
        )
        # A gap already filled with this exact text (by an earlier run) is left alone.
        keep = [
            i
            for i, g in enumerate(gaps)
            if i not in bad and current.get(g.arxiv_id) != g.text_sha256
        ]
        replace = [gaps[i].arxiv_id for i in keep if gaps[i].arxiv_id in current]
        if replace:
            con.execute(f"DELETE FROM {table} WHERE arxiv_id IN (SELECT unnest(?))", [replace])
        if keep:
            con.register(view, _vector_table(gaps, vectors, keep, dim))
            try:
                con.execute(
                    f"""INSERT INTO {table} (arxiv_id, embedding, text_sha256, model_id,
                                             embedded_at)
                        SELECT arxiv_id, embedding::FLOAT[], text_sha256, ?, now() FROM {view}""",
                    [model_id],
                )
            finally:
                con.unregister(view)
        if rejects:
            con.executemany(
                f"""INSERT INTO {lake.LAKE_ALIAS}.embedding_rejects
                    (model, arxiv_id, text_sha256, problem, source, detail, recorded_at)
                    VALUES (?, ?, ?, ?, 'embed', ?, now())""",
                [[model, r.arxiv_id, r.text_sha256, r.problem, r.detail] for r in rejects],
            )
        return ChunkWrite(
            embedded=len(keep),
            replaced=len(replace),
            skipped=len(gaps) - len(keep) - len(bad),
            rejects=rejects,
        )

    return lake.run_transaction(con, body)
