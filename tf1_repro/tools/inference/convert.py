"""``convert``: a TF1 training graph made into a prediction graph by the serving passes, run in
the declared order of ``STAGES`` (see ``pipeline``), every node name kept.

1. prepare: ``prune`` to the outputs, ``bind_placeholders`` (each mode placeholder the finder
   found becomes a Const of its prediction value: training False, keep_prob 1.0, rate 0, learning
   phase 0; ``feeds`` override), ``dropouts_to_identity`` (each dropout that is the identity at
   that value).
2. simplify: ``prune``, then ``fold_constants``, ``resolve_switches`` and ``prune`` until nothing
   changes (the training branch of each ``tf.cond``, its EMA/assign ops with it, disappears).
3. freeze: ``defaults_to_identity`` (PlaceholderWithDefault that is not an input), ``prune``,
   ``strip_control_inputs`` (once no Switch is left), ``prune``, ``freeze_variables``, and
   simplify again.
   fix (``--fix-training-mode`` only): ``bn_training_to_inference`` (each BN still in training
   mode normalises with its moving statistics), ``remove_dropout`` (each dropout still dropping
   becomes the identity), and simplify again.
4. clean: ``remove_identities`` (BN outputs kept), ``prune``.
5. serve: ``fold_batch_norms``, ``remove_identities``, ``prune``: once with ``fold`` (the served
   graph) and once without (every BN as x*s+o, timed as ``frozen_unfolded``).

Rewrite note: the order used to be hard-coded in this function (prune called 7 times by hand);
it is now data, and each pass run is recorded (``convert(...)["passes"]``).
"""

import dataclasses

from tf1_repro.graph.graphdef import node_name, nodes_by_name, op_counts, prune
from tf1_repro.graph.ops import PLACEHOLDER_OPS
from tf1_repro.tools.inference import pipeline, plan
from tf1_repro.tools.inference.context import PassContext, PassState
from tf1_repro.tools.inference.errors import InferenceError
from tf1_repro.tools.inference.pipeline import Repeat

SIMPLIFY = ("prune", Repeat("fold_constants", "resolve_switches", "prune"))
STAGES = {
    "prepare": ("prune", "bind_placeholders", "dropouts_to_identity"),
    "simplify": SIMPLIFY,
    "freeze": ("defaults_to_identity", "prune", "strip_control_inputs", "prune",
               "freeze_variables") + SIMPLIFY,
    "fix": ("bn_training_to_inference", "remove_dropout") + SIMPLIFY,
    "clean": ("remove_identities", "prune"),
    "serve": ("fold_batch_norms", "remove_identities", "prune"),
}


def simplify(graph_def, outputs, keep=()):
    """The ``simplify`` stage: ``prune``, then ``fold_constants``, ``resolve_switches`` and
    ``prune`` until nothing changes. Returns (GraphDef, {"folded": n, "switches_resolved": n,
    "control_inputs_dropped": [node names]})."""
    ctx = PassContext(outputs=tuple(outputs), keep=tuple(keep))
    graph_def, records = pipeline.run(SIMPLIFY, graph_def, ctx)
    return graph_def, {
        "folded": sum(len(r.changed) for r in records if r.name == "fold_constants"),
        "switches_resolved": sum(len(r.changed) for r in records if r.name == "resolve_switches"),
        "control_inputs_dropped": list(ctx.state.dropped_controls)}


def _bound_feeds(graph, outputs, findings, inputs, feeds):
    """(outputs, inputs, {placeholder: prediction value}, {node name: NodeDef} the outputs need),
    checked against the graph.

    Only the placeholders the outputs depend on are bound: a mode input of a call the outputs
    do not use (a Keras model's ``keras_learning_phase`` when the served call is switched by the
    user's ``training``) is pruned away with that call, so binding it would name a node the
    pruned graph does not hold. A ``--feed`` must still name a placeholder of the graph."""
    original = graph.as_graph_def()
    outputs = plan.check_names(graph, outputs, "--outputs", original)
    bound = {node_name(k): v for k, v in findings.prediction_feeds().items()}
    bound.update({node_name(k): v for k, v in (feeds or {}).items()})
    if inputs:
        inputs = plan.check_names(graph, inputs, "--inputs", original)
        for i in inputs:
            bound.pop(node_name(i), None)
    needed = prune(original, outputs)
    plan.refuse_unbound(findings, bound, inputs or [], needed)
    by_name = nodes_by_name(original)
    for name in bound:
        if name not in by_name or by_name[name].op not in PLACEHOLDER_OPS:
            got = by_name[name].op if name in by_name else "no such node"
            raise InferenceError(f"--feed: {name} must be a placeholder of the graph, got {got}")
    present = nodes_by_name(needed)
    return outputs, inputs, {name: v for name, v in bound.items() if name in present}, present


