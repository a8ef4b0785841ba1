"""Retailers as Mesa agents (the consumers stay rows of numpy arrays in :mod:`marketsim.engine.market`)."""

from __future__ import annotations

import mesa


class RetailerAgent(mesa.Agent):
    """One retailer. Its attributes mirror the market's last step, so Mesa's agent reporters can read them."""

    def __init__(self, model: mesa.Model, index: int, name: str, kind: str):
        super().__init__(model)
        self.index, self.name, self.kind = index, name, kind
        self.gmv_share = float("nan")
        self.gmv = 0.0
        self.revenue = 0.0
        self.accounts_created = 0.0

    def observe(self, record) -> None:
        """Copy this retailer's outputs from the step record (called by the model after each step)."""
        j = self.index
        self.gmv_share = float(record.gmv_share[j])
        self.gmv = float(record.gmv[j])
        self.revenue = float(record.revenue[j])
        self.accounts_created = float(record.accounts_created[j])
