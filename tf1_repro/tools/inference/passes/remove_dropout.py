"""Pass ``remove_dropout`` (``--fix-training-mode`` only): each dropout of ``ctx.dropout_fixes``
(``training_mode.DropoutFix``) whose random ops are still in the frozen graph (a dropout that
drops at inference, e.g. called with ``training=True``) has its output node become
``Identity(input)`` (an inverted dropout's expectation); its random ops and, for Keras 3, the
write of its seed state go unread. Writes one entry per dropout to ``ctx.state.fixed``
({layer, what}). Targets: the dropouts' output nodes (any op). changed: the output nodes."""

from tf1_repro.graph.graphdef import nodes_by_name
from tf1_repro.tools.inference.context import PassResult
from tf1_repro.tools.inference.passes.dropouts_to_identity import replace_with_identity
from tf1_repro.tools.inference.passes.registry import register


@register("remove_dropout", targets=())
def run(graph_def, ctx):
    """Make each dropout that still drops the identity; changed: the output nodes replaced."""
    changed = []
    for fix in ctx.dropout_fixes:
        by_name = nodes_by_name(graph_def)
        if fix.output not in by_name or not any(r in by_name for r in fix.random_ops):
            continue
        graph_def = replace_with_identity(graph_def, fix.output, fix.input)
        changed.append(fix.output)
        what = f"dropout ({fix.rate}) on at inference -> removed (the identity of {fix.input})" \
            if fix.rate else f"dropout on at inference -> removed (the identity of {fix.input})"
        if fix.writes:
            what += "; writes removed: " + ", ".join(f"{w['variable']} ({w['node']})" for w in fix.writes)
        ctx.state.fixed.append({"layer": fix.layer, "what": what})
    return PassResult(graph_def, changed)
