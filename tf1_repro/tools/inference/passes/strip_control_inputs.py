"""Pass ``strip_control_inputs``: once no Switch/Merge is left, every control input (``^name``)
is dropped: it only ordered side effects (the update ops it ran at prediction are told to
``ctx.state.dropped_controls`` and named in the report). With a Switch/Merge left, nothing
changes. Targets: any node with a control input. changed: the nodes that lost control inputs."""

from tf1_repro.graph.graphdef import is_control, node_name, nodes_by_name, with_inputs, with_nodes
from tf1_repro.graph.ops import MERGE_OPS, SWITCH_OPS
from tf1_repro.tools.inference.context import PassResult
from tf1_repro.tools.inference.passes.registry import register


def strip_control_inputs(graph_def, keep_ops=()):
    """Drop control inputs (``^name``) from every node, except those whose source op type is in
    ``keep_ops``. Only meaningful once no Switch is left (then a control edge only orders)."""
    by_name = nodes_by_name(graph_def)
    return with_nodes(graph_def, [
        with_inputs(node, [i for i in node.input
                           if not is_control(i) or by_name[node_name(i)].op in keep_ops])
        for node in graph_def.node])


@register("strip_control_inputs", targets=())
def run(graph_def, ctx):
    """Drop every control input when no Switch/Merge is left; changed: the nodes stripped."""
    if any(n.op in SWITCH_OPS + MERGE_OPS for n in graph_def.node):
        return PassResult(graph_def, [])
    ctx.state.dropped_controls.extend(node_name(i) for n in graph_def.node for i in n.input
                                      if is_control(i))
    changed = [n.name for n in graph_def.node if any(is_control(i) for i in n.input)]
    return PassResult(strip_control_inputs(graph_def), changed)
