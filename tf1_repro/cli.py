"""Reproduce and measure the article on batch normalization and dropout in TF1 graph mode.

``python -m tf1_repro COMMAND`` (or ``tf1-repro COMMAND`` once installed): thin
argparse shells over the package's functions. Bad input exits with status 2 and one line on
stderr (no traceback): every refusal is an ``InputError`` (``tf1_repro.graph.errors``), caught once
in ``main``. TensorFlow is imported only after the arguments are parsed, with TF1 behaviour and
without its start-up log.
"""

import argparse
import json
import os
import sys
import warnings

from tf1_repro import progress, runtime
from tf1_repro.graph.errors import InputError

DESCRIPTION = """\
Reproduce, in TensorFlow-1 graph style (placeholders, feed_dict, Session), the article on
batch normalization and dropout at training vs prediction time, and measure every point it
makes: the article's bn_layer and keep_prob dropout, its claims as experiments with computed
verdicts, and tools for legacy TF1 BN/dropout code and saved models: find, doctor,
recalibrate, to-inference (serving), migrate (Keras 3), audit.

Start with:  python -m tf1_repro demo   (trains a small model in ~5 s and prints each point
             with a measured number; add --data digits for real handwritten digits)
Own a TF1 model?  python -m tf1_repro doctor PATH   (a checkpoint dir, .meta, SavedModel or .pb)"""

EPILOG = """\
examples:
  python -m tf1_repro demo
  python -m tf1_repro experiment --list
  python -m tf1_repro doctor runs/demo
  python -m tf1_repro COMMAND --help"""

# Every command's --help ends with an example (build_parser applies them; a test checks all).
EXAMPLES = {
    "demo": "python -m tf1_repro demo --data digits --steps 400",
    "experiment": "python -m tf1_repro experiment train-vs-inference --set data=digits --plot runs/plots",
    "compare": "python -m tf1_repro compare --json runs/compare.json",
    "audit": "python -m tf1_repro audit my_layers.py:my_bn --input-shape 8,2,2,4",
    "audit-dropout": "python -m tf1_repro audit-dropout my_layers.py:my_dropout --keep-prob 0.8",
    "convert-checkpoint": "python -m tf1_repro convert-checkpoint runs/demo runs/keras/model.ckpt --to keras",
    "export": "python -m tf1_repro export --checkpoint runs/demo --out runs/export",
    "bench": "python -m tf1_repro bench --repeat 5 --hygiene-steps 1000 --json runs/bench.json",
    "train": "python -m tf1_repro train --steps 1000 --out runs/train",
    "predict": "python -m tf1_repro predict --checkpoint runs/train",
    "doctor": "python -m tf1_repro doctor runs/train --json runs/doctor.json",
    "find": "python -m tf1_repro find runs/train --json runs/layers.json",
    "migrate": "python -m tf1_repro migrate runs/train --to keras3 --out runs/keras3 --json runs/migrate.json",
    "compare-keras3": "python -m tf1_repro compare-keras3 --json runs/compare_keras3.json",
    "recalibrate": "python -m tf1_repro recalibrate runs/demo --data data.npz --out runs/recalibrated "
                   "--labels y --predictions ArgMax:0",
    "to-inference": "python -m tf1_repro to-inference runs/demo --outputs logits/add,ArgMax --out "
                    "runs/serving --json runs/serving.json",
    "bench-inference": "python -m tf1_repro bench-inference --json runs/bench_inference.json",
}


# How main prints a command's InputError ("{}" is its message). Most messages open with their
# tool ("doctor: ..."): TOOL_ERROR. A command whose messages do not sets its own form with
# set_defaults(error_form=...).
TOOL_ERROR = "python -m tf1_repro {}"


class UsageError(InputError):
    """A bad command-line value, with its whole line (printed as is): exit status 2."""


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
    from tf1_repro.layers.checks import check_keep_prob  # pylint: disable=import-outside-toplevel
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
    p.add_argument("--data", choices=("blobs", "digits"), default="blobs",
                   help="blobs: synthetic, known population (default); digits: scikit-learn's "
                   "bundled handwritten digits (1,797 8x8 images, no download)")
    p.set_defaults(run=_run_demo)