def convert(graph, sess, outputs, findings, inputs=None, feeds=None, fold=True, fixes=None):
    """The prediction graph of ``graph`` (variables in ``sess``), frozen, without training
    ops, BN folded (``fold``) or as multiply-adds.

    ``findings``: ``finder.find`` on the graph; ``feeds`` ({name: value}) override its
    prediction feeds. Returns a dict: ``folded`` and ``unfolded`` GraphDefs (the latter with
    every BN as x*s+o), ``inputs``, ``outputs``, ``feeds`` (bound), ``bn_layers``
    ([{name, kind, folded, reason}]), ``dropouts_removed``, ``dropouts_kept``,
    ``update_ops_dropped``, ``ops_before``, ``ops_after``, ``ops_unfolded``, ``training_ops_left``,
    ``passes`` (one ``PassRecord.as_dict()`` per pass run on the way to ``folded``), ``fixed``
    and ``not_fixed`` (the fix stage's entries, layer by layer), ``repaired`` (the frozen graph
    after the fix stage, every BN still as the graph computes it; None without ``fixes``).

    ``fixes``: ``(BNFix tuple, DropoutFix tuple)`` from ``training_mode.plan_fixes`` runs the
    fix stage (``--fix-training-mode``); None skips it.
    """
    outputs, inputs, bound, needed = _bound_feeds(graph, outputs, findings, inputs, feeds)
    # only the dropouts the outputs depend on are served (not another tower's)
    served = [d for d in findings.dropouts if node_name(d.output) in needed]
    remove, kept_dropouts = plan.dropout_plan(served, bound)
    bn_outputs = tuple(node_name(b.output) for b in findings.bn_layers)
    ctx = PassContext(outputs=tuple(outputs), feeds=bound, keep=bn_outputs, session=sess,
                      dropouts=tuple((d.output, d.input) for d in remove),
                      bn_layers=tuple(findings.bn_layers), fold=fold)
    records = []
    before, _ = pipeline.run(STAGES["prepare"][:1], graph.as_graph_def(), ctx, records)
    bound_graph, _ = pipeline.run(STAGES["prepare"][1:], before, ctx, records)
    graph_def, _ = pipeline.run(STAGES["simplify"], bound_graph, ctx, records)
    inputs = plan.inputs_after_binding(graph_def, inputs)
    ctx = dataclasses.replace(ctx, inputs=tuple(inputs))
    graph_def, _ = pipeline.run(STAGES["freeze"], graph_def, ctx, records)
    if fixes is not None:
        ctx = dataclasses.replace(ctx, bn_fixes=tuple(fixes[0]), dropout_fixes=tuple(fixes[1]))
        graph_def, _ = pipeline.run(STAGES["fix"], graph_def, ctx, records)
    repaired = graph_def if fixes is not None else None
    dropped = plan.write_ops_of(bound_graph, ctx.state.dropped_controls, graph_def)
    protected = tuple(node_name(i) for i in inputs) + tuple(node_name(o) for o in outputs)
    graph_def, _ = pipeline.run(STAGES["clean"], graph_def,
                                dataclasses.replace(ctx, protected=protected + bn_outputs), records)
    unfolded, _ = pipeline.run(STAGES["serve"], graph_def, dataclasses.replace(
        ctx, protected=protected, fold=False, state=PassState()))
    serve = dataclasses.replace(ctx, protected=protected)
    folded, _ = pipeline.run(STAGES["serve"], graph_def, serve, records)
    gone = plan.dropouts_gone(served, remove, kept_dropouts, folded)
    vanilla = {k["name"] for k in kept_dropouts if k.get("vanilla")}
    return {"folded": folded, "unfolded": unfolded, "inputs": inputs, "outputs": outputs,
            "feeds": {f"{k}:0": plan.jsonable(v) for k, v in bound.items()},
            "bn_layers": serve.state.bn_report,
            "dropouts_removed": [g for g in gone if g not in vanilla],
            "dropouts_scaled": [{"name": k["name"], "keep_prob": plan.jsonable(k["keep_prob"])}
                                for k in kept_dropouts if k["name"] in vanilla and k["name"] in gone],
            "dropouts_kept": [k for k in kept_dropouts if k["name"] not in gone],
            "update_ops_dropped": dropped, "ops_before": op_counts(before),
            "ops_after": op_counts(folded), "ops_unfolded": op_counts(unfolded),
            "training_ops_left": plan.training_only_ops(folded),
            "passes": [r.as_dict() for r in records],
            "fixed": list(ctx.state.fixed), "not_fixed": list(ctx.state.not_fixed),
            "repaired": repaired}
