"""What every forecast report says about the model's skill and about how its trends continue past the data
(docs/model.md section 8, "Trends beyond the data"), from one rolling-origin computation on the decision-time
observations (:mod:`marketsim.experiments.trend_choice`, whose ``TrendChoice.to_dict()`` these functions read).
"""

from __future__ import annotations


def _horizons(q: list[int]) -> str:
    if not q:
        return "no horizon"
    span = str(q[0]) if len(q) == 1 else f"{q[0]}-{q[-1]}"
    return f"{span} quarter{'s' if q != [1] else ''} ahead"


def trend_sentence(choice: dict) -> str:
    """ "trends after the cut-off: hold (chosen: ...)", "(stated in the scenario)" or "(no origin could be
    scored: hold by default)"."""
    head = f"trends after the cut-off ({choice['until']}): {choice['label']}"
    if choice["how"] == "stated":
        return f"{head} (stated in the scenario)"
    if choice["how"] == "fallback":
        return (
            f"{head} (no origin could be scored: {choice['label']} by default; a trend is not carried past the "
            f"data without evidence that it goes on)"
        )
    maes = ", ".join(f"{k} {v:.2f}" for k, v in sorted(choice["mae"].items(), key=lambda kv: kv[1]))
    tie = "; a tie goes to the rule that carries less trend" if choice.get("tie") else ""
    if choice.get("tie") and len({round(v, 9) for v in choice["mae"].values()}) == 1:
        tie = (
            "; all alike: no origin before the cut-off had a fitted trend to carry, so the data say nothing about "
            "trends beyond them and the rule that carries none is kept"
        )
    return (
        f"{head} (chosen: rolling-origin MAE on {choice['n']} decision-time value{'s' if choice['n'] != 1 else ''}: "
        f"{maes} points; persistence {choice['persistence']:.2f}{tie})"
    )


#: Mean absolute errors closer than this (points of share) are said to be about as good: a hundredth of a point
#: on a handful of values is not skill (assumption: the sources themselves are given to a tenth of a point).
ALIKE_PP = 0.1


def skill(choice: dict) -> dict:
    """The model's skill on its own data (projection.json's ``skill``): n, horizons (quarters), the model's and
    persistence's mean absolute errors (points), whether it beats persistence (None: unknown) and the sentence."""
    n, model, pers = choice["n"], choice.get("model"), choice.get("persistence")
    beats = None if not n or model is None or pers is None else bool(model < pers)
    return {
        "n": n,
        "quarters": choice["horizons"],
        "mae": {"model": model, "persistence": pers},
        "trend_after": choice["label"],
        "until": choice["until"],
        "origins": choice["origins"],
        "beats_persistence": beats,
        "sentence": skill_sentence(choice),
    }


def skill_sentence(choice: dict) -> str:
    """One plain paragraph: how far this model's forecasts missed on the observations before the cut-off,
    against holding the last value flat; said plainly when it loses."""
    n, model, pers = choice["n"], choice.get("model"), choice.get("persistence")
    if not n or model is None or pers is None:
        return (
            f"The model's skill is unknown: no cut-off before {choice['until']} has a fit and a later observation "
            f"to forecast (n=0). Treat its level forecasts with caution; its shifts between options are what it "
            f"is for."
        )
    d = 2 if f"{model:.1f}" == f"{pers:.1f}" else 1  # never "3.1 against 3.1: it does better"
    head = (
        f"On the observations before the cut-off ({choice['until']}), this model's forecasts missed by "
        f"{model:.{d}f} points on average against {pers:.{d}f} for holding the last value flat (n={n}, "
        f"{_horizons(choice['horizons'])}; rolling-origin point forecasts, trends {choice['label']} after each "
        f"origin)"
    )
    if abs(model - pers) < ALIKE_PP:
        return (
            f"{head}: it does about as well as holding the last value flat (within {ALIKE_PP:g} points): treat its "
            f"level forecasts with caution; its shifts between options are what it is for."
        )
    if model < pers:
        return f"{head}: it does better than holding the last value flat."
    worse = "no better than" if model == pers else "worse than"
    return (
        f"{head}: it does {worse} holding the last value flat: treat its level forecasts with caution; its "
        f"shifts between options are what it is for."
    )


def with_trend_words(summ: dict) -> dict:
    """A projection summary from :func:`marketsim.experiments.workflow.run_projection` with the trend rule in
    words (``trend_after.sentence``) and the model's skill on its own data (``skill``) added, as every stored
    projection.json has them (the CLI and the page call this one function). Returns ``summ`` (changed in place)."""
    choice = dict(summ["trend_after"])
    summ["trend_after"] = {**choice, "sentence": trend_sentence(choice)}
    summ["skill"] = skill(choice)  # the model's skill on its own data, next to the answer
    return summ
