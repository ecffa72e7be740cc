"""``to_inference``: load the artefact, convert (``convert.convert``), write the formats
(``formats``) into a scratch directory, verify each against the original graph run with the
prediction feeds (``verify``), time the variants (``latency``) and move what ran into ``--out``.
(Moved from ``tools/inference.py``; the report gains ``passes``: one record per pass run.)"""

import functools
import gc
import os

import numpy as np

from tf1_repro.graph import safety
from tf1_repro.graph.feeds import parse_feed as _parse_feed
from tf1_repro.graph.graphdef import make_identity, node_name, nodes_by_name, tensor_dtypes, tensor_name, with_nodes
from tf1_repro.tools.inference import fix_verify
from tf1_repro.tools.inference.convert import convert
from tf1_repro.tools.inference.errors import InferenceError
from tf1_repro.tools.inference.latency import VARIANTS, cannot_run, time_variant
from tf1_repro.tools.inference.training_mode import plan_fixes
from tf1_repro.tools.inference.verify import (input_shapes, make_batches, output_scale, random_ops,
                                              same_outputs, verify)

TF2_FORMATS = ("saved_model_tf2", "keras", "keras_h5")
# the artefacts whose verified runner is timed (before it is closed), and the variant each is timed as
TIMED_AS = {"frozen": "folded", "onnx": "onnxruntime", "tflite": "tflite"}


def open_model(path):
    """(graph, sess, findings) through ``tf1_repro.graph.artefacts``: a checkpoint prefix or
    directory (with its .meta), a .meta file with its checkpoint, a SavedModel or a frozen
    graph, a TF2 SavedModel or a Keras file; the variables restored (only the restore runs).
    Caller closes sess."""
    _, graph, sess, findings = open_artefact(path)
    return graph, sess, findings


def open_artefact(path, signature=None):
    """(Artefact, graph, sess, findings); see ``open_model``. ``signature`` picks a TF2
    SavedModel's signature (default ``serving_default``)."""
    from tf1_repro.graph import artefacts  # pylint: disable=import-outside-toplevel
    try:
        art = artefacts.load(path, signature=signature)
        if art.format in TF2_FORMATS and not art.outputs:
            raise InferenceError(f"PATH: {path}: " + (art.notes[-1] if art.notes else
                                                     "no signature to serve"))
        if art.format == "meta_graph" and art.checkpoint is None:
            raise InferenceError(f"PATH: {path} has no checkpoint beside it (no "
                                 f"{path[:-len('.meta')]}.index): the variables have no values")
        if art.graph_def is None and art.meta_graph is None:
            raise InferenceError(f"PATH: checkpoint {path} has no .meta graph beside it; give the "
                                 f"graph as a .meta, SavedModel or frozen graph")
        findings = art.find()
        graph, sess = art.open()
    except artefacts.ArtefactError as err:
        raise InferenceError(f"PATH: {err}") from None
    return art, graph, sess, findings


def _tf1_path(path):
    """Whether ``path`` is read by a TF1 format reader (or by none): ``--outputs`` is required."""
    from tf1_repro.graph.artefacts.readers import READERS  # pylint: disable=import-outside-toplevel
    try:
        reader = next((r for r in READERS if r.recognise(path)), None)
    except Exception:  # pylint: disable=broad-except
        return True
    return reader is None or reader.FORMAT not in TF2_FORMATS


def _by_key(art, graph, name, what):
    """The tensor of a TF2 signature key (``head`` or ``serving_default:head``) among the
    signature's outputs (``what`` "--outputs") or inputs; a tensor or op name of the frozen
    graph as it is; InferenceError naming the keys for anything else."""
    from tf1_repro.tools.tf2_findings import keyed as keyed_text  # pylint: disable=import-outside-toplevel
    keyed = art.outputs if what == "--outputs" else art.inputs
    if name in keyed:
        return keyed[name]
    signature, _, key = name.partition(":")
    if signature == art.signature and key in keyed:
        return keyed[key]
    try:
        graph.get_tensor_by_name(tensor_name(name))
    except (KeyError, ValueError):
        side = "output" if what == "--outputs" else "input"
        raise InferenceError(f"{what}: {name!r} is neither an {side} key of the {art.signature} "
                             f"signature nor a tensor of its frozen graph; its {side}s: "
                             f"{keyed_text(keyed)}") from None
    return name


