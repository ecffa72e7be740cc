"""``--fix-training-mode``: what to repair in a serving function that runs BN in training mode or
keeps dropout on, decided before the passes run (``plan_fixes``), and the dataclasses the two
repair passes (``passes/bn_training_to_inference.py``, ``passes/remove_dropout.py``) read.

A BN layer is repaired with its stored moving statistics. They are found, in this order:
1. the finder's ``BNLayer.moving_mean`` / ``moving_variance`` (a variable or a Const);
2. the variable writes of the serving function (TF2 SavedModels and Keras files: the
   Artefact's ``writes``; TF1 graphs: their Assign* ops): the write whose value is computed from
   the layer's batch variance updates the moving variance, the one computed from its batch mean
   only updates the moving mean (``moving_stat_writes``).
Their values are read now, from the graph's Consts or the session, so that the passes do not
depend on the statistics surviving pruning. A layer whose statistics cannot be found is
reported and left as it is.
"""

import dataclasses
from typing import Any

import numpy as np

from tf1_repro.graph.graphdef import const_value, node_name, nodes_by_name, tensor_name
from tf1_repro.graph.ops import FUSED_BN_OPS, VARIABLE_OPS, WRITE_OPS


@dataclasses.dataclass(frozen=True)
class BNFix:
    """One BN layer to normalise with its moving statistics, if the pass finds it in training
    mode. ``fused``: the FusedBatchNorm* node (is_training true) whose inputs 3 and 4 become the
    statistics; else ``variance_edge`` / ``mean_edge``: (node, input index) reading the batch
    variance / mean in the BN's own arithmetic (``tf.nn.batch_normalization``). ``writes``: the
    variable writes of its statistics (removed with it). ``missing``: why it cannot be fixed."""
    layer: str
    fused: str = None
    variance_edge: tuple = None
    mean_edge: tuple = None
    moving_mean: Any = None
    moving_variance: Any = None
    mean_source: str = None
    variance_source: str = None
    writes: tuple = ()
    missing: str = None


@dataclasses.dataclass(frozen=True)
class DropoutFix:
    """One dropout to make the identity if its random ops are still in the graph."""
    layer: str
    output: str
    input: str
    random_ops: tuple
    rate: Any = None
    writes: tuple = ()


def layer_name(name):
    """A finder's layer name without the ``StatefulPartitionedCall/`` scopes a TF2 function
    call adds (``StatefulPartitionedCall/model_1/drop/dropout`` -> ``model_1/drop/dropout``)."""
    parts = [p for p in name.split("/") if not p.startswith("StatefulPartitionedCall")]
    return "/".join(parts) or name


def _bn_layer_name(bn):
    """``layer_name`` of the BN, or, when the finder could only name it by the function call
    (a ``tf.Module`` without name scopes), the scope of its output (``batchnorm``)."""
    name = layer_name(bn.name)
    if name.startswith("StatefulPartitionedCall"):
        out = layer_name(node_name(bn.output))
        name = out.rsplit("/", 1)[0] if "/" in out else out
    return name


def _sources(graph_def):
    by_name = nodes_by_name(graph_def)

    def source(inp):
        name = node_name(inp)
        while name in by_name and by_name[name].op in ("Identity", "ReadVariableOp") and by_name[name].input:
            name = node_name(by_name[name].input[0])
        return name
    return by_name, source


def ancestor_tensors(graph_def, tensor):
    """Every tensor (``n:p``) the tensor's value is computed from, through data inputs, itself
    included."""
    by_name = nodes_by_name(graph_def)
    seen, stack = set(), [tensor_name(tensor)]
    while stack:
        t = stack.pop()
        if t in seen:
            continue
        seen.add(t)
        node = by_name.get(node_name(t))
        if node is not None:
            stack.extend(tensor_name(i) for i in node.input if not i.startswith("^"))
    return seen


def graph_writes(graph_def):
    """The Assign* ops of a TF1 graph as ``[{"node", "op", "variable", "value"}]``."""
    _, source = _sources(graph_def)
    return [{"node": n.name, "op": n.op, "variable": source(n.input[0]),
             "value": tensor_name(n.input[1])} for n in graph_def.node
            if n.op in WRITE_OPS and len(n.input) > 1]


def moving_stat_writes(graph_def, writes, batch_mean, batch_variance):
    """``(mean write, variance write)`` among ``writes`` (either may be None): the one whose value
    is computed from ``batch_variance``, and the one computed from ``batch_mean`` only."""
    mean = variance = None
    for write in writes:
        if write["value"].split(":")[0] not in nodes_by_name(graph_def):
            continue
        found = ancestor_tensors(graph_def, write["value"])
        if tensor_name(batch_variance) in found:
            variance = variance or write
        elif tensor_name(batch_mean) in found:
            mean = mean or write
    return mean, variance


