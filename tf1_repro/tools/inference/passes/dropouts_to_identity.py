"""Pass ``dropouts_to_identity``: each dropout that is the identity at prediction (keep_prob 1 or
rate 0 once the mode placeholders are bound), listed in ``ctx.dropouts`` as (output node, input
tensor), has its output node become ``Identity(input)`` (same name, its dtype). Targets: the
dropouts' output nodes (any op). changed: the output nodes replaced."""

from tf1_repro.graph.graphdef import make_identity, node_name, nodes_by_name, tensor_dtypes, with_nodes
from tf1_repro.tools.inference.context import PassResult
from tf1_repro.tools.inference.passes.registry import register


def replace_with_identity(graph_def, output, source):
    """Node ``output`` becomes ``Identity(source)`` (same name; its dtype kept)."""
    dtype = tensor_dtypes(graph_def, [source])[source]
    nodes = []
    for node in graph_def.node:
        if node.name == node_name(output):
            node = make_identity(node.name, source, dtype)
        nodes.append(node)
    return with_nodes(graph_def, nodes)


@register("dropouts_to_identity", targets=())
def run(graph_def, ctx):
    """Make each dropout of ``ctx.dropouts`` still in the graph an Identity of its input."""
    changed = []
    for output, source in ctx.dropouts:
        if node_name(output) in nodes_by_name(graph_def):
            graph_def = replace_with_identity(graph_def, output, source)
            changed.append(node_name(output))
    return PassResult(graph_def, changed)