def _keys_of(tensors, keyed):
    """``{tensor: signature key}`` for the tensors that are signature inputs or outputs."""
    by_tensor = {tensor_name(t): k for k, t in keyed.items()}
    return {t: by_tensor[tensor_name(t)] for t in tensors if tensor_name(t) in by_tensor}


def _read_format(path, signature):
    """The format ``path`` is read as (reading only), or InferenceError with the reader's line: an
    unreadable file is named as such before ``--outputs`` is asked for."""
    from tf1_repro.graph import artefacts  # pylint: disable=import-outside-toplevel
    try:
        return artefacts.load(path, signature=signature).format
    except artefacts.ArtefactError as err:
        raise InferenceError(f"PATH: {err}") from None


def _fix_checks(fmt, art, opened, fixes, conv, batch, repaired_outputs, tolerance):
    """``fix_verify``'s checks of the repair (``--fix-training-mode`` changed something)."""
    graph, sess, findings = opened
    fixed = {e["layer"] for e in conv["fixed"]}
    bn_fixes = {bn.name: f for bn, f in zip(findings.bn_layers, fixes[0]) if f.layer in fixed}
    numpy_checks = fix_verify.bn_numpy_checks(fmt, conv["repaired"], graph, sess, findings,
                                              bn_fixes, batch, tolerance)
    keras = fix_verify.keras_check(art, repaired_outputs, conv["inputs"], conv["outputs"], batch,
                                   tolerance)
    ok = all(c["ok"] for c in numpy_checks) and keras.get("ok", "skipped" in keras)
    return {"reference": "the repaired graph, before BN folding", "bn_numpy": numpy_checks,
            "keras": keras, "ok": bool(ok)}


def _hint(path, conv, fix_training_mode, batch_dependent, deterministic):
    """Why no artefact can match a training-mode original, and what to run (None when the
    original is not in training mode or ``--fix-training-mode`` was given)."""
    if fix_training_mode:
        return None
    training_bn = any(o.startswith(("FusedBatchNorm", "Rsqrt")) for o in conv["training_ops_left"])
    dropping = bool(conv["dropouts_kept"]) and not deterministic
    if not (batch_dependent or dropping or (training_bn and not deterministic)):
        return None
    what = []
    if batch_dependent or training_bn:
        what.append("a BN normalises with the batch's statistics")
    if dropping:
        what.append("a dropout is on at inference")
    serves = " and ".join(w for w, on in (("with its moving statistics", batch_dependent or training_bn),
                                           ("without dropout", dropping)) if on)
    return (f"{' and '.join(what)}: see python -m tf1_repro doctor {path}; to-inference "
            f"--fix-training-mode serves it {serves}")


def _add_aliases(graph_def, aliases):
    """Identity nodes named ``aliases[tensor]`` on output tensors (e.g. output_logits)."""
    by_name = nodes_by_name(graph_def)
    dtypes = tensor_dtypes(graph_def, list(aliases))
    extra = []
    for tensor, alias in aliases.items():
        if alias in by_name:
            raise InferenceError(f"aliases: {alias!r} is already a node of the graph")
        extra.append(make_identity(alias, tensor, dtypes[tensor]))
    return with_nodes(graph_def, list(graph_def.node) + extra)


def _check_formats(formats):
    from tf1_repro.tools.inference import formats as fmt  # pylint: disable=import-outside-toplevel
    bad = [f for f in formats if f not in fmt.FORMATS]
    if bad or not formats:
        raise InferenceError(f"--formats must be a comma-separated subset of "
                             f"{','.join(fmt.FORMATS)}, got {','.join(formats) or 'nothing'}")
    return list(dict.fromkeys(formats))


