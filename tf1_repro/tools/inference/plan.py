"""What the conversion decides from the finder's findings and the user's arguments before and
after the passes run: the outputs and inputs checked, the prediction feeds, the dropouts to make
identities, the placeholders left as inputs, the update ops dropped and the training-only ops a
prediction graph must not hold. (Moved unchanged from ``tools/inference.py``.)"""

import re

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph.graphdef import consumers, node_name, nodes_by_name, prune, tensor_name
from tf1_repro.graph.ops import (FUSED_BN_OPS, GLOBAL_BN_OP, MERGE_OPS, PLACEHOLDER_OPS,
                                 RANDOM_DRAW_OPS, SWITCH_OPS, VARIABLE_OPS, WRITE_OPS)
from tf1_repro.tools.inference.errors import InferenceError

FORBIDDEN_OPS = SWITCH_OPS + MERGE_OPS + VARIABLE_OPS + FUSED_BN_OPS + WRITE_OPS + (
    GLOBAL_BN_OP, "Rsqrt", "ReadVariableOp") + RANDOM_DRAW_OPS
PREDICTION_OPS = (GLOBAL_BN_OP,)  # in FORBIDDEN_OPS (a folded BN leaves none) but has no training mode


def training_only_ops(graph_def):
    """Nodes a prediction graph must not hold: Switch/Merge, variables, assigns, random
    ops, FusedBatchNorm with is_training true, Rsqrt (constant statistics fold it away: one
    left normalises with batch statistics), and bool placeholders. Returns ["Op name", ...].
    A FusedBatchNorm with is_training false normalises with its constant statistics (a
    prediction op, left when it is not folded), as BatchNormWithGlobalNormalization does."""
    found = [f"{n.op} {n.name}" for n in graph_def.node if n.op in FORBIDDEN_OPS
             and n.op not in PREDICTION_OPS and not (n.op in FUSED_BN_OPS and not n.attr["is_training"].b)]
    found += [f"{n.op} {n.name} (bool)" for n in graph_def.node
              if n.op in PLACEHOLDER_OPS and n.attr["dtype"].type == tf.bool.as_datatype_enum]
    return found


def likely_outputs(graph_def, limit=8):
    """Tensors named like outputs (logits, predictions, softmax, ArgMax, ...: the last node of
    each such scope), then tensors no node reads; gradients/optimizer/saver scopes skipped."""
    users = consumers(graph_def)
    skip = re.compile(r"(^|/)(gradients|save|Adam|Momentum|GradientDescent|init|report_"
                      r"uninitialized|group_deps|train|tf1_repro_restore|loss|cross_entropy|"
                      r"SparseSoftmaxCrossEntropy|global_step)", re.I)
    named = re.compile(r"(logit|predict|output|prob|softmax|argmax|score)", re.I)
    plain = ("NoOp", "Const", "Assert", "SaveV2", "RestoreV2", "Placeholder") + VARIABLE_OPS + \
        WRITE_OPS
    candidates = [n for n in graph_def.node if n.op not in plain and not skip.search(n.name)]
    by_scope = {}
    for n in candidates:
        if named.search(n.name):
            by_scope[n.name.split("/")[0]] = n.name  # the last node of the scope
    leaves = [n.name for n in candidates if n.name not in users]
    found = list(dict.fromkeys(list(by_scope.values()) + leaves))
    return [f"{name}:0" for name in found[:limit]]


def check_names(graph, names, what, graph_def):
    tensors = []
    for name in names:
        full = tensor_name(name)
        try:
            graph.get_tensor_by_name(full)
        except (KeyError, ValueError):
            hint = ", ".join(likely_outputs(graph_def)) if what == "--outputs" else ""
            raise InferenceError(
                f"{what}: no tensor {full!r} in the graph" +
                (f"; likely outputs: {hint}" if hint else "")) from None
        tensors.append(full)
    return tensors


def _vanilla_keep_probs(findings):
    """{placeholder node name: [dropout names]} for the keep_prob placeholders the finder leaves
    unbound (``unbound_mode_inputs``: a vanilla dropout, whose prediction computes
    ``x * keep_prob`` with keep_prob's *training* value, so binding it to 1.0 would serve
    outputs 1/keep_prob too large)."""
    unbound = {m.name for m in findings.unbound_mode_inputs()}
    found = {}
    for d in findings.dropouts:
        kp = d.keep_prob or {}
        if (d.convention == "vanilla" and kp.get("name") in unbound
                and kp.get("source") in ("placeholder", "placeholder_with_default")):
            found.setdefault(kp["name"], []).append(d.name)
    for name in unbound:
        found.setdefault(name, [])
    return found


