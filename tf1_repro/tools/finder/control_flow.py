"""TF2 control flow notes: normalisation ops inside ``If`` branch functions are not analysed (the
note names the If ops), and layers whose updates run inside them have no decay read."""

from tf1_repro.graph.ops import FUSED_BN_OPS, GLOBAL_BN_OP, IF_OPS


def hidden_layer_notes(ctx, layers):
    """A note per If op (not itself a layer's op) whose branch functions hold a BN op."""
    functions = ctx.functions
    if not functions:
        return []
    seen = {n for layer in layers for n in layer.bn_ops}
    notes = []
    for op in ctx.ops:
        if op.type not in IF_OPS:
            continue
        kinds = set()
        for attr in ("then_branch", "else_branch"):
            fdef = functions.get(op.get_attr(attr).name)
            kinds |= {n.op for n in (fdef.node_def if fdef else [])
                      if n.op in FUSED_BN_OPS + (GLOBAL_BN_OP,)}
        if kinds and op.name not in seen:
            notes.append(
                f"TF2 control flow: If op {op.name} holds {', '.join(sorted(kinds))} in its "
                f"branch functions; BN layers inside TF2 control flow are not analysed (build "
                f"the graph under tf.compat.v1.disable_v2_behavior(), or call "
                f"tf.compat.v1.disable_control_flow_v2(), and save it again)")
    return notes


def layer_update_notes(layers):
    """A note per layer whose updates run inside If branch functions."""
    return [f"TF2 control flow: BN layer {layer.name}'s updates run inside If branch functions; "
            f"its decay is not read"
            for layer in layers if any(note.startswith("TF2 control flow") for note in layer.notes)]
