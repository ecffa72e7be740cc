"""Pass ``prune``: only the nodes the outputs need (through data and control inputs), in their
original order. Targets: any node. changed: the nodes removed."""

from tf1_repro.graph import graphdef
from tf1_repro.tools.inference.context import PassResult
from tf1_repro.tools.inference.passes.registry import register


@register("prune", targets=())
def run(graph_def, ctx):
    """Keep only the nodes ``ctx.outputs`` need; changed: the nodes removed."""
    pruned = graphdef.prune(graph_def, ctx.outputs)
    kept = {n.name for n in pruned.node}
    return PassResult(pruned, [n.name for n in graph_def.node if n.name not in kept])
