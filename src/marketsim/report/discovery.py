"""Scenario discovery's boxes in words (:mod:`marketsim.experiments.discovery` finds them), for
``marketsim discover``, the report and the page:

    With jd_drops_weibo, JD loses more than 0.30 points of GMV share when the Weibo boost is above 1.8 and
    social influence is above 0.9 (coverage 71%: of the draws where it loses that much, 71% are in this box;
    density 84%: of the draws in the box, 84% lose that much)

Parameters are named by their labels (:mod:`marketsim.scenario.labels`) and their values written in display
units; probabilities (coverage, density) and points with :mod:`marketsim.report.numbers`.
"""

from __future__ import annotations

import math

from marketsim.experiments.discovery import Box, Discovery
from marketsim.report.numbers import points, probability, significant
from marketsim.scenario.labels import Quantity, generic_labels


def value(x: float, q: Quantity) -> str:
    """A parameter's value (stored units) in its display unit, to three significant digits: ``5%``, ``1.8x``,
    ``1.8 utility``, ``0.9 (1 = market price)``, ``0.25``."""
    v = significant(x * q.scale, 3)
    text = f"{v:g}"
    if q.unit in ("%", "x"):
        return f"{text}{q.unit}"
    if "=" in q.unit:  # a scale stated as an equation ("1 = market price")
        return f"{text} ({q.unit})"
    return f"{text} {q.unit}" if q.unit else text


#: The first words of the format's generic labels (scenario.labels), which a sentence writes in lower case.
GENERIC_HEADS = frozenset(lab.split(" ")[0].rstrip(":") for lab in generic_labels() if not lab.startswith("{"))


def _inline(label: str) -> str:
    """A label inside a sentence: its first letter in lower case when it starts with a common word of the
    format's own labels ("Social influence ...", "Cost of ..."), never when it starts with a name ("JD: ...",
    "Weibo ...", "Alibaba buys 18% of Weibo ...")."""
    first = label.split(" ")[0].rstrip(":")
    if first not in GENERIC_HEADS:
        return label
    return label[:1].lower() + label[1:]


def condition(lo: float, hi: float, q: Quantity) -> str:
    """One restriction of a box: "<label> is above 1.8", "is below 5%", "is between 0.5 and 0.9 utility"."""
    label = _inline(q.label)
    if math.isinf(hi):
        return f"{label} is above {value(lo, q)}"
    if math.isinf(lo):
        return f"{label} is below {value(hi, q)}"
    if q.unit:
        lo_s = value(lo, Quantity(q.label, "", q.scale))
        return f"{label} is between {lo_s} and {value(hi, q)}"
    return f"{label} is between {value(lo, q)} and {value(hi, q)}"


def outcome(d: Discovery) -> tuple[str, str, str]:
    """What a case is, three ways: the clause ("JD loses more than 0.30 points of GMV share"), the same
    of the draws ("it loses that much") and of the draws in the box ("lose that much")."""
    size = points(abs(d.threshold)).lstrip("+")
    if d.retailer is not None:
        verb = "loses" if d.below else "gains"
        clause = f"{d.retailer} {verb} more than {size} points of GMV share"
        return clause, f"it {verb} that much", f"{verb.removesuffix('s')} that much"
    q = d.outcome
    side = "below" if d.below else "above"
    unit = "" if not q.unit else (q.unit if q.unit == "%" else f" {q.unit}")
    clause = f"{q.label} is {side} {d.threshold:g}{unit}"
    return clause, f"it is {side} that", f"are {side} that"


def sentence(d: Discovery, box: Box) -> str:
    """One box in words: who loses (or gains) how much, under which option, when which assumptions hold, with
    the box's coverage and density spelt out."""
    clause, of_cases, of_box = outcome(d)
    conds = [condition(lo, hi, d.parameters[c]) for c, (lo, hi) in box.limits.items()]
    when = conds[0] if len(conds) == 1 else ", ".join(conds[:-1]) + " and " + conds[-1]
    head = f"With {d.option}, {clause}" if d.option else clause
    draws = d.unit_of_draw
    return (
        f"{head} when {when} (coverage {probability(box.coverage)}: of the {draws} where {of_cases}, "
        f"{probability(box.coverage)} are in this box; density {probability(box.density)}: of the {draws} in the "
        f"box, {probability(box.density)} {of_box})"
    )


def no_box(d: Discovery) -> str:
    """What is said when no box reaches the least density: the cases are spread over the assumptions."""
    clause, _, _ = outcome(d)
    return (
        f"No box of assumptions holds mostly cases where {clause} ({d.cases} of {d.draws} {d.unit_of_draw}): "
        f"the cases are spread over the parameters' ranges, or too few {d.unit_of_draw} to tell"
    )


def describe(d: Discovery) -> dict:
    """Plain data for JSON and the page: the discovery with each box's sentence (and each limit's label and
    display unit)."""
    out = d.to_dict()
    for b, row in zip(d.boxes, out["boxes"], strict=True):
        row["sentence"] = sentence(d, b)
        row["conditions"] = [
            {
                "parameter": c,
                "label": d.parameters[c].label,
                "unit": d.parameters[c].unit,
                "text": condition(lo, hi, d.parameters[c]),
            }
            for c, (lo, hi) in b.limits.items()
        ]
    out["summary"] = no_box(d) if not d.boxes else None
    return out
