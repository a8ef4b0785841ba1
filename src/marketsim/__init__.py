"""marketsim: an agent-based simulator of competition between online retailers.

The public API, for scripts and notebooks (each name is imported when first used: importing the package does
no work and loads neither the model nor the CLI nor the optional parts)::

    import marketsim

    sc = marketsim.load_scenario("tiny")                 # a bundled name or a path to a scenario YAML file
    cal = marketsim.calibrate(sc)                        # attractiveness and trends fitted to its observations
    run = marketsim.simulate(sc, cal.alpha_vector(sc), trend=cal.trend_vector(sc))
    run.timeseries()                                     # a pandas DataFrame, one row per step and retailer

- scenarios: :func:`load_scenario`, :class:`Scenario` (``with_overrides``, ``with_values``), :data:`ScenarioError`,
  :func:`scenario_names` (the bundled ones), :func:`copy_scenarios` (into a folder, to edit);
- one run: :func:`simulate` -> :class:`RunResult`; :class:`MarketModel` (the same market as a ``mesa.Model``);
- the fit: :func:`calibrate` -> :class:`Calibration`; :func:`fitted` (the same, cached on disk);
- projections: :func:`project` (its options are keyword arguments: ``options``, ``baseline_without``, ``steps``,
  ``executor``, ``cache_dir``, ``independent_baseline``, ``thresholds``) over :func:`central_draws` or
  :func:`prior_draws` (:class:`Draws`) -> :class:`Projection`; :func:`projection_summary` (plain data);
- sweeps: :func:`load_sweep` -> :class:`Sweep`, :func:`run_sweep`; results: :func:`load_results` (a sweep's
  rows as a DataFrame), :func:`read_result` (a result set's files, checked).
"""

from __future__ import annotations

from marketsim._version import __version__

#: public name -> (module, attribute), imported on first use (PEP 562)
_LAZY = {
    "load_scenario": ("marketsim.scenario.core", "load_scenario"),
    "Scenario": ("marketsim.scenario.core", "Scenario"),
    "ScenarioError": ("marketsim.errors", "ScenarioError"),
    "UserError": ("marketsim.errors", "UserError"),
    "scenario_names": ("marketsim.scenario.bundled", "names"),
    "copy_scenarios": ("marketsim.scenario.bundled", "copy"),
    "simulate": ("marketsim.engine.run", "simulate"),
    "RunResult": ("marketsim.engine.run", "RunResult"),
    "MarketModel": ("marketsim.mesa_model.model", "MarketModel"),
    "calibrate": ("marketsim.fit.calibrate", "calibrate"),
    "Calibration": ("marketsim.fit.calibrate", "Calibration"),
    "fitted": ("marketsim.fit.cache", "fitted"),
    "project": ("marketsim.experiments.projection", "project"),
    "Projection": ("marketsim.experiments.projection", "Projection"),
    "projection_summary": ("marketsim.experiments.projection", "summary"),
    "central_draws": ("marketsim.experiments.uncertainty", "central_draws"),
    "prior_draws": ("marketsim.experiments.uncertainty", "prior_draws"),
    "Draws": ("marketsim.experiments.uncertainty", "Draws"),
    "load_sweep": ("marketsim.experiments.sweep.runner", "load_sweep"),
    "run_sweep": ("marketsim.experiments.sweep.runner", "run_sweep"),
    "Sweep": ("marketsim.experiments.sweep.runner", "Sweep"),
    "load_results": ("marketsim.io.dataset", "load_results"),
    "read_result": ("marketsim.io.store", "read_result"),
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        value = getattr(importlib.import_module(mod), attr)
        globals()[name] = value  # the next access does not come here
        return value
    raise AttributeError(f"module 'marketsim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = ["__version__", *_LAZY]  # noqa: PLE0604  (the keys of _LAZY: strings, read by __getattr__)
