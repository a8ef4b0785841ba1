"""The live browser page (Mesa's SolaraViz): the consumer agents, the shares, the numbers, the controls.

Run it with ``marketsim viz SCENARIO [--host 127.0.0.1] [--port 8765] [--consumers N]``, or Mesa's way:
``solara run marketsim/app.py`` (scenario from $MARKETSIM_VIZ_SCENARIO, default
scenarios/battle_lines_2013.yaml). This is the only module that imports solara; the model does not
know it exists.

Drawing works from a sample of a few hundred consumers chosen once per model (a snowball sample over
the social layers, so that the picture has ties); their layout is computed once when the model is
built, and only their colours change as the model steps. The full population runs underneath.

Importing this module imports solara (it defines the ``Page`` component ``solara run`` looks for) but
builds nothing: each browser session builds its own model when its page first renders.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import solara

from .model import MarketModel
from .scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIO = ROOT / "scenarios" / "battle_lines_2013.yaml"
SAMPLE_SIZE = 300
#: In-process cache of fitted attractiveness, by calibration key, on top of the results/ cache.
_ALPHA: dict[str, np.ndarray] = {}


def _env_scenario() -> Path:
    return Path(os.environ.get("MARKETSIM_VIZ_SCENARIO", str(DEFAULT_SCENARIO)))


def _env_consumers() -> int | None:
    v = os.environ.get("MARKETSIM_VIZ_CONSUMERS")
    return int(v) if v else None


def knob_paths(scenario) -> dict[str, str]:
    """The scenario paths behind the page's sliders (only those the scenario has)."""
    ids = {e.id: e for e in scenario.events}
    knobs = {"create_cost": "friction.create", "social_weight": "behaviour.beta_social"}
    for e in scenario.events:
        if e.action.type == "remove_login":
            knobs["drop_week"] = f"events.{e.id}.date"
            if e.action.migration_cost is not None:
                knobs["migration_cost"] = f"events.{e.id}.migration_cost"
            break
    for e in ids.values():
        if e.action.type == "equity_stake":
            for k, eff in enumerate(e.action.effects):
                if eff.type == "promotion":
                    knobs["promotion"] = f"events.{e.id}.effects.{k}.utility"
    return knobs


class VizModel(MarketModel):
    """A :class:`MarketModel` whose keyword arguments are the strategist's knobs (what the sliders set).

    Args: scenario_file (not ``scenario``: Mesa 3.5's SolaraViz passes its own Scenario object under that
    name on reset); consumers; drop_week (step of the login removal); migration_cost; create_cost
    (friction.create); social_weight (behaviour.beta_social); promotion (utility of the Alibaba-Weibo
    promotion); seed. Knobs the scenario has no event for are ignored.
    """

    def __init__(self, scenario_file: str | Path | None = None, consumers: int | None = None, drop_week: int | None = None,
                 migration_cost: float | None = None, create_cost: float | None = None,
                 social_weight: float | None = None, promotion: float | None = None, seed: int | str | None = None):
        from .store import cached_calibration

        base = load_scenario(scenario_file or _env_scenario())
        if consumers:
            base = base.with_overrides(consumers=int(consumers))
        knobs = knob_paths(base)
        given = {"drop_week": drop_week, "migration_cost": migration_cost, "create_cost": create_cost,
                 "social_weight": social_weight, "promotion": promotion}
        values = {}
        for k, v in given.items():
            if v is None or k not in knobs:
                continue
            values[knobs[k]] = base.calendar.date_of(int(v)).isoformat() if k == "drop_week" else float(v)
        sc = base.with_values(values) if values else base
        seed = int(seed) if seed not in (None, "") else sc.seed
        sc = sc.with_overrides(seed=seed)
        alpha = None
        if any(r.calibrate for r in sc.retailers):
            from .calibrate import cache_key

            key = cache_key(sc)
            if key not in _ALPHA:
                _ALPHA[key] = cached_calibration(sc, Path("results") / "calibration")[0].alpha_vector(sc)
            alpha = _ALPHA[key]
        super().__init__(sc, alpha=alpha, rng=seed)
        self.sample, self.edges, self.pos = _sample_and_layout(self, SAMPLE_SIZE)