def to_inference(path, outputs, out_dir, *, inputs=None, feeds=None, fold=True,
                 formats=("saved_model", "frozen", "onnx", "tflite"), data=None, latency_runs=30,
                 tolerance=1e-4, aliases=None, input_keys=None, output_keys=None, log=None,
                 progress=None, signature=None, fix_training_mode=False):
    """Load ``path``, convert (see ``convert``), write the formats into a scratch directory,
    verify each there against the original graph run with the prediction feeds (batch 1 and
    16), time the variants (batch 1 and 64, ``latency_runs`` rounds, one variant at a time:
    ``latency.time_variant``; 0 skips),
    then move into ``out_dir`` every artefact that ran (verified or not: the report says);
    one that a converter or runtime failed on is reported with a one-line ``error`` and not
    written.

    Runs the user's graph (prediction feeds only: no training op). Returns the report
    (JSON-able); ``report["ok"]`` is False when an artefact differs or cannot run. Raises
    InferenceError for bad input or an op a format cannot take (nothing written then).
    ``progress``: a progress factory (``tf1_repro.progress.factory()``; None shows nothing)
    that starts once the input is checked: one unit per stage (reference run, each format
    written, each verified, moving), and a bar of timing rounds per variant.

    TF2 SavedModels and Keras files: ``signature`` picks the signature frozen (default
    ``serving_default``); ``outputs`` may be empty (the signature's outputs, served under the
    signature's keys). ``fix_training_mode`` runs the fix stage (``training_mode``); when it
    changed something, the artefacts are verified against the repaired graph, and the repair
    by ``fix_verify`` (NumPy per BN layer; Keras with ``training=False`` for Keras files).
    """
    import tempfile  # pylint: disable=import-outside-toplevel
    from tf1_repro import progress as progress_display  # pylint: disable=import-outside-toplevel
    from tf1_repro.tools.inference import formats as fmt  # pylint: disable=import-outside-toplevel
    log = log or (lambda line: None)
    formats = _check_formats(list(formats))
    if not outputs and _tf1_path(path) and _read_format(path, signature) not in TF2_FORMATS:
        raise InferenceError("--outputs must name at least one tensor")
    targets = _check_out(out_dir, formats, fmt)
    if data is not None:
        _check_data_arrays(data)
    art, graph, sess, findings = open_artefact(path, signature)
    tf2 = art.format in TF2_FORMATS
    # what the report says of the artefact read (``art`` itself, its graph protos, goes after
    # the reference run)
    read = {"format": art.format, "signature": art.signature,
            "signatures": art.signature_names if tf2 else [],
            "writes_left_out": [w["node"] for w in art.writes] if tf2 else []}
    signature_inputs, signature_outputs = dict(art.inputs), dict(art.outputs)
    try:
        if not outputs:
            if not tf2:
                raise InferenceError("--outputs must name at least one tensor")
            outputs = list(art.outputs.values())
        if tf2:  # --outputs / --inputs may name the signature's keys (head, serving_default:head)
            outputs = [_by_key(art, graph, o, "--outputs") for o in outputs]
            inputs = [_by_key(art, graph, i, "--inputs") for i in inputs] if inputs else inputs
            input_keys = input_keys or {tensor_name(t): k for k, t in art.inputs.items()}
            keys = {tensor_name(t): k for k, t in art.outputs.items()}
            if output_keys is None and not aliases and all(tensor_name(o) in keys for o in outputs):
                output_keys = keys
        fixes = plan_fixes(graph, sess, findings, art.writes if tf2 else None,
                           art.variable_paths) if fix_training_mode else None
        conv = convert(graph, sess, outputs, findings, inputs=inputs, feeds=feeds, fold=fold,
                       fixes=fixes)
        unsafe = safety.unsafe_to_run(graph, conv["outputs"])
        if unsafe:
            raise InferenceError(safety.refusal(unsafe, ", ".join(conv["outputs"])))
        _check_inputs(graph, conv["inputs"], data)
        served_outputs = conv["outputs"]
        # The GraphDefs leave ``conv`` (each holds every weight): each is dropped once used.
        folded, unfolded = conv.pop("folded"), conv.pop("unfolded")
        if not latency_runs:
            unfolded = None  # only timed
        if aliases:
            aliases = {tensor_name(k): v for k, v in aliases.items()}
            folded = _add_aliases(folded, aliases)
            unfolded = unfolded if unfolded is None else _add_aliases(unfolded, aliases)
            served_outputs = [f"{aliases[o]}:0" if o in aliases else o for o in served_outputs]
        shapes = input_shapes(graph, conv["inputs"]) if data is None else {
            i: [None] + list(np.asarray(data.get(i, data.get(node_name(i)))).shape[1:])
            for i in conv["inputs"]}
        # Every refusal of bad input comes before the display starts (its lines would precede
        # the one-line error); only an op a converter cannot take is found later.
        stages = 2 + 2 * len(formats)
        latency, latency_errors = {}, {}
        with progress_display.resolve(progress)("to-inference", stages, "stage") as bar:
            checks = make_batches(graph, conv["inputs"], data, (1, 16))
            timing = make_batches(graph, conv["inputs"], data, (1, 64), seed=1) if latency_runs else {}

            def time_(variant, open_runner):
                latency[variant], error = time_variant(variant, open_runner, timing, latency_runs,
                                                       progress=progress)
                if error:
                    latency_errors[variant] = error

            original = fmt.open_session(graph, sess, conv["outputs"], conv["feeds"])
            repaired = fmt.open_graph_def(conv["repaired"], conv["outputs"]) if conv["fixed"] else None
            reference_runner = repaired or original
            reference = {s: [np.asarray(v, np.float64) for v in reference_runner.run(b)]
                         for s, b in checks.items()}
            largest = checks[max(checks)]
            if repaired is None:
                deterministic = not random_ops(graph, conv["outputs"]) or same_outputs(
                    original.run(largest), reference[max(checks)])
            else:
                deterministic = same_outputs(repaired.run(largest), reference[max(checks)])
            shift = fix_verify.batch_shift(original, largest) if deterministic and \
                repaired is None else None
            fix_checks = _fix_checks(fmt, art, (graph, sess, findings), fixes, conv, largest,
                                     reference[max(checks)], tolerance) if repaired else None
            if repaired is not None:
                repaired.close()
            conv["repaired"] = repaired = None
            bar.update(1, done="reference run")
            if latency_runs:
                time_("original", lambda: original)
            # From here on the artefacts are compared with ``reference``: the original's session
            # is closed, and one served model at a time is in memory (its runner is closed before
            # the next opens), each timed while it is open.
            sess.close()
            # nothing of the original is run again: its graph, session and protos can go
            original = reference_runner = graph = sess = findings = fixes = art = None
            gc.collect()
            with tempfile.TemporaryDirectory() as tmp:
                open_unfolded = _timing_copy(fmt, unfolded, os.path.join(tmp, "unfolded.pb"),
                                             served_outputs) if latency_runs else None
                unfolded = None
                staged, artefacts, skipped = _write_formats(
                    fmt, formats, folded, conv["inputs"], served_outputs, shapes, tmp, input_keys,
                    output_keys, log, bar)
                if "frozen" in staged:  # the same bytes
                    open_folded = functools.partial(fmt.open_frozen, staged["frozen"], served_outputs)
                else:
                    open_folded = _timing_copy(fmt, folded, os.path.join(tmp, "folded.pb"),
                                               served_outputs) if latency_runs else None
                folded = None
                gc.collect()
                for name, staged_path in staged.items():
                    artefacts[name], runner = _verify_artefact(
                        fmt, name, staged_path, conv["inputs"], served_outputs, reference, checks,
                        tolerance)
                    bar.update(1, done=f"{name} " + (
                        "failed" if artefacts[name].get("error") else "compared"))
                    if runner is not None and latency_runs and name in TIMED_AS:
                        time_(TIMED_AS[name], lambda r=runner: r)  # closed once timed
                    elif runner is not None:
                        runner.close()
                    runner = None
                bar.update(len(formats) - len(staged))  # skipped or failed: nothing to verify
                if latency_runs:
                    time_("frozen_unfolded", open_unfolded)
                    if "folded" not in latency:  # the frozen artefact was not written or not run
                        time_("folded", open_folded)
                    latency = {v: latency[v] for v in VARIANTS if v in latency}
                _move_verified(staged, artefacts, targets, out_dir)
                artefacts = {n: artefacts[n] for n in formats if n in artefacts}
                bar.update(1, done="moved")
    finally:
        if sess is not None:
            sess.close()
    finite = all(np.all(np.isfinite(v)) for values in reference.values() for v in values)
    constant = _constant_outputs(reference[max(reference)], served_outputs, checks[max(checks)],
                                 tolerance)
    ok = finite and deterministic and all(not a.get("error") and a["within_tolerance"] and a["batch_independent"]
                        and a["deterministic"] for a in artefacts.values()) and not latency_errors
    ok = ok and not conv["not_fixed"] and (fix_checks is None or fix_checks["ok"])
    scale = max((float(np.max(np.abs(v), initial=0.0)) for v in reference[max(reference)]), default=0.0)
    batch_dependent = shift is not None and shift > tolerance * max(1.0, scale)
    return {"source": path, **{k: read[k] for k in ("format", "signature", "signatures")},
            "fix_training_mode": bool(fix_training_mode), "fixed": conv["fixed"],
            "not_fixed": conv["not_fixed"], "fix_checks": fix_checks,
            "original_batch_dependent": bool(batch_dependent),
            "original_batch_shift": shift, "training_mode_hint": _hint(
                path, conv, fix_training_mode, batch_dependent, deterministic),
            "writes_left_out": read["writes_left_out"],
            "inputs": conv["inputs"], "outputs": served_outputs,
            "input_keys": _keys_of(conv["inputs"], signature_inputs) if tf2 else {},
            "output_keys": _keys_of(served_outputs, signature_outputs) if tf2 else {},
            "feeds": conv["feeds"], "bn_layers": conv["bn_layers"],
            "dropouts_removed": conv["dropouts_removed"], "dropouts_kept": conv["dropouts_kept"],
            "dropouts_scaled": conv["dropouts_scaled"],
            "update_ops_dropped": conv["update_ops_dropped"],
            "ops_before": conv["ops_before"], "ops_after": conv["ops_after"],
            "ops_unfolded": conv["ops_unfolded"], "training_ops_left": conv["training_ops_left"],
            "passes": conv["passes"],
            "artefacts": artefacts, "skipped": skipped, "latency_ms": latency,
            "latency_runs": latency_runs, "latency_errors": latency_errors,
            "tolerance": tolerance, "original_finite": bool(finite),
            "constant_outputs": constant, "check_inputs": "--data" if data is not None else "N(0, 1)",
            "original_deterministic": bool(deterministic), "ok": bool(ok)}




