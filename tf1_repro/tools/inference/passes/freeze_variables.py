"""Pass ``freeze_variables``: every variable the (pruned) graph still reads becomes a ``Const``
of its value in ``ctx.session`` (``tf.graph_util.convert_variables_to_constants``; on the
unpruned training graph it keeps the assigns and the import fails). Targets: VARIABLE_OPS.
changed: the variables frozen."""

import tensorflow.compat.v1 as tf

from tf1_repro.graph.graphdef import node_name
from tf1_repro.graph.ops import VARIABLE_OPS
from tf1_repro.tools.inference.context import PassResult
from tf1_repro.tools.inference.passes.registry import register


def freeze_variables(graph_def, sess, outputs):
    """Every variable the (pruned) graph still reads becomes a ``Const`` of its value in
    ``sess`` (whose graph holds nodes of the same names). Returns (GraphDef, variable names)."""
    names = [n.name for n in graph_def.node if n.op in VARIABLE_OPS]
    if not names:
        return graph_def, []
    frozen = tf.graph_util.convert_variables_to_constants(
        sess, graph_def, [node_name(o) for o in outputs], variable_names_whitelist=names)
    return frozen, names


@register("freeze_variables", targets=VARIABLE_OPS)
def run(graph_def, ctx):
    """Freeze the variables the graph reads to Consts; changed: the variables frozen."""
    graph_def, names = freeze_variables(graph_def, ctx.session, ctx.outputs)
    return PassResult(graph_def, names)
