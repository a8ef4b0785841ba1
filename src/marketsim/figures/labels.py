"""Where labels go so that they never overlap: one pure-Python routine for every chart that marks events (the
matplotlib figures through :func:`marketsim.figures.plots.mark_events`, and the live page's SVG).

Two placements, both in the caller's own units (pixels, points, axes fractions: whatever the positions and sizes
are given in):

- :func:`spread`: labels on one line (a column of end labels at the right of a chart), each near its wanted
  position, at least ``gap`` apart, kept inside ``[lo, hi]`` when there is room;
- :func:`place_labels`: labels of vertical marks (events on a time axis), each beside its mark in the row where
  it overlaps nothing and the fewest lines cross it (the live page's share chart);
- :func:`rows`: labels laid out side by side along an axis (event labels at their dates), each in the lowest row
  where it overlaps no label already placed: labels on near dates are staggered into rows instead of drawn over
  each other.

This module imports nothing: the live page may use it without matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def spread(ys: Sequence[float], gap: float, lo: float | None = None, hi: float | None = None) -> list[float]:
    """Positions near ``ys`` (same order), sorted ones at least ``gap`` apart: each label is pushed away from the one
    below it as little as needed. With ``hi``, a column that would run past it is moved back down as a block (as far
    as ``lo`` allows); with ``lo``, none starts below it."""
    order = sorted(range(len(ys)), key=lambda i: ys[i])
    out = [float(y) for y in ys]
    prev = None
    for i in order:
        y = out[i] if lo is None else max(out[i], lo)
        if prev is not None:
            y = max(y, prev + gap)
        out[i] = prev = y
    if hi is not None and order and out[order[-1]] > hi:
        # push the column back down from the top, each label at most at hi - gap * (labels above it)
        top = hi
        for i in reversed(order):
            out[i] = min(out[i], top)
            top = out[i] - gap
        if lo is not None and order and out[order[0]] < lo:  # no room for all: the top ones run past hi
            prev = None
            for i in order:
                out[i] = lo if prev is None else max(out[i], prev + gap)
                prev = out[i]
    return out


def rows(spans: Sequence[tuple[float, float]], pad: float = 0.0) -> list[int]:
    """The row (0 = first, next to the axis) of each label given its extent ``(start, end)`` along the axis: the
    lowest row in which it keeps ``pad`` clear of every label already in that row, labels taken in order of their
    start. Two labels in the same row therefore never overlap, whatever their widths."""
    order = sorted(range(len(spans)), key=lambda i: (spans[i][0], spans[i][1]))
    ends: list[float] = []  # per row: where its last label ends
    out = [0] * len(spans)
    for i in order:
        a, b = sorted(spans[i])
        for r, end in enumerate(ends):
            if a >= end + pad:
                out[i], ends[r] = r, b
                break
        else:
            out[i] = len(ends)
            ends.append(b)
    return out


def overlaps(boxes: Sequence[tuple[float, float, float, float]]) -> list[tuple[int, int]]:
    """The pairs of boxes ``(x0, y0, x1, y1)`` that intersect (touching edges do not count): what a test of a chart's
    labels checks."""
    out = []
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            if min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1]):
                out.append((i, j))
    return out


def place_labels(
    xs: list[float], widths: list[float], lo: float, hi: float, pad: float = 4.0, gap: float = 6.0
) -> list[tuple[float, int]]:
    """Where the labels of vertical marks at ``xs`` go: (left edge, row) each, row 0 nearest the plot, so that no
    two label boxes (``widths``, one row high, ``gap`` apart) overlap and each stays within ``lo`` .. ``hi``.

    Each label sits just right of its mark (``pad`` away) or, where that runs past ``hi``, just left of it, in a row
    where it overlaps no other label: of those (the rows in use and one more), where the fewest lines cross it or its
    own line crosses the fewest labels (a line runs from its label down to the plot, so through the rows below it;
    the chart draws labels with a white halo), then the lowest. Marks are placed left to right, so rows rise only
    where labels crowd. A label wider than ``hi - lo`` starts at ``lo``."""
    placed: list[tuple[float, float, int, float]] = []  # (left, right, row, mark)
    out: list[tuple[float, int]] = [(0.0, 0)] * len(xs)

    def cost(a: float, b: float, row: int, mark: float) -> float:
        """Lines crossing the label at ``a`` .. ``b`` in ``row`` and labels its line crosses; inf if it overlaps."""
        n = 0
        for pa, pb, pr, pm in placed:
            if pr == row and a < pb + gap and pa < b + gap:
                return math.inf
            n += (pr > row and a - 2 <= pm <= b + 2) + (pr < row and pa - 2 <= mark <= pb + 2)
        return n

    for i in sorted(range(len(xs)), key=lambda i: xs[i]):
        m, w = xs[i], widths[i]
        starts = [v for v in (m + pad, m - pad - w) if lo <= v and v + w <= hi] or [max(lo, min(m - w / 2, hi - w))]
        used = 1 + max((r for _, _, r, _ in placed), default=-1)
        c, row, a = min((cost(a, a + w, row, m), row, a) for row in range(used + 1) for a in starts)
        assert c < math.inf  # (the row above every placed label is free)
        spot = (a, row)
        placed.append((spot[0], spot[0] + w, spot[1], m))
        out[i] = spot
    return out