def _run_demo(args):
    from tf1_repro.model import demo  # pylint: disable=import-outside-toplevel
    report = demo.run_demo(steps=args.steps, batch_size=args.batch_size, keep_prob=args.keep_prob,
                           seed=args.seed, out_dir=args.out, data_name=args.data)
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
    progress.add_quiet_flag(p)
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
    from tf1_repro.experiments import summary  # pylint: disable=import-outside-toplevel
    prog = "python -m tf1_repro experiment"
    if args.list:
        print(summary.format_list())
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
        from tf1_repro.experiments import plots  # pylint: disable=import-outside-toplevel
        if not plots.available():
            print(plots.INSTALL_HINT)
            plot_dir = None
    payloads = []
    quiet = args.quiet or not args.all
    with progress.Progress("experiments", len(names), "experiment", quiet=quiet) as bar:
        for name in names:
            payload = experiments.run_experiment(name, overrides, seed=args.seed, logdir=args.logdir,
                                                 plot_dir=plot_dir)
            bar.write(experiments.format_result(payload) + "\n")
            bar.update(1, last=name)
            payloads.append(payload)
    if args.json and not args.all:
        _write_json(args.json, payloads[0])
    if args.all:
        print(summary.format_summary(payloads))
        if args.out_dir:
            print(summary.write_summary(payloads, args.out_dir))
    return 0


def _add_compare(commands):
    p = commands.add_parser("compare", help="the article's layer vs tf.layers, Keras, the fused "
                            "kernel and NumPy on one schedule of fed batches")
    p.add_argument("--seed", type=int, default=0, help="seed of the fed batches (default 0)")
    p.add_argument("--train-steps", type=positive_int, default=20, help="training steps (default 20)")
    p.add_argument("--json", metavar="OUT", help="write the comparison as JSON")
    p.set_defaults(run=_run_compare)


def _run_compare(args):
    from tf1_repro.comparisons import compare  # pylint: disable=import-outside-toplevel
    with warnings.catch_warnings():  # tf.layers' deprecation notice
        warnings.simplefilter("ignore", UserWarning)
        result = compare.compare(seed=args.seed, train_steps=args.train_steps)
    print(compare.format_compare(result))
    _write_json(args.json, result)
    return 0


def input_shape(text):
    try:
        dims = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be N,...,C (integers), got {text!r}") from None
    if len(dims) < 2 or any(d < 1 for d in dims) or dims[0] % 2:
        raise argparse.ArgumentTypeError(
            f"must be N,...,C with rank >= 2, positive sizes and an even batch size N, got {text!r}")
    return dims


def _add_audits(commands):
    p = commands.add_parser("audit", help="audit any BN builder FUNC(inputs, training) against "
                            "the article's layer (imports PATH.py, builds FUNC in a fresh graph and "
                            "runs it: the output, UPDATE_OPS, other collections of ops and unconnected "
                            "ops that write its variables)")
    p.add_argument("builder", metavar="PATH.py:FUNC")
    p.add_argument("--python-bool", action="store_true",
                   help="FUNC takes a Python bool: call it with True, then False, in one graph")
    p.add_argument("--input-shape", type=input_shape, default=(8, 4), metavar="N,...,C",
                   help="probe batch shape (default 8,4; e.g. 8,2,2,4 for conv/fused layers)")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON")
    p.set_defaults(run=_run_audit, error_form="{}")  # the loader's messages are whole lines
    p = commands.add_parser("audit-dropout", help="audit any dropout builder FUNC(x, keep_prob, "
                            "training) against the article's convention")
    p.add_argument("builder", metavar="PATH.py:FUNC")
    p.add_argument("--keep-prob", type=keep_prob, default=0.8, help="keep_prob in training (0.8)")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON")
    p.set_defaults(run=_run_audit_dropout, error_form="{}")


