"""`spread`: indices evenly spread over a pool (deterministic, unseeded; every class of a class-ordered pool)."""
from __future__ import annotations

import numpy as np


def spread(n: int, limit: int | None) -> np.ndarray:
    """`limit` indices evenly spread over 0..n-1 (all when limit is None or >= n).

    Pools are ordered by class, so an even spread covers every class of a pool.
    """
    if limit is None or limit >= n:
        return np.arange(n)
    return np.unique(np.linspace(0, n, num=max(limit, 0), endpoint=False).astype(np.int64))
