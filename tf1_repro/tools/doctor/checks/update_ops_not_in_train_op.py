"""``update-ops-not-in-train-op`` (error): an update of a moving statistic does not run with the
train op."""

import re

from tf1_repro.tools import calls
from tf1_repro.tools.doctor.base import ERROR, UPDATE_OPS_FIX, Check, register


@register
class UpdateOpsNotInTrainOp(Check):
    """Rule: a train op exists (the ``train_op`` collection, or else the sinks of the ops that
    apply gradients) and an update of a moving statistic (a writer the finder found, or a member
    of ``UPDATE_OPS`` no layer's finding covers) is not among its data or control ancestors. An
    assign of a Const (a one-off ``mv.assign([...])`` saved in the graph) is not a BN update.
    A layer shared by several calls is judged call by call: only the updates of the calls the
    train op runs must run with it (``tools.calls.trained_update_ops``); an unused call's (a
    Keras model's call on its own ``Input``) never run and need not."""

    id = "update-ops-not-in-train-op"
    severity = ERROR
    fix = UPDATE_OPS_FIX

    def graph(self, ctx):
        doc = ctx.doc
        trains = train_ops(doc)
        if not trains:
            return
        ran = doc.ancestors(trains)
        for layer in ctx.layers:
            judged = calls.trained_update_ops(layer)
            missing = sorted(op for op in (layer.update_ops if judged is None else judged)
                             if op not in ran and not constant_assign(doc, op))
            if missing:
                yield self.finding(layer.name, f"{len(missing)} update op(s) of its moving "
                                   f"statistics do not run with the train op {trains[0]} "
                                   f"(e.g. {missing[0]})")
        known = set().union(*(layer.update_ops for layer in ctx.layers)) if ctx.layers else set()
        stray = [m for m in doc.collection_names("update_ops") if m not in ran and m in doc.nodes
                 and not known & doc.ancestors([m]) and not constant_assign(doc, m)]
        if stray:
            yield self.finding(None, f"{len(stray)} UPDATE_OPS member(s) do not run with the train "
                               f"op {trains[0]} (e.g. {sorted(stray)[0]})")


def train_ops(doc):
    """Names of the train ops: the train_op collection, else the sinks below gradient applies."""
    named = [n for n in doc.collection_names("train_op") if n in doc.nodes]
    if named:
        return named
    applies = [n for n, node in doc.nodes.items()
               if re.fullmatch(r"(Resource)?(Sparse)?Apply\w+", node.op)]
    if not applies:
        return []
    consumers = {}
    for name, ins in doc.inputs_of().items():
        for i in ins:
            consumers.setdefault(i, []).append(name)
    seen, stack, sinks = set(), list(applies), []
    while stack:
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        below = consumers.get(n, [])
        if not below:
            sinks.append(n)
        stack.extend(below)
    return sinks


def constant_assign(doc, name):
    """An assign whose value is a Const (through Identity/Cast/Fill): a one-off assignment saved
    in the graph (``mv.assign([1., inf, 2., 1.])`` run once by hand), not a BN update, which
    computes its value from the batch. (An AssignAdd of a Const still counts: it moves every
    step.)"""
    node = doc.nodes.get(name)
    if node is None or node.op not in ("Assign", "AssignVariableOp") or len(node.input) < 2:
        return False
    return doc.static_value(node.input[1]) is not None
