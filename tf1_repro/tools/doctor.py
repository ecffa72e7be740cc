"""Doctor: diagnose a saved TF1 model for batch-norm and dropout mistakes, without the user's code.

``diagnose(path)`` reads a checkpoint (prefix or directory, with its ``.meta``
when present), a ``.meta`` file, a SavedModel directory or a frozen GraphDef
(``.pb``/``.pbtxt``) through ``tf1_repro.graph.artefacts``, finds its BN layers
and dropouts with ``tf1_repro.tools.finder`` (or, for a checkpoint without a
graph, from variable names and shapes with ``naming.layers_from_names``) and
returns a report whose ``findings`` have the fixed ids of ``FINDINGS``.

**Static checks** (nothing runs; values come from the checkpoint or from the
frozen graph's Consts):

* ``stats-never-updated``: moving mean all 0 and moving variance all 1 (or all
  0, zero-initialised shadows) while training happened: gamma != 1 or beta != 0
  somewhere, or global step > 0.
* ``update-ops-not-in-train-op``: a train op exists (the ``train_op`` collection,
  or else the sinks of the ops that apply gradients) and an update of a moving
  statistic (a writer the finder found, or a member of ``UPDATE_OPS``) is not
  among its data or control ancestors.
* ``stats-not-finite`` / ``variance-not-positive``: NaN/inf in a statistic /
  a moving variance <= 0.
* ``stats-trainable`` (warning): a moving statistic is in ``trainable_variables``.
* ``ema-zero-bias`` (warning): both shadows start at 0 and are not debiased (the
  finder's ``zero_debias``, read from the update's structure) and
  ``global_step < 3 / (1 - decay)``: after k updates the shadow holds only a
  fraction ``1 - decay**k`` of the average (``1 - 0.9**30 = 0.958``).
* ``mode-placeholder-without-default`` (info): a bool training ``Placeholder``.
* ``inference-batch-dependent`` when the finder shows prediction uses batch
  statistics (a frozen ``FusedBatchNorm`` with ``is_training`` true, training
  fixed True); ``dropout-at-inference`` when a SavedModel or frozen graph has
  keep_prob a Const < 1 or rate a Const > 0.
* In a serving artefact, the mode ``PlaceholderWithDefault``s a client leaves at
  their default (a SavedModel's that are not among its signature's inputs; every
  one in a frozen graph): keep_prob defaulting to != 1 or rate to != 0 ->
  ``dropout-at-inference``; training (or the learning phase) defaulting to True ->
  ``inference-batch-dependent``. One among the signature's inputs is the client's
  to feed, and a learning phase defaulting to 0/False is prediction mode.
* ``--feed`` values are checked (the tensor exists; its dtype and shape take the
  value) whether or not anything runs.

**Dynamic checks** (``run=True`` and a graph): the graph is imported into a
``tf.Graph`` of its own (the finder reads the same graph, gradients and train op
included, so it reports what ``finder.find`` on the artefact does) and every variable is
assigned its checkpoint value (``Artefact.restore``; a SavedModel's too, from
``variables/variables``, so none of the artefact's own restore, init or main ops
run). Only
the ancestors of the prediction outputs run: a SavedModel's signature outputs,
a frozen graph's sinks, or, in a training graph, the tensors the loss takes
from the network (those that depend on the inputs but not on the labels, outside
``gradients/``). Inputs are random N(0, 1) batches shaped by their placeholders
(an unknown batch dimension is 4), the mode inputs get
``prediction_feeds()`` (training False, keep_prob 1.0, rate 0, learning phase 0)
and ``feeds`` override them. With every variable a run writes reset to its
restored value before each run, three runs give:

1. outputs on batch X; a moving statistic that changed -> ``updates-on-inference``;
2. outputs on X again; any output that differs -> ``dropout-at-inference``;
3. outputs on X with every sample but the first replaced; the first sample's
   outputs differ -> ``inference-batch-dependent`` (skipped when 2 found
   randomness).

A SavedModel's signature then runs the same three times as a serving client runs
it: only the signature's inputs fed (its mode inputs with their prediction
values), every other ``PlaceholderWithDefault`` at its default.

A vanilla dropout's keep_prob ``Placeholder`` (``Findings.unbound_mode_inputs``:
prediction multiplies by keep_prob's *training* value) is never fed 1.0: it is
fed from ``feeds`` when given; otherwise the outputs that depend on it are not
run, the BN layers' outputs that do not are run instead, and a note says why.

The outputs are never an update's result: a tensor inside a tf.cond branch (read from the
graph's Switch/Merge structure, since an imported GraphDef has no control-flow contexts), one
with a write (or an If/call whose function writes) among its data ancestors, or a read that
waits on a write (``assign_moving_average``'s ``ReadVariableOp_1``); and, when another
output does not, never one whose run performs a write outside every cond branch (the loss
of DCGAN's training tower, whose ``tf.identity`` waits on ``ema.apply``). A run that fails
leaves a note with the error's informative line (``Retval[1] does not have value``).

The finder's notes are the report's notes: ``Findings.notes`` (TF2 control flow: If/While
branch functions it does not read) and those of each layer whose prediction mode it could not
read (``statistics_used_at_prediction`` None), which gets no mode finding; its value checks
still run. An assign of a Const (a one-off ``mv.assign([...])`` saved in the graph) is not
a BN update for ``update-ops-not-in-train-op``.

Before anything runs, the subgraph of the outputs (and any function it calls)
is searched for ops that touch files or run Python (``UNSAFE_OPS``, ``Save*``,
``Restore*``, readers, ``PrintV2`` to a file); if one is there the dynamic
checks are skipped and a note says which op. Nothing is written anywhere.
"""

import dataclasses
import os
import re

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph import artefacts, feeds as user_feeds, safety, walk
from tf1_repro.graph.errors import InputError
from tf1_repro.tools import finder

ERROR, WARNING, INFO = "error", "warning", "info"
UPDATE_OPS_FIX = ("with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)): "
                  "train_op = optimizer.minimize(loss)")
FINDINGS = {
    "stats-never-updated": (ERROR, "wire the BN updates into the train op (" + UPDATE_OPS_FIX +
                            "; for a Keras layer add layer.updates), then retrain or recompute "
                            "the statistics (python -m tf1_repro recalibrate)"),
    "update-ops-not-in-train-op": (ERROR, UPDATE_OPS_FIX),
    "updates-on-inference": (ERROR, "build the update inside the training branch: ema.apply inside "
                             "the tf.cond's true branch, or run UPDATE_OPS only with the train op"),
    "inference-batch-dependent": (ERROR, "export with training=False (a placeholder_with_default"
                                  "(False) or is_training=False), so prediction uses the moving "
                                  "statistics"),
    "dropout-at-inference": (ERROR, "feed keep_prob=1.0 (rate=0) at prediction, or export with "
                             "tf.placeholder_with_default(1.0, []) (rate 0.0) instead of a Const "
                             "or a training default"),
    "stats-not-finite": (ERROR, "recompute the statistics from training data (python -m "
                         "tf1_repro recalibrate) and find where training diverged "
                         "(tf.debugging.check_numerics)"),
    "variance-not-positive": (ERROR, "recompute the statistics from training data (python -m "
                              "tf1_repro recalibrate)"),
    "stats-trainable": (WARNING, "make the moving statistics non-trainable (trainable=False), so "
                        "the optimizer does not move them"),
    "ema-zero-bias": (WARNING, "train longer than 3/(1-decay) steps, use zero_debias=True, or "
                      "start the shadows from the first batch's statistics"),
    "mode-placeholder-without-default": (INFO, "tf.placeholder_with_default(False, [], "
                                         "name='training'), so callers need not feed it"),
}
DEFAULT_BATCH = 4
WHERE = "doctor"
UNSAFE_OPS = safety.UNSAFE_OPS
_GRADIENTS = re.compile(r"(^|/)gradients(_\d+)?/")
_NOT_OUTPUTS = frozenset(finder.WRITE_OPS) | frozenset(finder.VARIABLE_OPS) | {
    "NoOp", "Assert", "Print", "PrintV2", "Const", "Placeholder", "PlaceholderWithDefault",
    "Switch", "RefSwitch", "ScalarSummary", "HistogramSummary", "MergeSummary", "ImageSummary"}