def _sample_and_layout(model: MarketModel, k: int):
    """A snowball sample of ``k`` consumers over the social layers, its ties, and a fixed layout."""
    import networkx as nx

    world = model.world
    rng = np.random.default_rng(np.random.SeedSequence(model.market_scenario.seed, spawn_key=(7,)))
    layers = [lay.graph for lay in world.layers]
    if not layers:
        sample = np.sort(rng.choice(world.n, size=min(k, world.n), replace=False))
        return sample, [], {i: (float(np.cos(i)), float(np.sin(i))) for i in range(len(sample))}
    chosen: dict[int, None] = {}
    frontier: list[int] = []
    while len(chosen) < min(k, world.n):
        if not frontier:
            start = int(rng.integers(world.n))
            if start in chosen:
                continue
            chosen[start] = None
            frontier = [start]
        v = frontier.pop(0)
        for g in layers:
            nb = g.neighbours(v)
            for u in rng.permutation(nb)[:3]:  # a few ties per consumer keep the sample spread out
                if len(chosen) >= k:
                    break
                if int(u) not in chosen:
                    chosen[int(u)] = None
                    frontier.append(int(u))
    sample = np.array(sorted(chosen), dtype=np.int64)
    local = {int(g): i for i, g in enumerate(sample)}
    edges = []
    for li, g in enumerate(layers):
        for i, v in enumerate(sample):
            for u in g.neighbours(int(v)):
                j = local.get(int(u))
                if j is not None and j > i:
                    edges.append((i, j, li))
    G = nx.Graph()
    G.add_nodes_from(range(len(sample)))
    G.add_edges_from((i, j) for i, j, _ in edges)
    pos = nx.spring_layout(G, seed=int(rng.integers(2**31)), iterations=60)
    return sample, edges, pos


# --------------------------------------------------------------------------- the page


