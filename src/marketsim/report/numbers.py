"""How numbers are written for people: one convention for the report, the command-line tables and the live
page. Shares and shifts arrive as fractions of 1 (0.156 is 15.6%, a shift of 0.0123 is +1.23 points).

- a share: ``share(0.156)`` -> ``15.6%`` (one decimal; ``unit=""`` for a table column headed "%");
- a shift of shares in percentage points: ``shift(0.0123)`` -> ``+1.23`` (signed, two decimals; ``points``
  for a number already in points);
- an interval: ``interval(-0.95, 0.86)`` -> ``[-0.95, +0.86]`` (its ends as given, signed, two decimals);
- a probability: ``probability(0.42)`` -> ``42%`` (whole percent: the estimates are not finer);
- a count of real people: ``count(15_634_000)`` -> ``15.6 million``, ``count(12_345)`` -> ``12,300``: three
  significant digits (what a model that simulates a sample of them can know), whole numbers below 1,000.
"""

from __future__ import annotations

import math


def share(x: float, digits: int = 1, unit: str = "%") -> str:
    """A share (fraction of 1) in percent: ``15.6%``."""
    return f"{x * 100:.{digits}f}{unit}"


def shift(x: float, digits: int = 2) -> str:
    """A difference of shares (fraction of 1) in percentage points, signed: ``+1.23``."""
    return points(x * 100, digits)


def points(x: float, digits: int = 2) -> str:
    """A number already in percentage points, signed: ``+1.23`` (a residual, a gap between percentages)."""
    return f"{x:+.{digits}f}"


def interval(lo: float, hi: float, fmt: str = "{:+.2f}") -> str:
    """An interval as one unbreakable cell: ``[-0.95, +0.86]`` (its ends as given, written with ``fmt``)."""
    return f"[{fmt.format(lo)}, {fmt.format(hi)}]"


def probability(p: float) -> str:
    """A probability (0..1) in whole percent: ``42%``."""
    return f"{p * 100:.0f}%"


def significant(x: float, digits: int = 3) -> float:
    """``x`` to ``digits`` significant figures (3,585,344 -> 3,590,000 at 3)."""
    if not x or not math.isfinite(x):
        return x
    return float(round(x, -int(math.floor(math.log10(abs(x)))) + digits - 1))


def count(x: float) -> str:
    """A count of real people to three significant digits: ``15.6 million``, ``1.2 billion``, ``12,300``,
    ``950``."""
    if not math.isfinite(x):
        return str(x)
    x = significant(x, 3)
    if abs(x) >= 1e9:
        return f"{x / 1e9:.3g} billion"
    if abs(x) >= 1e6:
        return f"{x / 1e6:.3g} million"
    return f"{x:,.0f}"
