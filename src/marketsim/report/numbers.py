"""How numbers are written for people: one convention for the report, the command-line tables and the live
page. Shares and shifts arrive as fractions of 1 (0.156 is 15.6%, a shift of 0.0123 is +1.23 points).

- a share: ``share(0.156)`` -> ``15.6%`` (one decimal; ``unit=""`` for a table column headed "%");
- a shift of shares in percentage points: ``shift(0.0123)`` -> ``+1.23`` (signed, two decimals; ``points``
  for a number already in points);
- an interval: ``interval(-0.95, 0.86)`` -> ``[-0.95, +0.86]`` (its ends as given, signed, two decimals);
- a probability: ``probability(0.42)`` -> ``42%`` (whole percent: the estimates are not finer);
- a count of real people: ``count(15_634_000)`` -> ``15.6 million``, ``count(12_345)`` -> ``12,300``: three
  significant digits (what a model that simulates a sample of them can know), whole numbers below 1,000;
- a part of a whole (a variance share, a probability) never rounds a small nonzero part to nothing:
  ``part(0.003)`` -> ``<1%`` (``less than 1%`` in prose), ``part(0)`` -> ``0%``;
- a shift with its interval: ``shift_with_interval(-0.031, -0.060, -0.009)`` -> ``-3.1 points [-6.0, -0.9]``;
- a parameter's value in its display unit (:class:`marketsim.scenario.labels.Quantity`): ``value(0.05, q)`` ->
  ``5%`` for a share, ``1.5 x`` for a factor, ``0.2 utility``.

Minus signs are ASCII hyphen-minus everywhere (terminals, CSV and spreadsheets read them as numbers).
"""

from __future__ import annotations

import math

from marketsim.scenario.labels import Quantity


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


def probability(p: float, words: bool = False) -> str:
    """A probability (0..1) in whole percent: ``42%``; one that is not 0 or 1 but rounds to it is ``<1%`` or
    ``>99%`` (see :func:`part`)."""
    return part(p, words)


def part(x: float, words: bool = False) -> str:
    """A part of a whole (0..1) in whole percent: ``42%``. A part that is not zero but under half a percent is
    ``<1%`` (``words``: ``less than 1%``), one short of the whole by less than that ``>99%`` (``more than 99%``):
    never ``0%`` for something there, nor ``100%`` for something not all."""
    if not math.isfinite(x):
        return "n/a"
    if 0 < x < 0.005:
        return "less than 1%" if words else "<1%"
    if 0.995 <= x < 1:
        return "more than 99%" if words else ">99%"
    return f"{x * 100:.0f}%"


def shift_with_interval(x: float, lo: float, hi: float, digits: int = 1) -> str:
    """A shift of shares (fractions of 1) with its interval, in percentage points:
    ``-3.1 points [-6.0, -0.9]`` (``digits`` decimals, signed)."""
    f = f"{{:+.{digits}f}}"
    return f"{shift(x, digits)} points {interval(lo * 100, hi * 100, f)}"


def number(x: float, digits: int = 3) -> str:
    """A plain number to ``digits`` significant digits without exponent or trailing zeros: ``0.05``, ``1.5``,
    ``250``, ``12,300``."""
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    y = significant(x, digits)
    if abs(y) >= 1000:
        return f"{y:,.0f}"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(y)))))
    return f"{y:.{decimals}f}".rstrip("0").rstrip(".") if decimals else f"{y:.0f}"


def value(x: float, q: Quantity, digits: int = 3) -> str:
    """A parameter's value (stored units) in its display unit: ``x * q.scale`` then ``q.unit``:
    ``value(0.05, share quantity)`` -> ``5%``, ``value(1.5, factor)`` -> ``1.5 x``, ``value(0.2, utility)`` ->
    ``0.2 utility``; no unit: the number alone."""
    return with_unit(x * q.scale, q.unit, digits)


def with_unit(x: float, unit: str, digits: int = 3) -> str:
    """A number already in its display unit, with the unit: ``5%`` (no space before a percent sign), ``1.5 x``,
    ``0.2 utility``; no unit: the number alone."""
    shown = number(x, digits)
    if not unit:
        return shown
    return f"{shown}{unit}" if unit == "%" else f"{shown} {unit}"


def value_range(lo: float, hi: float, q: Quantity, digits: int = 3) -> str:
    """A range of a parameter in its display unit: ``1% to 5%``, ``1 to 2.5 x``."""
    if q.unit == "%":
        return f"{value(lo, q, digits)} to {value(hi, q, digits)}"
    return f"{number(lo * q.scale, digits)} to {value(hi, q, digits)}"


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
