"""``python3 -m marketsim ...``: the same as the ``marketsim`` command."""

import sys

from marketsim.cli.entry import main

sys.exit(main())
