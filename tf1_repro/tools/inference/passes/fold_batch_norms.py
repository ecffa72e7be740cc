"""Pass ``fold_batch_norms``: each BN of ``ctx.bn_layers``, in graph order, folded into the
MatMul/Conv2D/DepthwiseConv2dNative before it (``ctx.fold``) or made one multiply-add with
constant scale and offset (``batchnorm.fold_batch_norm``), the graph pruned after each; the
other BNs' outputs and ``ctx.protected`` stop each chain so that one BN never swallows another.
Writes one entry per layer to ``ctx.state.bn_report`` ({name, kind, folded, reason[, into]}).
Targets: FusedBatchNorm*, BatchNormWithGlobalNormalization and the per-channel affine ops of a
BN (Add, AddV2, BiasAdd, Sub, Mul, RealDiv, Neg, Identity, Snapshot), with the linear op before.
changed: the BN outputs rewritten."""

from tf1_repro.graph.graphdef import node_name, nodes_by_name, prune, topological_order
from tf1_repro.graph.ops import FUSED_BN_OPS, GLOBAL_BN_OP
from tf1_repro.tools.inference import batchnorm
from tf1_repro.tools.inference.context import PassResult
from tf1_repro.tools.inference.passes.registry import register

TARGETS = FUSED_BN_OPS + (GLOBAL_BN_OP,) + batchnorm.ELEMENTWISE + batchnorm.LINEAR_OPS


@register("fold_batch_norms", targets=TARGETS)
def run(graph_def, ctx):
    """Fold (or make a multiply-add of) each BN layer; changed: the BN outputs rewritten."""
    order = {name: i for i, name in enumerate(topological_order(graph_def))}
    layers = sorted(ctx.bn_layers, key=lambda b: order.get(node_name(b.output), -1))
    all_outputs = {node_name(b.output) for b in ctx.bn_layers}
    report, changed = [], []
    for bn in layers:
        out = node_name(bn.output)
        entry = {"name": bn.name, "kind": bn.kind, "folded": False, "reason": None}
        if out not in nodes_by_name(graph_def):
            entry["reason"] = "not on the path to the outputs"
        else:
            stop = set(ctx.protected) | (all_outputs - {out})
            rewritten, result = batchnorm.fold_batch_norm(
                graph_def, out, stop=stop, fold=ctx.fold, channel_axis=getattr(bn, "channel_axis", -1))
            if rewritten is not graph_def:
                changed.append(out)
            graph_def = prune(rewritten, ctx.outputs)
            entry.update(folded=result["folded"], reason=result["reason"])
            if result["linear"]:
                entry["into"] = result["linear"]
        report.append(entry)
    ctx.state.bn_report[:] = report
    return PassResult(graph_def, changed)
