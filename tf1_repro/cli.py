"""``python -m tf1_repro COMMAND``: thin argparse shells over the package's functions.

Bad arguments exit with status 2 and one line on stderr (no traceback).
TensorFlow is imported only after the arguments are parsed, with TF1
behaviour and without its start-up log.
"""

import argparse
import json
import sys

from tf1_repro import runtime


class UsageError(Exception):
    """A bad command-line value: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see --help)")


def positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def batch_size(text):
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(
            "must be >= 2 for training (a batch of 1 has variance 0: bn_layer outputs beta), "
            f"got {value}")
    return value


def keep_prob(text):
    from tf1_repro.checks import check_keep_prob  # pylint: disable=import-outside-toplevel
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}") from None
    try:
        return check_keep_prob("--keep-prob", value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).split(": ", 1)[1]) from None


def _add_demo(commands):
    p = commands.add_parser("demo", help="train the article-style model and measure the article's points")
    p.add_argument("--steps", type=positive_int, default=300, help="training steps (default 300)")
    p.add_argument("--batch-size", type=batch_size, default=64, help="training batch size (default 64)")
    p.add_argument("--keep-prob", type=keep_prob, default=0.8, help="keep_prob in training (default 0.8)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, initialisers and dropout")
    p.add_argument("--out", default="runs/demo", help="checkpoint folder (default runs/demo)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    p.set_defaults(run=_run_demo)


def _run_demo(args):
    from tf1_repro import demo  # pylint: disable=import-outside-toplevel
    report = demo.run_demo(steps=args.steps, batch_size=args.batch_size, keep_prob=args.keep_prob,
                           seed=args.seed, out_dir=args.out)
    print(demo.format_report(report))
    _write_json(args.json, report)
    return 0


def _write_json(path, payload):
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
        print(f"wrote {path}")


def build_parser():
    parser = _Parser(prog="python -m tf1_repro", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    _add_demo(commands)
    return parser


def main(argv=None):
    try:
        args = build_parser().parse_args(argv)
    except UsageError as err:
        print(err, file=sys.stderr)
        return 2
    runtime.use_tf1_behavior()
    try:
        return args.run(args)
    except UsageError as err:
        print(err, file=sys.stderr)
        return 2