def _constant_outputs(values, outputs, feeds, tolerance):
    """The outputs that are one value, within ``tolerance`` (verify's own: ``tolerance *
    max(1, max |output|)``), for every row of the largest check batch although the input rows
    differ (a saturated softmax, an untrained net's flat output): an artefact that gave that
    value whatever its input would pass the comparison on them. Only outputs with a finite value
    and one row per input row count (non-finite outputs have their own line); with every input
    row the same (a one-row --data file, tiled) nothing is claimed."""
    if all(_spread(v) == 0 for v in feeds.values()):
        return []
    batch = max(len(v) for v in feeds.values())
    return [name for name, value in zip(outputs, values)
            if np.ndim(value) >= 1 and len(value) == batch and np.size(value) and
            np.all(np.isfinite(value)) and _spread(value) <= tolerance * output_scale(value)]


def _spread(value):
    """max |row - first row| over the rows of ``value`` (0 for fewer than two rows)."""
    value = np.asarray(value)
    if value.ndim == 0 or len(value) < 2 or not value.size:
        return 0.0
    if value.dtype.kind not in "biuf":
        return 0.0 if np.array_equal(value, np.broadcast_to(value[:1], value.shape)) else np.inf
    return float(np.max(np.abs(value.astype(np.float64) - value[:1].astype(np.float64))))


