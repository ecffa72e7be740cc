"""``python -m tf1_repro``: see ``tf1_repro.cli``."""

import sys

from tf1_repro.cli import main

sys.exit(main())