def refuse_unbound(findings, bound, inputs, needed):
    """InferenceError naming the first unbound mode placeholder the outputs need (see
    ``_vanilla_keep_probs``) that neither --feed nor --inputs gives."""
    present = nodes_by_name(needed)
    given = set(bound) | {node_name(i) for i in inputs}
    for name, dropouts in sorted(_vanilla_keep_probs(findings).items()):
        if name in given or name not in present:
            continue
        what = (f"drives the vanilla dropout {', '.join(dropouts)} (training multiplies by the 0/1 "
                f"mask, prediction by keep_prob)" if dropouts else
                "has no prediction value the graph can tell")
        raise InferenceError(
            f"--feed: placeholder {name} {what}, so keep_prob=1.0 would serve outputs 1/keep_prob "
            f"too large; pass its training value with --feed {name}=VALUE (e.g. --feed {name}=0.8)")


def dropout_plan(dropouts, bound):
    """(dropouts to replace by their input, [{name, reason}] kept). A dropout is the identity
    when its keep_prob is 1 (or its rate 0) once the mode placeholders are bound; a vanilla
    dropout never is (its prediction multiplies by keep_prob)."""
    remove, kept = [], []
    for d in dropouts:
        kp = d.keep_prob or {}
        value = kp.get("value")
        if kp.get("source") in ("placeholder", "placeholder_with_default") and kp.get("name"):
            value = bound.get(node_name(kp["name"]), value)
        if d.convention == "vanilla" and getattr(d, "scales_at_prediction", False):
            kept.append({"name": d.name, "vanilla": True, "keep_prob": value,
                         "reason": f"vanilla: prediction multiplies by keep_prob={value!r}"})
            continue
        identity = value is not None and (
            (kp.get("param") == "keep_prob" and float(value) == 1.0)
            or (kp.get("param") == "rate" and float(value) == 0.0))
        if identity:
            remove.append(d)
        else:
            kept.append({"name": d.name, "reason": f"{kp.get('param')} is {value!r} at prediction, "
                                                   f"not the identity"})
    return remove, kept


def inputs_after_binding(graph_def, inputs):
    """The input tensor names: given, or every Placeholder still needed. A scalar, bool or
    unknown-rank placeholder left unnamed is ambiguous (InferenceError naming them all)."""
    left = [n for n in graph_def.node if n.op in PLACEHOLDER_OPS]
    if inputs:
        names = {node_name(i) for i in inputs}
        missing = [n.name for n in left if n.name not in names and n.op != "PlaceholderWithDefault"]
        if missing:
            raise InferenceError(
                f"--inputs: the outputs also need placeholder(s) {', '.join(missing)}; name them in "
                f"--inputs or give their value with --feed NAME=VALUE")
        return [tensor_name(i) for i in inputs]
    ambiguous, found = [], []
    for n in left:
        if n.op == "PlaceholderWithDefault":
            continue
        shape = n.attr["shape"].shape
        is_bool = n.attr["dtype"].type == tf.bool.as_datatype_enum
        if is_bool or shape.unknown_rank or len(shape.dim) == 0:
            dtype = tf.as_dtype(n.attr["dtype"].type).name
            ambiguous.append(f"{n.name} ({dtype}, {'scalar' if not shape.unknown_rank else 'any shape'})")
        else:
            found.append(f"{n.name}:0")
    if ambiguous:
        raise InferenceError(
            f"cannot tell what placeholder(s) {', '.join(ambiguous)} switch; give each a value "
            f"with --feed NAME=VALUE (e.g. training=false, keep_prob=1.0) or list the real "
            f"inputs with --inputs")
    if not found:
        raise InferenceError("--outputs: the outputs need no input placeholder; nothing to serve")
    return found


def dropouts_gone(dropouts, removed, kept, final):
    """Names of the dropouts replaced by their input, and of those whose random ops no longer
    exist in ``final`` (a mode switch such as Keras' learning phase resolved them)."""
    left = nodes_by_name(final)
    kept_names = {k["name"] for k in kept}
    gone = [d.name for d in removed]
    gone += [d.name for d in dropouts if d.name in kept_names and d.random_ops
             and not any(node_name(r) in left for r in d.random_ops)]
    return gone


def write_ops_of(graph_def, sources, final):
    """Assign-like nodes of ``graph_def`` among ``sources`` and their ancestors, not in ``final``:
    updates that a control input ran at prediction and the conversion dropped."""
    if not sources:
        return []
    present = nodes_by_name(graph_def)
    ancestors = prune(graph_def, [s for s in set(sources) if s in present])
    left = nodes_by_name(final)
    return sorted(n.name for n in ancestors.node if n.op in WRITE_OPS and n.name not in left)


def jsonable(value):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()