class DoctorError(InputError):
    """Unreadable input or a bad argument: one line naming the file or argument (exit status 2)."""


@dataclasses.dataclass
class Settings:
    """The checked arguments of ``diagnose`` (validated in ``settings``)."""

    path: str
    feeds: dict
    input_shapes: dict
    data: dict
    run: bool


def settings(path, feeds=None, input_shapes=None, data=None, run=True):
    """Check ``diagnose``'s arguments; ``DoctorError`` names the bad one.

    feeds: ``{name: value}`` (node or tensor name; bool, number or text
    "true"/"false"/number); input_shapes: ``{name: tuple of positive ints}``;
    data: an ``.npz`` path or ``{name: array}``.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise DoctorError(f"{WHERE}: PATH must be a path, got {type(path).__name__}")
    checked = {}
    for name, value in dict(feeds or {}).items():
        if not isinstance(name, str) or not name:
            raise DoctorError(f"{WHERE}: --feed names must be tensor names, got {name!r}")
        if not isinstance(value, (bool, int, float, str, list, tuple, np.ndarray, np.generic)):
            raise DoctorError(f"{WHERE}: --feed {name} must be a bool or a number, got "
                              f"{type(value).__name__}")
        if isinstance(value, str):  # the command line's syntax: true/false, a number, a JSON list
            try:
                value = user_feeds.parse_feed(f"{name}={value}")[1]
            except ValueError as err:
                raise DoctorError(f"{WHERE}: {err}") from None
        checked[name] = value
    shapes = {}
    for name, shape in dict(input_shapes or {}).items():
        try:
            shape = tuple(int(d) for d in shape)
        except (TypeError, ValueError):
            raise DoctorError(f"{WHERE}: --input-shape {name} must be positive integers, got "
                              f"{shape!r}") from None
        if not shape or min(shape) < 1:
            raise DoctorError(f"{WHERE}: --input-shape {name} must be positive integers, got "
                              f"{shape!r}")
        shapes[name] = shape
    if isinstance(data, (str, os.PathLike)):
        data = load_data(str(data))
    elif data is not None and not isinstance(data, dict):
        raise DoctorError(f"{WHERE}: --data must be an .npz file or a dict, got {type(data).__name__}")
    return Settings(os.fspath(path), checked, shapes, dict(data or {}), bool(run))


def load_data(path):
    """``{name: array}`` from an ``.npz`` file; DoctorError naming the file and what is wrong."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except (OSError, ValueError, EOFError) as err:
        raise DoctorError(f"{WHERE}: --data {path}: not a readable .npz file "
                          f"({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None


def parse_feed(text):
    """``NAME=VALUE`` -> (NAME, value) by ``user_feeds.parse_feed`` (true/false, a number or a JSON
    list); ValueError when malformed, its message without the leading ``--feed`` (the command
    line adds it). The value is typed by the placeholder's dtype later, with or without a run."""
    try:
        return user_feeds.parse_feed(text)
    except ValueError as err:
        raise ValueError(str(err).removeprefix("--feed").lstrip()) from None


def parse_input_shape(text):
    """``NAME=N,...`` -> (NAME, (N, ...)); ValueError when malformed (for argparse)."""
    name, sep, dims = text.partition("=")
    try:
        shape = tuple(int(d) for d in dims.split(","))
    except ValueError:
        shape = ()
    if not sep or not name or not shape or min(shape) < 1:
        raise ValueError(f"must be NAME=N,... with positive integers, got {text!r}")
    return name, shape


def _node(name):
    return name.split(":")[0].lstrip("^")


# ---- reading the artefact

class _Artefact:
    """The loaded artefact with its graph's nodes, collections and variable values."""

    def __init__(self, art):
        self.art = art
        self.meta = art.meta_graph
        self.graph_def = self.meta.graph_def if self.meta is not None else art.graph_def
        self.nodes = {n.name: n for n in self.graph_def.node} if self.graph_def is not None else {}
        self.variables = dict(art.variables()) if art.checkpoint else {}
        self.collections = self.meta.collection_def if self.meta is not None else {}
        self._inputs = None
        self.graph = None  # the imported tf.Graph, once there is one
        self.training_only = set()  # gradient ops and what depends on them (_import_graph)

    def value(self, name):
        """A variable's checkpoint value, or a Const's value; None when neither."""
        if not name:
            return None
        if name in self.variables:
            try:
                return np.asarray(self.art.read(name))
            except artefacts.ArtefactError as err:
                raise DoctorError(f"{WHERE}: {err}") from None
            except Exception as err:  # pylint: disable=broad-except  (a truncated or corrupt file)
                raise DoctorError(f"{WHERE}: {self.art.checkpoint}: variable {name} is unreadable "
                                  f"({type(err).__name__}: {str(err).splitlines()[0][:160]})") from None
        node = self.nodes.get(_node(name))
        if node is not None and node.op == "Const":
            return tf.make_ndarray(node.attr["value"].tensor)
        return None

    def collection_names(self, key):
        """Node names in a meta graph collection (node lists and VariableDefs)."""
        if key not in self.collections:
            return []
        col = self.collections[key]
        kind = col.WhichOneof("kind")
        if kind == "node_list":
            return [_node(v) for v in col.node_list.value]
        if kind == "bytes_list":
            from tensorflow.core.framework import variable_pb2  # pylint: disable=import-outside-toplevel
            names = []
            for raw in col.bytes_list.value:
                var = variable_pb2.VariableDef()
                try:
                    var.ParseFromString(raw)
                except Exception:  # pylint: disable=broad-except  (not a VariableDef collection)
                    return names
                names.append(_node(var.variable_name))
            return names
        return []

    def variable_defs(self):
        from tensorflow.core.framework import variable_pb2  # pylint: disable=import-outside-toplevel
        out = {}
        if "variables" in self.collections:
            for raw in self.collections["variables"].bytes_list.value:
                var = variable_pb2.VariableDef()
                var.ParseFromString(raw)
                out[_node(var.variable_name)] = var
        return out

    def inputs_of(self):
        """node name -> list of input node names (data and control), built once."""
        if self._inputs is None:
            self._inputs = {name: [_node(i) for i in n.input] for name, n in self.nodes.items()}
        return self._inputs

    def ancestors(self, names):
        inputs = self.inputs_of()
        seen, stack = set(), [_node(n) for n in names]
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            stack.extend(inputs.get(n, ()))
        return seen

    def global_step(self):
        names = self.collection_names("global_step") or ["global_step"]
        for name in names:
            value = self.value(name)
            if value is not None and value.size == 1:
                return int(value.reshape(()))
        return None

    def static_value(self, tensor_name, depth=0):
        """The value of a tensor computed from Consts by Identity/Fill/Cast only; else None."""
        node = self.nodes.get(_node(tensor_name))
        if node is None or depth > 16:
            return None
        if node.op == "Const":
            return tf.make_ndarray(node.attr["value"].tensor)
        if node.op in ("Identity", "Cast", "Snapshot") and node.input:
            return self.static_value(node.input[0], depth + 1)
        if node.op == "Fill" and len(node.input) == 2:
            dims, value = self.static_value(node.input[0], depth + 1), \
                self.static_value(node.input[1], depth + 1)
            if dims is not None and value is not None:
                return np.full(tuple(int(d) for d in dims), value)
        if node.op in ("ZerosLike",):
            return np.zeros(())
        return None


# ---- layers

def _layers(doc):
    """(bn layers as dicts, dropouts as dicts, finder result or None, notes)."""
    notes = []
    if doc.graph_def is None:
        from tf1_repro.tools import naming  # pylint: disable=import-outside-toplevel
        layers = []
        for found in naming.layers_from_names(doc.variables):
            layers.append({"name": found["name"], "kind": found["naming"], "input": None,
                           "output": None, "gamma": found["gamma"], "beta": found["beta"],
                           "moving_mean": found["moving_mean"],
                           "moving_variance": found["moving_variance"], "epsilon": None,
                           "decay": None, "mode": None, "update_location": None,
                           "zero_initialised": found["naming"] == "article", "_zero_debias": None,
                           "_update_ops": [], "_stats_at_prediction": None, "_bn_ops": []})
        notes.append("no graph (.meta) with the checkpoint: BN layers found from variable names; "
                     "only the checks on values ran")
        return layers, [], None, notes
    doc.graph, collections = _import_graph(doc)
    result = finder.find(doc.graph, collections)
    layers = []
    for b in result.bn_layers:
        layers.append({"name": b.name, "kind": b.kind, "input": b.input, "output": b.output,
                       "gamma": b.gamma, "beta": b.beta, "moving_mean": b.moving_mean,
                       "moving_variance": b.moving_variance, "epsilon": b.epsilon,
                       "decay": b.decay, "mode": b.mode.to_dict() if b.mode else None,
                       "update_location": b.update_location, "call_sites": list(b.call_sites),
                       "zero_initialised": None, "_zero_debias": b.zero_debias,
                       "_update_ops": list(b.update_ops),
                       "_stats_at_prediction": b.statistics_used_at_prediction,
                       "_bn_ops": list(b.bn_ops)})
    dropouts = [{"name": d.name, "kind": d.kind, "keep_prob": d.keep_prob,
                 "convention": d.convention, "mode": d.mode.to_dict() if d.mode else None,
                 "output": d.output} for d in result.dropouts]
    notes += _finder_notes(doc, result)
    return layers, dropouts, result, notes


_TF2_FLOW = ("If", "StatelessIf", "While", "StatelessWhile", "PartitionedCall",
             "StatefulPartitionedCall")


def _finder_notes(doc, result):
    """The finder's notes the report must show: ``Findings.notes`` (TF2 control flow, ops it
    could not read) and, per layer, those of a layer whose prediction mode it could not read
    (``statistics_used_at_prediction`` None) or that name TF2 control flow. When the graph calls
    functions holding batch-norm ops through TF2 control flow and the finder said nothing of
    it, a note says those were not analysed (the report is not silently "healthy")."""
    notes = list(getattr(result, "notes", []) or [])
    for b in result.bn_layers:
        unread = b.statistics_used_at_prediction is None
        for note in b.notes:
            if unread or note.startswith("TF2 control flow"):
                line = f"BN layer {b.name}: {note}"
                if line not in notes:
                    notes.append(line)
        if unread and not b.notes:
            notes.append(f"BN layer {b.name}: whether prediction uses the moving statistics "
                         "could not be read; no mode finding is reported for it")
    if not any(n.startswith("TF2 control flow") for n in notes):
        library = {f.signature.name: f for f in doc.graph_def.library.function}
        holding = {name: sorted({node.op for node in f.node_def if re.fullmatch(
            r"FusedBatchNorm\w*|BatchNormWithGlobalNormalization\w*", node.op)})
                   for name, f in library.items()}
        callers = sorted((n.name, n.op, holding[a.func.name]) for n in doc.graph_def.node
                         if n.op in _TF2_FLOW for a in n.attr.values()
                         if holding.get(a.func.name))
        if callers:
            name, op, kinds = callers[0]
            notes.append(f"TF2 control flow: {op} op {name} calls functions holding "
                         f"{', '.join(kinds)}; BN ops inside TF2 control flow functions were not "
                         "analysed (build the graph under tf.compat.v1.disable_v2_behavior() "
                         "and save it again)")
    return notes


def _import_graph(doc):
    """(tf.Graph, collections): the artefact's whole graph imported (devices cleared), with the
    meta graph's node-list collections for the finder.

    The finder sees the same graph and collections as ``finder.find`` on the artefact
    (``python -m tf1_repro find``), so both report the same ``update_location``: an update
    wired by ``control_dependencies`` into a train op that hangs below the gradients is in
    ``collection:train_op`` only when the train op is there. ``doc.training_only`` holds the
    gradient ops and everything below them (apply ops, the train op), which are never
    prediction outputs and never run.
    """
    inputs = doc.inputs_of()
    dropped = {n for n in doc.nodes if _GRADIENTS.search(n + "/")}
    if dropped:
        consumers = {}
        for name, ins in inputs.items():
            for i in ins:
                consumers.setdefault(i, []).append(name)
        stack = list(dropped)
        while stack:
            for c in consumers.get(stack.pop(), ()):
                if c not in dropped:
                    dropped.add(c)
                    stack.append(c)
    doc.training_only = dropped
    graph_def = tf.GraphDef()
    graph_def.CopyFrom(doc.graph_def)
    for node in graph_def.node:
        node.device = ""
    graph = tf.Graph()
    with graph.as_default():
        try:
            tf.import_graph_def(graph_def, name="")
        except (ValueError, TypeError, tf.errors.OpError) as err:
            raise DoctorError(f"{WHERE}: {doc.art.source}: the graph cannot be imported "
                              f"({str(err).splitlines()[0][:200]})") from None
    collections = {}
    for key in doc.collections:
        names = [n for n in doc.collection_names(key) if n in doc.nodes]
        if names and doc.collections[key].WhichOneof("kind") == "node_list":
            collections[key] = names
    return graph, collections


def _zero_initialised(doc, layer):
    """Both shadows start at 0 (from their initializers in the graph); None when unknown."""
    if layer["zero_initialised"] is not None:
        return layer["zero_initialised"]
    defs = doc.variable_defs()
    starts = []
    for role in ("moving_mean", "moving_variance"):
        var = defs.get(layer[role] or "")
        value = doc.static_value(var.initial_value_name) if var is not None else None
        if value is None:
            return None
        starts.append(bool(np.all(np.asarray(value) == 0)))
    return all(starts)


# ---- findings

def _finding(fid, layer, message):
    severity, fix = FINDINGS[fid]
    return {"id": fid, "severity": severity, "layer": layer, "message": message, "fix": fix}


def _short(values):
    flat = np.asarray(values, dtype=np.float64).ravel()
    shown = ", ".join(f"{v:.4g}" for v in flat[:4])
    return f"[{shown}{', ...' if flat.size > 4 else ''}]"


def _value_checks(doc, layer, global_step):
    out = []
    name = layer["name"]
    mean, var = doc.value(layer["moving_mean"]), doc.value(layer["moving_variance"])
    for role, value in (("moving_mean", mean), ("moving_variance", var)):
        if value is not None and not np.all(np.isfinite(value)):
            bad = int(np.sum(~np.isfinite(value)))
            out.append(_finding("stats-not-finite", name, f"{role} {layer[role]} holds {bad} "
                                f"non-finite value(s) of {value.size}: {_short(value)}"))
    if var is not None and np.any(var <= 0):
        out.append(_finding("variance-not-positive", name, f"moving_variance {layer['moving_variance']}"
                            f" has {int(np.sum(var <= 0))} value(s) <= 0: min {np.nanmin(var):.4g}"))
    if mean is not None and var is not None and np.all(mean == 0) and \
            (np.all(var == 1) or np.all(var == 0)):
        gamma, beta = doc.value(layer["gamma"]), doc.value(layer["beta"])
        evidence = []
        if gamma is not None and np.any(gamma != 1):
            evidence.append("gamma moved from 1")
        if beta is not None and np.any(beta != 0):
            evidence.append("beta moved from 0")
        if global_step:
            evidence.append(f"global step {global_step}")
        if evidence:
            out.append(_finding("stats-never-updated", name,
                                f"moving mean all 0 and moving variance all {var.flat[0]:g} (their "
                                f"initial values) while training happened ({', '.join(evidence)})"))
    return out


def _graph_checks(doc, layer, global_step, trainable):
    out = []
    name = layer["name"]
    for role in ("moving_mean", "moving_variance"):
        if layer[role] and layer[role] in trainable:
            out.append(_finding("stats-trainable", name, f"{role} {layer[role]} is in "
                                "TRAINABLE_VARIABLES: the optimizer moves it too"))
    decay = layer["decay"]
    if decay is not None and 0 < decay < 1 and global_step is not None and \
            global_step < 3 / (1 - decay) and _zero_initialised(doc, layer) and \
            not layer["_zero_debias"]:
        out.append(_finding(
            "ema-zero-bias", name,
            f"shadows start at 0, are not debiased, and global step {global_step} < "
            f"3/(1-decay) = {3 / (1 - decay):.0f}: they hold only 1-decay^k = "
            f"{1 - decay ** global_step:.3f} of the average"))
    if layer["_stats_at_prediction"] is False:
        out.append(_finding("inference-batch-dependent", name,
                            "prediction normalises with the batch's statistics (training fixed "
                            "True, or is_training true in a FusedBatchNorm)"))
    return out


def _train_ops(doc):
    """Names of the train ops: the train_op collection, else the sinks above gradient applies."""
    named = [n for n in doc.collection_names("train_op") if n in doc.nodes]
    if named:
        return named
    applies = [n for n, node in doc.nodes.items()
               if re.fullmatch(r"(Resource)?(Sparse)?Apply\w+", node.op)]
    if not applies:
        return []
    consumers = {}
    for name, ins in doc.inputs_of().items():
        for i in ins:
            consumers.setdefault(i, []).append(name)
    seen, stack, sinks = set(), list(applies), []
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        below = consumers.get(n, [])
        if not below:
            sinks.append(n)
        stack.extend(below)
    return sinks


def _update_checks(doc, layers):
    """Update ops (the finder's writes to each layer's statistics, and UPDATE_OPS members) that
    are not among the train op's data or control ancestors."""
    train_ops = _train_ops(doc)
    if not train_ops:
        return []
    ran = doc.ancestors(train_ops)
    out = []
    for layer in layers:
        missing = sorted(op for op in layer["_update_ops"] if op not in ran and
                         not _constant_assign(doc, op))
        if missing:
            out.append(_finding("update-ops-not-in-train-op", layer["name"],
                                f"{len(missing)} update op(s) of its moving statistics do not run "
                                f"with the train op {train_ops[0]} (e.g. {missing[0]})"))
    known = set().union(*(layer["_update_ops"] for layer in layers)) if layers else set()
    stray = [m for m in doc.collection_names("update_ops") if m not in ran and m in doc.nodes
             and not known & doc.ancestors([m]) and not _constant_assign(doc, m)]
    # (members no layer's finding covers)
    if stray:
        out.append(_finding("update-ops-not-in-train-op", None,
                            f"{len(stray)} UPDATE_OPS member(s) do not run with the train op "
                            f"{train_ops[0]} (e.g. {sorted(stray)[0]})"))
    return out


def _constant_assign(doc, name):
    """An assign whose value is a Const (through Identity/Cast/Fill): a one-off assignment saved
    in the graph (``mv.assign([1., inf, 2., 1.])`` run once by hand), not a BN update, which
    computes its value from the batch."""
    node = doc.nodes.get(name)  # (an AssignAdd of a Const still counts: it moves every step)
    if node is None or node.op not in ("Assign", "AssignVariableOp") or len(node.input) < 2:
        return False
    return doc.static_value(node.input[1]) is not None


def _mode_checks(result):
    out = []
    for mode in result.mode_inputs if result else []:
        if mode.role == "training" and mode.op == "Placeholder":
            out.append(_finding("mode-placeholder-without-default", mode.name,
                                f"bool placeholder {mode.name} has no default: every caller must "
                                "feed it"))
    return out


def _serving_dropout_checks(doc, dropouts, fmt):
    out = []
    if fmt not in ("saved_model", "frozen_graph"):
        return out
    for d in dropouts:
        kp, mode = d["keep_prob"] or {}, d["mode"]
        value = kp.get("value")
        if kp.get("source") != "const" or value is None:
            continue
        if mode is not None and not (mode["op"] == "Const" and bool(mode["default"])):
            continue  # a mode input switches it off at prediction (Keras' learning phase)
        if (kp.get("param") == "rate" and value > 0) or (kp.get("param") != "rate" and value < 1):
            out.append(_finding("dropout-at-inference", d["name"],
                                f"{kp.get('param', 'keep_prob')} is a Const {value:g} "
                                f"({kp.get('name')}) in an artefact meant for serving"))
    return out


def _serving_defaults(doc, fmt):
    """The PlaceholderWithDefault nodes a serving client leaves at their default: in a
    SavedModel those not among the signature's inputs, in a frozen graph every one."""
    pwd = {n for n, node in doc.nodes.items() if node.op == "PlaceholderWithDefault"}
    if fmt == "saved_model":
        return pwd - {_node(t) for t in _signature_inputs(doc)}
    return pwd if fmt == "frozen_graph" else set()


def _serving_mode_checks(doc, result, layers, dropouts, fmt):
    """A mode PlaceholderWithDefault a serving client leaves at a training default.

    keep_prob defaulting to a value != 1 (rate != 0) -> ``dropout-at-inference``; training
    (or Keras' learning phase) defaulting to True -> ``inference-batch-dependent`` (and
    ``dropout-at-inference`` when a dropout switches on it). A keep_prob whose prediction value
    the finder cannot tell (a vanilla dropout's) and inputs in the signature are left alone."""
    left = _serving_defaults(doc, fmt)
    out = []
    for m in result.mode_inputs if result else []:
        if m.op != "PlaceholderWithDefault" or m.name not in left or m.default is None or \
                m.prediction_value is None:
            continue
        where = (f"{m.name} is placeholder_with_default({m.default!r}), "
                 + ("not among the signature's inputs" if fmt == "saved_model" else
                    "in a frozen graph") + ": every serving client that feeds only the inputs gets")
        users = [d["name"] for d in dropouts
                 if (d["keep_prob"] or {}).get("name") == m.name or (d["mode"] or {}).get("name") == m.name]
        if m.role in ("keep_prob", "rate"):
            training_value = float(m.default) != float(m.prediction_value)
            if training_value:
                out.append(_finding("dropout-at-inference", ", ".join(users) or m.name,
                                    f"{where} dropout with {m.role} {float(m.default):g}"))
        elif m.role in ("training", "learning_phase") and bool(m.default):
            bn = [layer["name"] for layer in layers if (layer["mode"] or {}).get("name") == m.name]
            if bn or not users:
                out.append(_finding("inference-batch-dependent", ", ".join(bn) or m.name,
                                    f"{where} the batch's statistics instead of the moving ones"))
            if users:
                out.append(_finding("dropout-at-inference", ", ".join(users),
                                    f"{where} dropout switched on"))
    return out


# ---- the dynamic checks

def _unsafe(doc, names):
    """(op type, node name) of the first file/IO/Python op among ``names`` and the functions
    they call, else None."""
    functions = {f.signature.name: f for f in doc.graph_def.library.function} \
        if doc.graph_def is not None else {}
    return safety.first_unsafe([doc.nodes[n] for n in names if n in doc.nodes], functions)


def _signature(doc):
    """The SignatureDef a serving client calls (``serving_default``, else the first), or None."""
    if doc.meta is None or not doc.meta.signature_def:
        return None
    key = "serving_default" if "serving_default" in doc.meta.signature_def else \
        sorted(doc.meta.signature_def)[0]
    return doc.meta.signature_def[key]


def _signature_outputs(doc):
    signature = _signature(doc)
    return sorted(t.name for t in signature.outputs.values()) if signature is not None else []


def _signature_inputs(doc):
    """Tensor names a client feeds through the signature (``x:0``)."""
    signature = _signature(doc)
    return {t.name if ":" in t.name else f"{t.name}:0" for t in signature.inputs.values()} \
        if signature is not None else set()


def _prediction_outputs(graph, doc, layers, dropouts, mode_names):
    """The tensors to run: signature outputs, frozen sinks, or what the loss takes from the net."""
    signature = _signature_outputs(doc)
    if signature:
        return signature
    ops = [op for op in graph.get_operations() if op.name not in doc.training_only]
    consumers = {}  # forward consumers only: backprop reads every forward tensor
    for op in ops:
        for t in op.inputs:
            consumers.setdefault(t.op.name, []).append(op)
        for c in op.control_inputs:
            consumers.setdefault(c.name, []).append(op)
    placeholders = [op for op in ops if op.type == "Placeholder" and op.name not in mode_names]
    starts = [t for layer in layers  # every call of a layer shared by several towers
              for t in [layer["input"]] + [site[0] for site in layer.get("call_sites") or []] if t] + \
        [d["output"] for d in dropouts if d.get("output")]
    feature_ops = set()
    for t in starts:
        feature_ops |= _ancestor_ops(graph.get_tensor_by_name(t).op)
    inputs = [p for p in placeholders if p.name in feature_ops] or \
        [p for p in placeholders if p.outputs[0].dtype.is_floating]
    others = [p for p in placeholders if p not in inputs]
    tainted = _descendant_names(others, consumers)
    region = _descendant_names(inputs, consumers) - tainted
    region = {n for n in region if not _GRADIENTS.search(n + "/") and n not in doc.training_only}
    data_consumers = {}
    for op in ops:
        for t in op.inputs:
            data_consumers.setdefault(t.op.name, []).append(op)
    computed = _descendant_names(inputs, data_consumers)  # data, not control, descendants
    writers = _writing_functions(doc)
    frontier, sinks = [], []
    for name in sorted(region):
        op = graph.get_operation_by_name(name)
        if op.type in _NOT_OUTPUTS or not op.outputs or op.outputs[0].dtype.is_bool or \
                op.outputs[0].dtype.name in ("resource", "string", "variant"):
            continue
        if name not in computed:
            continue
        data_below = [c for c in consumers.get(name, []) if any(t.op is op for t in c.inputs)]
        leaves = any(c.name not in region for c in data_below)
        if not leaves and data_below:
            continue
        if _in_cond_branch(op) or _update_result(op, writers, merge=not leaves):
            continue  # an update's result (never a frontier BN Merge with both branches' outputs)
        (frontier if leaves else sinks).append(op.outputs[0].name)
    chosen = frontier or sinks
    clean = [n for n in chosen if not _runs_writes(graph.get_tensor_by_name(n).op, writers)]
    return clean or chosen  # when every output writes, running them shows updates-on-inference


def _writing_functions(doc):
    """Names of the graph library's functions holding a write op (TF2 cond/while branches that
    update a moving statistic), directly or through a function they call."""
    if doc.graph_def is None:
        return set()
    library = {f.signature.name: f for f in doc.graph_def.library.function}
    calls = {name: {a.func.name for node in f.node_def for a in node.attr.values() if a.func.name}
             for name, f in library.items()}
    writes = {name for name, f in library.items()
              if any(node.op in finder.WRITE_OPS for node in f.node_def)}
    grown = True
    while grown:
        more = {name for name, called in calls.items() if called & writes} - writes
        writes |= more
        grown = bool(more)
    return writes


def _calls_writer(op, writers):
    """An op (If, While, PartitionedCall) whose function attributes name a function that writes."""
    if not writers:
        return False
    for attr in op.node_def.attr.values():
        if attr.func.name in writers:
            return True
    return False


def _runs_writes(op, writers):
    """Whether fetching ``op`` runs a write unconditionally: a write (or an op calling a
    function that writes) among its data and control ancestors outside every tf.cond branch
    (DCGAN's ``tf.identity`` under ``control_dependencies([ema.apply(...)])``)."""
    graph = op.graph
    for name in _ancestor_ops(op):
        a = graph.get_operation_by_name(name)
        if (a.type in finder.WRITE_OPS or _calls_writer(a, writers)) and not _in_cond_branch(a):
            return True
    return False


def _in_cond_branch(op):
    """Inside a v1 tf.cond branch: fetching it fails when the branch is not taken.

    The control-flow context is lost when a GraphDef is imported, so the structure is read: a
    Switch among the op's data and control ancestors reached without passing a Merge (the
    cond's join) puts the op in a branch."""
    if op._control_flow_context is not None:  # pylint: disable=protected-access
        return True
    seen, stack = set(), [op]
    while stack:
        o = stack.pop()
        if o.name in seen:
            continue
        seen.add(o.name)
        if o.type in ("Switch", "RefSwitch"):
            return True
        if o.type in ("Merge", "RefMerge") or o.type in finder.VARIABLE_OPS:
            continue
        stack.extend(t.op for t in o.inputs)
        stack.extend(o.control_inputs)
    return False


def _update_result(op, writers=frozenset(), merge=True):
    """An update's result, not a prediction output: a write (an assign, or an If/call whose
    function writes) among its data ancestors, such as the Merge or Identity of tf.layers' and
    Keras' update conds, or a read that waits on a write (``assign_moving_average``'s
    ``ReadVariableOp_1`` after its ``AssignSubVariableOp``)."""
    if any(c.type in finder.WRITE_OPS for c in op.control_inputs):
        return True
    if op.type == "Merge":
        if not merge:
            return False
        return walk.any_ancestor([op], lambda o: o.type in finder.WRITE_OPS)
    return _writes_upstream(op, writers)


def _writes_upstream(op, writers=frozenset()):
    """Whether a write (an assign, or an op calling a function that writes) is among the op's
    data ancestors: an update's result is not a prediction output."""
    return walk.any_ancestor([op], lambda o: o.type in finder.WRITE_OPS or _calls_writer(o, writers),
                               control=False)


def _ancestor_ops(op):
    """Names of every op ``op`` depends on, through data and control inputs."""
    return {o.name for o in walk.ancestors([op])}


def _descendant_names(ops, consumers):
    seen, stack = set(), list(ops)
    while stack:
        o = stack.pop()
        if o.name in seen:
            continue
        seen.add(o.name)
        stack.extend(consumers.get(o.name, []))
    return seen


def _feed_value(tensor, value, where):
    """``value`` (bool, number, list or array; text parsed by ``user_feeds.parse_feed``) typed by
    the tensor's dtype: a bool tensor takes true/false (or 0/1), a number tensor takes numbers
    (not true/false), an integer tensor whole numbers; the shape must fit the tensor's.
    DoctorError naming the feed otherwise (checked whether or not anything runs)."""
    dtype = tensor.dtype.base_dtype
    if isinstance(value, str):
        try:
            value = user_feeds.parse_feed(f"{where}={value}")[1]
        except ValueError as err:
            raise DoctorError(f"{WHERE}: {err}") from None
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise DoctorError(f"{WHERE}: --feed {where} must be true, false, a number or a JSON list "
                          f"of them, got {value!r}")
    shown = array.tolist()
    if dtype.is_bool:
        if array.dtype.kind != "b" and not np.all(np.isin(array, (0, 1))):
            raise DoctorError(f"{WHERE}: --feed {where} must be true or false for a bool tensor, "
                              f"got {shown!r}")
    elif dtype.is_floating or dtype.is_integer:
        if array.dtype.kind == "b":
            raise DoctorError(f"{WHERE}: --feed {where} must be a number for a {dtype.name} "
                              f"tensor, got {shown!r}")
        if dtype.is_integer and np.any(array != np.round(array)):
            raise DoctorError(f"{WHERE}: --feed {where} must be a whole number for a {dtype.name} "
                              f"tensor, got {shown!r}")
    else:
        raise DoctorError(f"{WHERE}: --feed {where}: a {dtype.name} tensor cannot be fed from the "
                          "command line")
    if not tensor.shape.is_compatible_with(array.shape):
        raise DoctorError(f"{WHERE}: --feed {where} must have shape {tensor.shape.as_list()}, "
                          f"got {list(array.shape)}")
    return array.astype(dtype.as_numpy_dtype)


def _resolve_feeds(doc, s):
    """``{tensor: typed value}`` of ``--feed`` in the artefact's graph; DoctorError for a name
    that is not a tensor or a value its dtype or shape refuses (the same with ``--no-run``)."""
    if s.feeds and doc.graph is None:
        raise DoctorError(f"{WHERE}: --feed {sorted(s.feeds)[0]}: {doc.art.source} has no graph "
                          "(a checkpoint without its .meta) to feed")
    feeds = {}
    for name, value in s.feeds.items():
        t = _tensor(doc.graph, name, "--feed", doc.art.source)
        feeds[t] = _feed_value(t, value, name)
    return feeds


def _tensor(graph, name, what, source):
    try:
        return graph.get_tensor_by_name(name if ":" in name else f"{name}:0")
    except (KeyError, ValueError):
        raise DoctorError(f"{WHERE}: {what} {name}: no such tensor in {source}") from None


def _random_inputs(inputs, s, source):
    rng = np.random.default_rng(0)
    data = {}
    by_key = {}
    for key, value in s.data.items():
        by_key[key if ":" in key else f"{key}:0"] = np.asarray(value)
    for t in inputs:
        if t.name in by_key:
            data[t] = by_key[t.name]
            continue
        shape = s.input_shapes.get(t.op.name) or s.input_shapes.get(t.name)
        if shape is None:
            dims = t.shape.as_list() if t.shape.rank is not None else None
            if dims is None:
                raise DoctorError(f"{WHERE}: input {t.op.name} in {source} has unknown rank: say "
                                  f"its shape with --input-shape {t.op.name}=N,... or --data")
            dims = [DEFAULT_BATCH if (i == 0 and d is None) else d for i, d in enumerate(dims)]
            if any(d is None for d in dims):
                raise DoctorError(f"{WHERE}: input {t.op.name} in {source} has shape "
                                  f"{t.shape.as_list()}: say it with --input-shape "
                                  f"{t.op.name}=N,... or --data")
            shape = tuple(dims)
        dtype = t.dtype.base_dtype
        if dtype.is_floating:
            data[t] = rng.standard_normal(shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_integer:
            data[t] = rng.integers(0, 2, shape).astype(dtype.as_numpy_dtype)
        elif dtype.is_bool:
            data[t] = np.zeros(shape, bool)
        else:
            raise DoctorError(f"{WHERE}: input {t.op.name} in {source} is {dtype.name}: give it "
                              "with --data")
    names = {t.op.name for t in inputs} | {t.name for t in inputs}
    stray = sorted(set(s.input_shapes) - names)
    if stray:
        raise DoctorError(f"{WHERE}: --input-shape {stray[0]} is not an input of the outputs run in "
                          f"{source} (inputs: {', '.join(sorted(t.name for t in inputs)) or 'none'})")
    unused = sorted(set(by_key) - {t.name for t in inputs})
    if unused:
        raise DoctorError(f"{WHERE}: --data {unused[0]} is not an input of the outputs run in "
                          f"{source} (inputs: {', '.join(sorted(t.name for t in inputs)) or 'none'})")
    return data


def _replace_rest(value):
    """The batch with every sample but the first changed (floats scaled and shifted)."""
    other = np.array(value, copy=True)
    if other.shape and other.shape[0] > 1 and other.dtype.kind == "f":
        other[1:] = other[1:] * 3.0 + 2.0
    return other


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind != "f":
        return np.array_equal(a, b)
    scale = max(1.0, float(np.nanmax(np.abs(a))) if np.any(np.isfinite(a)) else 1.0)
    return bool(np.allclose(a, b, rtol=1e-4, atol=1e-5 * scale, equal_nan=True))


class _State:
    """Read and reset the variables that the outputs' subgraph writes."""

    def __init__(self, graph, sess, ancestors):
        self.sess = sess
        self.vars = {}
        written = [op for op in (graph.get_operation_by_name(n) for n in ancestors)
                   if op.type in finder.WRITE_OPS and op.inputs]
        with graph.as_default():
            for w in written:
                var = _variable_of(w.inputs[0].op)
                if var is None or var.name in self.vars:
                    continue
                ref = var.outputs[0]
                if var.type == "VarHandleOp":
                    read = tf.raw_ops.ReadVariableOp(resource=ref, dtype=var.get_attr("dtype"))
                    ph = tf.placeholder(var.get_attr("dtype"), name=f"doctor_reset/{var.name}")
                    assign = tf.raw_ops.AssignVariableOp(resource=ref, value=ph)
                else:
                    read = ref
                    ph = tf.placeholder(ref.dtype.base_dtype, name=f"doctor_reset/{var.name}")
                    assign = tf.assign(ref, ph, validate_shape=False)
                self.vars[var.name] = (read, ph, assign)
        self.initial = self.read()

    def read(self):
        if not self.vars:
            return {}
        names = sorted(self.vars)
        return dict(zip(names, self.sess.run([self.vars[n][0] for n in names])))

    def reset(self):
        if self.vars:
            self.sess.run([v[2] for v in self.vars.values()],
                          {v[1]: self.initial[n] for n, v in self.vars.items()})


def _variable_of(op, depth=0):
    if op.type in finder.VARIABLE_OPS:
        return op
    if depth < 16 and op.inputs and op.type in ("Identity", "RefIdentity", "Switch", "RefSwitch",
                                               "Enter", "RefEnter"):
        return _variable_of(op.inputs[0].op, depth + 1)
    return None


def _dynamic(doc, s, layers, dropouts, result, report, given):
    """The three runs' findings (and, for a SavedModel, the same runs as a serving client);
    [] with a note when they cannot or must not run. ``given``: the typed ``--feed`` values."""
    notes = report["notes"]
    if doc.art.checkpoint is None and any(n.op in finder.VARIABLE_OPS for n in doc.nodes.values()):
        notes.append("not run: the graph has variables but no checkpoint beside it (no values)")
        return []
    plan = _plan(doc, s, layers, dropouts, result, notes, given)
    if plan is None:
        return []
    outputs, needed, feeds, batch = plan
    graph = doc.graph
    report["outputs"], report["inputs"] = outputs, sorted(t.name for t in batch)
    report["feeds"] = {t.name: np.asarray(v).tolist() for t, v in feeds.items()}
    client = _client_feeds(doc, feeds, batch, notes)
    sess = _open(doc)
    try:
        state = _State(graph, sess, needed)
        fetch = [graph.get_tensor_by_name(n) for n in outputs]
        found = _three_runs(sess, fetch, feeds, batch, state, layers, outputs, notes,
                            "with the prediction feeds")
        if client is not None:
            client_feeds, client_batch, left = client
            have = {(f["id"], f["layer"]) for f in found}
            found += [f for f in _three_runs(
                sess, fetch, client_feeds, client_batch, state, layers, outputs, [],
                f"as a serving client runs the signature (only its inputs fed; {left} left at "
                "their defaults)") if (f["id"], f["layer"]) not in have]
        return found
    except ValueError as err:  # a fed value TensorFlow refuses (shape or dtype)
        raise DoctorError(f"{WHERE}: {doc.art.source}: the inputs do not fit "
                          f"({str(err).splitlines()[0][:200]}); check --data, --input-shape "
                          "and --feed") from None
    except tf.errors.OpError as err:
        report.pop("outputs", None)
        notes.append(f"not run: running the outputs failed ({type(err).__name__}: "
                     f"{_error_line(err.message)[:200]}); static checks only")
        return []
    finally:
        sess.close()


def _error_line(message):
    """The informative line of a TensorFlow error (``Retval[1] does not have value``), not its
    header (``Graph execution error:``), the ``Detected at node`` trace or the ``[[...]]`` tail."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    told = [line for line in lines if not line.startswith((
        "Graph execution error", "Detected at node", "File ", "[[", "Node:", "Traceback",
        "Original stack trace", "(most recent call last)"))
        and not line.startswith(("for ", "Error in"))]
    return (told or lines or [""])[0]


def _client_feeds(doc, feeds, batch, notes):
    """(feeds, batch, names left at their default) for running a SavedModel's signature as a
    client does: only the signature's inputs fed (its mode inputs with the prediction values),
    every PlaceholderWithDefault outside them at its default. None when that is the run
    already made, or when the signature cannot run (a Placeholder outside its inputs)."""
    if doc.art.format != "saved_model":
        return None
    signature = _signature_inputs(doc)
    if not signature:
        return None
    left = sorted(t.op.name for t in feeds if t.name not in signature)
    if not left:
        return None
    outside = sorted(t.op.name for t in list(feeds) + list(batch)
                     if t.name not in signature and t.op.type == "Placeholder")
    if outside:
        notes.append(f"the signature was not run as a serving client: it needs {outside[0]}, "
                     "which is not among its inputs")
        return None
    notes.append(f"the signature also ran as a serving client runs it: only its inputs fed, "
                 f"{', '.join(left)} left at their defaults")
    return ({t: v for t, v in feeds.items() if t.name in signature},
            {t: v for t, v in batch.items() if t.name in signature}, ", ".join(left))


def _plan(doc, s, layers, dropouts, result, notes, given):
    """(outputs, needed op names, feeds, random batch) from the graph alone (nothing runs);
    None with a note when there is nothing safe to run.

    A mode input the finder leaves unbound (a vanilla dropout's keep_prob Placeholder:
    prediction multiplies by its *training* value, which the graph does not hold) is never
    given 1.0: it is fed from ``--feed`` when given; otherwise the outputs that depend on it
    are not run, and the BN layers' outputs that do not are run in their place (the BN checks),
    with a note saying why."""
    graph = doc.graph
    mode_names = {m.name for m in result.mode_inputs} if result else set()
    outputs = _prediction_outputs(graph, doc, layers, dropouts, mode_names)
    if not outputs:
        notes.append("not run: no prediction output found")
        return None
    unbound = result.unbound_mode_inputs() if result is not None and \
        hasattr(result, "unbound_mode_inputs") else []
    for m in unbound:
        fed = [v for t, v in given.items() if t.op.name == m.name]
        if fed:
            value = np.asarray(fed[0])
            shown = f"{value.item():g}" if value.size == 1 else value.tolist()
            notes.append(f"{m.name} fed {shown} from --feed: a vanilla "
                         "dropout's prediction multiplies by keep_prob's training value")
        elif m.op == "PlaceholderWithDefault":
            notes.append(f"{m.name} left at its default {m.default!r}: a vanilla dropout's "
                         "prediction multiplies by keep_prob's training value (--feed overrides it)")
    missing = {m.name for m in unbound if m.op == "Placeholder"} - {t.op.name for t in given}
    if missing:
        depends = [n for n in outputs if missing & _ancestor_ops(graph.get_tensor_by_name(n).op)]
        bn_outputs = [layer["output"] for layer in layers if layer["output"] and not (
            missing & _ancestor_ops(graph.get_tensor_by_name(layer["output"]).op)) and
            not _in_cond_branch(graph.get_tensor_by_name(layer["output"]).op)]
        outputs = [n for n in outputs if n not in depends]
        outputs += [n for n in bn_outputs if n not in outputs]
        names = ", ".join(sorted(missing))
        why = (f"{names} is the keep_prob of a vanilla dropout: prediction multiplies by its "
               f"training value, which the graph does not hold (give it with --feed "
               f"{sorted(missing)[0]}=VALUE; 1.0 would be wrong)")
        if not outputs:
            notes.append(f"not run: {why}")
            return None
        notes.append(f"the dropout-dependent outputs ({', '.join(depends)}) were not run, and "
                     f"the checks ran on {', '.join(outputs)}: {why}")
    needed = set()
    for name in outputs:
        needed |= _ancestor_ops(graph.get_tensor_by_name(name).op)
    unsafe = _unsafe(doc, needed)
    if unsafe:
        notes.append(f"not run: the subgraph of the outputs holds {unsafe[0]} ({unsafe[1]}), "
                     "which touches files or runs Python; static checks only")
        return None
    feeds = {graph.get_tensor_by_name(k): v for k, v in
             (result.prediction_feeds().items() if result else []) if _node(k) in needed}
    feeds.update(given)
    inputs = [graph.get_operation_by_name(n).outputs[0] for n in sorted(needed)
              if graph.get_operation_by_name(n).type == "Placeholder"]
    inputs = [t for t in inputs if t not in feeds]
    for t in [t for t in inputs if t.dtype.base_dtype.is_bool and not _given(t, s)]:
        feeds[t] = np.asarray(False)
        notes.append(f"bool placeholder {t.op.name} not recognised as a mode input: fed False")
        inputs.remove(t)
    return outputs, needed, feeds, _random_inputs(inputs, s, doc.art.source)


def _open(doc):
    """A session on the forward graph with every variable assigned its checkpoint value.

    A SavedModel is restored the same way (from ``variables/variables``), not through its
    loader, so none of its own restore, init or main ops run.
    """
    sess = tf.Session(graph=doc.graph)
    try:
        doc.art.restore(doc.graph, sess)
    except artefacts.ArtefactError as err:
        sess.close()
        raise DoctorError(f"{WHERE}: {err}") from None
    except Exception as err:  # pylint: disable=broad-except  (a truncated or corrupt checkpoint)
        sess.close()
        raise DoctorError(f"{WHERE}: {doc.art.checkpoint}: the checkpoint cannot be restored "
                          f"({type(err).__name__}: {str(err).splitlines()[0][:160]})") from None
    return sess


def _given(t, s):
    return t.op.name in s.input_shapes or t.name in s.data or t.op.name in s.data


def _three_runs(sess, fetch, feeds, batch, state, layers, outputs, notes, how):
    """Findings of the three runs (see the module docstring); state is reset after each."""
    out = []
    state.reset()
    stat_names = {layer[r]: layer["name"] for layer in layers
                  for r in ("moving_mean", "moving_variance") if layer[r]}
    first = sess.run(fetch, {**feeds, **batch})
    after = state.read()
    changed = [n for n in after if not np.array_equal(after[n], state.initial[n], equal_nan=True)]
    for layer_name in sorted({stat_names[n] for n in changed if n in stat_names}):
        names = [n for n in changed if stat_names.get(n) == layer_name]
        out.append(_finding("updates-on-inference", layer_name,
                            f"a prediction run changed {', '.join(names)}"))
    others = [n for n in changed if n not in stat_names]
    if others:
        notes.append(f"a prediction run also changed {len(others)} variable(s) that are not BN "
                     f"statistics: {', '.join(others[:5])}")
    state.reset()
    second = sess.run(fetch, {**feeds, **batch})
    differ = [name for name, a, b in zip(outputs, first, second) if not _same(a, b)]
    if differ:
        out.append(_finding("dropout-at-inference", None,
                            f"the same input twice gives different {', '.join(differ)} {how}"))
        state.reset()
        return out
    state.reset()
    n = next(iter(batch.values())).shape[0] if batch else 0
    if n < 2:
        notes.append("batch dependence not checked: the inputs hold fewer than 2 samples")
        return out
    other = sess.run(fetch, {**feeds, **{t: _replace_rest(v) for t, v in batch.items()}})
    state.reset()
    dependent = [name for name, a, b in zip(outputs, first, other)
                 if np.ndim(a) and np.shape(a)[0] == n and not _same(a[:1], b[:1])]
    if dependent:
        out.append(_finding("inference-batch-dependent", None,
                            f"sample 0's {', '.join(dependent)} changes when the rest of its batch "
                            f"changes, {how}"))
    return out


# ---- the report

def diagnose(path, feeds=None, input_shapes=None, data=None, run=True):
    """The doctor's report on the artefact at ``path`` (see the module docstring).

    Returns a dict with source, format, bn_layers, dropouts, findings (id,
    severity, layer, message, fix), healthy (no error finding), ran (whether the
    dynamic checks ran) and notes. Raises DoctorError (one line) for an
    unreadable artefact or a bad argument.
    """
    s = settings(path, feeds, input_shapes, data, run)
    try:
        art = artefacts.load(s.path)
    except artefacts.ArtefactError as err:
        raise DoctorError(f"{WHERE}: {err}") from None
    try:
        doc = _Artefact(art)
    except artefacts.ArtefactError as err:
        raise DoctorError(f"{WHERE}: {err}") from None
    layers, dropouts, result, notes = _layers(doc)
    given = _resolve_feeds(doc, s)  # checked the same with and without a run
    report = {"source": art.source, "format": art.format, "bn_layers": [], "dropouts": [],
              "findings": [], "healthy": True, "ran": False, "notes": notes}
    global_step = doc.global_step()
    trainable = set(doc.collection_names("trainable_variables"))
    findings = []
    for layer in layers:
        findings += _value_checks(doc, layer, global_step)
        findings += _graph_checks(doc, layer, global_step, trainable)
    if doc.graph_def is not None:
        findings += _update_checks(doc, layers)
        findings += _mode_checks(result)
        findings += _serving_dropout_checks(doc, dropouts, art.format)
        findings += _serving_mode_checks(doc, result, layers, dropouts, art.format)
    if s.run and doc.graph_def is not None:
        dynamic = _dynamic(doc, s, layers, dropouts, result, report, given)
        report["ran"] = "outputs" in report and not any(n.startswith("not run") for n in notes)
        findings += _merge(findings, dynamic)
    elif not s.run:
        notes.append("not run (--no-run): static checks only")
    for layer in layers:
        for role in ("moving_mean", "moving_variance"):
            value = doc.value(layer[role])
            layer[f"{role}_range"] = None if value is None or not value.size else \
                [float(np.min(value)), float(np.max(value))]
    report["bn_layers"] = [{k: v for k, v in layer.items() if not k.startswith("_")}
                           for layer in layers]
    report["dropouts"] = [{k: v for k, v in d.items() if k != "output"} for d in dropouts]
    report["findings"] = findings
    report["healthy"] = not any(f["severity"] == ERROR for f in findings)
    report["global_step"] = global_step
    return _jsonable(report)


def _jsonable(value):
    """The report with NumPy scalars and arrays as Python numbers and lists (for json.dump)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value


def _merge(static, dynamic):
    """Dynamic findings not already reported statically (a batch-dependence or dropout finding
    without a layer confirms the static ones of the same id)."""
    have = {f["id"] for f in static}
    out = []
    for f in dynamic:
        if f["layer"] is None and f["id"] in have:
            for g in static:
                if g["id"] == f["id"] and "confirmed by running" not in g["message"]:
                    g["message"] += "; confirmed by running: " + f["message"]
            continue
        out.append(f)
    return out


def format_report(report):
    """The printed report: a table of the layers, then each finding with its fix."""
    lines = [f"doctor: {report['source']} ({report['format']})"]
    if report["bn_layers"]:
        rows = [("BN layer", "kind", "decay", "mode", "updates", "moving mean", "moving variance")]
        for layer in report["bn_layers"]:
            rows.append((layer["name"], layer["kind"],
                         "-" if layer["decay"] is None else f"{layer['decay']:g}",
                         layer["mode"]["name"] if layer["mode"] else "-",
                         layer["update_location"] or "-",
                         _range(layer.get("moving_mean_range")),
                         _range(layer.get("moving_variance_range"))))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    else:
        lines.append("  no BN layer found")
    for d in report["dropouts"]:
        kp = d["keep_prob"] or {}
        value = "" if kp.get("value") is None else f" = {kp['value']:g}"
        lines.append(f"  dropout {d['name']}: {kp.get('param')} from {kp.get('source')} "
                     f"{kp.get('name')}{value}")
    for note in report["notes"]:
        lines.append(f"  note: {note}")
    if not report["findings"]:
        lines.append("no findings")
    for f in report["findings"]:
        where = f" [{f['layer']}]" if f["layer"] else ""
        lines.append(f"{f['severity']}: {f['id']}{where}: {f['message']}")
        lines.append(f"    fix: {f['fix']}")
    count = {k: sum(f["severity"] == k for f in report["findings"]) for k in (ERROR, WARNING, INFO)}
    lines.append(f"{'healthy' if report['healthy'] else 'NOT HEALTHY'}: {count[ERROR]} error(s), "
                 f"{count[WARNING]} warning(s), {count[INFO]} info(s)"
                 f"{'' if report['ran'] else ' (static checks only)'}")
    return "\n".join(lines)


def _range(bounds):
    if not bounds:
        return "-"
    low, high = bounds
    return f"{low:.3g}" if low == high else f"{low:.3g}..{high:.3g}"
