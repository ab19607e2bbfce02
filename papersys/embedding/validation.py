"""Vector validation: only finite, non-zero vectors of the configured dimension are stored."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WRONG_DIM = "wrong_dim"
NON_FINITE = "non_finite"
ZERO = "zero"


@dataclass(frozen=True)
class Problem:
    index: int
    problem: str
    detail: str


def validate_vectors(vectors: np.ndarray | Sequence[Sequence[float]], dim: int) -> list[Problem]:
    """Return one Problem per bad vector (by position); an empty list means all are good."""
    problems: list[Problem] = []
    if isinstance(vectors, np.ndarray) and vectors.ndim == 2:
        rows: Sequence = vectors
        if vectors.shape[1] != dim:
            return [
                Problem(i, WRONG_DIM, f"length {vectors.shape[1]}, expected {dim}")
                for i in range(vectors.shape[0])
            ]
    else:
        rows = vectors
    for i, row in enumerate(rows):
        vec = np.asarray(row, dtype=np.float64).reshape(-1)
        if vec.shape[0] != dim:
            problems.append(Problem(i, WRONG_DIM, f"length {vec.shape[0]}, expected {dim}"))
            continue
        finite = np.isfinite(vec)
        if not finite.all():
            bad = int((~finite).sum())
            problems.append(Problem(i, NON_FINITE, f"{bad} non-finite values"))
            continue
        if not np.any(vec):
            problems.append(Problem(i, ZERO, "all components are zero"))
    return problems
