"""Pass ``remove_identities``: readers of an ``Identity``/``Snapshot`` without control inputs
read its input instead; ``ctx.protected`` node names (inputs, outputs, BN outputs) stay. The
bypassed nodes are left for ``prune``. Targets: Identity, Snapshot. changed: the nodes bypassed."""

from tf1_repro.graph.graphdef import (is_control, node_name, nodes_by_name, port, with_inputs,
                                      with_nodes)
from tf1_repro.tools.inference.context import PassResult
from tf1_repro.tools.inference.passes.registry import register

TARGETS = ("Identity", "Snapshot")


def remove_identities(graph_def, protected=()):
    """Readers of an ``Identity``/``Snapshot`` without control inputs read its input instead;
    protected node names (inputs, outputs) stay. Call ``prune`` afterwards.
    Returns (GraphDef, names of the nodes bypassed, sorted)."""
    by_name = nodes_by_name(graph_def)
    protected = {node_name(p) for p in protected}
    bypassed = set()

    def source(inp):
        seen = 0
        while True:
            node = by_name.get(node_name(inp))
            if (node is None or node.op not in TARGETS or node.name in protected
                    or any(is_control(i) for i in node.input) or is_control(inp) or seen > 10000):
                return inp
            if port(inp) == 0:
                bypassed.add(node.name)
                inp = node.input[0]
            seen += 1
    nodes = [with_inputs(node, [source(i) for i in node.input]) for node in graph_def.node]
    return with_nodes(graph_def, nodes), sorted(bypassed)


@register("remove_identities", targets=TARGETS)
def run(graph_def, ctx):
    """Bypass Identity/Snapshot nodes not in ``ctx.protected``; changed: the nodes bypassed."""
    graph_def, bypassed = remove_identities(graph_def, ctx.protected)
    return PassResult(graph_def, bypassed)
