"""Pass ``fold_constants``: a stateless node whose data inputs are all constant, read by a node
that is not (or named in ``ctx.outputs``/``ctx.keep``), becomes a ``Const`` of its value,
computed by TensorFlow in a scratch graph, or read from the Const an Identity chain reads (same
name; its control inputs dropped: they came from constants, and are told to
``ctx.state.dropped_controls``). Targets: any stateless op except
those in ``NOT_FOLDABLE``. changed: the nodes folded."""

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.graph.graphdef import (const_value, consumers, is_control, make_const, node_name,
                                      nodes_by_name, port, prune, topological_order, with_nodes)
from tf1_repro.graph.ops import MERGE_OPS, PLACEHOLDER_OPS, SWITCH_OPS, VARIABLE_OPS
from tf1_repro.tools.inference.context import PassResult
from tf1_repro.tools.inference.passes.registry import register

# Never evaluated at conversion time, whatever their inputs.
NOT_FOLDABLE = SWITCH_OPS + MERGE_OPS + VARIABLE_OPS + PLACEHOLDER_OPS + (
    "Enter", "RefEnter", "Exit", "RefExit", "NextIteration", "RefNextIteration", "LoopCond",
    "Const", "NoOp", "ControlTrigger")
MAX_FOLDED_ELEMENTS = 1 << 22


def _is_stateful(op_type):
    from tensorflow.python.framework import op_def_registry  # pylint: disable=import-outside-toplevel
    op_def = op_def_registry.get(op_type)
    return op_def is None or op_def.is_stateful


def _may_be_dead(graph_def):
    """Nodes downstream of a Switch (through data or control inputs): only they can be dead."""
    by_name = nodes_by_name(graph_def)
    dead = set()
    for name in topological_order(graph_def):
        node = by_name[name]
        if node.op in SWITCH_OPS or any(node_name(i) in dead for i in node.input):
            dead.add(name)
    return dead


def _foldable(graph_def):
    """Names of nodes whose value is known now: Consts, and stateless ops (not in
    NOT_FOLDABLE) whose data inputs are all foldable. A control input counts only when it
    comes from a node downstream of a Switch (it may carry deadness); other control inputs
    only order side effects, and folding drops them (see ``fold_constants``)."""
    by_name = nodes_by_name(graph_def)
    may_be_dead = _may_be_dead(graph_def)
    foldable = set()
    for name in topological_order(graph_def):
        node = by_name[name]
        inputs = [node_name(i) for i in node.input
                  if not is_control(i) or node_name(i) in may_be_dead]
        if node.op == "Const":
            if all(i in foldable for i in inputs):
                foldable.add(name)
            continue
        if node.op in NOT_FOLDABLE or _is_stateful(node.op) or not node.input:
            continue
        if all(i in foldable for i in inputs):
            foldable.add(name)
    return foldable


def fold_constants(graph_def, keep=()):
    """Evaluate every foldable non-Const node that a non-foldable node (or ``keep``) reads,
    and replace it by a ``Const`` of its value (same name; control inputs dropped: all of
    them were constants). Only nodes whose users read output 0 are replaced.

    Returns (new GraphDef, names of the nodes folded, control inputs dropped by folding).
    """
    foldable = _foldable(graph_def)
    by_name = nodes_by_name(graph_def)
    users = consumers(graph_def)
    keep = {node_name(k) for k in keep}
    targets = []
    for name in foldable:
        node = by_name[name]
        if node.op == "Const":
            continue
        uses = users.get(name, [])
        needed = name in keep or any(u not in foldable for u, _ in uses)
        if needed and all(port(i) == 0 and not is_control(i) for _, i in uses):
            targets.append(name)
    if not targets:
        return graph_def, [], []
    values = _identity_values(by_name, targets)
    rest = [t for t in targets if t not in values]
    if rest:
        values.update(_evaluate(graph_def, rest))
    nodes, folded, dropped = [], [], []
    for node in graph_def.node:
        value = values.get(node.name)
        if value is not None and value.size <= MAX_FOLDED_ELEMENTS:
            nodes.append(make_const(node.name, value, value.dtype, node.device))
            dropped += [node_name(i) for i in node.input if is_control(i)]
            folded.append(node.name)
        else:
            nodes.append(node)
    return with_nodes(graph_def, nodes), folded, dropped


def _identity_values(by_name, names):
    """{name: value} of the nodes of ``names`` that are a chain of Identity nodes reading a
    numeric Const (a frozen variable's ``read``, a resolved Switch): the Const's value, as
    TensorFlow's Identity returns it, without running it (which would import a copy of every
    weight and run a session: 1 GB above the graph on a frozen ResNet-50, measured)."""
    values = {}
    for name in names:
        source = by_name[name]
        while source is not None and source.op == "Identity":
            data = [i for i in source.input if not is_control(i)]
            source = by_name.get(node_name(data[0])) if len(data) == 1 and port(data[0]) == 0 \
                else None
        if source is not None and source.op == "Const" and source is not by_name[name]:
            value = const_value(source)
            if value.dtype.kind in "biufc":
                values[name] = value
    return values


def _evaluate(graph_def, names):
    """{name: value of output 0} computed by TensorFlow in a scratch graph holding only what
    ``names`` read through data inputs (each node copied without its control inputs); ValueError
    naming a data input that is not a node (as ``prune``)."""
    needed = prune(graph_def, names, control=False)
    with tf.Graph().as_default() as graph:
        tf.import_graph_def(needed, name="")
        fetches = [graph.get_tensor_by_name(f"{n}:0") for n in names]
        with tf.Session(graph=graph) as sess:
            values = sess.run(fetches)
    return {n: np.asarray(v) for n, v in zip(names, values)}


@register("fold_constants", targets=())
def run(graph_def, ctx):
    """Fold constant subgraphs into Consts; changed: the nodes folded."""
    graph_def, folded, dropped = fold_constants(graph_def, keep=list(ctx.outputs) + list(ctx.keep))
    ctx.state.dropped_controls.extend(dropped)
    return PassResult(graph_def, folded)
