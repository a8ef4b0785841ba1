"""Conditioning the uncertain parameters on the observations (placeholder; see marketsim fit)."""

from __future__ import annotations


def load_posterior(scenario, cache_dir):
    return None
