"""The tables of a run (the only pandas in the engine): the per-step, per-retailer time series and the buyers'
flows between retailers, built from the :class:`marketsim.engine.market.StepRecord` s a market returns."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from marketsim.engine.market import StepRecord
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
