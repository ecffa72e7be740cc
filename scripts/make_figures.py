#!/usr/bin/env python3
"""Regenerate the figure gallery: ``python scripts/make_figures.py [--out docs/figures] [--quiet]``.

Runs every experiment (and the model ones again on handwritten digits) and writes their
figures and ``index.md`` into ``--out`` (see ``tf1_repro.experiments.gallery``).
"""

import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tf1_repro import progress, runtime  # noqa: E402  pylint: disable=wrong-import-position


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/figures", help="gallery folder (default docs/figures)")
    progress.add_quiet_flag(parser)
    args = parser.parse_args(argv)
    runtime.use_tf1_behavior()
    from tf1_repro.experiments import gallery, plots  # pylint: disable=import-outside-toplevel
    if not plots.available():
        print(plots.INSTALL_HINT, file=sys.stderr)
        return 2
    if os.path.isdir(args.out):  # a fresh gallery: no figure left from an older version
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    payloads = gallery.make(args.out, progress=progress.factory(quiet=args.quiet))
    held = sum(c["holds"] for p in payloads for c in p["claims"])
    total = sum(len(p["claims"]) for p in payloads)
    figures = sum(len(p.get("plots", [])) for p in payloads)
    print(f"wrote {figures} figures and {args.out}/index.md; {held}/{total} claims hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
