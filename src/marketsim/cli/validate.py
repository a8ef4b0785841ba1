"""``marketsim validate``: check a scenario file and print what it describes, with where each value comes from."""

from __future__ import annotations

import argparse

from marketsim.cli.args import load


def cmd_validate(args: argparse.Namespace) -> int:
    from marketsim.scenario.core import scenario_files
    from marketsim.scenario.describe import provenance, render

    sc = load(args, memory=False)
    settings = [f"{k}={v}" for k, v in (args.set or [])]
    settings += [
        f"--{k} {getattr(args, k)}" for k in ("seed", "consumers", "steps") if getattr(args, k, None) is not None
    ]
    print(render(sc, given=args.scenario, prov=provenance(scenario_files(args.scenario)), settings=settings), end="")
    return 0
