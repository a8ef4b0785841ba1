"""``python3 -m marketsim ...``: the same as the ``marketsim`` command."""

import sys

from .cli import main

sys.exit(main())
