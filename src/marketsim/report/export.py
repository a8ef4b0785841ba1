"""Files a strategist can send: one self-contained HTML report and one Excel workbook of a stored projection.

Both are written from a projection's result folder (projection.json, replicates.parquet, draws.parquet, the
charts and the options' scenario files), so ``marketsim project --export html,xlsx`` and the browser's Decide
view export the same way; the numbers come from :mod:`marketsim.experiments.decision` (ranking, P(beats),
P(beyond a threshold), the tornado) and the sentence from :mod:`marketsim.report.decision`.

- :func:`export_html`: ``report.html``, one file that opens anywhere offline: every chart inline as SVG, the CSS
  inline, no script, no link, no external address; the conclusion, the options table, the shifts per retailer,
  the assumptions with their ranges, units and sources, the back-test skill, what the intervals cover, the
  settings and the scenario files.
- :func:`export_xlsx`: ``projection.xlsx``, every table on its own sheet (an "About" sheet first says what each
  holds); numbers are stored as numbers with a number format (shares and probabilities as fractions shown in %,
  shifts in percentage points), the header row bold and frozen.

Every number shown in words is written by :mod:`marketsim.report.numbers`, every parameter named by
:mod:`marketsim.scenario.labels`.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import importlib
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from marketsim.errors import UserError
from marketsim.experiments import decision as core
from marketsim.experiments.projection import BASELINE
from marketsim.figures.plots import close
from marketsim.io import store
from marketsim.io.names import describe
from marketsim.report import decision as words
from marketsim.report.numbers import interval, points, probability, share, shift, with_unit

try:  # the decision charts (tornado, options, ranking): the report shows them where the module is installed
    _charts: Any = importlib.import_module("marketsim.report.decision_charts")
except ImportError:  # pragma: no cover
    _charts = None

#: What ``--export`` can write, and the file each writes into the projection's folder.
FORMATS = {"html": "report.html", "xlsx": "projection.xlsx"}
#: ``--export all``: every format.
ALL = "all"
#: The pip extra that brings openpyxl (the workbook writer).
EXTRA = "pip install 'marketsim[decide]'"
#: The projection's charts, in the order the report shows them: file stem and caption (written by
#: :func:`marketsim.report.projection.write_report` as PNG and SVG).
PROJECTION_CHARTS = (
    ("fan", "GMV share over time: the scenario against its baseline, median and 95% bands"),
    ("shift", "Share shift at the horizon per retailer: mean and 95% interval"),
    ("compare", "The options compared on the same draws and seeds"),
    ("flows", "Where the shoppers who lost a login bought last"),
)


def parse_formats(text: str) -> list[str]:
    """``html,xlsx`` (or ``all``) -> ``["html", "xlsx"]``. UserError (one line) for an unknown format, listing the
    valid ones, and for ``xlsx`` when openpyxl is not installed (saying how to install it)."""
    asked = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not asked:
        raise UserError(f"--export: no format given; valid: {', '.join(FORMATS)} or {ALL}")
    out: list[str] = []
    for t in asked:
        if t == ALL:
            out += [f for f in FORMATS if f not in out]
        elif t in FORMATS:
            out += [t] if t not in out else []
        else:
            raise UserError(
                f"--export: unknown format {t!r}; valid: {', '.join(FORMATS)} or {ALL} (e.g. --export html,xlsx)"
            )
    if "xlsx" in out:
        _openpyxl()
    return out


def _openpyxl():
    try:
        import openpyxl
    except ImportError:
        raise UserError(f"--export xlsx: the workbook needs openpyxl, which is not installed; {EXTRA}") from None
    return openpyxl


# --------------------------------------------------------------------------- what a projection folder holds


@dataclass
class Stored:
    """A stored projection as the exports read it: its JSON, its files (name -> bytes) and its outcomes."""

    folder: Path
    summary: dict
    files: dict[str, bytes]
    outcomes: core.Outcomes
    retailer: str
    threshold_pp: float

    def text(self, name: str) -> str | None:
        b = self.files.get(name)
        return None if b is None else b.decode("utf-8", errors="replace")

    def table(self, name: str) -> pd.DataFrame | None:
        b = self.files.get(name)
        if b is None:
            return None
        return pd.read_parquet(io.BytesIO(b)) if name.endswith(".parquet") else pd.read_csv(io.BytesIO(b))


_SCENARIO_FILE = re.compile(r"^(scenario-.*|scenarios/.*)\.ya?ml$")


def _wanted(name: str) -> bool:
    """The files the exports read besides what the outcomes hold: the JSON, the draws, the charts, the scenario
    files (not the replicates' tables: the outcomes hold their numbers)."""
    return (
        name in ("projection.json", "draws.parquet")
        or name.endswith((".svg", ".png"))
        or bool(_SCENARIO_FILE.match(name))
    )


def _files_of(folder: Path) -> dict[str, bytes]:
    """The files of a result set the exports read (:func:`_wanted`), checked against its manifest
    (:func:`marketsim.io.store.read_result`); a folder that is not (yet) a result set, such as the one a command
    is filling before it swaps it in, is read as it is."""
    if store.result_kind(folder) is not None:
        listed = (store.set_manifest(folder) or {}).get("files") or {}
        names = [n for n in listed if _wanted(n)]
        return dict(store.read_result(folder, names).data) if names else dict(store.read_result(folder).data)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder; give a folder `marketsim project` wrote")
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file() and _wanted(p.name)}