def _run_audit(args):
    from tf1_repro.comparisons import audit, loader  # pylint: disable=import-outside-toplevel
    func = loader.load(args.builder, "audit")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        report = audit.audit(func, args.input_shape, args.python_bool)
    verdict = "matches the article's layer" if report["matches_article"] else \
        "differs from the article's layer"
    print(f"audit of {args.builder}: {verdict}")
    print(audit.format_audit(report))
    _write_json(args.json, report)
    return 0


def _run_audit_dropout(args):
    from tf1_repro.comparisons import audit_dropout, loader  # pylint: disable=import-outside-toplevel
    func = loader.load(args.builder, "audit-dropout")
    report = audit_dropout.audit_dropout(func, args.keep_prob)
    print(audit_dropout.format_report(report, args.builder, args.keep_prob))
    _write_json(args.json, report)
    return 0


def _add_checkpoint_tools(commands):
    p = commands.add_parser("convert-checkpoint", help="rename BN variables between the article's "
                            "names and gamma/beta/moving_mean/moving_variance, and verify")
    p.add_argument("src", metavar="SRC", help="checkpoint prefix or directory")
    p.add_argument("dst", metavar="DST", help="new checkpoint prefix (must not exist)")
    p.add_argument("--to", required=True, choices=("keras", "tf-layers", "article"))
    p.add_argument("--epsilon", type=float, default=1e-5,
                   help="epsilon the target layers will use (default the article's 1e-5)")
    p.set_defaults(run=_run_convert)
    p = commands.add_parser("export", help="SavedModel + frozen GraphDef taking only x")
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="checkpoint directory (with model.json, as the demo writes)")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.set_defaults(run=_run_export)


def _run_convert(args):
    from tf1_repro.comparisons import checkpoints  # pylint: disable=import-outside-toplevel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        report = checkpoints.convert(args.src, args.dst, args.to, epsilon=args.epsilon)
    print(checkpoints.format_report(report))
    return 0 if report["ok"] else 1


def _run_export(args):
    from tf1_repro.comparisons import export  # pylint: disable=import-outside-toplevel
    result = export.export(args.checkpoint, args.out)
    print(export.format_report(result))
    problem = export.format_problem(result)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


def shape_list(text):
    shapes = []
    for part in text.split(";"):
        try:
            dims = tuple(int(d) for d in part.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be shapes like 256,1024;64,32,32,64, got {text!r}") from None
        if len(dims) not in (2, 4) or min(dims) < 2:
            raise argparse.ArgumentTypeError(
                f"each shape must be N,C or N,H,W,C with sizes >= 2, got {part!r}")
        shapes.append(dims)
    return tuple(shapes)


def _add_bench(commands):
    p = commands.add_parser("bench", help="time the article's layer, fast_bn_layer, the fused "
                            "kernel, tf.layers and a copy; RSS over a long training loop")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--repeat", type=positive_int, default=25, help="timed rounds (default 25)")
    p.add_argument("--shapes", type=shape_list, default=None, metavar="S1;S2",
                   help="shapes, default 256,1024;64,32,32,64")
    p.add_argument("--hygiene-steps", type=positive_int, default=10_000,
                   help="training steps of the RSS check (default 10000)")
    progress.add_quiet_flag(p)
    p.set_defaults(run=_run_bench)


def _run_bench(args):
    from tf1_repro.bench import layers as bench  # pylint: disable=import-outside-toplevel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = bench.run(args.shapes or bench.SHAPES, args.repeat, args.hygiene_steps,
                           log=progress.echo, progress=progress.factory(quiet=args.quiet))
    print(bench.format_bench(result))
    _write_json(args.json, result)
    return 0


