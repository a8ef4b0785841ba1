"""The tables of a run (the only pandas in the engine): the per-step, per-retailer time series and the buyers'
flows between retailers, built from the :class:`marketsim.engine.market.StepRecord` s a market returns; and what
the moves that change who is in the market did (:func:`moves_to_dicts`, from its
:class:`marketsim.engine.market.MoveRecord` s)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from marketsim.engine.market import MoveRecord, StepRecord
from marketsim.scenario.core import Scenario


def records_to_frame(scenario: Scenario, records: Iterable[StepRecord]) -> pd.DataFrame:
    names = scenario.retailer_names
    rows = []
    for rec in records:
        date = scenario.calendar.date_of(rec.step).isoformat()
        share, bshare, npr = rec.gmv_share, rec.buyer_share, rec.no_purchase_rate
        for j, name in enumerate(names):
            rows.append(
                (
                    rec.step,
                    date,
                    name,
                    rec.gmv[j],
                    share[j],
                    rec.buyers[j],
                    bshare[j],
                    rec.revenue[j],
                    rec.accounts_created[j],
                    rec.logins_linked[j],
                    rec.access_lost[j],
                    rec.lost_login_last[j],
                    rec.shoppers,
                    npr,
                    rec.newcomers,
                )
            )
    return pd.DataFrame(
        rows,
        columns=[
            "step",
            "date",
            "retailer",
            "gmv",
            "gmv_share",
            "buyers",
            "buyer_share",
            "revenue",
            "accounts_created",
            "logins_linked",
            "access_lost",
            "lost_login_consumers",
            "shoppers",
            "no_purchase_rate",
            "newcomers",
        ],
    )


def flows_to_frame(scenario: Scenario, records: Iterable[StepRecord]) -> pd.DataFrame:
    names = scenario.retailer_names
    src = list(names) + ["(none)"]
    rows = []
    for rec in records:
        for a in range(len(src)):
            for j, name in enumerate(names):
                if rec.flows[a, j]:
                    rows.append((rec.step, src[a], name, rec.flows[a, j]))
    return pd.DataFrame(rows, columns=["step", "from", "to", "buyers"])


def move_event(scenario: Scenario, move: MoveRecord) -> str | None:
    """The id of the event that made ``move`` (None if none matches: a move made by hand)."""
    for e in scenario.events:
        if e.step != move.step:
            continue
        for a in e.actions():
            if a.type != move.kind:
                continue
            if move.kind == "acquisition":
                if (a.acquirer, a.target) == (move.retailer, move.other):
                    return e.id
            elif getattr(a, "retailer", None) == move.retailer:
                return e.id
    return None


def login_losses_to_dicts(scenario: Scenario, losses: Iterable) -> list[dict]:
    """Each login removal as plain data (summary.json "lost_login"): ``event``, ``step``, ``date``, ``retailer``,
    ``provider``; ``customers``: the retailer's customers (c_i = retailer) who logged in through the provider and
    lost the login, of ``customer_base`` customers (``share`` = customers / customer_base, the mix the run kept);
    ``accounts``: every consumer who lost it (former customers too); ``stated``: the retailer's stated share
    (``stated_path``, with ``stated_range`` and ``stated_reason`` when the file gives it as uncertain). Shoppers in
    real units (x market size / consumers)."""
    out = []
    unc = {u.path: u for u in scenario.uncertain}
    dates = {e.id: e.date for e in scenario.events}
    for ev_loss in losses:
        eid = next(
            (
                e.id
                for e in scenario.events
                if e.step == ev_loss.step
                and getattr(e.action, "retailer", None) == ev_loss.retailer
                and getattr(e.action, "provider", None) == ev_loss.provider
            ),
            None,
        )
        path = f"retailers.{ev_loss.retailer}.sso_share.{ev_loss.provider}"
        u = unc.get(path)
        out.append(
            {
                "event": eid,
                "step": ev_loss.step,
                "date": (dates[eid] if eid in dates else scenario.calendar.date_of(ev_loss.step)).isoformat(),
                "retailer": ev_loss.retailer,
                "provider": ev_loss.provider,
                "customers": float(ev_loss.customers),
                "customer_base": float(ev_loss.base),
                "share": float(ev_loss.customers / ev_loss.base) if ev_loss.base > 0 else None,
                "accounts": float(ev_loss.accounts),
                "stated": ev_loss.stated,
                "stated_path": path,
                "stated_range": None if u is None or u.prior != "uniform" else [float(x) for x in u.args],
                "stated_reason": None if u is None else u.reason,
            }
        )
    return out


def moves_to_dicts(
    scenario: Scenario, moves: Iterable[MoveRecord], last_share: Sequence[float] | np.ndarray | None
) -> list[dict]:
    """Each entry, exit and acquisition as plain data, in the order they happened (summary.json "moves"):
    ``kind``, ``event`` (its id), ``step``, ``date``; an acquisition's ``acquirer``, ``target``, ``moved``
    (shoppers whose habit moved to the acquirer) and ``lost`` (the target's shoppers who lost their habit); an
    exit's ``retailer`` and ``lost``; an entry's ``retailer`` and ``share_at_horizon`` (its GMV share at the last
    step, a fraction; None without one). Shoppers in real units (x market size / consumers)."""
    names = scenario.retailer_names
    out = []
    dates = {e.id: e.date for e in scenario.events}
    for mv in moves:
        eid = move_event(scenario, mv)
        d: dict = {
            "kind": mv.kind,
            "event": eid,
            "step": mv.step,
            # the event's own date (the step starts on or before it)
            "date": (dates[eid] if eid in dates else scenario.calendar.date_of(mv.step)).isoformat(),
        }
        if mv.kind == "acquisition":
            d.update(acquirer=mv.retailer, target=mv.other, moved=float(mv.moved), lost=float(mv.lost))
        elif mv.kind == "exit":
            d.update(retailer=mv.retailer, lost=float(mv.lost))
        else:
            s = None if last_share is None else float(last_share[names.index(mv.retailer)])
            d.update(retailer=mv.retailer, share_at_horizon=s if s is not None and math.isfinite(s) else None)
        out.append(d)
    return out
