"""Validation of legacy vector columns, one Arrow batch at a time (never a whole file)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Problems a vector can have; the first three are rejects (embedding_rejects), 'null' is absent.
REJECT_PROBLEMS = ("wrong_dim", "nan", "zero")


@dataclass
class VectorCheck:
    """Per-row verdicts for one batch of vectors of one model."""

    problems: list[str | None]  # None = valid; else 'null' | 'wrong_dim' | 'nan' | 'zero'
    details: list[str | None]
    valid_rows: np.ndarray  # row positions of the valid vectors, in order
    matrix: np.ndarray  # float32 (len(valid_rows), dim)
    float16: bool


def is_vector_type(dtype: pa.DataType) -> bool:
    if (
        pa.types.is_list(dtype)
        or pa.types.is_large_list(dtype)
        or pa.types.is_fixed_size_list(dtype)
    ):
        return pa.types.is_floating(dtype.value_type)
    return False


def vector_type_name(dtype: pa.DataType) -> str:
    """A short label for the manifest: list<float>, fixed_size_list<float>[1024], ..."""
    value = str(dtype.value_type)
    if pa.types.is_fixed_size_list(dtype):
        return f"fixed_size_list<{value}>[{dtype.list_size}]"
    return f"list<{value}>"


def check_vectors(column: pa.Array | pa.ChunkedArray, dim: int) -> VectorCheck:
    """Classify each vector: null, wrong dimension, non-finite, all-zero, or valid."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    n = len(arr)
    nulls = arr.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_fixed_size_list(arr.type):
        lengths = np.full(n, arr.type.list_size, dtype=np.int64)
    else:
        lengths = pc.fill_null(pc.list_value_length(arr), -1).to_numpy(zero_copy_only=False)
    right_dim = (lengths == dim) & ~nulls
    selected = arr.filter(pa.array(right_dim)) if not right_dim.all() else arr
    values = selected.flatten()
    float16 = pa.types.is_float16(values.type)
    matrix = np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, dim)
    finite = np.isfinite(matrix).all(axis=1)
    nonzero = (matrix != 0).any(axis=1)

    problems: list[str | None] = [None] * n
    details: list[str | None] = [None] * n
    for i in np.flatnonzero(nulls):
        problems[i] = "null"
    for i in np.flatnonzero(~nulls & ~right_dim):
        problems[i] = "wrong_dim"
        details[i] = f"{int(lengths[i])} values, expected {dim}"
    candidates = np.flatnonzero(right_dim)
    for j in np.flatnonzero(~finite):
        i = candidates[j]
        bad = int((~np.isfinite(matrix[j])).sum())
        problems[i] = "nan"
        details[i] = "all values NaN" if bad == dim else f"{bad} of {dim} values not finite"
    for j in np.flatnonzero(finite & ~nonzero):
        problems[candidates[j]] = "zero"
        details[candidates[j]] = "all values zero"
    keep = finite & nonzero
    return VectorCheck(
        problems=problems,
        details=details,
        valid_rows=candidates[keep],
        matrix=matrix[keep] if not keep.all() else matrix,
        float16=float16,
    )


def vectors_to_arrow(matrix: np.ndarray) -> pa.Array:
    """float32 matrix → Arrow list<float> (DuckDB FLOAT[]) without copying row by row."""
    n, dim = matrix.shape
    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, flat)