def _add_train(commands):
    p = commands.add_parser("train", help="train the demo model with checkpoints; resumes from DIR")
    p.add_argument("--steps", type=positive_int, default=1000, help="train until this step (1000)")
    p.add_argument("--out", default="runs/train", metavar="DIR", help="checkpoint folder (runs/train)")
    p.add_argument("--seed", type=int, default=0, help="seed of data, initialisers, dropout masks")
    p.add_argument("--batch-size", type=positive_int, default=64, help="batch size (64)")
    p.add_argument("--keep-prob", type=keep_prob, default=0.8, help="keep_prob in training (0.8)")
    p.add_argument("--checkpoint-every", type=positive_int, default=100, metavar="M",
                   help="save every M steps (100), and at the end or on Ctrl-C")
    p.add_argument("--no-check-finite", action="store_true",
                   help="skip the NaN/inf check of each batch (faster)")
    progress.add_quiet_flag(p)
    p.set_defaults(run=_run_train)
    p = commands.add_parser("predict", help="accuracy of the latest checkpoint on held-out data")
    p.add_argument("--checkpoint", required=True, metavar="DIR", help="checkpoint folder")
    p.add_argument("--batch-size", type=positive_int, default=256, help="prediction batch size (256)")
    p.set_defaults(run=_run_predict)


def _add_to_inference(commands):
    p = commands.add_parser(
        "to-inference", help="freeze any TF1 training graph for serving: bind mode placeholders, "
        "drop training ops and dropout, fold BN; SavedModel, frozen, ONNX, TFLite; verified",
        description="Loads PATH and runs its graph with the prediction feeds (no training op) to "
        "verify each artefact, in a scratch directory: only artefacts that ran are moved into "
        "--out. Imports no user code.")
    p.add_argument("path", metavar="PATH", help="checkpoint prefix or directory (with its .meta), "
                   "a .meta file, a SavedModel directory or a frozen graph (.pb/.pbtxt), "
                   "a TF2 SavedModel (object-based) or a Keras .keras / .h5 file")
    p.add_argument("--outputs", metavar="NAME[,NAME...]",
                   help="output tensors or ops of the prediction path (required for TF1 "
                   "artefacts; TF2 SavedModels and Keras files default to the signature's outputs, "
                   "and take its output keys too: head or serving_default:head)")
    p.add_argument("--signature", metavar="NAME", help="the TF2 SavedModel signature to serve "
                   "(default serving_default)")
    p.add_argument("--fix-training-mode", action="store_true",
                   help="repair a serving function that runs BN in training mode or keeps dropout "
                   "on: each such BN normalises with its moving statistics, their writes and the "
                   "dropouts are removed; verified for batch independence (and against Keras "
                   "with training=False for Keras files)")
    p.add_argument("--inputs", metavar="NAME[,NAME...]",
                   help="input placeholders (default: every placeholder the outputs need that is "
                   "not a mode switch; TF2 formats: the signature's input keys too)")
    p.add_argument("--feed", action="append", default=[], metavar="NAME=VALUE",
                   help="bind a placeholder (repeatable; overrides training=false, keep_prob=1, "
                   "rate=0, keras_learning_phase=0 found in the graph)")
    p.add_argument("--no-fold", action="store_true", help="keep each BN as one multiply-add")
    p.add_argument("--formats", default="saved_model,frozen,onnx,tflite",
                   help="comma-separated subset of saved_model,frozen,onnx,tflite (default all)")
    p.add_argument("--data", metavar="FILE.npz", help="inputs to verify with (arrays named by "
                   "input); default N(0, 1) shaped by the placeholders")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--latency-runs", type=int, default=30, metavar="N",
                   help="timing rounds per variant, one variant at a time (default 30; 0 skips timing)")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON")
    p.add_argument("--verbose", action="store_true",
                   help="also print each serving pass: name, nodes before -> after, what changed")
    progress.add_quiet_flag(p)
    p.set_defaults(run=_run_to_inference, error_form="python -m tf1_repro to-inference: error: {}")