def load(
    folder: str | Path,
    *,
    retailer: str | None = None,
    threshold_pp: float | None = None,
    summary: dict | None = None,
    outcomes: core.Outcomes | None = None,
) -> Stored:
    """A stored projection folder, ready to export. ``summary`` and ``outcomes`` stand in for projection.json and
    for what :func:`marketsim.experiments.decision.from_folder` reads, while a command is still writing the folder.
    The retailer defaults to the one whose login the first removal concerns, else the first; the threshold to the
    projection's first --threshold, else :data:`words.DEFAULT_THRESHOLD_PP`."""
    folder = Path(folder)
    files = _files_of(folder)
    if summary is None:
        if "projection.json" not in files:
            raise UserError(f"{folder}: has no projection.json; give a folder `marketsim project` wrote")
        import json

        summary = json.loads(files["projection.json"].decode("utf-8"))
    o = outcomes if outcomes is not None else core.from_folder(folder)
    if retailer is None:
        retailer = words.focus_retailer(summary, o.retailers)
    elif retailer not in o.retailers:
        raise UserError(f"--retailer {retailer}: not in this projection; it has {', '.join(o.retailers)}")
    if threshold_pp is None:
        given = [float(t) for t in summary.get("thresholds_pp") or []]
        threshold_pp = given[0] if given else words.DEFAULT_THRESHOLD_PP
    return Stored(folder, summary, files, o, retailer, float(threshold_pp))


# --------------------------------------------------------------------------- charts


@dataclass(frozen=True)
class Chart:
    """A chart the exports add beside the projection's own: file stem, caption, and how to draw it (a figure, or
    None when there is nothing to show)."""

    stem: str
    caption: str
    draw: Callable[[Stored], Any]


def _tornado(s: Stored):
    first = s.outcomes.options[0]
    t = core.tornado(s.outcomes, first, s.retailer)
    if not t["rows"]:
        return None
    return _charts.tornado_figure(t, f"What drives {s.retailer}'s shift under {first} ({s.outcomes.baseline})")


def _options(s: Stored):
    end = s.outcomes.fit_until
    return _charts.options_figure(
        s.outcomes,
        s.retailer,
        observed=list(s.outcomes.observed),  # plain data, as projection.json holds it
        data_end=dt.date.fromisoformat(end) if end else None,
    )


def _ranking(s: Stored):
    if len(s.outcomes.options) < 2:
        return None
    o, r = s.outcomes, s.retailer
    return _charts.ranking_figure(core.ranking(o, r), core.p_beats(o, r), r)


#: The decision charts (file stem, caption, builder returning a figure or None): adding one is one line. Shown
#: (and, in a result folder, stored as PNG and SVG) where :mod:`marketsim.report.decision_charts` is installed.
DECISION_CHARTS: tuple[Chart, ...] = (
    Chart(
        "ranking",
        "The options ranked: mean shift with its 95% interval, and the chance each beats each other",
        _ranking,
    ),
    Chart("tornado", "What drives it: the shift as each assumption moves over its range, the others central", _tornado),
    Chart("options", "The options' share paths with their 50% and 90% bands and the observed data", _options),
)


