"""The decision desk in words (:mod:`marketsim.experiments.decision` computes the numbers): the sentence that
says which option is best for a retailer and how sure that is, and the ``decision`` block of projection.json.
Every number is written by :mod:`marketsim.report.numbers`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from marketsim.experiments.decision import Outcomes, draws_table, from_projection, p_beats, p_beyond, ranking, tornado
from marketsim.experiments.projection import Projection
from marketsim.io import names, store
from marketsim.report.numbers import interval, points, probability
from marketsim.scenario.core import Scenario

#: The words for how sure a comparison is, by the probability that the better option is better (assumption: a
#: reading of the probability in words after the IPCC's calibrated language, Mastrandrea et al. 2010: "virtually
#: certain" >= 99%, "very likely" >= 90%, "likely" >= 66%, "about as likely as not" below).
#: The threshold a conclusion is stated at when the projection was given none (points of share; assumption: a
#: loss of half a point is one a strategist would not call noise; `--threshold` and the Decide view's slider set it).
DEFAULT_THRESHOLD_PP = -0.5

SURENESS = ((0.99, "virtually certain"), (0.90, "very likely"), (0.66, "likely"), (0.0, "about as likely as not"))


def beyond_words(retailer: str, threshold_pp: float) -> str:
    """``JD loses more than 0.3 points`` / ``JD gains more than 0.3 points``."""
    verb = "loses" if threshold_pp < 0 else "gains"
    return f"{retailer} {verb} more than {abs(threshold_pp):g} point{'s' if abs(threshold_pp) != 1 else ''}"


def sureness(p: float) -> str:
    """A probability that one option is better, in words (:data:`SURENESS`)."""
    return next(w for t, w in SURENESS if p >= t)


# --------------------------------------------------------------------------- the answer in words


def conclusion(o: Outcomes, retailer: str, threshold_pp: float) -> str:
    """One plain sentence: the best option for ``retailer`` at the horizon, how sure that is (the probability it
    beats the runner-up, in numbers and words), and the chance the worst option is beyond the threshold."""
    rank = ranking(o, retailer)
    best = rank[0]
    horizon = o.horizon()
    head = (
        f"For {retailer} at {horizon}, {best['option']} leaves the highest share"
        + (f" of the {len(rank)} options" if len(rank) > 1 else "")
        + f": {points(best['mean_pp'])} points against the baseline ({o.baseline}), 95% interval "
        f"{interval(*best['ci95_pp'])}"
    )
    if len(rank) > 1:
        second = rank[1]
        j = o.retailer_index(retailer)
        same = np.array_equal(o.share[best["option"]][:, :, -1, j], o.share[second["option"]][:, :, -1, j])
        p = p_beats(o, retailer)[best["option"]][second["option"]]
        head += (
            f"; {second['option']} leaves it exactly the same share in every draw and replicate (the two options "
            f"do not differ for {retailer} by then)"
            if same
            else f"; it beats {second['option']} in {probability(p)} of the draws and replicates "
            f"({sureness(p)} to be the better of the two)"
        )
    pb = p_beyond(o, retailer, threshold_pp)
    each = [f"{probability(pb[a])} under {a}" for a in (r["option"] for r in rank)]
    said = each[0] if len(each) == 1 else ", ".join(each[:-1]) + " and " + each[-1]
    tail = f". The chance that {beyond_words(retailer, threshold_pp)} against the baseline is {said}"
    return head + tail + "."


def decision_doc(o: Outcomes, thresholds_pp: tuple[float, ...] = ()) -> dict:
    """Per retailer: ranking, P(beats), P(beyond) at each threshold, the conclusion at the first threshold (or
    -0.5 points), and the first option's tornado: the ``decision`` block of projection.json."""
    out = {}
    ts = tuple(thresholds_pp) or (DEFAULT_THRESHOLD_PP,)
    for r in o.retailers:
        out[r] = {
            "ranking": ranking(o, r),
            "p_beats": p_beats(o, r),
            "p_beyond": {f"{t:g}": p_beyond(o, r, t) for t in ts},
            "conclusion": conclusion(o, r, ts[0]),
            "tornado": {a: tornado(o, a, r) for a in o.options},
        }
    return out


def add_decision(summary: dict, proj: Projection) -> Outcomes:
    """Put the ``decision`` block (:func:`decision_doc`, at the projection's thresholds) into ``summary`` (a
    projection's :func:`~marketsim.experiments.projection.summary`); returns the outcomes it was read from."""
    o = from_projection(proj, summary)
    summary["decision"] = decision_doc(o, tuple(proj.thresholds))
    return o


def scenario_files(options: dict[str, Scenario]) -> dict[str, str]:
    """The scenario file of each option as the strategist wrote it, for the result folder and the exports:
    ``scenario-<name>.yaml`` -> its text (a file a ``base:`` names is added after it, marked), or, for a scenario
    that was not read from a file, its resolved form as YAML."""
    out = {}
    for name, sc in options.items():
        src = Path(sc.source)
        if src.is_file():
            text = src.read_text(encoding="utf-8")
            base = sc.raw.get("base") if isinstance(sc.raw, dict) else None
            if isinstance(base, str) and (src.parent / base).is_file():
                text += f"\n# ---- base: {base} (read from {src.parent / base}) ----\n"
                text += (src.parent / base).read_text(encoding="utf-8")
        else:
            text = "# resolved scenario (not read from a file)\n" + yaml.safe_dump(sc.to_dict(), sort_keys=False)
        out[f"scenario-{names.part(name)}.yaml"] = text
    return out


def write_decision_files(proj: Projection, folder: Path) -> None:
    """Write what the decision views and ``marketsim discover`` read besides replicates.parquet: draws.parquet and
    .csv (:func:`marketsim.experiments.decision.draws_table`) and each option's scenario file."""
    store.write_table(draws_table(proj), Path(folder) / "draws")
    for fname, text in scenario_files(proj.options).items():
        store.write_text(Path(folder) / fname, text)


def focus_retailer(summary: dict, retailers) -> str:
    """The retailer a projection's decision is about, when none is asked for: the one whose login the first login
    removal concerns (JD dropping Weibo), else the first retailer."""
    removals = (summary.get("lost_login") or {}).get("removals") or []
    named = [r.get("retailer") for r in removals if r.get("retailer") in retailers]
    return named[0] if named else list(retailers)[0]
