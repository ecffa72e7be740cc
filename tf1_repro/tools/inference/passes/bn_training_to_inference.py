"""Pass ``bn_training_to_inference`` (``--fix-training-mode`` only): each BN of ``ctx.bn_fixes``
(``training_mode.BNFix``) that still normalises with the batch's statistics once the graph is
frozen normalises with its stored moving statistics instead: a FusedBatchNorm* with
``is_training`` true gets ``is_training`` false and the moving mean and variance as inputs 3 and
4; a ``tf.nn.batch_normalization`` (moments of its input) reads them where it read the batch's
mean and variance. The statistics are new Consts ``LAYER/moving_mean_inference`` and
``LAYER/moving_variance_inference``; the batch moments and the moving-statistic writes are left
unread (``prune`` removes them). Writes one entry per layer to ``ctx.state.fixed`` ({layer,
what}) or ``ctx.state.not_fixed`` ({layer, why}). Targets: FusedBatchNorm* and the Add/Mul of a
BN's arithmetic. changed: the nodes rewritten."""

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph.graphdef import make_const, nodes_by_name, with_inputs, with_nodes
from tf1_repro.graph.ops import FUSED_BN_OPS
from tf1_repro.tools.inference.context import PassResult
from tf1_repro.tools.inference.passes.registry import register


def _unique(by_name, name):
    candidate, i = name, 1
    while candidate in by_name:
        candidate, i = f"{name}_{i}", i + 1
    return candidate


def _is_const(by_name, inp):
    node = by_name.get(inp.lstrip("^").split(":")[0])
    return node is not None and node.op == "Const"


def _in_training_mode(fix, by_name):
    """Whether the layer still normalises with batch statistics in this graph."""
    if fix.fused:
        node = by_name.get(fix.fused)
        return node is not None and node.op in FUSED_BN_OPS and node.attr["is_training"].b
    node = by_name.get(fix.variance_edge[0]) if fix.variance_edge else None
    return node is not None and not _is_const(by_name, node.input[fix.variance_edge[1]])


def _what(fix):
    stats = f"its moving statistics ({fix.mean_source}, {fix.variance_source})"
    if fix.fused:
        what = f"fused BN {fix.fused}: is_training true -> false, normalises with {stats}"
    else:
        what = f"normalised with the moments of its input -> with {stats}"
    if fix.writes:
        what += "; writes removed: " + ", ".join(f"{w['variable']} ({w['node']})" for w in fix.writes)
    return what


def fix_layer(graph_def, fix):
    """The graph with the layer of ``fix`` normalising with its moving statistics."""
    by_name = nodes_by_name(graph_def)
    target = by_name[fix.fused] if fix.fused else by_name[fix.variance_edge[0]]
    dtype = target.attr["U"].type if fix.fused and "U" in target.attr else target.attr["T"].type
    np_dtype = tf.as_dtype(dtype).as_numpy_dtype
    mean_name = _unique(by_name, f"{fix.layer}/moving_mean_inference")
    var_name = _unique(by_name, f"{fix.layer}/moving_variance_inference")
    consts = [make_const(mean_name, np.asarray(fix.moving_mean).astype(np_dtype), np_dtype),
              make_const(var_name, np.asarray(fix.moving_variance).astype(np_dtype), np_dtype)]
    replaced = {}
    if fix.fused:
        node = with_inputs(target, list(target.input[:3]) + [mean_name, var_name] + list(target.input[5:]))
        node.attr["is_training"].b = False
        replaced[node.name] = node
    else:
        for (name, index), const in ((fix.variance_edge, var_name), (fix.mean_edge, mean_name)):
            node = replaced.get(name, by_name[name])
            inputs = list(node.input)
            inputs[index] = const
            replaced[name] = with_inputs(node, inputs)
    nodes = [replaced.get(n.name, n) for n in graph_def.node] + consts
    return with_nodes(graph_def, nodes), sorted(replaced)


@register("bn_training_to_inference", targets=FUSED_BN_OPS + ("Add", "AddV2", "Mul"))
def run(graph_def, ctx):
    """Normalise each BN still in training mode with its moving statistics; changed: the nodes
    rewritten."""
    changed = []
    for fix in ctx.bn_fixes:
        if not _in_training_mode(fix, nodes_by_name(graph_def)):
            continue
        if fix.missing:
            ctx.state.not_fixed.append({"layer": fix.layer, "why": f"BN in training mode left as "
                                                                  f"it is: {fix.missing}"})
            continue
        graph_def, nodes = fix_layer(graph_def, fix)
        changed += nodes
        ctx.state.fixed.append({"layer": fix.layer, "what": _what(fix)})
    return PassResult(graph_def, changed)