def _svg_text(svg: bytes | str, stem: str, caption: str) -> str:
    """An SVG file's text ready to inline in HTML: without its XML prolog, doctype and metadata block (which
    names external vocabularies), so the page references nothing outside itself; every element id (and every
    reference to one) prefixed with ``stem``, so the charts of one page never share an id; labelled with
    ``caption`` for screen readers."""
    t = svg.decode("utf-8") if isinstance(svg, bytes) else svg
    t = re.sub(r"<\?xml[^>]*\?>", "", t)
    t = re.sub(r"<!DOCTYPE[^>]*>", "", t, flags=re.S)
    t = re.sub(r"<metadata>.*?</metadata>", "", t, flags=re.S)
    t = re.sub(r'\s+xmlns:(?:dc|cc|rdf)="[^"]*"', "", t)
    t = re.sub(r'(\sid=")([^"]+)"', rf'\g<1>{stem}-\g<2>"', t)
    t = re.sub(r'(href="#)([^"]+)"', rf'\g<1>{stem}-\g<2>"', t)
    t = re.sub(r"url\(#([^)]+)\)", rf"url(#{stem}-\g<1>)", t)
    t = re.sub(r"<svg\b", f'<svg role="img" aria-label="{html.escape(caption, quote=True)}"', t, count=1)
    return t.strip()


def _figure_svg(fig, stem: str, caption: str) -> str:
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "marketsim"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return _svg_text(buf.getvalue(), stem, caption)


def _decision_figures(s: Stored, save_to: Path | None = None) -> list[tuple[str, str, str]]:
    """(stem, caption, inline SVG) of each decision chart there is something to show for; with ``save_to``, each
    is also stored there as PNG and SVG."""
    out: list[tuple[str, str, str]] = []
    if _charts is None:
        return out
    for c in DECISION_CHARTS:
        fig = c.draw(s)
        if fig is None:
            continue
        try:
            out.append((c.stem, c.caption, _figure_svg(fig, c.stem, c.caption)))
            if save_to is not None:
                store.save_figure(fig, Path(save_to) / f"{c.stem}.png")
        finally:
            close(fig)
    return out


def _projection_figures(s: Stored) -> list[tuple[str, str, str]]:
    """(stem, caption, inline SVG) of the projection's stored charts (their .svg; a folder from before charts
    were also SVG shows its .png as a data: URI)."""
    out = []
    for stem, caption in PROJECTION_CHARTS:
        if f"{stem}.svg" in s.files:
            out.append((stem, caption, _svg_text(s.files[f"{stem}.svg"], stem, caption)))
        elif f"{stem}.png" in s.files:
            b64 = base64.b64encode(s.files[f"{stem}.png"]).decode("ascii")
            out.append((stem, caption, f'<img alt="{html.escape(caption)}" src="data:image/png;base64,{b64}">'))
    return out


# --------------------------------------------------------------------------- the tables (shared by both files)


def _scenario_texts(s: Stored) -> dict[str, str]:
    """Each option's scenario file: ``scenario-<name>.yaml`` / ``scenarios/<name>.yaml`` in the folder, else the
    files the settings name, if they are still where they were."""
    got = {n: s.text(n) or "" for n in sorted(s.files) if _SCENARIO_FILE.match(n)}
    if got:
        return got
    st = s.summary.get("settings") or {}
    for f in [st.get("scenario_file"), *(st.get("compare") or [])]:
        if f and Path(str(f)).is_file():
            got[Path(str(f)).name] = Path(str(f)).read_text(encoding="utf-8")
    return got


def _is_assumption(reason: str) -> bool:
    return str(reason).strip().lower().startswith("assumption")


def _display(x: float, scale: float) -> float:
    return float(x) * float(scale) if x is not None and math.isfinite(float(x)) else math.nan


def assumption_rows(s: Stored) -> list[dict]:
    """One row per uncertain parameter: label, path, unit, central value, range ends (display units: stored value
    x scale), the range as the scenario states it, its source, and whether that source is an assumption."""
    stated = {d["path"]: d for d in (s.summary.get("draws") or {}).get("parameters") or []}
    rows = []
    for p in s.outcomes.params:  # (labels and units as the projection recorded them: events named in words)
        rows.append(
            {
                "parameter": p.label,
                "path": p.path,
                "unit": p.unit,
                "central": _display(p.central, p.scale),
                "low": _display(p.low, p.scale),
                "high": _display(p.high, p.scale),
                "range as stated": (stated.get(p.path) or {}).get("range", ""),
                "source": p.reason,
                "assumption": "assumption" if _is_assumption(p.reason) else "sourced",
            }
        )
    return rows


def shift_rows(s: Stored) -> list[dict]:
    """Per option and retailer: the horizon share, the baseline's, and the shift (points) with its 95% interval,
    as projection.json states them."""
    summ = s.summary
    opts = summ.get("options") or {summ["scenario"]: {"share": summ["share_scenario"], "shift": summ["shift"]}}
    rows = []
    for o, doc in opts.items():
        for r, sh in doc["shift"].items():
            lo, hi = sh["ci95"]
            rows.append(
                {
                    "option": o,
                    "retailer": r,
                    "share at horizon": doc["share"][r],
                    "baseline share": summ["share_baseline"][r],
                    "shift (pp)": _pp(sh["mean"]),
                    "95% low (pp)": _pp(lo),
                    "95% high (pp)": _pp(hi),
                    "spread from assumptions": (sh.get("variance") or {}).get("share_assumptions"),
                    "interval covers": sh.get("covers", ""),
                }
            )
    return rows