def _components():
    """The page's three views. Plain functions of the model: SolaraViz wraps them in components that
    re-render after every step (Mesa's update counter)."""
    from .plots import mark_events, plt, retailer_colors

    def AgentGraph(model):
        sc = model.market_scenario
        colors = retailer_colors(sc)
        palette = [colors[n] for n in sc.retailer_names]
        last = model.market.last[model.sample]
        lost = model.market.lost_login[model.sample]
        fig, ax = plt.subplots(figsize=(5.6, 4.6), dpi=80)
        layer_style = ["#CC79A7", "0.75", "0.6"]
        if model.edges:  # one LineCollection for all ties: one artist, not one per tie
            from matplotlib.collections import LineCollection

            segs = [(model.pos[i], model.pos[j]) for i, j, _ in model.edges]
            ax.add_collection(LineCollection(segs, colors=[layer_style[li % 3] for _, _, li in model.edges],
                                             linewidths=0.5, zorder=1))
        xy = np.array([model.pos[i] for i in range(len(model.sample))])
        node_colors = [palette[c] if c >= 0 else "white" for c in last]
        ax.scatter(xy[:, 0], xy[:, 1], c=node_colors, s=28, zorder=2, linewidths=0.3, edgecolors="white")
        if lost.any():
            ax.scatter(xy[lost, 0], xy[lost, 1], facecolors="none", edgecolors="black", s=90, linewidths=1.4, zorder=3)
        for n in sc.retailer_names:
            ax.scatter([], [], color=colors[n], label=f"last bought at {n}")
        ax.scatter([], [], facecolors="none", edgecolors="black", label="lost a login")
        names = [lay.name for lay in model.world.layers]
        for li, n in enumerate(names):
            ax.plot([], [], color=layer_style[li % 3], label=f"{n} tie")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=3, fontsize=7, frameon=False)
        ax.set_axis_off()
        ax.set_title(f"{len(model.sample)} of {model.world.n:,} consumers and their social ties", fontsize=9)
        fig.tight_layout()
        solara.FigureMatplotlib(fig, format="png")
        plt.close(fig)

    def SharesChart(model):
        sc = model.market_scenario
        df = model.datacollector.get_model_vars_dataframe()
        fig, ax = plt.subplots(figsize=(6.0, 3.4), dpi=80)
        colors = retailer_colors(sc)
        import pandas as pd

        if len(df):
            dates = pd.to_datetime(df["date"])
            for n in sc.retailer_names:
                ax.plot(dates, df[f"gmv_share[{n}]"] * 100, label=n, color=colors[n], lw=1.6)
        ax.set_xlim(pd.Timestamp(sc.calendar.date_of(0)), pd.Timestamp(sc.calendar.date_of(sc.calendar.steps - 1)))
        mark_events(ax, sc)
        ax.set_ylabel("GMV share (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5), frameon=False)
        ax.set_title("GMV share by week (events dashed)", fontsize=9)
        fig.autofmt_xdate()
        fig.tight_layout()
        solara.FigureMatplotlib(fig, format="png")
        plt.close(fig)

    def Numbers(model):
        # plain HTML, not solara.Markdown: Markdown loads KaTeX from the CDN, which an offline machine lacks
        from html import escape

        sc = model.market_scenario
        rec = model.market.last_record
        t = model.market.t
        df = model.datacollector.get_model_vars_dataframe()
        rows = []
        for j, n in enumerate(sc.retailer_names):
            share = "–" if rec is None else f"{rec.gmv_share[j] * 100:.2f}%"
            created = df[f"accounts_created[{n}]"].sum() if len(df) else 0.0
            rows.append(f"<tr><td>{escape(n)}</td><td class='share' style='text-align:right'>{share}</td>"
                        f"<td style='text-align:right'>{created:,.0f}</td></tr>")
        lost = int(model.market.lost_login.sum() * model.world.scale)
        fired = ", ".join(f"{e.id} ({e.date})" for e in model.market.fired) or "none yet"
        date = model.current_date.isoformat() if t else "not started"
        solara.HTML(tag="div", unsafe_innerHTML=(
            f"<div id='marketsim-week'><b>Week {t}</b> ({date}) of {sc.calendar.steps}</div>"
            "<table id='marketsim-numbers' style='margin:6px 0'><tr><th>retailer</th><th>GMV share</th>"
            "<th>accounts created (so far)</th></tr>" + "".join(rows) + "</table>"
            f"<div>Consumers who lost a login: <b id='marketsim-lost'>{lost:,}</b></div>"
            f"<div>Events so far: {escape(fired)}</div>"))

    return AgentGraph, SharesChart, Numbers


def model_params(scenario_path: Path, consumers: int | None) -> dict:
    """SolaraViz's parameter panel: fixed values and the sliders a strategist argues about."""
    from mesa.visualization import Slider

    sc = load_scenario(scenario_path)
    knobs = knob_paths(sc)
    params: dict = {"scenario_file": str(scenario_path), "consumers": consumers or sc.consumers.count}
    drop = next((e for e in sc.events if e.action.type == "remove_login"), None)
    if "drop_week" in knobs:
        params["drop_week"] = Slider(f"week {drop.action.retailer} drops {drop.action.provider} login", drop.step, 0,
                                     sc.calendar.steps - 1, 1)
    if "migration_cost" in knobs:
        params["migration_cost"] = Slider("migration cost (utility)", drop.action.migration_cost, 0.0, 3.0, 0.1)
    params["create_cost"] = Slider("new-account cost (utility)", sc.friction.create, 0.0, 5.0, 0.1)
    params["social_weight"] = Slider("social influence (beta_social)", sc.behaviour.beta_social, 0.0, 3.0, 0.1)
    if "promotion" in knobs:
        stake = next(e for e in sc.events if e.action.type == "equity_stake")
        util = next(eff.utility for eff in stake.action.effects if eff.type == "promotion")
        params["promotion"] = Slider("Alibaba-Weibo promotion (utility)", util, 0.0, 1.0, 0.05)
    params["seed"] = {"type": "InputText", "value": str(sc.seed), "label": "seed"}
    return params


def make_page(scenario_path: Path | None = None, consumers: int | None = None, model: VizModel | None = None):
    """The SolaraViz element for a scenario (the model is built here unless given)."""
    from mesa.visualization import SolaraViz

    scenario_path = Path(scenario_path or _env_scenario())
    consumers = consumers or _env_consumers()
    AgentGraph, SharesChart, Numbers = _components()
    model = model or VizModel(scenario_path, consumers=consumers)
    return SolaraViz(
        model,
        components=[(AgentGraph, 0), (SharesChart, 0), (Numbers, 0)],
        model_params=model_params(scenario_path, consumers),
        name=f"marketsim: {model.market_scenario.name}",
        play_interval=50,
    )


@solara.component
def Page():
    """The page of ``solara run marketsim.app``: one model per browser session, built when it first renders."""
    model = solara.use_memo(lambda: VizModel(_env_scenario(), consumers=_env_consumers()), dependencies=[])
    return make_page(model=model)


# --------------------------------------------------------------------------- CLI


def cmd_viz(args: argparse.Namespace) -> int:
    from .errors import UserError

    try:
        import mesa.visualization  # noqa: F401
    except ImportError as e:
        raise UserError(f"marketsim viz needs the 'viz' extra ({e.name} is missing): pip install -e '.[viz]'") from None
    sc = load_scenario(args.scenario)  # validate before starting anything
    if args.consumers:
        sc.with_overrides(consumers=args.consumers)
    env = {**os.environ, "MARKETSIM_VIZ_SCENARIO": str(Path(args.scenario).resolve())}
    if args.consumers:
        env["MARKETSIM_VIZ_CONSUMERS"] = str(args.consumers)
    cmd = [sys.executable, "-m", "solara", "run", "marketsim.app", "--host", args.host, "--port", str(args.port),
           "--production", "--no-open"]
    proc = subprocess.Popen(cmd, env=env)

    def stop(signum, frame):  # SIGTERM (a service manager, a test) stops the server like Ctrl-C does
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"marketsim viz: serving {sc.name} at http://{args.host}:{args.port}/ (Ctrl-C stops)", flush=True)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        print("marketsim viz: stopping", file=sys.stderr)
        return 0
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