def _run_to_inference(args):
    from tf1_repro.graph import feeds as feeding  # pylint: disable=import-outside-toplevel
    from tf1_repro.tools import inference  # pylint: disable=import-outside-toplevel
    feeds = dict(inference.parse_feed(f) for f in args.feed)
    if args.latency_runs < 0:
        raise inference.InferenceError(f"--latency-runs must be >= 0, got {args.latency_runs}")
    data = feeding.load_npz(args.data, "to-inference", allow_empty=True,
                            unreadable="--data: cannot read {path!r} as .npz ({message})") \
        if args.data else None
    split = [n.strip() for n in (args.outputs or "").split(",") if n.strip()]
    inputs = [n.strip() for n in args.inputs.split(",") if n.strip()] if args.inputs else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = inference.to_inference(
            args.path, split, args.out, inputs=inputs, feeds=feeds, fold=not args.no_fold,
            formats=[f.strip() for f in args.formats.split(",") if f.strip()], data=data,
            latency_runs=args.latency_runs, log=lambda line: progress.echo(line, sys.stderr),
            progress=progress.factory(quiet=args.quiet), signature=args.signature,
            fix_training_mode=args.fix_training_mode)
    print(inference.format_report(report))
    if args.verbose:
        print(inference.format_passes(report["passes"]))
    _write_json(args.json, report)
    return 0 if report["ok"] else 1


def _add_doctor(commands):
    p = commands.add_parser(
        "doctor", help="diagnose a saved TF1 model (checkpoint, .meta, SavedModel, frozen graph) "
        "for BN and dropout mistakes; exit 0 healthy, 1 errors, 2 unreadable input",
        description="Static checks read PATH's graph and variable values (nothing runs). Unless "
        "--no-run, the dynamic checks import the graph into a graph of their own, assign the "
        "checkpoint's values to its variables (none of the artefact's own save, restore, init or "
        "main ops run) and run only the prediction outputs, three times, on random "
        "inputs with the prediction feeds (training=False, keep_prob=1, rate=0, learning phase=0), "
        "resetting any variable a run writes; they refuse to run, and say why, when the outputs' "
        "subgraph holds file, I/O or Python ops (ReadFile, WriteFile, PyFunc, Save/Restore, "
        "readers...). Imports no user code; writes nothing but --json.")
    p.add_argument("path", metavar="PATH", help="checkpoint prefix or directory (its .meta is "
                   "used when present), a .meta file, a SavedModel directory (TF1 or TF2), a frozen "
                   ".pb/.pbtxt, or a Keras .keras/.h5 file")
    p.add_argument("--feed", action="append", default=[], metavar="NAME=VALUE",
                   help="override a prediction feed or feed another placeholder (repeatable)")
    p.add_argument("--input-shape", action="append", default=[], metavar="NAME=N,...",
                   help="shape of an input placeholder whose shape the graph leaves open (an "
                   "unknown batch alone becomes 4)")
    p.add_argument("--data", metavar="FILE.npz", help="inputs to run with, arrays named by placeholder")
    p.add_argument("--no-run", action="store_true", help="static checks only: run nothing")
    p.add_argument("--outputs", metavar="NAME[,NAME...]", help="the prediction outputs to run "
                   "(default: a SavedModel's signature outputs, else chosen from the graph: what "
                   "the loss takes from the network, downstream of the calls that serve prediction)")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON")
    p.add_argument("--verbose", action="store_true", help="print every finding, one line per "
                   "layer with its fix (default: one line per finding id, its fix once)")
    _add_signature(p)
    p.set_defaults(run=_run_doctor)


def _run_doctor(args):
    from tf1_repro.tools import doctor  # pylint: disable=import-outside-toplevel
    prog = "python -m tf1_repro doctor"
    try:
        feeds = dict(doctor.parse_feed(f) for f in args.feed)
    except ValueError as err:
        raise UsageError(f"{prog}: error: --feed {err}") from None
    try:
        shapes = dict(doctor.parse_input_shape(f) for f in args.input_shape)
    except ValueError as err:
        raise UsageError(f"{prog}: error: --input-shape {err}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = doctor.diagnose(args.path, feeds=feeds, input_shapes=shapes, data=args.data,
                                 run=not args.no_run, signature=args.signature,
                                 outputs=args.outputs)
    print(doctor.format_report(report, verbose=args.verbose))
    _write_json(args.json, report)
    return 0 if report["healthy"] else 1


def _add_bench_inference(commands):
    p = commands.add_parser("bench-inference", help="what BN costs at serving: a 6-block conv net "
                            "with the article's bn_layer, original vs folded vs no-BN floor, "
                            "ONNX Runtime, TFLite")
    p.add_argument("--repeat", type=positive_int, default=30, help="interleaved rounds (default 30)")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak-RSS measurement of to-inference (child processes: the "
                        "bench's net and TF-Slim ResNet-50, about 2 minutes)")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    progress.add_quiet_flag(p)
    p.set_defaults(run=_run_bench_inference)


