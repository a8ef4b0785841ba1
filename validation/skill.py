"""How good are the forecasts: run the rolling back-test of the bundled ``baseline_2013q2`` and the validation
back-test (``validation/china_b2c_2012_2015.yaml --until 2013-09-26``), and render a Markdown section with their
scores against these targets (the intervals' nominal rates, with a tolerance: docs/model.md section 11,
property 13; persistence as the bar a forecast must clear):

* the model's mean absolute error no worse than persistence's at every horizon with 3 or more values;
* the 90% intervals cover 80-97% of the held-out values, the 50% intervals 35-65%.

    python validation/skill.py [--write] [--draws N --replicates R --consumers C] [--results DIR]

Without ``--write`` it prints the section; with ``--write`` it replaces the section between the markers
:data:`BEGIN` and :data:`END` in README.md. The numbers the section was rendered from are kept in it, in an HTML
comment, so a test can check that the README's section is what :func:`render` makes of them.

The back-tests run through ``marketsim.cli.entry.main([..., "--json"])`` (their progress bars go to stderr);
the rendering (:func:`summarize`, :func:`render`) takes the documents ``--json`` prints and runs nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- BEGIN SKILL (python validation/skill.py --write) -->"
END = "<!-- END SKILL -->"
DATA = re.compile(r"<!-- skill data: (\{.*?\}) -->")
ROLLING_SCENARIO = "baseline_2013q2"
VALIDATION_SCENARIO = "validation/china_b2c_2012_2015.yaml"
VALIDATION_UNTIL = "2013-09-26"
MIN_N = 3  # a horizon's MAE is judged only with at least this many values
COVER90 = (0.80, 0.97)
COVER50 = (0.35, 0.65)
ROLLING_HEADER = "| quarters ahead | n | MAE model | MAE persistence | MAE drift | 50% coverage | 90% coverage |"
VALIDATION_HEADER = "| held-out figures | n | MAE (points) | 90% coverage |"


# --- running -----------------------------------------------------------------------------------------------------


def commands(draws: int, replicates: int, consumers: int) -> dict[str, list[str]]:
    """The two ``marketsim`` command lines (without ``--json`` and ``--results``)."""
    s = ["--draws", str(draws), "--replicates", str(replicates), "--consumers", str(consumers)]
    return {
        "rolling": ["backtest", ROLLING_SCENARIO, "--rolling", *s],
        "validation": ["backtest", VALIDATION_SCENARIO, "--until", VALIDATION_UNTIL, *s],
    }


def run_json(argv: list[str]) -> dict:
    """``marketsim ARGV --json``, in this process; its stdout parsed (progress stays on stderr)."""
    from marketsim.cli.entry import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*argv, "--json"])
    if code != 0:
        raise SystemExit(f"skill.py: marketsim {' '.join(argv)} exited with {code}")
    return json.loads(out.getvalue())


# --- rendering (no simulation) ---------------------------------------------------------------------------------


def _paired(rows: list[dict], baseline: str) -> tuple[float | None, float | None, int]:
    """(model MAE, baseline MAE, n) over the held-out rows (``holdout: true``) that have the baseline."""
    both = [h for h in rows if h.get("holdout", True) and h.get(baseline) is not None]
    if not both:
        return None, None, 0
    m = sum(abs(h["predicted"] - h["observed"]) for h in both) / len(both)
    b = sum(abs(h[baseline] - h["observed"]) for h in both) / len(both)
    return m, b, len(both)


def summarize(rolling: dict, validation: dict, settings: dict) -> dict:
    """The numbers the section shows, from the ``--json`` documents of the rolling back-test (``horizons``,
    ``heldout``) and of the validation back-test (``holdout``: ``mae``, ``mae_n``, ``coverage90_count``; its
    ``heldout`` rows, if given, for the model's MAE on the values persistence covers and the 50% coverage), and
    the settings (``draws``, ``replicates``, ``consumers``, ``seconds``)."""
    ho = validation.get("holdout") or {
        k: validation[k] for k in ("mae", "mae_n", "coverage90_count") if k in validation
    }
    k90, n90 = (int(x) for x in ho["coverage90_count"].split(" of "))
    rows = [h for h in validation.get("heldout", []) if h.get("holdout", True)]
    v = {
        "mae": ho["mae"],
        "mae_n": ho["mae_n"],
        "cover90": [k90, n90],
    }
    if rows:
        m, p, n = _paired(rows, "persistence")
        v["paired_persistence"] = None if n == 0 else {"model": m, "persistence": p, "n": n}
        if all("lo50" in h for h in rows):
            v["cover50"] = [sum(h["lo50"] <= h["observed"] <= h["hi50"] for h in rows), len(rows)]
    choices = {}
    t = validation.get("trend_after")
    if isinstance(t, dict) and t.get("sentence"):
        choices["validation_trend"] = t["sentence"]
    r = rolling.get("trend_after")
    if isinstance(r, list) and r:
        choices["rolling_trend"] = [
            {"origin": c["origin"], "rule": c.get("label") or c.get("rule"), "how": c.get("how")} for c in r
        ]
    err = validation.get("observation_error")
    if isinstance(err, dict) and err.get("sources"):
        choices["observation_error"] = {s: round(e["sigma_pp"], 2) for s, e in sorted(err["sources"].items())}
    return {
        "settings": settings,
        **({"choices": choices} if choices else {}),
        "rolling": [
            {"quarters": h["quarters"], "n": h["n"], "mae": h["mae"], "coverage": h["coverage"]}
            for h in rolling["horizons"]
        ],
        "validation": v,
    }


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _within(x: float, lo_hi: tuple[float, float]) -> bool:
    return lo_hi[0] <= x <= lo_hi[1]


def _met(ok: bool) -> str:
    return "met" if ok else "not met"


def rolling_verdicts(horizons: list[dict]) -> tuple[str, str]:
    """(persistence sentence, coverage sentence) for the rolling back-test."""
    judged = [h for h in horizons if h["n"] >= MIN_N]
    lost = [h for h in judged if h["mae"]["model"] > h["mae"]["persistence"]]
    if not judged:
        beat = (
            f"Does the model beat persistence? Cannot tell: no horizon has {MIN_N} or more held-out values "
            f"(target: no worse than persistence at every such horizon: not met)."
        )
    elif lost:
        worst = ", ".join(
            f"{h['quarters']} quarter{'s' if h['quarters'] != 1 else ''} ahead "
            f"({h['mae']['model']:.2f} against {h['mae']['persistence']:.2f} points)"
            for h in lost
        )
        where = (
            f"the only horizon with {MIN_N} or more values"
            if len(judged) == 1
            else f"{len(lost)} of the {len(judged)} horizons with {MIN_N} or more values"
        )
        beat = (
            f"Does the model beat persistence? No: its mean absolute error is worse than persistence's at {where}, "
            f"{worst}; target (no worse than persistence at every such horizon): not met."
        )
    else:
        beat = (
            "Does the model beat persistence? Yes: its mean absolute error is no worse than persistence's at "
            + (
                f"the only horizon with {MIN_N} or more values"
                if len(judged) == 1
                else f"all {len(judged)} horizons with {MIN_N} or more values"
            )
            + "; target: met."
        )
    n = sum(h["n"] for h in horizons)
    if n == 0:
        return beat, "Do the intervals cover what they claim? Cannot tell: no held-out value was scored (not met)."
    c90 = sum(h["coverage"]["90"] * h["n"] for h in horizons) / n
    c50 = sum(h["coverage"]["50"] * h["n"] for h in horizons) / n
    ok90, ok50 = _within(c90, COVER90), _within(c50, COVER50)
    cover = (
        f"Do the intervals cover what they claim? {'Yes' if ok90 and ok50 else 'No'}: over all {n} scored values "
        f"the 90% intervals hold {_pct(c90)} (target 80-97%: {_met(ok90)}) and the 50% intervals "
        f"{_pct(c50)} (target 35-65%: {_met(ok50)})."
    )
    return beat, cover


def validation_verdicts(v: dict) -> tuple[str, str]:
    """(persistence sentence, coverage sentence) for the validation back-test."""
    pp = v.get("paired_persistence")
    if pp is not None:
        m, p, n = pp["model"], pp["persistence"], pp["n"]
    else:
        m, p, n = v["mae"]["model"], v["mae"]["persistence"], v["mae_n"].get("persistence") or 0
    if p is None or n < MIN_N:
        beat = (
            f"Does the model beat persistence on the held-out figures? Cannot tell: persistence predicts fewer "
            f"than {MIN_N} of them (target: not met)."
        )
    elif m > p:
        beat = (
            f"Does the model beat persistence on the held-out figures? No: over the {n} that persistence predicts, "
            f"the model's mean absolute error is {m:.2f} points against persistence's {p:.2f} (target: no worse "
            f"than persistence: not met)."
        )
    else:
        beat = (
            f"Does the model beat persistence on the held-out figures? Yes: over the {n} that persistence predicts, "
            f"the model's mean absolute error is {m:.2f} points against persistence's {p:.2f} (target: met)."
        )
    k, n90 = v["cover90"]
    ok90 = n90 > 0 and _within(k / n90, COVER90)
    parts = [f"{k} of {n90} held-out figures lie inside the 90% intervals (target 80-97%: {_met(ok90)})"]
    ok = ok90
    if "cover50" in v:
        k5, n5 = v["cover50"]
        ok50 = n5 > 0 and _within(k5 / n5, COVER50)
        parts.append(f"{k5} of {n5} inside the 50% intervals (target 35-65%: {_met(ok50)})")
        ok = ok and ok50
    cover = f"Do the intervals cover what they claim? {'Yes' if ok else 'No'}: " + "; ".join(parts) + "."
    return beat, cover


def choice_lines(choices: dict) -> list[str]:
    """What the model chose and on which data (docs/model.md section 8): every structural option is chosen on the
    decision-time observations only, never on a held-out figure."""
    if not choices:
        return []
    out = ["**The choices behind these numbers, and the data they were made on** (none used a held-out figure):", ""]
    for c in choices.get("rolling_trend", []):
        out.append(
            f"- rolling back-test, origin {c['origin']}: trends after it {c['rule']} ({c['how']}, on the data before it)"
        )
    if "validation_trend" in choices:
        out.append(f"- validation: {choices['validation_trend']}")
    if "observation_error" in choices:
        errs = ", ".join(f"{s} {v:.1f}" for s, v in choices["observation_error"].items())
        from marketsim.fit.observation import Prior

        out.append(
            "- observation error per source (points; estimated from the decision-time fit's residuals, "
            f"{Prior().describe()}; src/marketsim/fit/observation.py): {errs}"
        )
    return out + [""]


def render(summary: dict) -> str:
    """The Markdown section "## How good are the forecasts" (without the markers), ending with the numbers it was
    rendered from in an HTML comment."""
    s = summary["settings"]
    cmd = commands(s["draws"], s["replicates"], s["consumers"])
    opts = f"--draws {s['draws']} --replicates {s['replicates']} --consumers {s['consumers']}"
    lines = [
        "## How good are the forecasts",
        "",
        "Generated by `python validation/skill.py --write` "
        f"(`{opts}`"
        + (f", {s['seconds']:.0f} seconds on {s['cpus']} cores" if s.get("seconds") is not None else "")
        + "); do not edit by hand. Targets: the model's mean absolute error (MAE, "
        f"points of GMV share) no worse than persistence's at every horizon with {MIN_N} or more values; 90% "
        "intervals covering 80-97% of the held-out values, 50% intervals 35-65% (their nominal rates, with a "
        "tolerance: docs/model.md section 11, property 13).",
        "",
        f"**Rolling back-test** (`marketsim {' '.join(cmd['rolling'])}`): fitted at every cut-off in turn, each "
        "later observation predicted; persistence is the source's last value, drift adds the series' mean change.",
        "",
        ROLLING_HEADER,
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for h in summary["rolling"]:
        m = h["mae"]
        lines.append(
            f"| {h['quarters']} | {h['n']} | {_f(m['model'])} | {_f(m['persistence'])} | {_f(m['drift'])} | "
            f"{_pct(h['coverage']['50'])} | {_pct(h['coverage']['90'])} |"
        )
    beat, cover = rolling_verdicts(summary["rolling"])
    lines += ["", beat, cover, ""]
    v = summary["validation"]
    lines += [
        f"**Validation against held-out figures** (`marketsim {' '.join(cmd['validation'])}`; validation/README.md): "
        "fitted on what was published by September 2013, scored on the market shares published after it.",
        "",
        VALIDATION_HEADER,
        "|---|---:|---:|---:|",
        f"| model | {v['mae_n']['model']} | {_f(v['mae']['model'])} | {v['cover90'][0]} of {v['cover90'][1]} |",
    ]
    pp = v.get("paired_persistence")
    if pp is not None and pp["n"] != v["mae_n"]["model"]:
        lines.append(f"| model, on the values persistence predicts | {pp['n']} | {_f(pp['model'])} | |")
    lines += [
        f"| persistence | {v['mae_n']['persistence']} | {_f(v['mae']['persistence'])} | |",
        f"| trend | {v['mae_n']['trend']} | {_f(v['mae']['trend'])} | |",
    ]
    beat, cover = validation_verdicts(v)
    lines += ["", beat, cover, ""]
    lines += choice_lines(summary.get("choices") or {})
    lines += [f"<!-- skill data: {json.dumps(summary, sort_keys=True)} -->"]
    return "\n".join(lines) + "\n"


def parse_section(text: str) -> dict:
    """The section between the markers in ``text``: its Markdown, the numbers it carries, and its two tables
    (lists of rows, each a list of cells, the header row first). Raises ValueError if a part is missing."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        raise ValueError("the markers are missing or repeated")
    body = text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    m = DATA.search(body)
    if m is None:
        raise ValueError("the section carries no skill data")
    tables, cur = [], None
    for line in body.splitlines():
        if line.startswith("|"):
            if cur is None:
                cur = []
                tables.append(cur)
            if not set(line) <= set("|-: "):
                cur.append([c.strip() for c in line.strip().strip("|").split("|")])
        else:
            cur = None
    if len(tables) != 2:
        raise ValueError(f"the section has {len(tables)} tables, not 2")
    return {"markdown": body, "data": json.loads(m.group(1)), "tables": tables}


def replace_section(text: str, section: str) -> str:
    """``text`` with the part between the markers replaced by ``section``."""
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{section}{END}{tail}"


# --- the script -------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--write", action="store_true", help="replace the section between the markers in README.md")
    p.add_argument("--draws", type=int, default=8, help="parameter draws (default 8)")
    p.add_argument("--replicates", type=int, default=2, help="replicates per draw (default 2)")
    p.add_argument("--consumers", type=int, default=10000, help="consumers (default 10000)")
    p.add_argument("--results", help="marketsim's results root (default: its own, results/)")
    a = p.parse_args(argv)
    results = None if a.results is None else str(Path(a.results).resolve())
    os.chdir(ROOT)  # the validation file's path, as the command line shows it, is relative to the repository
    try:
        import marketsim  # noqa: F401
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))
    cmd = commands(a.draws, a.replicates, a.consumers)
    extra = [] if results is None else ["--results", results]
    t0 = time.monotonic()
    docs = {}
    for i, (name, argv_) in enumerate(cmd.items(), 1):
        print(f"skill.py: [{i}/2] marketsim {' '.join(argv_)}", file=sys.stderr, flush=True)
        docs[name] = run_json([*argv_, *extra])
    settings = {
        "draws": a.draws,
        "replicates": a.replicates,
        "consumers": a.consumers,
        "seconds": round(time.monotonic() - t0),
        "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
    section = render(summarize(docs["rolling"], docs["validation"], settings))
    if not a.write:
        sys.stdout.write(section)
        return 0
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"skill.py: {readme} has no markers {BEGIN} ... {END}")
    readme.write_text(replace_section(text, section), encoding="utf-8")
    print(f"skill.py: wrote the section to {readme} ({settings['seconds']} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
