"""``marketsim scenarios [list|copy DIR]``: the scenarios that ship inside the package, listed or copied out for editing."""

from __future__ import annotations

import argparse

from marketsim.errors import UserError
from marketsim.scenario import bundled


def cmd_scenarios(args: argparse.Namespace) -> int:
    if args.action == "list":
        if args.dir:
            raise UserError(
                f"scenarios list: takes no folder (got {args.dir!r}); to copy: marketsim scenarios copy DIR"
            )
        for name in bundled.names():
            print(name)
        return 0
    if not args.dir:
        raise UserError("scenarios copy: name the folder to copy into, e.g. marketsim scenarios copy my_scenarios")
    copies = bundled.copy(args.dir)
    print(
        f"copied {len(copies)} files into {args.dir}/: edit them there and run e.g. "
        f"marketsim run {args.dir}/{bundled.HEADLINE}.yaml"
    )
    return 0