def _run_bench_inference(args):
    from tf1_repro.bench import inference as bench_inference  # pylint: disable=import-outside-toplevel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = bench_inference.run(args.repeat, progress=progress.factory(quiet=args.quiet),
                                     memory=not args.no_memory)
    print(bench_inference.format_bench(result))
    _write_json(args.json, result)
    return 0


def _stderr(line):
    print(line, file=sys.stderr, flush=True)


def _run_train(args):
    from tf1_repro.model import train  # pylint: disable=import-outside-toplevel

    def log(line):
        warning = line.startswith(("warning:", "checkpoint "))
        progress.echo(line, sys.stderr if warning else sys.stdout)
    train.enable_determinism()
    result = train.train(args.out, args.steps, seed=args.seed, batch_size=args.batch_size,
                         keep_prob=args.keep_prob, checkpoint_every=args.checkpoint_every,
                         log=log, check_finite=not args.no_check_finite,
                         progress=progress.factory(quiet=args.quiet))
    return 130 if result["interrupted"] else 0


def _run_predict(args):
    from tf1_repro.model import train  # pylint: disable=import-outside-toplevel
    result = train.predict(args.checkpoint, args.batch_size, log=_stderr)
    print(f"accuracy {result['accuracy']:.4f} on {result['samples']} held-out samples "
          f"(training=False, keep_prob=1.0, batches of {result['batch_size']}; {result['checkpoint']})")
    return 0


def _add_recalibrate(commands):
    p = commands.add_parser(
        "recalibrate", help="exact BN statistics for a checkpoint over your data, weights frozen",
        description="Replace every BN layer's moving mean and variance by the exact population\n"
        "moments of its input over DATA (upstream in prediction mode, upstream BN layers already\n"
        "recalibrated) and write a new checkpoint in DIR.\n\n"
        "This imports the graph in PATH's .meta and runs it (prediction mode only; nothing is\n"
        "trained); with --data module.py:FUNC it also imports and runs your Python code.\n"
        "The source checkpoint is never modified.\n\n"
        "PATH may also be a TF2 SavedModel (tf.saved_model.save, Keras model.save(dir,\n"
        "save_format='tf'), Keras 3 model.export), a Keras 3 .keras or a tf-keras .h5: its serving\n"
        "signature (Keras files: model(x, training=False)) is frozen in a child process and run;\n"
        "DIR receives the same format (a SavedModel directory, or DIR/<the file's name>) with only\n"
        "the BN moving statistics changed.")
    p.add_argument("path", metavar="PATH", help="checkpoint prefix, a directory with a checkpoint "
                   "and its .meta, a TF2 SavedModel directory, a .keras or an .h5 file")
    p.add_argument("--data", required=True, metavar="FILE.npz|FILE.npy|module.py:FUNC",
                   help=".npz: arrays keyed by placeholder name (TF2 SavedModel and Keras files: by the "
                   "signature's input key, e.g. input_1, or the frozen graph's input tensor name, e.g. "
                   "input_0:0; the report names the one used); .npy: the one input placeholder; "
                   "module.py:FUNC: FUNC() yields feed dicts {placeholder name: batch}, called once "
                   "per pass, same data each time (imports and runs your code)")
    p.add_argument("--signature", metavar="NAME", help="TF2 SavedModel: the signature to run "
                   "(default serving_default)")
    p.add_argument("--feed", action="append", default=[], metavar="NAME=VALUE",
                   help="value for a placeholder neither the data nor prediction mode covers "
                   "(repeatable; true/false, a number or a JSON list)")
    p.add_argument("--batch-size", type=positive_int, default=256,
                   help="samples per run for .npz/.npy (default 256; FUNC batches are used as yielded)")
    p.add_argument("--max-samples", type=positive_int, metavar="N", help="use at most N samples")
    p.add_argument("--out", required=True, metavar="DIR", help="directory for the new checkpoint (TF2 "
                   "SavedModel: the new SavedModel directory; .keras/.h5: DIR/<the file's name>)")
    p.add_argument("--labels", metavar="KEY", help="data key of the labels: accuracy before and after")
    p.add_argument("--predictions", metavar="TENSOR",
                   help="tensor of class ids or scores (e.g. ArgMax:0), with --labels")
    p.add_argument("--force", action="store_true", help="replace a checkpoint already in DIR")
    p.add_argument("--json", metavar="OUT", help="write the report as JSON")
    progress.add_quiet_flag(p)
    p.set_defaults(run=_run_recalibrate)