def _check_out(out_dir, formats, fmt):
    """{format: target path} in ``out_dir``; InferenceError when ``out_dir`` is a file, lies
    under a file or an unwritable directory, or already holds one of the targets."""
    if not out_dir:
        raise InferenceError("--out must name a directory (new or without the artefacts' names), "
                             "got ''")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InferenceError(f"--out must be a directory (new or without the artefacts' names), "
                             f"got {out_dir!r}: an existing file")
    parent = os.path.abspath(out_dir)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise InferenceError(f"--out must be a directory that can be created, got {out_dir!r}: "
                             f"{parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InferenceError(f"--out must be a directory that can be written, got {out_dir!r}: "
                             f"{parent} is not writable")
    targets = {f: os.path.join(out_dir, fmt.FILE_NAMES[f]) for f in formats}
    taken = [p for p in targets.values() if os.path.lexists(p)]
    if taken:
        raise InferenceError(f"--out: {taken[0]} exists already; give an empty directory")
    return targets


def _check_data_arrays(data):
    """InferenceError for a --data array with no rows, no batch axis or a non-numeric dtype."""
    for key, value in data.items():
        value = np.asarray(value)
        if value.ndim == 0 or value.shape[0] == 0:
            raise InferenceError(f"--data: array {key} must have at least one row (shape (N, ...) "
                                 f"with N >= 1), got shape {value.shape}")
        if value.dtype.kind not in "biuf":
            raise InferenceError(f"--data: array {key} must be numeric or bool, got dtype "
                                 f"{value.dtype}")


