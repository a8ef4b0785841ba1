"""The moves that change who is in the market (entries, exits, acquisitions), in business terms: one sentence
each, for ``marketsim run`` (one simulation: plain numbers) and ``marketsim project`` (over draws and replicates:
each number a summary with its mean and 95% interval, :meth:`marketsim.experiments.uncertainty.Summary.to_dict`).

    JD's acquisition of Tencent on 2014-03-10 moved 7.9 million shoppers to JD (4.1 million lost their habit)
    JD dropping Weibo login on 2013-09-25: 4.9 million of JD's customers lost their login (5.0% of its 98 million
    customers log in with Weibo; stated: JD: share of customers logging in with Weibo = 5.0%
    (retailers.JD.sso_share.weibo, ...); the run keeps that mix)
    Suning, entering on 2014-05-05, reached 4.2% [3.1, 5.3] by the horizon (2014-12-28)
"""

from __future__ import annotations

import math
import re
import textwrap

from marketsim.report.numbers import count, interval, share
from marketsim.scenario.labels import parameter_quantity, provider_name


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
        return share(x["mean"]) + (f" {interval(lo * 100, hi * 100, '{:.1f}')}" if _finite(lo, hi) else "")
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


def wrapped(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` characters (for a terminal), never breaking inside an interval
    ``[lo, hi]`` (a line longer than ``width`` only where one interval is)."""
    glue = re.sub(r"\[[^\]]*\]", lambda m: m.group(0).replace(" ", "\0"), text)
    lines = textwrap.wrap(glue, max(width, 20), break_long_words=False, break_on_hyphens=False)
    return [ln.replace("\0", " ") for ln in lines] or [""]


def lost_login_line(d: dict) -> str:
    """A login removal (an item of summary.json's ``lost_login``) as a sentence that says how its number follows
    from the retailer's stated login mix (docs/model.md 2 and 12.4: the run keeps the stated sso_share)."""
    r, p = d["retailer"], provider_name(d["provider"])
    kept = d["share"]
    kept_text = share_text(kept) if kept is not None else "none"
    if d.get("stated") is None:
        stated = f"the file states no share for {p} at {r} ({d['stated_path']})"
    else:
        rng = d.get("stated_range")
        why = d.get("stated_reason")
        extra = (f", range {share(rng[0])} to {share(rng[1])}" if rng else "") + (f"; {why}" if why else "")
        sd = d.get("stated_draws")
        drawn = (
            f"; the draws take it over its range (mean {share(sd['mean'])}) and each run keeps its draw's mix"
            if sd and sd["ci95"][1] > sd["ci95"][0]
            else "; the run keeps that mix"
        )
        label = parameter_quantity(d["stated_path"]).label
        stated = f"stated: {label} = {share(d['stated'])} ({d['stated_path']}{extra}){drawn}"
    acc, cust = d["accounts"], d["customers"]
    former = acc["mean"] - cust["mean"] if isinstance(acc, dict) else acc - cust
    return (
        f"{r} dropping {p} login on {d['date']}: {shoppers(d['customers'])} of {r}'s customers lost their login "
        f"({kept_text} of its {shoppers(d['customer_base'])} customers log in with {p}; {stated}); "
        f"{count(max(former, 0.0))} former customers with a {p} login there lost it too"
    )