def _run_recalibrate(args):
    from tf1_repro.tools import recalibrate  # pylint: disable=import-outside-toplevel
    feeds = dict(recalibrate.parse_feed(item) for item in args.feed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        report = recalibrate.recalibrate(
            args.path, args.data, args.out, feeds=feeds, batch_size=args.batch_size,
            max_samples=args.max_samples, labels=args.labels, predictions=args.predictions,
            force=args.force, progress=progress.factory(quiet=args.quiet, every_percent=25),
            signature=args.signature)
    print(recalibrate.format_report(report))
    _write_json(args.json, report)
    return 0


def _write_json(path, payload):
    """Write ``--json`` (when given) and say so."""
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
        print(f"wrote {path}")


def _add_find(commands):
    p = commands.add_parser(
        "find", help="list the BN layers, dropouts and mode placeholders of a saved graph, found "
        "by structure (the understanding doctor, to-inference, recalibrate and migrate share)",
        description="Read PATH's graph (checkpoint with its .meta, .meta, SavedModel or frozen "
        ".pb/.pbtxt) and print every BN layer (kind, input/output, gamma, beta, moving "
        "statistics, epsilon, decay, where its updates live, what switches its mode) and every "
        "dropout (convention, keep_prob/rate source). It reads the graph only: nothing runs and "
        "no user code is imported.")
    p.add_argument("path", metavar="PATH", help="checkpoint prefix or directory, .meta, SavedModel "
                   "directory (TF1 or TF2), frozen graph, or Keras .keras/.h5 file")
    p.add_argument("--json", metavar="OUT", help="also write the findings as JSON")
    _add_signature(p)
    p.set_defaults(run=_run_find, error_form="python -m tf1_repro find: {}")


def _add_signature(p):
    p.add_argument("--signature", metavar="NAME", help="the SavedModel signature to read "
                   "(default serving_default; the report lists them all)")


def _run_find(args):
    from tf1_repro.tools import find_report  # pylint: disable=import-outside-toplevel
    art, found = find_report.read(args.path, signature=args.signature)
    print(find_report.format_find(art, found))
    _write_json(args.json, find_report.payload(art, found))
    return 0


def build_parser():
    parser = _Parser(prog="python -m tf1_repro", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_demo(commands)
    _add_experiment(commands)
    _add_compare(commands)
    _add_audits(commands)
    _add_checkpoint_tools(commands)
    _add_bench(commands)
    _add_train(commands)
    _add_to_inference(commands)
    _add_bench_inference(commands)
    _add_find(commands)
    _add_doctor(commands)
    _add_recalibrate(commands)
    _add_migrate(commands)
    _add_examples(commands)
    return parser


def _add_migrate(commands):
    p = commands.add_parser(
        "migrate", help="BN weights of a TF1 checkpoint to Keras 3 (weights.npz, layers.json, "
        "model.keras for the demo), verified layer by layer; --to article goes back",
        description="--to keras3: find the BN layers (structural finder on PATH.meta, else the "
        "checkpoint's names), write DIR/weights.npz and DIR/layers.json, and verify each layer "
        "in Keras 3 (a child process) against the TF1 layer in prediction mode; exit 1 above "
        "1e-5 relative. With a .meta it runs the user's graph (restored, prediction feeds) on "
        "--data or random inputs; it imports no user code. For the demo's checkpoint (model.json "
        "beside it) also DIR/model.keras, checked on predictions and 20 continued training "
        "steps. --to article: a weights.npz, Keras .weights.h5 or .keras to an article-named TF1 "
        "checkpoint DIR/model.ckpt, read back bitwise.")
    p.add_argument("path", metavar="PATH", help="TF1 checkpoint prefix, directory or .meta "
                   "(--to keras3); weights.npz, .weights.h5 or .keras (--to article)")
    p.add_argument("--to", required=True, choices=("keras3", "article"))
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    p.add_argument("--json", metavar="OUT", help="also write the report as JSON")
    p.add_argument("--epsilon", type=float, default=None,
                   help="epsilon of every layer (default: read from the graph, else 1e-5)")
    p.add_argument("--momentum", type=float, default=None,
                   help="momentum = TF1 decay of every layer (default: the graph's, else 0.9)")
    p.add_argument("--data", metavar="FILE.npz", help="inputs: arrays named after the graph's "
                   "placeholders, or (no graph) after the BN layers")
    p.add_argument("--force", action="store_true", help="overwrite DIR/weights.npz (or model.ckpt)")
    p.set_defaults(run=_run_migrate)
    p = commands.add_parser(
        "compare-keras3", help="stock Keras 3 BatchNormalization settings vs the article's "
        "bn_layer, measured (Keras 3 runs in a child process)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fed batches (default 0)")
    p.add_argument("--train-steps", type=positive_int, default=20, help="training steps (20)")
    p.add_argument("--json", metavar="OUT", help="write the comparison as JSON")
    p.set_defaults(run=_run_compare_keras3)


def _run_migrate(args):
    from tf1_repro.comparisons import keras3_worker  # pylint: disable=import-outside-toplevel
    from tf1_repro.tools import migrate  # pylint: disable=import-outside-toplevel
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            report = migrate.migrate(args.path, to=args.to, out=args.out, epsilon=args.epsilon,
                                     momentum=args.momentum, data=args.data, force=args.force)
    except keras3_worker.WorkerError as err:  # Keras 3's process failed: not bad input, exit 1
        print(f"python -m tf1_repro migrate: {err}", file=sys.stderr)
        return 1
    print(migrate.format_report(report))
    _write_json(args.json, report)
    return 0 if report["ok"] else 1


def _run_compare_keras3(args):
    from tf1_repro.comparisons import compare_keras3  # pylint: disable=import-outside-toplevel
    result = compare_keras3.compare(seed=args.seed, train_steps=args.train_steps)
    print(compare_keras3.format_compare(result))
    _write_json(args.json, result)
    return 0


def _add_examples(commands):
    """End each command's --help with its example from EXAMPLES (a test checks every command)."""
    for name, sub in commands.choices.items():
        if name in EXAMPLES and not sub.epilog:
            sub.epilog = f"example:\n  {EXAMPLES[name]}"
            sub.formatter_class = argparse.RawDescriptionHelpFormatter


def _json_target_problem(path):
    """Why ``--json PATH`` could not be written (checked before the command runs), or None."""
    if not path:
        return None
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return f"--json must be a file path, got the directory {path!r}"
    if not os.path.isdir(directory):
        return f"--json {path}: its directory {directory!r} does not exist"
    if not os.access(directory, os.W_OK):
        return f"--json {path}: its directory {directory!r} is not writable"
    return None


def main(argv=None):
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as err:
        print(err, file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help()
        return 0
    problem = _json_target_problem(getattr(args, "json", None))
    if problem:  # before any work: a report that cannot be written must not cost a run
        print(f"python -m tf1_repro {args.command}: error: {problem}", file=sys.stderr)
        return 2
    runtime.use_tf1_behavior()
    try:
        return args.run(args)
    except InputError as err:  # every refusal of bad input, whichever tool raised it
        print(_error_line(args, err), file=sys.stderr)
        return err.exit_status


def _error_line(args, err):
    """The one line a refusal prints: a UsageError's as is, another InputError's message in its
    command's form (``error_form``, default ``TOOL_ERROR``)."""
    if isinstance(err, UsageError):
        return str(err)
    return getattr(args, "error_form", TOOL_ERROR).format(err)