def batch_moments_edges(graph_def, bn):
    """For a ``tf.nn.batch_normalization`` BN (Rsqrt of variance + eps, scaled by gamma, times
    the input and the mean): ``((variance node, index), (mean node, index))`` of the inputs that
    read its variance and mean, or None when the arithmetic is not that shape."""
    by_name = nodes_by_name(graph_def)
    rsqrt = next((by_name[o] for o in bn.bn_ops if o in by_name and by_name[o].op == "Rsqrt"), None)
    if rsqrt is None:
        return None
    add = by_name.get(node_name(rsqrt.input[0]))
    if add is None or add.op not in ("Add", "AddV2") or len(add.input) != 2:
        return None
    consts = [by_name.get(node_name(i)) is not None and by_name[node_name(i)].op == "Const" for i in add.input]
    if consts.count(True) != 1:
        return None
    variance_edge = (add.name, consts.index(False))
    readers = {}
    for node in graph_def.node:
        for i, inp in enumerate(node.input):
            readers.setdefault(node_name(inp), []).append((node, i))
    scale = next((n for n, _ in readers.get(rsqrt.name, []) if n.op == "Mul"), rsqrt)
    x = node_name(bn.input)
    for node, i in readers.get(scale.name, []):
        other = node.input[1 - i] if node.op == "Mul" and len(node.input) == 2 else None
        if other is not None and node_name(other) != x:
            return variance_edge, (node.name, 1 - i)
    return None


def _value(graph, sess, graph_def, name):
    """The value of a variable or Const node ``name`` (None when it cannot be read)."""
    by_name = nodes_by_name(graph_def)
    node = by_name.get(node_name(name))
    if node is None:
        return None
    if node.op == "Const":
        return const_value(node)
    if node.op in VARIABLE_OPS and sess is not None:
        op = graph.get_operation_by_name(node.name)
        if node.op == "VarHandleOp":
            reads = [c for c in op.outputs[0].consumers() if c.type == "ReadVariableOp"]
            return np.asarray(sess.run(reads[0].outputs[0])) if reads else None
        return np.asarray(sess.run(op.outputs[0]))
    return None


def _const_of_path(variable_paths, path):
    return next((c for c, p in variable_paths.items() if p.split(":")[0] == path), path)


def plan_fixes(graph, sess, findings, writes=None, variable_paths=None):
    """``(BNFix, ...), (DropoutFix, ...)`` for every BN layer and dropout of ``findings`` (the
    passes repair only those still in training mode / still dropping after freezing).
    ``writes``: the Artefact's variable writes (TF2); None reads the graph's Assign* ops."""
    graph_def = graph.as_graph_def()
    by_name = nodes_by_name(graph_def)
    tf2 = writes is not None
    writes = list(writes) if tf2 else graph_writes(graph_def)
    variable_paths = variable_paths or {}
    bn_fixes = [_bn_fix(graph, sess, graph_def, by_name, bn, writes, tf2, variable_paths)
                for bn in findings.bn_layers]
    used = {w["node"] for f in bn_fixes for w in f.writes}
    drop_fixes = []
    for d in findings.dropouts:
        if getattr(d, "scales_at_prediction", False) or not d.random_ops:
            continue
        rand = tuple(node_name(r) for r in d.random_ops)
        own = tuple(w for w in writes if w["node"] not in used and _feeds_random(graph_def, w, rand))
        kp = d.keep_prob or {}
        drop_fixes.append(DropoutFix(layer_name(d.name), node_name(d.output), tensor_name(d.input), rand,
                                     f"{kp.get('param')} {kp.get('value')}" if kp.get("param") else None,
                                     own))
    return tuple(bn_fixes), tuple(drop_fixes)


def _feeds_random(graph_def, write, random_ops):
    """A write of the state a stateless dropout's random numbers are made from (Keras 3's seed):
    the value it writes is computed from what the random op reads."""
    by_name = nodes_by_name(graph_def)
    value_nodes = {node_name(t) for t in ancestor_tensors(graph_def, write["value"])}
    for r in random_ops:
        if r in by_name:
            feeds = {node_name(t) for i in by_name[r].input for t in ancestor_tensors(graph_def, i)}
            if value_nodes & feeds:
                return True
    return False


def _bn_fix(graph, sess, graph_def, by_name, bn, writes, tf2, variable_paths):
    layer = _bn_layer_name(bn)
    fused = next((o for o in bn.bn_ops if o in by_name and by_name[o].op in FUSED_BN_OPS), None)
    variance_edge = mean_edge = None
    if fused is not None:
        batch_mean, batch_variance = f"{fused}:1", f"{fused}:2"
    else:
        edges = batch_moments_edges(graph_def, bn)
        if edges is None:
            return BNFix(layer, missing="its arithmetic is neither a fused BN op nor "
                                          "tf.nn.batch_normalization's")
        variance_edge, mean_edge = edges
        batch_variance = by_name[variance_edge[0]].input[variance_edge[1]]
        batch_mean = by_name[mean_edge[0]].input[mean_edge[1]]
    mean_write, variance_write = moving_stat_writes(graph_def, writes, batch_mean, batch_variance)
    own = tuple(w for w in (mean_write, variance_write) if w is not None)
    values, sources = [], []
    for declared, write in ((bn.moving_mean, mean_write), (bn.moving_variance, variance_write)):
        name = declared
        if name is None and write is not None:
            name = _const_of_path(variable_paths, write["variable"]) if tf2 else write["variable"]
        value = _value(graph, sess, graph_def, name) if name else None
        if value is not None and np.asarray(value).size == 0:
            value = None  # TF1's fused training op reads empty mean/variance placeholders
        values.append(value)
        sources.append(variable_paths.get(name, name) if name else None)
    missing = None
    if values[0] is None or values[1] is None:
        missing = ("its moving " + " and ".join(w for w, v in zip(("mean", "variance"), values) if v is None)
                   + " cannot be found in the graph (no variable or Const named by the layer, and "
                     "no write of it)")
    return BNFix(layer, fused=fused, variance_edge=variance_edge, mean_edge=mean_edge,
                 moving_mean=values[0], moving_variance=values[1], mean_source=sources[0],
                 variance_source=sources[1], writes=own, missing=missing)
