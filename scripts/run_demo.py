#!/usr/bin/env python3
"""Run the demo: ``python scripts/run_demo.py [--steps N] ...`` (same as ``python -m tf1_repro demo``)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf1_repro.cli import main  # noqa: E402  pylint: disable=wrong-import-position

sys.exit(main(["demo", *sys.argv[1:]]))