def _pp(x) -> float:
    return math.nan if x is None else float(x) * 100


def ranking_rows(s: Stored, retailers: tuple[str, ...] | None = None) -> list[dict]:
    """Per retailer, the options best first: mean shift and 95% interval (points), P(best), P(beyond the
    threshold)."""
    rows = []
    for r in retailers or s.outcomes.retailers:
        beyond = core.p_beyond(s.outcomes, r, s.threshold_pp)
        for i, row in enumerate(core.ranking(s.outcomes, r), 1):
            rows.append(
                {
                    "retailer": r,
                    "rank": i,
                    "option": row["option"],
                    "mean shift (pp)": row["mean_pp"],
                    "95% low (pp)": row["ci95_pp"][0],
                    "95% high (pp)": row["ci95_pp"][1],
                    "P(best)": row["p_best"],
                    _beyond_head(s): beyond[row["option"]],
                }
            )
    return rows


def _beyond_head(s: Stored) -> str:
    return f"P({words.beyond_words('the retailer', s.threshold_pp)})"


def conclusion(s: Stored) -> str:
    return words.conclusion(s.outcomes, s.retailer, s.threshold_pp)


def _thresholds(s: Stored) -> list[float]:
    ts = [s.threshold_pp] + [float(t) for t in s.summary.get("thresholds_pp") or []]
    return list(dict.fromkeys(ts))