def _shape_text(dims):
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + \
        ("," if len(dims) == 1 else "") + ")"


def _check_inputs(graph, inputs, data):
    """InferenceError when an input has a fixed batch size (verification runs batches of 1 and
    16) or a --data array does not fit its placeholder's shape (rank and every known dimension
    after the batch)."""
    for name in inputs:
        shape = graph.get_tensor_by_name(name).shape
        dims = shape.as_list() if shape.rank is not None else None
        if dims and dims[0] is not None:
            raise InferenceError(f"--inputs: input {name} must have an unknown (None) batch "
                                 f"dimension (verification runs batches of 1 and 16), got shape "
                                 f"{_shape_text(dims)}")
        if data is None or dims is None:
            continue
        key = name if name in data else node_name(name)
        if key not in data:
            raise InferenceError(f"--data: no array named {node_name(name)} "
                                 f"(has {', '.join(sorted(data)) or 'none'})")
        got = np.asarray(data[key]).shape
        if len(got) != len(dims) or any(d is not None and d != g for d, g in zip(dims[1:], got[1:])):
            raise InferenceError(f"--data: array {key} must have shape {_shape_text([None] + dims[1:])} "
                                 f"to feed input {name}, got {_shape_text(list(got))}")


def _write_formats(fmt, formats, graph_def, inputs, outputs, shapes, tmp, input_keys, output_keys,
                   log, bar):
    """Convert into the scratch directory ``tmp``. Returns ({format: staged path},
    {format: failed artefact entry}, {format: install hint}). A missing package skips its format
    (logged); an op a format cannot take raises InferenceError (nothing is in --out yet); any
    other converter failure is that format's one-line ``error``."""
    staged, failed, skipped = {}, {}, {}
    for name in formats:
        path = os.path.join(tmp, fmt.FILE_NAMES[name])
        try:
            if name == "saved_model":
                fmt.write_saved_model(graph_def, inputs, outputs, path, input_keys, output_keys)
            elif name == "frozen":
                fmt.write_frozen(graph_def, path)
            elif name == "onnx":
                fmt.write_onnx(graph_def, inputs, outputs, path)
            else:
                fmt.write_tflite(graph_def, inputs, outputs, shapes, path)
        except fmt.FormatUnavailable as err:
            log(str(err))
            skipped[name] = str(err)
        except fmt.UnsupportedOp as err:
            raise InferenceError(str(err)) from None
        except fmt.FormatError as err:
            failed[name] = _failed_entry(f"cannot convert: {str(err).partition(': ')[2]}")
        except Exception as err:  # pylint: disable=broad-except
            failed[name] = _failed_entry(f"cannot convert: {type(err).__name__}: "
                                         f"{fmt.one_line(err)}")
        else:
            staged[name] = path
        bar.update(1, done=f"{name} written")
    return staged, failed, skipped


