"""``python -m tf1_repro COMMAND``: thin argparse shells over the package's functions.

Bad arguments exit with status 2 and one line on stderr (no traceback).
TensorFlow is imported only after the arguments are parsed, with TF1
behaviour and without its start-up log.
"""

import argparse
import json
import os
import sys
import warnings

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


def _add_experiment(commands):
    p = commands.add_parser(
        "experiment", help="run a named feed_dict experiment (--list shows them)",
        description="Run one experiment (NAME), all of them (--all), or list them (--list).")
    p.add_argument("name", nargs="?", metavar="NAME", help="experiment name (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments with their claims")
    p.add_argument("--all", action="store_true", help="run every experiment with its defaults")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a parameter (repeatable); lists are comma-separated")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON (one experiment)")
    p.add_argument("--out-dir", metavar="DIR", help="with --all: write NAME.json, summary.json, summary.md")
    p.add_argument("--logdir", metavar="DIR", help="write TensorBoard event files under DIR/NAME")
    p.add_argument("--plot", metavar="DIR", help="write PNG figures (needs matplotlib)")
    p.set_defaults(run=_run_experiment)


def _parse_sets(items):
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"python -m tf1_repro experiment: error: argument --set: must be "
                             f"KEY=VALUE, got {item!r}")
        overrides[key.strip()] = value.strip()
    return overrides


def _run_experiment(args):
    from tf1_repro import experiments  # pylint: disable=import-outside-toplevel
    prog = "python -m tf1_repro experiment"
    if args.list:
        width = max(len(n) for n in experiments.NAMES)
        for name in experiments.NAMES:
            e = experiments.get(name)
            params = ", ".join(f"{p.name}={p.default}" for p in e.params)
            print(f"{name:<{width}}  {e.claim}\n{'':<{width}}  params: {params}")
        return 0
    if args.all == bool(args.name):
        raise UsageError(f"{prog}: error: give one NAME, --all or --list (see --help)")
    overrides = _parse_sets(args.set)
    names = experiments.NAMES if args.all else [args.name]
    try:
        for name in names:
            experiments.get(name).resolve(overrides if not args.all else None)
        if args.all and overrides:
            raise ValueError("--set applies to one NAME, not to --all")
    except (ValueError, TypeError) as err:
        raise UsageError(f"{prog}: error: {err}") from None
    plot_dir = args.plot
    if plot_dir:
        from tf1_repro import plots  # pylint: disable=import-outside-toplevel
        if not plots.available():
            print(plots.INSTALL_HINT)
            plot_dir = None
    payloads = []
    for name in names:
        payload = experiments.run_experiment(name, overrides, seed=args.seed, logdir=args.logdir,
                                             plot_dir=plot_dir)
        print(experiments.format_result(payload))
        print()
        payloads.append(payload)
    if args.json and not args.all:
        _write_json(args.json, payloads[0])
    if args.all:
        _write_summary(payloads, args.out_dir)
    return 0


def _write_summary(payloads, out_dir):
    from tf1_repro import experiments  # pylint: disable=import-outside-toplevel
    headers = ["experiment", "claim", "measured", "expected", "tolerance", "holds"]
    rows = experiments.summary_rows(payloads)
    held = sum(r[-1] == "✓" for r in rows)
    print(f"Summary: {held}/{len(rows)} claims hold")
    print(experiments.format_table(headers, rows))
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        for payload in payloads:
            _write_json(os.path.join(out_dir, payload["experiment"] + ".json"), payload, quiet=True)
        _write_json(os.path.join(out_dir, "summary.json"),
                    {"claims_total": len(rows), "claims_holding": held,
                     "rows": [dict(zip(headers, r)) for r in rows]}, quiet=True)
        with open(os.path.join(out_dir, "summary.md"), "w", encoding="utf-8") as f:
            f.write("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers) + "\n")
            for r in rows:
                f.write("| " + " | ".join(experiments.format_value(v) for v in r) + " |\n")
        print(f"wrote {out_dir}/summary.md, summary.json and one JSON per experiment")


def _add_compare(commands):
    p = commands.add_parser("compare", help="the article's layer vs tf.layers, Keras, the fused "
                            "kernel and NumPy on one schedule of fed batches")
    p.add_argument("--seed", type=int, default=0, help="seed of the fed batches (default 0)")
    p.add_argument("--train-steps", type=positive_int, default=20, help="training steps (default 20)")
    p.add_argument("--json", metavar="OUT", help="write the comparison as JSON")
    p.set_defaults(run=_run_compare)


def _run_compare(args):
    from tf1_repro import compare  # pylint: disable=import-outside-toplevel
    with warnings.catch_warnings():  # tf.layers' deprecation notice
        warnings.simplefilter("ignore", UserWarning)
        result = compare.compare(seed=args.seed, train_steps=args.train_steps)
    print(compare.format_compare(result))
    _write_json(args.json, result)
    return 0


def _write_json(path, payload, quiet=False):
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
        if not quiet:
            print(f"wrote {path}")


def build_parser():
    parser = _Parser(prog="python -m tf1_repro", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    _add_demo(commands)
    _add_experiment(commands)
    _add_compare(commands)
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
