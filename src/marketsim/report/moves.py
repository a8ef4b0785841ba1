"""The moves that change who is in the market (entries, exits, acquisitions), in business terms: one sentence
each, for ``marketsim run`` (one simulation: plain numbers) and ``marketsim project`` (over draws and replicates:
each number a summary with its mean and 95% interval, :meth:`marketsim.experiments.uncertainty.Summary.to_dict`).

    JD's acquisition of Tencent on 2014-03-10 moved 7.9 million shoppers to JD (4.1 million lost their habit)
    Suning, entering on 2014-05-05, reached 4.2% [3.1, 5.3] by the horizon (2014-12-28)
"""

from __future__ import annotations

import math

from marketsim.report.numbers import count, share


def _finite(*xs) -> bool:
    return all(isinstance(x, int | float) and math.isfinite(x) for x in xs)


def shoppers(x) -> str:
    """A number of real shoppers: ``7.9 million``, or over draws and replicates ``7.9 million [7.5 million, 8.2
    million]`` (mean and 95% interval)."""
    if isinstance(x, dict):
        lo, hi = x["ci95"]
        return count(x["mean"]) + (f" [{count(lo)}, {count(hi)}]" if _finite(lo, hi) else "")
    return count(x)


def share_text(x) -> str:
    """A GMV share: ``4.2%``, or over draws and replicates ``4.2% [3.1, 5.3]`` (mean and 95% interval, in %)."""
    if x is None:
        return "no share (no purchases)"
    if isinstance(x, dict):
        lo, hi = x["ci95"]
        return share(x["mean"]) + (f" [{lo * 100:.1f}, {hi * 100:.1f}]" if _finite(lo, hi) else "")
    return share(x)


def move_line(m: dict, horizon: str) -> str:
    """One move (an item of summary.json's ``moves``) as a sentence; ``horizon``: the date of the last step."""
    if m["kind"] == "acquisition":
        return (
            f"{m['acquirer']}'s acquisition of {m['target']} on {m['date']} moved {shoppers(m['moved'])} shoppers "
            f"to {m['acquirer']} ({shoppers(m['lost'])} lost their habit)"
        )
    if m["kind"] == "exit":
        return f"{m['retailer']} left the market on {m['date']}: {shoppers(m['lost'])} shoppers lost their habit there"
    return f"{m['retailer']}, entering on {m['date']}, reached {share_text(m['share_at_horizon'])} by the horizon ({horizon})"


def move_lines(moves: list[dict] | None, horizon: str) -> list[str]:
    """Every move as a sentence, in the order they happened ([] for none)."""
    return [move_line(m, horizon) for m in moves or ()]
