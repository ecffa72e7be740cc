"""TF2 control flow (``If`` ops with branch functions) around BN layers: the one check every tool
that runs a graph's BN layers uses."""

from tf1_repro.graph.ops import FUSED_BN_OPS, IF_OPS, PASS_THROUGH_OPS, VARIABLE_OPS


def tf2_control_flow(graph, found):
    """The one-line reason the BN layers of ``graph`` cannot be read when TF2 control flow (``If`` /
    ``StatelessIf`` ops with branch functions, built without ``disable_control_flow_v2``) sits
    around them; None when it does not.

    Around a BN layer means: the finder says so (a ``Findings.notes`` line starting "TF2 control
    flow"), or an ``If`` outside ``gradients/`` takes a moving statistic (a variable named
    ``*moving_mean`` / ``*moving_variance``, or a layer's, through Identity/ReadVariableOp) as an
    input, or one of its branch functions holds a fused BN op."""
    said = any(str(note).startswith("TF2 control flow") for note in getattr(found, "notes", ()))
    stats = {name for layer in found.bn_layers for name in (layer.moving_mean, layer.moving_variance)
             if name}
    library = {fn.signature.name: {node.op for node in fn.node_def}
               for fn in graph.as_graph_def().library.function}
    hits = []
    for op in graph.get_operations():
        if op.type not in IF_OPS or op.name.startswith("gradients/") or "/gradients/" in op.name:
            continue
        branches = [op.get_attr(key).name for key in ("then_branch", "else_branch")]
        fused = any(library.get(name, set()) & set(FUSED_BN_OPS) for name in branches)
        reads = False
        for tensor in op.inputs:
            source = tensor.op
            while source.type in PASS_THROUGH_OPS and source.inputs:
                source = source.inputs[0].op
            if source.type in VARIABLE_OPS and (source.name in stats or source.name.endswith(
                    ("moving_mean", "moving_variance"))):
                reads = True
        if fused or reads:
            hits.append(op.name)
    if not (said or hits):
        return None
    where = f" {', '.join(sorted(hits)[:3])}{', …' if len(hits) > 3 else ''}" if hits else ""
    return (f"the graph uses TF2 control flow (If ops{where}) around its BN layers, which the tools "
            f"cannot read; rebuild it under tf.compat.v1.disable_v2_behavior() (or "
            f"tf.compat.v1.disable_control_flow_v2()) and save again")
