"""The "Decide" view of the live app: options of one market side by side over draws of the uncertain inputs.

A strategist chooses a scenario (default: the one ``marketsim viz`` serves) and its options (option files of the
same market next to it or bundled, or the scenario with some of its events switched off), a baseline (without
every event, or without chosen ones) and the size of the run (draws, replicates, consumers: small defaults, so
that the browser answers in a minute). Run projects them in the background through the same workflow and executor
as ``marketsim project`` (:mod:`marketsim.experiments.workflow`, :func:`marketsim.runtime.executor.open_executor`),
with a progress bar and Cancel (which stops the work and writes nothing).

Results are stored by the hash of their inputs (:func:`inputs_hash`) as a normal projection result set in
``<results>/decide/<hash>/`` (``$MARKETSIM_VIZ_RESULTS``; written whole or not at all by
:func:`marketsim.io.store.result_set`), so ``marketsim discover`` and the exports read them, and the same inputs
open again at once without recomputing. ``/?result=<hash>`` opens a stored result read-only (the retailer and the
threshold are the only controls); off loopback the page, and so the link, needs the server's token (the link the
page shows carries it).

What it shows per option (:mod:`marketsim.experiments.decision`): the chosen retailer's share path with its 50%
and 90% bands and the observed shares, the shift at the horizon with its 95% interval, the ranking with the chance
that each option beats each other, the chance of a loss (or gain) beyond a threshold (a slider, recomputed from the
stored arrays), a one-sentence conclusion, what drives the answer (tornado), what would flip it (PRIM boxes) and
the exports (HTML, XLSX).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

import solara
import solara.lab

from marketsim.errors import UserError
from marketsim.experiments import decision, projection
from marketsim.experiments.discovery import discover_outcomes
from marketsim.experiments.workflow import Cancelled, ProjectionPlan, ProjectionRequest, plan_projection, run_projection
from marketsim.fit.cache import cache_dir
from marketsim.io import store
from marketsim.report import decision as decision_words
from marketsim.report import projection as report
from marketsim.report.decision_charts import options_figure, tornado_figure
from marketsim.report.discovery import sentence as box_sentence
from marketsim.report.export import export_html, export_xlsx
from marketsim.report.numbers import interval, points, probability
from marketsim.report.skill import with_trend_words
from marketsim.runtime.executor import open_executor
from marketsim.scenario import bundled
from marketsim.scenario.core import Scenario, load_scenario, parse_scenario

#: Browser-sized defaults (assumption: small enough that three options of a tiny market answer in about a
#: minute on 2 cores; the command line's defaults are marketsim.experiments.defaults). 8 draws: the fewest that
#: scenario discovery searches for boxes (marketsim.experiments.discovery.MIN_DRAWS).
DEFAULT_DRAWS, DEFAULT_REPLICATES, DEFAULT_CONSUMERS = 8, 2, 2000
#: The threshold slider's range and start (points of share; assumption: a loss of 0.3 points is the size
#: the JD question is asked at, docs/model.md's worked case).
THRESHOLD_RANGE, DEFAULT_THRESHOLD = (-2.0, 2.0), -0.3
#: A stored result's name: the sha256 of its inputs, in hex.
HASH_RE = re.compile(r"^[0-9a-f]{64}$")
#: The folder under the results folder that holds the Decide view's results.
STORE = "decide"
#: What the Decide view writes beside a projection's files: its inputs, to reopen it read-only.
META = "decide.json"

#: Projections this process has run for the Decide view (a stored result opened again does not count).
PROJECTIONS_RUN = 0
_RUN_LOCK = threading.Lock()


def results_root() -> Path:
    """The results folder: $MARKETSIM_VIZ_RESULTS (``marketsim viz --results``), else ./results."""
    return Path(os.environ.get("MARKETSIM_VIZ_RESULTS") or store.RESULTS_DIR)


def result_folder(h: str, root: Path | None = None) -> Path:
    return (root or results_root()) / STORE / h


# --------------------------------------------------------------------------- inputs and their hash


@dataclass(frozen=True)
class DecideInputs:
    """What the Decide view runs: the scenario file; option files; options that are the scenario with the
    listed events switched off; the baseline (None: without every one-off event); the run's size."""

    scenario: str
    option_files: tuple[str, ...] = ()
    events_off: tuple[tuple[str, ...], ...] = ()
    baseline_without: tuple[str, ...] | None = None
    draws: int = DEFAULT_DRAWS
    replicates: int = DEFAULT_REPLICATES
    consumers: int = DEFAULT_CONSUMERS


