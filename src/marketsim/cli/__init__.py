"""The ``marketsim`` command line: :mod:`marketsim.cli.entry` holds the command registry, the parser and the
error mapping; each command lives in its own module here and is imported only when it runs."""

from marketsim.cli.entry import build_parser, main

__all__ = ["build_parser", "main"]