def _failed_entry(error):
    return {"path": None, "error": error, "max_abs_diff": None, "max_rel_diff": None,
            "within_tolerance": False,
            "batch_independent": False, "deterministic": False, "bytes": 0}


def _verify_artefact(fmt, name, path, inputs, outputs, reference, checks, tolerance):
    """(the artefact's report entry, its runner): ``verify`` of the runner, left open for the
    caller to time or close; (an entry with a one-line ``error``, None) when it cannot be opened
    or run (its runner closed)."""
    try:
        runner = _open_artefact(fmt, name, path, inputs, outputs)
    except Exception as err:  # pylint: disable=broad-except
        return _failed_entry(f"cannot load: {type(err).__name__}: {fmt.one_line(err)}"), None
    try:
        result = verify(runner, reference, checks, tolerance)
    except Exception as err:  # pylint: disable=broad-except
        runner.close()
        return _failed_entry(cannot_run(err)), None
    return {"path": path, "error": None, **result, "bytes": fmt.file_size(path)}, runner


def _timing_copy(fmt, graph_def, path, outputs):
    """An ``open_runner`` for ``time_variant``: ``graph_def`` is written to ``path`` now (so it
    need not stay in memory until it is timed) and opened from there; a failure to write (a full
    disk, a graph over protobuf's 2 GB) is raised when it is opened, so the variant gets its
    one line in ``latency_errors``."""
    try:
        fmt.write_frozen(graph_def, path)
    except Exception as err:  # pylint: disable=broad-except
        error = err

        def refuse():
            raise error
        return refuse
    return functools.partial(fmt.open_frozen, path, outputs)


def _move_verified(staged, artefacts, targets, out_dir):
    """Move each staged artefact that ran (no ``error``) into ``out_dir``; its entry's path
    becomes the target. Failed ones stay in the scratch directory (deleted with it)."""
    import shutil  # pylint: disable=import-outside-toplevel
    ran = [n for n in staged if not artefacts[n].get("error")]
    if ran:
        os.makedirs(out_dir, exist_ok=True)
    for name in ran:
        shutil.move(staged[name], targets[name])
        artefacts[name]["path"] = targets[name]


def _open_artefact(fmt, name, path, inputs, outputs):
    if name == "saved_model":
        return fmt.open_saved_model(path, inputs, outputs)
    if name == "frozen":
        return fmt.open_frozen(path, outputs)
    if name == "onnx":
        return fmt.open_onnx(path, outputs)
    return fmt.open_tflite(path, inputs, outputs)


def parse_feed(text):
    """``NAME=VALUE`` -> (NAME, value) (see ``feeds.parse_feed``); ``InferenceError`` otherwise."""
    try:
        return _parse_feed(text)
    except ValueError as err:
        raise InferenceError(str(err)) from None