# --------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;max-width:1100px;margin:2em auto;
padding:0 1em;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ccc}
p.conclusion{font-size:1.15em;background:#f3f6fa;border-left:4px solid #2a6ebb;padding:.7em 1em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .55em;vertical-align:top}th{background:#f0f0f0;text-align:left}
td.n{text-align:right;white-space:nowrap;font-variant-numeric:tabular-nums}
.tag{font-size:.8em;background:#fff3cd;border:1px solid #e0c36a;border-radius:3px;padding:0 .3em}
figure{margin:1em 0}figure svg,figure img{max-width:100%;height:auto}figcaption{font-size:.9em;color:#555}
summary{cursor:pointer;font-weight:600;margin:.4em 0}
pre{background:#f7f7f7;border:1px solid #ddd;padding:.6em;overflow-x:auto;font-size:.85em}
.small{font-size:.85em;color:#555}
"""


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _table(head: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:  # type: ignore[assignment]
    h = "".join(f"<th>{_e(c)}</th>" for c in head)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{_e(v)}</td>' if i in numeric else f"<td>{_e(v)}</td>" for i, v in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _setting(v: Any) -> str:
    """A recorded setting as text: a list as its items, a mapping as PATH=VALUE pairs."""
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items())
    if isinstance(v, (list, tuple)):
        return ", ".join(str(x) for x in v)
    return str(v)


def _value(x: float, unit: str) -> str:
    """A parameter value in display units with its unit (three significant digits)."""
    if x is None or not math.isfinite(x):
        return "-"
    return with_unit(x, unit)


def html_report(s: Stored, charts: list[tuple[str, str, str]]) -> str:
    """The report as one HTML document (no external reference)."""
    summ, o, r = s.summary, s.outcomes, s.retailer
    title = f"{summ['scenario']}: which option is best for {r}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="small">GMV share at {_e(o.horizon())} against the baseline ({_e(o.baseline)}); '
        f"{len(o.weights)} parameter draw{'s' if len(o.weights) != 1 else ''} x {_e(summ.get('replicates'))} "
        f"replicates. Scenario hash {_e(str(summ.get('scenario_hash', ''))[:12])}, seed {_e(summ.get('seed'))}.</p>",
        f'<p class="conclusion">{_e(conclusion(s))}</p>',
    ]
    for w in summ.get("warnings") or []:
        parts.append(f'<p class="small"><b>Warning:</b> {_e(w)}</p>')
    # the options
    rank = core.ranking(o, r)
    beyond = core.p_beyond(o, r, s.threshold_pp)
    parts += [
        f"<h2>The options for {_e(r)}</h2>",
        _table(
            [
                "rank",
                "option",
                "shift (points)",
                "95% interval (points)",
                "P(best)",
                f"P({words.beyond_words(r, s.threshold_pp)})",
            ],
            [
                [
                    i,
                    x["option"],
                    points(x["mean_pp"]),
                    interval(*x["ci95_pp"]),
                    probability(x["p_best"]),
                    probability(beyond[x["option"]]),
                ]
                for i, x in enumerate(rank, 1)
            ],
            {0, 2, 3, 4, 5},
        ),
    ]
    if len(o.options) > 1:
        pb = core.p_beats(o, r)
        parts += [
            f"<p>The chance that the option of the row leaves {_e(r)} a higher share than the option of the column "
            "(paired: the same draws and replicates):</p>",
            _table(
                ["", *o.options],
                [[a, *("-" if a == b else probability(pb[a][b]) for b in o.options)] for a in o.options],
                set(range(1, len(o.options) + 1)),
            ),
        ]
    # shifts per retailer
    rows = shift_rows(s)
    parts += [
        "<h2>The shift per retailer</h2>",
        _table(
            [
                "option",
                "retailer",
                "share at horizon",
                "baseline",
                "shift (points)",
                "95% interval (points)",
                "from assumptions",
            ],
            [
                [
                    x["option"],
                    x["retailer"],
                    share(x["share at horizon"]),
                    share(x["baseline share"]),
                    points(x["shift (pp)"]),
                    interval(x["95% low (pp)"], x["95% high (pp)"]),
                    "-" if x["spread from assumptions"] is None else share(x["spread from assumptions"], 0),
                ]
                for x in rows
            ],
            {2, 3, 4, 5, 6},
        ),
    ]
    # what the intervals cover
    parts += [
        "<h2>What the intervals cover</h2>",
        f"<p>Each interval covers {_e(summ.get('interval_covers') or o.covers)}. The baseline is {_e(o.baseline)}, "
        "on the same draws and seeds, so every difference is paired.</p>",
    ]
    # charts
    if charts:
        parts.append("<h2>Charts</h2>")
        for stem, caption, svg in charts:
            parts.append(f'<figure id="chart-{_e(stem)}">{svg}<figcaption>{_e(caption)}</figcaption></figure>')
    # what drives it
    first = o.options[0]
    t = core.tornado(o, first, r)
    parts.append(f"<h2>What drives {_e(r)}'s shift under {_e(first)}</h2>")
    if t["rows"]:
        parts += [
            f"<p>Central shift {_e(points(t['central_pp']))} points; {_e(t['method'])}.</p>",
            _table(
                [
                    "parameter",
                    "range",
                    "shift at the low end",
                    "shift at the high end",
                    "swing",
                    "share of the variance",
                ],
                [
                    [
                        x["label"],
                        f"{_value(_display(x['low'], x['scale']), x['unit'])} to "
                        f"{_value(_display(x['high'], x['scale']), x['unit'])}",
                        points(x["at_low_pp"]),
                        points(x["at_high_pp"]),
                        points(x["swing_pp"]).lstrip("+"),
                        share(x["variance_share"], 0),
                    ]
                    for x in t["rows"]
                ],
                {2, 3, 4, 5},
            ),
        ]
    else:
        parts.append(f"<p>{_e(t['method'][0].upper() + t['method'][1:])}.</p>")
    # assumptions
    parts.append("<h2>What was assumed</h2>")
    arows = assumption_rows(s)
    if arows:
        parts += [
            "<p>The uncertain parameters: the projection draws them over these ranges (central value and range "
            'in display units). <span class="tag">assumption</span> marks a number no source pins.</p>',
            _table(
                ["parameter", "unit", "central", "range", "as stated", "source"],
                [
                    [
                        a["parameter"],
                        a["unit"] or "-",
                        _value(a["central"], a["unit"]),
                        f"{_value(a['low'], a['unit'])} to {_value(a['high'], a['unit'])}",
                        a["range as stated"],
                        a["source"],
                    ]
                    for a in arows
                ],
                {2},
            ).replace("<td>assumption", '<td><span class="tag">assumption</span>'),
        ]
    else:
        parts.append("<p>No uncertain parameter: the assumptions are held at their central values.</p>")
    # skill
    parts.append("<h2>How good its forecasts are</h2>")
    sk = (summ.get("skill") or {}).get("sentence")
    ta = (summ.get("trend_after") or {}).get("sentence")
    parts += [
        f"<p>{_e(x[0].upper() + x[1:])}.</p>" if not x.endswith(".") else f"<p>{_e(x)}</p>" for x in (sk, ta) if x
    ]
    if not (sk or ta):
        parts.append("<p>This projection does not record the model's back-test skill.</p>")
    # settings and scenario files
    st = summ.get("settings") or {}
    said = describe(st)
    parts += [
        "<h2>Settings</h2>",
        f"<p>Given on the command line: <code>{_e(said)}</code>.</p>" if said else "",
        _table(["setting", "value"], [[k, _setting(v)] for k, v in st.items()]),
    ]
    texts = _scenario_texts(s)
    if texts:
        parts.append(
            "<h2>The scenario files</h2><p>Each option's scenario file as it was projected (open to read).</p>"
        )
        for name, text in texts.items():
            parts.append(f"<details><summary>{_e(name)}</summary><pre>{_e(text)}</pre></details>")
    parts.append(
        '<p class="small">Written by marketsim from the projection folder: the numbers are those of its '
        "projection.json; the workbook projection.xlsx holds every table.</p></body></html>"
    )
    return "\n".join(parts) + "\n"


def export_html(
    folder: str | Path,
    dest: str | Path,
    *,
    retailer: str | None = None,
    threshold_pp: float | None = None,
    stored: Stored | None = None,
    save_charts: bool = False,
) -> Path:
    """Write the self-contained HTML report of the stored projection in ``folder`` to ``dest``; returns ``dest``.
    ``save_charts`` also stores the decision charts in ``folder`` as PNG and SVG."""
    s = stored or load(folder, retailer=retailer, threshold_pp=threshold_pp)
    charts = _projection_figures(s)
    charts[1:1] = _decision_figures(s, Path(folder) if save_charts else None)
    return store.write_text(dest, html_report(s, charts))


# --------------------------------------------------------------------------- the workbook

#: Number formats (Excel): a share or probability stored as a fraction, a shift in points, a count.
FMT_SHARE, FMT_PROB, FMT_PP, FMT_COUNT, FMT_VALUE = "0.0%", "0%", "+0.00;-0.00;0.00", "#,##0", "0.000"


def _sheet(wb, name: str, df: pd.DataFrame, formats: dict[str, str] | None = None) -> None:
    """One sheet: a bold, frozen header row, numbers as numbers with ``formats`` (column -> Excel format),
    columns as wide as their contents (within limits)."""
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    ws = wb.create_sheet(name[:31])
    cols = list(df.columns)
    ws.append([str(c) for c in cols])
    for c in ws[1]:
        c.font = Font(bold=True)
    ws.freeze_panes = "A2"
    for rec in df.itertuples(index=False, name=None):
        ws.append([_cell(v) for v in rec])
    for j, c in enumerate(cols, 1):
        fmt = (formats or {}).get(str(c))
        if fmt:
            for (cell,) in ws.iter_rows(min_row=2, min_col=j, max_col=j):
                cell.number_format = fmt
        width = max([len(str(c))] + [len(_shown(v)) for v in df[c].head(200)])
        ws.column_dimensions[get_column_letter(j)].width = min(max(width + 2, 8), 80)


def _cell(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if v is None or isinstance(v, (int, str)):
        return v
    if isinstance(v, (pd.Timestamp,)):
        return v.to_pydatetime()
    return str(v)


def _shown(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def workbook_tables(s: Stored) -> list[tuple[str, str, pd.DataFrame, dict[str, str]]]:
    """(sheet, what it holds, table, number formats) of every sheet after "About"."""
    summ, o = s.summary, s.outcomes
    pct = {"share at horizon": FMT_SHARE, "baseline share": FMT_SHARE, "spread from assumptions": FMT_PROB}
    pp = {c: FMT_PP for c in ("shift (pp)", "95% low (pp)", "95% high (pp)", "mean shift (pp)")}
    out: list[tuple[str, str, pd.DataFrame, dict[str, str]]] = []
    rk = pd.DataFrame(ranking_rows(s))
    out.append(
        (
            "Options",
            f"per retailer, the options best first by mean shift against the baseline ({o.baseline}), points, with "
            f"the 95% interval, P(best) and {_beyond_head(s)} at {s.threshold_pp:g} points",
            rk,
            {**pp, "P(best)": FMT_PROB, _beyond_head(s): FMT_PROB},
        )
    )
    out.append(
        (
            "Shifts",
            "per option and retailer: horizon share, the baseline's, the shift (points) with its 95% interval and the "
            "part of its spread from the assumptions (projection.json's numbers)",
            pd.DataFrame(shift_rows(s)),
            {**pct, **pp},
        )
    )
    comp = [
        {
            "options": pair,
            "retailer": r,
            "difference (pp)": _pp(d["mean"]),
            "95% low (pp)": _pp(d["ci95"][0]),
            "95% high (pp)": _pp(d["ci95"][1]),
        }
        for pair, per in (summ.get("compare") or {}).items()
        for r, d in per.items()
    ]
    if comp:
        out.append(
            (
                "Differences",
                "each pair of options compared on the same draws and seeds: difference in horizon share, points, "
                "with its 95% interval",
                pd.DataFrame(comp),
                {"difference (pp)": FMT_PP, "95% low (pp)": FMT_PP, "95% high (pp)": FMT_PP},
            )
        )
    beats = [
        {"retailer": r, "option": a, **{f"beats {b}": (None if a == b else p[a][b]) for b in o.options}}
        for r in o.retailers
        for p in [core.p_beats(o, r)]
        for a in o.options
    ]
    out.append(
        (
            "P(beats)",
            "the probability that the option of the row leaves the retailer a higher horizon share than the option "
            "of the column (paired over the same draws and replicates)",
            pd.DataFrame(beats),
            {f"beats {b}": FMT_PROB for b in o.options},
        )
    )
    th = [
        {"retailer": r, "option": a, "threshold (pp)": t, "direction": "below" if t < 0 else "above", "probability": v}
        for r in o.retailers
        for t in _thresholds(s)
        for a, v in core.p_beyond(o, r, t).items()
    ]
    out.append(
        (
            "Thresholds",
            "the probability that a retailer's shift is beyond a threshold: below a negative one (a loss of more "
            "than), above zero or a positive one",
            pd.DataFrame(th),
            {"threshold (pp)": FMT_PP, "probability": FMT_PROB},
        )
    )
    tor = [
        {
            "option": a,
            "retailer": s.retailer,
            "parameter": row["label"],
            "path": row["path"],
            "unit": row["unit"],
            "low": _display(row["low"], row["scale"]),
            "high": _display(row["high"], row["scale"]),
            "shift at low (pp)": row["at_low_pp"],
            "shift at high (pp)": row["at_high_pp"],
            "swing (pp)": row["swing_pp"],
            "variance share": row["variance_share"],
        }
        for a in o.options
        for row in core.tornado(o, a, s.retailer)["rows"]
    ]
    if tor:
        out.append(
            (
                "Drivers",
                f"what drives {s.retailer}'s shift: the shift with each parameter at the low and the high end of its "
                "range, the others central, and its share of the variance from the assumptions",
                pd.DataFrame(tor),
                {c: FMT_PP for c in ("shift at low (pp)", "shift at high (pp)", "swing (pp)")}
                | {"variance share": FMT_PROB, "low": FMT_VALUE, "high": FMT_VALUE},
            )
        )
    out.append(
        (
            "Assumptions",
            "the uncertain parameters: central value and range in display units, the range as stated, the source, "
            "and whether it is an assumption",
            pd.DataFrame(assumption_rows(s), columns=list(_ASSUMPTION_COLUMNS)),
            {"central": FMT_VALUE, "low": FMT_VALUE, "high": FMT_VALUE},
        )
    )
    ll = summ.get("lost_login") or {}
    lost = []
    for d in ll.get("removals") or []:
        row = {k: d.get(k) for k in ("event", "date", "retailer", "provider")}
        for k in ("customers", "customer_base", "accounts"):
            if isinstance(d.get(k), dict):
                row[f"{k} (mean)"] = d[k]["mean"]
                row[f"{k} 95% low"], row[f"{k} 95% high"] = d[k]["ci95"]
        if isinstance(d.get("share"), dict):
            row["share of customers (mean)"] = d["share"]["mean"]
            row["share 95% low"], row["share 95% high"] = d["share"]["ci95"]
        lost.append(row)
    if lost:
        out.append(
            (
                "Lost logins",
                "each login removal: how many of the retailer's customers lost their login (real people, mean and 95% "
                "interval) and what share of its customers that is",
                pd.DataFrame(lost),
                {
                    c: (FMT_SHARE if "share" in c else FMT_COUNT)
                    for c in pd.DataFrame(lost).columns
                    if "(" in c or "95%" in c
                },
            )
        )
    sk = summ.get("skill") or {}
    ta = summ.get("trend_after") or {}
    skill_rows = [
        {"what": "forecasts checked (n)", "value": sk.get("n")},
        {"what": "horizons (quarters ahead)", "value": ", ".join(str(q) for q in sk.get("quarters") or []) or None},
        {"what": "model mean absolute error (points)", "value": (sk.get("mae") or {}).get("model")},
        {
            "what": "holding the last value flat: mean absolute error (points)",
            "value": (sk.get("mae") or {}).get("persistence"),
        },
        {
            "what": "beats holding the last value flat",
            "value": None if sk.get("beats_persistence") is None else str(sk["beats_persistence"]),
        },
        {"what": "skill in words", "value": sk.get("sentence")},
        {"what": "trends after the cut-off", "value": ta.get("sentence")},
    ]
    out.append(
        ("Skill", "the model's back-test skill on its own data before the cut-off", pd.DataFrame(skill_rows), {})
    )
    draws = s.table("draws.parquet")
    if draws is None:
        draws = pd.DataFrame(
            {"draw": o.draw_index, "weight": o.weights} | {p.path: o.values[:, i] for i, p in enumerate(o.params)}
        )
    out.append(
        (
            "Draws",
            "one row per kept parameter draw: its index, weight and parameter values (stored units)",
            draws,
            {"weight": "0.0000"},
        )
    )
    K, R = o.share[BASELINE].shape[:2]
    hz = [
        {
            "draw": int(o.draw_index[k]),
            "replicate": rr,
            "arm": arm,
            "retailer": ret,
            "share at horizon": float(o.share[arm][k, rr, -1, j]),
        }
        for arm in (*o.options, BASELINE)
        for k in range(K)
        for rr in range(R)
        for j, ret in enumerate(o.retailers)
    ]
    out.append(
        (
            "Horizon shares",
            f"every draw x replicate: each arm's GMV share of each retailer at the horizon ({o.horizon()})",
            pd.DataFrame(hz),
            {"share at horizon": "0.0000%"},
        )
    )
    return out


_ASSUMPTION_COLUMNS = ("parameter", "path", "unit", "central", "low", "high", "range as stated", "source", "assumption")


def export_xlsx(
    folder: str | Path,
    dest: str | Path,
    *,
    retailer: str | None = None,
    threshold_pp: float | None = None,
    stored: Stored | None = None,
) -> Path:
    """Write the workbook of the stored projection in ``folder`` to ``dest``; returns ``dest``. UserError (one
    line) when openpyxl is missing."""
    openpyxl = _openpyxl()
    from openpyxl.styles import Alignment, Font

    s = stored or load(folder, retailer=retailer, threshold_pp=threshold_pp)
    summ = s.summary
    tables = workbook_tables(s)
    wb = openpyxl.Workbook()
    about = wb.active
    about.title = "About"
    lines: list[tuple[str, str]] = [
        (
            "Projection",
            f"{summ['scenario']}: GMV share at {s.outcomes.horizon()} against the baseline ({s.outcomes.baseline})",
        ),
        ("Conclusion", conclusion(s)),
        ("Intervals cover", str(summ.get("interval_covers") or s.outcomes.covers)),
        ("Retailer", s.retailer),
        ("Threshold (points)", shift(s.threshold_pp / 100)),
        ("Settings", describe(summ.get("settings")) or "none given on the command line"),
        ("Scenario file", str((summ.get("settings") or {}).get("scenario_file", ""))),
        ("", ""),
        ("Sheet", "What it holds"),
        *((name, what) for name, what, _, _ in tables),
        ("", ""),
        ("Units", "shares and probabilities are fractions shown in %; shifts are percentage points (pp)"),
    ]
    for a, b in lines:
        about.append([a, b])
    for c in about["A"]:
        c.font = Font(bold=True)
    about.column_dimensions["A"].width = 22
    about.column_dimensions["B"].width = 120
    for c in about["B"]:
        c.alignment = Alignment(wrap_text=True, vertical="top")
    for name, _, df, fmts in tables:
        _sheet(wb, name, df, fmts)
    dest = Path(dest)
    with store.atomic_path(dest) as tmp:
        wb.save(tmp)
    return dest


def export(
    folder: str | Path,
    formats: list[str] | tuple[str, ...],
    *,
    retailer: str | None = None,
    threshold_pp: float | None = None,
    dest_dir: str | Path | None = None,
    summary: dict | None = None,
    outcomes: core.Outcomes | None = None,
) -> list[Path]:
    """Write each of ``formats`` (:data:`FORMATS`) for the stored projection in ``folder`` into ``dest_dir``
    (default: the folder itself, where the decision charts are then also stored as PNG and SVG); returns the
    files written. ``summary``/``outcomes``: see :func:`load`."""
    if not formats:
        return []
    s = load(folder, retailer=retailer, threshold_pp=threshold_pp, summary=summary, outcomes=outcomes)
    dest = Path(dest_dir) if dest_dir is not None else Path(folder)
    out = []
    for f in formats:
        if f == "html":
            out.append(export_html(folder, dest / FORMATS["html"], stored=s, save_charts=dest_dir is None))
        elif f == "xlsx":
            out.append(export_xlsx(folder, dest / FORMATS["xlsx"], stored=s))
        else:
            raise UserError(f"--export: unknown format {f!r}; valid: {', '.join(FORMATS)} or {ALL}")
    return out
