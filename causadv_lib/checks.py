"""Checks of the values a caller passes, each failing with a ValueError that names the parameter, the value and
what was expected: the one home of "a positive integer", "a level in (0, 1)", "a seed", "a finite number"."""
from __future__ import annotations

import math
import numbers

import numpy as np

#: seeds are used as 32-bit words by numpy's legacy global state (np.random.seed); a larger seed would be
#: folded silently (2**32 + 1 gives the same noise as 1), so it is refused
SEED_LIMIT = 2 ** 32


def integer(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int within [minimum, maximum], or a ValueError naming `name` (bools and floats refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name}: expected an integer{_range(minimum, maximum)}, got {value!r}")
    v = int(value)
    if (minimum is not None and v < minimum) or (maximum is not None and v > maximum):
        raise ValueError(f"{name}: expected an integer{_range(minimum, maximum)}, got {value!r}")
    return v


def positive_int(value, name: str) -> int:
    """`value` as an int >= 1."""
    return integer(value, name, minimum=1)


def seed(value, name: str = "seed") -> int:
    """`value` as a seed in [0, 2**32)."""
    return integer(value, name, minimum=0, maximum=SEED_LIMIT - 1)


def number(value, name: str, *, low: float | None = None, high: float | None = None, open_low: bool = False,
           open_high: bool = False) -> float:
    """`value` as a finite float within its bounds (open or closed), or a ValueError naming `name`."""
    ok = isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_))
    v = float(value) if ok else math.nan
    lo_bad = low is not None and (v <= low if open_low else v < low)
    hi_bad = high is not None and (v >= high if open_high else v > high)
    if not ok or not math.isfinite(v) or lo_bad or hi_bad:
        lo = "" if low is None else ("(" if open_low else "[") + f"{low:g}"
        hi = "" if high is None else f"{high:g}" + (")" if open_high else "]")
        where = f" in {lo or '(-inf'}, {hi or 'inf)'}" if low is not None or high is not None else ""
        raise ValueError(f"{name}: expected a finite number{where}, got {value!r}")
    return v


def level(value, name: str) -> float:
    """`value` as a probability level in the open interval (0, 1) (a false-positive rate, an alpha)."""
    return number(value, name, low=0.0, high=1.0, open_low=True, open_high=True)


def _range(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    return f" >= {minimum}" if minimum is not None else (f" <= {maximum}" if maximum is not None else "")
