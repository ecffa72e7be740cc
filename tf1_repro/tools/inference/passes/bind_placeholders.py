"""Pass ``bind_placeholders``: each mode placeholder in ``ctx.feeds`` (training, keep_prob,
learning phase, ...) becomes a ``Const`` of its prediction value, same name, its dtype.
Targets: Placeholder, PlaceholderV2, PlaceholderWithDefault. changed: the placeholders bound."""

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph.graphdef import make_const, node_name, nodes_by_name, with_nodes
from tf1_repro.graph.ops import PLACEHOLDER_OPS
from tf1_repro.tools.inference.context import PassResult
from tf1_repro.tools.inference.passes.registry import register


def bind_placeholders(graph_def, values):
    """Replace each placeholder named in ``values`` ({node or tensor name: value}) by a
    ``Const`` of that value, same name, its dtype and (when known) shape.

    Raises ValueError naming a value that is not a placeholder of the graph.
    """
    by_name = nodes_by_name(graph_def)
    wanted = {node_name(k): v for k, v in values.items()}
    for name in wanted:
        if name not in by_name or by_name[name].op not in PLACEHOLDER_OPS:
            got = by_name[name].op if name in by_name else "no such node"
            raise ValueError(f"bind_placeholders: values must name placeholders of the graph, got "
                             f"{name!r} ({got})")
    nodes = []
    for node in graph_def.node:
        if node.name in wanted:
            dtype = tf.as_dtype(node.attr["dtype"].type)
            value = np.asarray(wanted[node.name], dtype=dtype.as_numpy_dtype)
            nodes.append(make_const(node.name, value, dtype, node.device))
        else:
            nodes.append(node)
    return with_nodes(graph_def, nodes)


@register("bind_placeholders", targets=PLACEHOLDER_OPS)
def run(graph_def, ctx):
    """Bind each placeholder of ``ctx.feeds`` to a Const; changed: the placeholders bound."""
    bound = bind_placeholders(graph_def, ctx.feeds)
    return PassResult(bound, [node_name(k) for k in ctx.feeds])