def option_without(sc: Scenario, off: tuple[str, ...]) -> Scenario:
    """The option ``sc`` with the events ``off`` switched off, named "<name> without <ids>"."""
    v = sc.without_events(list(off))
    raw = {**dict(v.raw), "name": f"{sc.name}-without-{'-'.join(off)}"}
    return parse_scenario(raw, source=sc.source)


def request_of(inputs: DecideInputs, root: Path | None = None) -> ProjectionRequest:
    """The workflow's request for ``inputs`` (the files loaded; each option at the scenario's consumers)."""
    sc = load_scenario(inputs.scenario).with_overrides(consumers=inputs.consumers)
    compare: list[tuple[str, Scenario]] = [(f, load_scenario(f)) for f in inputs.option_files]
    compare += [(f"events off: {', '.join(off)}", option_without(sc, off)) for off in inputs.events_off]
    return ProjectionRequest(
        scenario=sc,
        label=inputs.scenario,
        cache_dir=cache_dir(root or results_root()),
        compare=tuple(compare),
        baseline_without=None if inputs.baseline_without is None else list(inputs.baseline_without),
        draws=inputs.draws,
        replicates=inputs.replicates,
        settings={"viz": "decide"},
    )


def inputs_hash(
    option_digests: list[tuple[str, str]],
    baseline_without: list[str] | None,
    draws: int,
    replicates: int,
    consumers: int,
    seed: int,
    steps: int,
    trend: dict,
    draws_from: dict | None = None,
) -> str:
    """The sha256 (hex) that names a Decide result: the options (name and scenario digest, in order), the
    baseline, draws, replicates, consumers, seed, steps, the trend rule and where the draws come from. The same
    inputs give the same hash in any process; any change gives another."""
    doc = {
        "format": 1,
        "options": [list(x) for x in option_digests],
        "baseline_without": None if baseline_without is None else sorted(baseline_without),
        "draws": int(draws),
        "replicates": int(replicates),
        "consumers": int(consumers),
        "seed": int(seed),
        "steps": int(steps),
        "trend": trend,
        "draws_from": draws_from or {},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def plan_hash(plan: ProjectionPlan) -> str:
    sc = plan.scenario
    return inputs_hash(
        [(n, v.digest()) for n, v in plan.options.items()],
        plan.request.baseline_without,
        plan.draws.k,
        plan.replicates,
        sc.consumers.count,
        sc.seed,
        sc.calendar.steps,
        plan.choice.to_dict(),
        plan.draws_from,
    )


# --------------------------------------------------------------------------- the store


@dataclass(frozen=True)
class Stored:
    """A stored Decide result: its hash, folder, outcomes (:func:`marketsim.experiments.decision.from_folder`)
    and what :data:`META` says (options, baseline, observed shares, size)."""

    hash: str
    folder: Path
    outcomes: Any
    meta: dict


def check_hash(h: str) -> str:
    """``h`` if it is a result's name (64 hex digits); else a UserError in one line."""
    if not isinstance(h, str) or not HASH_RE.match(h):
        raise UserError(
            f"result={h[:80] if isinstance(h, str) else h!r}: not a result's name (64 hex digits, as in the link the "
            f"Decide view shows)"
        )
    return h


def open_stored(h: str, root: Path | None = None) -> Stored:
    """The stored result ``h`` (never recomputed); UserError (one line) for a malformed or unknown one."""
    folder = result_folder(check_hash(h), root)
    if not folder.is_dir() or store.set_manifest(folder) is None:
        raise UserError(
            f"result={h}: no stored result of that name on this server (it was removed, or the link "
            f"comes from another server)"
        )
    meta = store.read_result(folder, [META]).json(META)
    return Stored(h, folder, decision.from_folder(folder), meta)


def write_result(folder: Path, proj, summ: dict, meta: dict) -> None:
    """One projection result set in ``folder`` (all files or none): what ``marketsim project`` writes, the
    parameter draws (draws.parquet and .csv) and :data:`META`."""
    with store.result_set(folder, "projection", writer="marketsim viz") as new:
        report.write_result_files(proj, summ, new)  # as `marketsim project` writes them
        store.write_json(new / META, meta)
        store.write_json(new / "projection.json", summ)


def run_decide(
    inputs: DecideInputs,
    *,
    root: Path | None = None,
    cancel: threading.Event | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
    on_note: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> tuple[str, bool]:
    """Project ``inputs`` and store the result, or find it stored: (its hash, whether it was computed now).
    ``cancel`` stops the work (:class:`marketsim.experiments.workflow.Cancelled`; nothing is written)."""
    global PROJECTIONS_RUN
    plan = plan_projection(request_of(inputs, root), on_note=on_note)
    h = plan_hash(plan)
    folder = result_folder(h, root)
    if store.set_manifest(folder) is not None:
        return h, False
    if cancel is not None and cancel.is_set():
        raise Cancelled("the projection was cancelled")
    with open_executor(plan.jobs, workers=workers) as pool:
        proj, summ = run_projection(
            plan, executor=pool.executor, on_progress=on_progress, cancel=cancel, add=decision_words.add_decision
        )  # the decision block, as `marketsim project` adds it
    with_trend_words(summ)
    with _RUN_LOCK:
        PROJECTIONS_RUN += 1
    if cancel is not None and cancel.is_set():
        raise Cancelled("the projection was cancelled")
    sc = plan.scenario
    meta = {
        "hash": h,
        "scenario": sc.name,
        "scenario_file": str(inputs.scenario),
        "options": list(plan.options),
        "option_files": list(inputs.option_files),
        "events_off": [list(x) for x in inputs.events_off],
        "baseline_without": summ["baseline_without"],
        "draws": plan.draws.k,
        "replicates": plan.replicates,
        "consumers": sc.consumers.count,
        "seed": sc.seed,
        "steps": sc.calendar.steps,
        "events": [{"id": e.id, "date": e.date.isoformat()} for e in sc.one_off_events],
    }
    write_result(folder, proj, summ, meta)
    return h, True


def flip_boxes(o, option: str, retailer: str, threshold_pp: float) -> tuple[list[dict], str]:
    """What would flip it: the boxes of assumptions (PRIM, :func:`marketsim.experiments.discovery.discover_outcomes`)
    under which ``option`` moves ``retailer`` beyond ``threshold_pp`` points, each as {"sentence", "coverage",
    "density"}, and, when there is nothing to search (too few draws, no case or only cases at this threshold),
    the one line that says why."""
    try:
        d = discover_outcomes(o, option, retailer, threshold_pp)
    except UserError as e:
        return [], str(e)
    return [{"sentence": box_sentence(d, b), "coverage": b.coverage, "density": b.density} for b in d.boxes], ""


def exported(kind: str, folder: Path, retailer: str, threshold_pp: float) -> bytes:
    """The ``html`` report or the ``xlsx`` workbook of the stored result in ``folder`` (for ``retailer`` at
    ``threshold_pp``), as the bytes a download sends (:mod:`marketsim.report.export`, written to a temporary
    file outside the result folder)."""
    import tempfile

    make = export_html if kind == "html" else export_xlsx
    with tempfile.TemporaryDirectory(prefix="marketsim-export-") as tmp:
        dest = Path(tmp) / f"export.{kind}"
        make(folder, dest, retailer=retailer, threshold_pp=threshold_pp)
        return dest.read_bytes()


# --------------------------------------------------------------------------- choices offered on the page


def same_market_files(base: Path) -> list[Path]:
    """Scenario files that can be options of ``base``: the other .yaml files in its folder and the bundled
    scenarios whose market is the same (:func:`marketsim.experiments.projection.market_differences` is empty)."""
    try:
        sc = load_scenario(base)
    except Exception:
        return []
    seen, out = {base.resolve()}, []
    cands = sorted(base.parent.glob("*.yaml")) + [bundled.path(n) for n in bundled.names()]
    for p in cands:
        r = p.resolve()
        if r in seen:
            continue
        seen.add(r)
        try:
            v = load_scenario(p)
        except Exception:
            continue  # a sweep file, a broken file: not an option
        if v.name != sc.name and projection.market_differences(sc, v) == []:
            out.append(p)
    return out


def scenario_choices(served: Path) -> list[Path]:
    """The scenarios the view offers: the served one first, the files next to it, then the bundled ones."""
    out = [served]
    for p in sorted(served.parent.glob("*.yaml")) + [bundled.path(n) for n in bundled.names()]:
        if p.resolve() not in {q.resolve() for q in out}:
            out.append(p)
    return out


def file_label(p: Path, served: Path) -> str:
    """How the page names a scenario file: its name when it lies next to the served one, else
    ``bundled: NAME`` for a bundled one, else its path."""
    if p.resolve().parent == served.resolve().parent:
        return p.name
    if p.resolve().parent == bundled.folder().resolve():
        return f"bundled: {p.stem}"
    return str(p)


def token_link(h: str) -> str:
    """The address that opens result ``h``: ``/?result=<hash>``, with the server's token when it has one (read
    from this browser session's cookie, which :class:`marketsim.viz.server.PageGuard` set)."""
    link = f"/?result={h}"
    try:
        cookies = solara.lab.cookies.value or {}
        headers = solara.lab.headers.value or {}
    except Exception:
        return link
    host = (headers.get("host") or [""])[0] if isinstance(headers.get("host"), list) else headers.get("host", "")
    port = str(host).rsplit(":", 1)[-1] if ":" in str(host) else ""
    tokens = {k[len("marketsim-viz-token-") :]: v for k, v in cookies.items() if k.startswith("marketsim-viz-token-")}
    token = tokens.get(port) or (next(iter(tokens.values())) if len(tokens) == 1 else None)
    if token:
        from urllib.parse import quote

        link += f"&token={quote(token, safe='')}"
    return link


# --------------------------------------------------------------------------- words and numbers


def _pp(x: float) -> str:
    return points(x)


def _pct(p: float) -> str:
    return "–" if p != p else probability(p)


def _fig_html(fig) -> str:
    """A matplotlib figure as an inline SVG (no file, no external reference)."""
    import io

    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    plt.close(fig)
    svg = buf.getvalue()
    return svg[svg.find("<svg") :]


# --------------------------------------------------------------------------- the view


_CSS = """
.marketsim-decide table { border-collapse: collapse; margin: 6px 0 12px 0; }
.marketsim-decide td, .marketsim-decide th { border-bottom: 1px solid #ddd; padding: 3px 10px; text-align: right; }
.marketsim-decide td:first-child, .marketsim-decide th:first-child { text-align: left; }
.marketsim-decide h3 { margin: 14px 0 4px 0; }
#marketsim-conclusion { font-size: 17px; font-weight: 500; max-width: 900px; margin: 8px 0; }
"""


def _threshold_span(o, retailer: str) -> tuple[float, float]:
    """The threshold slider's ends: :data:`THRESHOLD_RANGE` widened to whole points around every option's mean
    shift of ``retailer`` in any draw."""
    j = o.retailer_index(retailer)
    means = [o.shift(a)[:, :, j].mean(axis=1) * 100 for a in o.options]
    lo = min(THRESHOLD_RANGE[0], math.floor(min(float(m.min()) for m in means)))
    hi = max(THRESHOLD_RANGE[1], math.ceil(max(float(m.max()) for m in means)))
    return float(lo), float(hi)


@solara.component
def ResultView(stored: Stored, read_only: bool):
    """A stored result: the controls for retailer and threshold, the answer and its reasons, the exports."""
    o = stored.outcomes
    retailers = list(o.retailers)
    default = decision_words.focus_retailer(o.summary, retailers)  # as the terminal and the exports choose
    retailer = solara.use_reactive(default)
    threshold = solara.use_reactive(DEFAULT_THRESHOLD)
    focus = solara.use_reactive(o.options[0])  # the option whose drivers and flips are shown (default: the scenario)
    r, t = retailer.value, float(threshold.value)
    rank = solara.use_memo(lambda: decision.ranking(o, r), dependencies=[r, stored.hash])
    beats = solara.use_memo(lambda: decision.p_beats(o, r), dependencies=[r, stored.hash])
    beyond = decision.p_beyond(o, r, t)
    sentence = decision_words.conclusion(o, r, t)
    f = focus.value if focus.value in o.options else o.options[0]
    torn = solara.use_memo(lambda: decision.tornado(o, f, r), dependencies=[r, f, stored.hash])
    boxes, why_none = solara.use_memo(lambda: flip_boxes(o, f, r, t), dependencies=[r, f, t, stored.hash])
    charts = solara.use_memo(lambda: _fig_html(options_figure(o, r)), dependencies=[r, stored.hash])
    tornado_svg = solara.use_memo(
        lambda: _fig_html(tornado_figure(torn, f"What drives {r}'s shift under {f}")) if torn["rows"] else "",
        dependencies=[r, f, stored.hash],
    )
    direction = "loses more than" if t < 0 else "gains more than"
    # the slider reaches every outcome of this retailer (at least THRESHOLD_RANGE): a threshold the outcomes
    # never cross has nothing to discover
    span = solara.use_memo(lambda: _threshold_span(o, r), dependencies=[r, stored.hash])
    with solara.Column(classes=["marketsim-decide"], style={"padding": "8px 16px"}):
        with solara.Row(style={"align-items": "center", "flex-wrap": "wrap"}):
            solara.Select("Retailer", values=retailers, value=retailer, style={"max-width": "200px"})
            solara.Select("Option to explain", values=list(o.options), value=focus, style={"max-width": "320px"})
            with solara.Div(style={"min-width": "360px", "flex-grow": "1"}, attributes={"id": "marketsim-threshold"}):
                solara.FloatSlider(
                    f"Threshold: {t:+.1f} points of share",
                    value=threshold,
                    min=span[0],
                    max=span[1],
                    step=0.1,
                )
        solara.HTML(
            tag="div",
            attributes={"id": "marketsim-conclusion", "data-hash": stored.hash},
            unsafe_innerHTML=escape(sentence),
        )
        solara.HTML(
            tag="div",
            unsafe_innerHTML=(
                f"Baseline: {escape(o.baseline)}; {len(o.weights)} parameter draws x "
                f"{o.share[o.options[0]].shape[1]} replicates, {stored.meta.get('consumers', 0):,} consumers; "
                f"shares at the horizon {escape(o.horizon())}. Intervals: 95% over draws and replicates."
            ),
        )
        solara.HTML(tag="h3", unsafe_innerHTML="The options, ranked for " + escape(r))
        head = "".join(f"<th>P(beats {escape(b)})</th>" for b in o.options)
        rows = "".join(
            f"<tr data-option='{escape(x['option'])}'><td>{escape(x['option'])}</td><td>{_pp(x['mean_pp'])}</td>"
            f"<td>{interval(*x['ci95_pp'])}</td><td>{_pct(x['p_best'])}</td>"
            f"<td class='beyond'>{_pct(beyond[x['option']])}</td>"
            + "".join(f"<td>{_pct(beats[x['option']][b])}</td>" for b in o.options)
            + "</tr>"
            for x in rank
        )
        solara.HTML(
            tag="table",
            attributes={"id": "marketsim-ranking"},
            unsafe_innerHTML=(
                f"<tr><th>option</th><th>shift of {escape(r)} (points)</th><th>95% interval</th><th>P(best)</th>"
                f"<th>P({escape(r)} {direction} {abs(t):.1f} pt)</th>{head}</tr>{rows}"
            ),
        )
        solara.HTML(
            tag="h3",
            unsafe_innerHTML=f"{escape(r)}'s share of GMV under each option (50% and 90% bands; dots: observed)",
        )
        solara.HTML(tag="div", attributes={"id": "marketsim-options-chart"}, unsafe_innerHTML=charts)
        solara.HTML(tag="h3", unsafe_innerHTML=f"What drives it: {escape(r)}'s shift under {escape(f)}")
        solara.HTML(
            tag="div",
            attributes={"id": "marketsim-tornado"},
            unsafe_innerHTML=tornado_svg,
        )
        if not tornado_svg:  # (a chart says how its ends were estimated in its own footnote)
            solara.HTML(
                tag="div", style="font-size:12px;color:#555", unsafe_innerHTML=escape(str(torn.get("method", "")))
            )
        solara.HTML(
            tag="h3", unsafe_innerHTML=f"What would flip it: when {escape(f)} moves {escape(r)} beyond {t:+.1f} points"
        )
        items = "".join(
            f"<li class='box'>{escape(b['sentence'])}"
            + (
                ""
                if "coverage" in b["sentence"]
                else f" (coverage {_pct(b['coverage'])}, density {_pct(b['density'])})"
            )
            + "</li>"
            for b in boxes
        )
        solara.HTML(
            tag="ul",
            attributes={"id": "marketsim-boxes", "data-threshold": f"{t:+.1f}", "data-option": f},
            unsafe_innerHTML=items
            or f"<li class='none'>No box of assumptions under which {escape(f)} moves {escape(r)} beyond "
            f"{t:+.1f} points{': ' + escape(why_none) if why_none else ''}.</li>",
        )
        with solara.Row(style={"align-items": "center", "flex-wrap": "wrap"}):
            solara.FileDownload(
                lambda: exported("html", stored.folder, r, t),
                filename=f"decide-{stored.hash[:12]}.html",
                label="Export HTML",
            )
            solara.FileDownload(
                lambda: exported("xlsx", stored.folder, r, t),
                filename=f"decide-{stored.hash[:12]}.xlsx",
                label="Export XLSX",
            )
            link = token_link(stored.hash)
            solara.HTML(
                tag="div",
                attributes={"id": "marketsim-link"},
                unsafe_innerHTML=f"Link to this result{' (read-only)' if not read_only else ''}: "
                f"<a href='{escape(link)}'>{escape(link)}</a>",
            )


def _days(iso: str) -> int:
    import datetime as dt

    return dt.date.fromisoformat(iso).toordinal()


@solara.component
def StoredPage(h: str):
    """``/?result=<hash>``: a stored result, read-only, or one line saying why it cannot be shown."""
    solara.Title("marketsim · Decide")
    solara.Style(_CSS)

    def load():
        try:
            return open_stored(h), ""
        except UserError as e:
            return None, str(e)
        except Exception as e:  # a damaged folder: one line, never a traceback
            return (
                None,
                f"result={h[:80]}: cannot be opened ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
            )

    stored, err = solara.use_memo(load, dependencies=[h])
    if stored is None:
        return solara.HTML(
            tag="div",
            attributes={"id": "marketsim-error"},
            style="color:#b00020;padding:16px",
            unsafe_innerHTML=escape(f"marketsim: {err}"),
        )
    with solara.Column() as main:
        solara.HTML(
            tag="h2",
            style="margin:12px 16px 0 16px",
            unsafe_innerHTML=f"{escape(stored.meta.get('scenario', ''))}: its options (read-only)",
        )
        ResultView(stored, read_only=True)
    return main


@solara.component
def DecidePage(served: Path, consumers: int | None = None):
    """The Decide view: inputs, Run / Cancel with progress, then the result (:func:`ResultView`)."""
    solara.Style(_CSS)
    choices = solara.use_memo(
        lambda: {file_label(p, served): str(p) for p in scenario_choices(served)}, dependencies=[str(served)]
    )
    scenario_label = solara.use_reactive(file_label(served, served))
    scenario_path = choices.get(scenario_label.value, str(served))
    base = solara.use_memo(lambda: _try_load(scenario_path), dependencies=[scenario_path])
    files = solara.use_memo(
        lambda: {file_label(p, served): str(p) for p in same_market_files(Path(scenario_path))},
        dependencies=[scenario_path],
    )
    chosen = solara.use_reactive([])  # option files (their labels)
    events = [e.id for e in base.one_off_events] if base is not None else []
    off_options = solara.use_reactive([])  # options as lists of events switched off
    off_now = solara.use_reactive([])
    baseline_mode = solara.use_reactive("without every event")
    baseline_events = solara.use_reactive([])
    draws = solara.use_reactive(DEFAULT_DRAWS)
    replicates = solara.use_reactive(DEFAULT_REPLICATES)
    n_consumers = solara.use_reactive(min(consumers or DEFAULT_CONSUMERS, DEFAULT_CONSUMERS))
    run_id = solara.use_reactive(0)
    progress = solara.use_reactive(0.0)
    message = solara.use_reactive("")
    result = solara.use_reactive("")  # hash of the result shown
    from_store = solara.use_reactive(False)
    cancel = solara.use_memo(lambda: {"event": threading.Event()}, dependencies=[])

    def inputs() -> DecideInputs:
        return DecideInputs(
            scenario=scenario_path,
            option_files=tuple(files[x] for x in chosen.value if x in files),
            events_off=tuple(tuple(x) for x in off_options.value),
            baseline_without=None if baseline_mode.value == "without every event" else tuple(baseline_events.value),
            draws=int(draws.value),
            replicates=int(replicates.value),
            consumers=int(n_consumers.value),
        )

    def work():
        if run_id.value == 0:
            return None
        ev = threading.Event()
        cancel["event"] = ev
        progress.set(0.0)
        message.set("Preparing: the trend rule and the draws ...")
        done: dict = {}

        def on_progress(stage, k, total):
            done[stage] = (k, total)
            fits, reps = done.get("fits", (0, 1)), done.get("replicates", (0, 0))
            tot = fits[1] + (reps[1] or 1)
            progress.set(100.0 * (fits[0] + reps[0]) / max(tot, 1))
            message.set(f"Running: {fits[0]} of {fits[1]} fits, {reps[0]} of {reps[1] or '?'} replicates")

        try:
            h, computed = run_decide(inputs(), cancel=ev, on_progress=on_progress)
        except Cancelled:
            message.set("Cancelled: nothing was stored.")
            return None
        except UserError as e:
            message.set(f"marketsim: {e}")
            return None
        except Exception as e:  # one line, never a traceback on the page
            message.set(f"marketsim: the run failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            return None
        progress.set(100.0)
        from_store.set(not computed)
        message.set("Done." if computed else "Opened from the store: these inputs were run before.")
        result.set(h)
        return h

    task = solara.lab.use_task(work, dependencies=[run_id.value], prefer_threaded=True, raise_error=False)
    running = bool(task.pending)
    stored = solara.use_memo(lambda: _try_open(result.value), dependencies=[result.value])

    with solara.Column(classes=["marketsim-decide"], style={"padding": "8px 16px"}):
        solara.HTML(tag="h2", unsafe_innerHTML="Decide: compare options over the uncertain assumptions")
        with solara.Row(style={"flex-wrap": "wrap", "align-items": "center"}):
            solara.Select("Scenario", values=list(choices), value=scenario_label, disabled=running)
            solara.SelectMultiple(
                "Option files (same market)",
                values=chosen.value,
                all_values=list(files),
                on_value=chosen.set,
                disabled=running,
            )
        with solara.Row(style={"flex-wrap": "wrap", "align-items": "center"}):
            solara.SelectMultiple(
                "Events switched off", values=off_now.value, all_values=events, on_value=off_now.set, disabled=running
            )

            def add_off():
                if off_now.value and list(off_now.value) not in off_options.value:
                    off_options.set([*off_options.value, list(off_now.value)])
                off_now.set([])

            solara.Button("Add as option", on_click=add_off, disabled=running or not off_now.value)
            if off_options.value:
                solara.Button("Clear event options", on_click=lambda: off_options.set([]), disabled=running)
        names = (
            [base.name if base is not None else "?"]
            + [_name_of(files.get(f, f)) for f in chosen.value]
            + [f"{base.name if base is not None else '?'}-without-{'-'.join(x)}" for x in off_options.value]
        )
        solara.HTML(
            tag="div",
            attributes={"id": "marketsim-options"},
            unsafe_innerHTML="Options: " + ", ".join(escape(n) for n in names),
        )
        with solara.Row(style={"flex-wrap": "wrap", "align-items": "center"}):
            solara.Select(
                "Baseline",
                values=["without every event", "without chosen events"],
                value=baseline_mode,
                disabled=running,
            )
            if baseline_mode.value == "without chosen events":
                solara.SelectMultiple(
                    "Baseline without",
                    values=baseline_events.value,
                    all_values=events,
                    on_value=baseline_events.set,
                    disabled=running,
                )
            solara.InputInt("Draws", value=draws, disabled=running)
            solara.InputInt("Replicates", value=replicates, disabled=running)
            solara.InputInt("Consumers", value=n_consumers, disabled=running)
        with solara.Row(style={"align-items": "center"}):
            solara.Button(
                "Run", on_click=lambda: run_id.set(run_id.value + 1), disabled=running or base is None, color="primary"
            )

            def do_cancel():
                cancel["event"].set()
                message.set("Cancelling ...")

            solara.Button("Cancel", on_click=do_cancel, disabled=not running)
        if running:
            solara.ProgressLinear(value=progress.value or True)
        if message.value:
            solara.HTML(
                tag="div",
                attributes={
                    "id": "marketsim-decide-status",
                    "data-from-store": "true" if from_store.value else "false",
                },
                unsafe_innerHTML=escape(message.value),
            )
    if stored is not None and not running:
        ResultView(stored, read_only=False)


def _name_of(path: str) -> str:
    """The scenario name in the file ``path`` (its file name if it cannot be read)."""
    sc = _try_load(path)
    return sc.name if sc is not None else Path(path).stem


def _try_load(path: str) -> Scenario | None:
    try:
        return load_scenario(path)
    except Exception:
        return None


def _try_open(h: str) -> Stored | None:
    if not h:
        return None
    try:
        return open_stored(h)
    except UserError:
        return None


def query_value(search: str | None, key: str) -> str | None:
    """The value of ``key`` in a URL's query (``a=1&result=...``), or None."""
    from urllib.parse import parse_qs

    vals = parse_qs(search or "", keep_blank_values=True).get(key)
    return vals[0] if vals else None
