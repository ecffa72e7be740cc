"""Pass ``defaults_to_identity``: a ``PlaceholderWithDefault`` that is not one of ``ctx.inputs``
becomes an ``Identity`` of its default (same name). Targets: PlaceholderWithDefault. changed: the
placeholders replaced.

The smallest pass: the file to copy for a new one."""

from tf1_repro.graph.graphdef import make_identity, node_name, with_nodes
from tf1_repro.tools.inference.context import PassResult
from tf1_repro.tools.inference.passes.registry import register

TARGETS = ("PlaceholderWithDefault",)


@register("defaults_to_identity", targets=TARGETS)
def run(graph_def, ctx):
    """Make each PlaceholderWithDefault that is not an input an Identity of its default."""
    names = {node_name(i) for i in ctx.inputs}
    nodes, changed = [], []
    for n in graph_def.node:
        if n.op in TARGETS and n.name not in names:
            n = make_identity(n.name, n.input[0], n.attr["dtype"].type)
            changed.append(n.name)
        nodes.append(n)
    return PassResult(with_nodes(graph_def, nodes), changed)
