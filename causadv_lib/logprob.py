"""Exact log-probabilities from logits, in numpy float64: one home for the formula outside the CI graph.

    log p_c = -log1p(sum_{j != c} exp(z_j - z_c)) = -softplus(a),  a = log sum_{j != c} exp(z_j - z_c)

computed with the largest term factored out, so it stays exact (and non-zero) where p_c rounds to 1.0
in float32. `ci.definitions.log_prob` is the same formula in TensorFlow, inside the compiled CI graph;
`prototypes` ranks candidates by `log_prob`, `confidence` builds its baselines on `log_other_mass`.
numpy only (no TensorFlow), so `confidence` stays importable without it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["log_other_mass", "log_prob"]


def log_other_mass(logits, c) -> np.ndarray:
    """a = log sum_{j != c} exp(z_j - z_c) = log((1 - p_c) / p_c) per row (float64), for (N, C) logits and
    (N,) classes `c`; finite for finite logits."""
    z = np.asarray(logits, np.float64)
    rows = np.arange(len(z))
    d = z - z[rows, c][:, None]
    d[rows, c] = -np.inf
    m = d.max(axis=1)
    return m + np.log(np.exp(d - m[:, None]).sum(axis=1))


def log_prob(logits, c) -> np.ndarray:
    """Exact log p_c = -softplus(`log_other_mass`) per row (float64)."""
    return -np.logaddexp(0.0, log_other_mass(logits, c))
