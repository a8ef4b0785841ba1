"""marketsim: an agent-based simulator of competition between online retailers.

Importing the package does no work: the model, the CLI and the optional parts (browser page, Dask
sweeps) are imported when first used.
"""

from __future__ import annotations

from marketsim._version import __version__

_LAZY = {
    "MarketModel": ("marketsim.mesa_model.model", "MarketModel"),
    "load_scenario": ("marketsim.scenario.core", "load_scenario"),
    "simulate": ("marketsim.engine.run", "simulate"),
    "load_results": ("marketsim.io.dataset", "load_results"),
    "read_result": ("marketsim.io.store", "read_result"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'marketsim' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
