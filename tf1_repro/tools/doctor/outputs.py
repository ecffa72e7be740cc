"""Which tensors the dynamic checks run: the prediction outputs, never an update's result.

A SavedModel's signature outputs; else, from the graph's structure, the tensors the network
hands on (what the loss takes from it): those that depend on the inputs but not on the labels,
outside ``gradients/``; with BN layers shared by several calls, those downstream of the calls
that serve prediction (``tools.calls``). A tensor inside a v1 tf.cond branch, one with a write (or a call of a
function that writes) among its data ancestors, or a read that waits on a write is an update's
result, not an output; when another output does not, one whose run performs a write outside every
cond branch is not chosen either (DCGAN's training tower).
"""

from tf1_repro.graph import ops as graph_ops
from tf1_repro.graph import walk
from tf1_repro.tools import calls
from tf1_repro.tools.doctor.artefact import GRADIENTS

_NOT_OUTPUTS = frozenset(graph_ops.WRITE_OPS) | frozenset(graph_ops.VARIABLE_OPS) | {
    "NoOp", "Assert", "Print", "PrintV2", "Const", "Placeholder", "PlaceholderWithDefault",
    "Switch", "RefSwitch", "ScalarSummary", "HistogramSummary", "MergeSummary", "ImageSummary"}


def prediction_outputs(doc, layers, dropouts, mode_names, notes=None):  # pylint: disable=too-many-locals
    """The tensors to run: signature outputs, frozen sinks, or what the loss takes from the net.

    When BN layers are shared by several calls (towers), the candidates downstream of a call
    that does not serve prediction (a training tower's ``is_training=True`` call, an unused
    call) are left out while others remain (``tools.calls.prefer_prediction_outputs``); a note
    (appended to ``notes``) says so when that changes the choice.

    One walk over the forward graph, kept whole: splitting it would pass its consumer maps and
    regions between functions for no reader's gain."""
    signature = doc.signature_outputs()
    if signature:
        return signature
    graph = doc.graph
    ops = [op for op in graph.get_operations() if op.name not in doc.training_only]
    consumers = {}  # forward consumers only: backprop reads every forward tensor
    for op in ops:
        for t in op.inputs:
            consumers.setdefault(t.op.name, []).append(op)
        for c in op.control_inputs:
            consumers.setdefault(c.name, []).append(op)
    placeholders = [op for op in ops if op.type == "Placeholder" and op.name not in mode_names]
    starts = [t for layer in layers  # every call of a layer shared by several towers
              for t in [layer.input] + [site[0] for site in layer.call_sites or []] if t] + \
        [d.output for d in dropouts if d.output]
    feature_ops = set()
    for t in starts:
        feature_ops |= ancestor_names(graph.get_tensor_by_name(t).op)
    inputs = [p for p in placeholders if p.name in feature_ops] or \
        [p for p in placeholders if p.outputs[0].dtype.is_floating]
    others = [p for p in placeholders if p not in inputs]
    tainted = _descendant_names(others, consumers)
    region = _descendant_names(inputs, consumers) - tainted
    region = {n for n in region if not GRADIENTS.search(n + "/") and n not in doc.training_only}
    data_consumers = {}
    for op in ops:
        for t in op.inputs:
            data_consumers.setdefault(t.op.name, []).append(op)
    computed = _descendant_names(inputs, data_consumers)  # data, not control, descendants
    writers = writing_functions(doc)
    frontier, sinks = [], []
    for name in sorted(region):
        op = graph.get_operation_by_name(name)
        if op.type in _NOT_OUTPUTS or not op.outputs or op.outputs[0].dtype.is_bool or \
                op.outputs[0].dtype.name in ("resource", "string", "variant"):
            continue
        if name not in computed:
            continue
        data_below = [c for c in consumers.get(name, []) if any(t.op is op for t in c.inputs)]
        leaves = any(c.name not in region for c in data_below)
        if not leaves and data_below:
            continue
        if in_cond_branch(op) or _update_result(op, writers, merge=not leaves):
            continue  # an update's result (never a frontier BN Merge with both branches' outputs)
        (frontier if leaves else sinks).append(op.outputs[0].name)
    chosen = frontier or sinks
    choice = calls.prefer_prediction_outputs(graph, layers, frontier + sinks)
    if choice.note:
        served = [n for n in frontier if n in choice.outputs] or \
            [n for n in sinks if n in choice.outputs]
        if served != chosen:
            chosen = served
            if notes is not None:
                notes.append(choice.note)
    clean = [n for n in chosen if not _runs_writes(graph.get_tensor_by_name(n).op, writers)]
    return clean or chosen  # when every output writes, running them shows updates-on-inference


def writing_functions(doc):
    """Names of the graph library's functions holding a write op (TF2 cond/while branches that
    update a moving statistic), directly or through a function they call."""
    if doc.graph_def is None:
        return set()
    library = {f.signature.name: f for f in doc.graph_def.library.function}
    calls = {name: {a.func.name for node in f.node_def for a in node.attr.values() if a.func.name}
             for name, f in library.items()}
    writes = {name for name, f in library.items()
              if any(node.op in graph_ops.WRITE_OPS for node in f.node_def)}
    grown = True
    while grown:
        more = {name for name, called in calls.items() if called & writes} - writes
        writes |= more
        grown = bool(more)
    return writes


def _calls_writer(op, writers):
    """An op (If, While, PartitionedCall) whose function attributes name a function that writes."""
    if not writers:
        return False
    for attr in op.node_def.attr.values():
        if attr.func.name in writers:
            return True
    return False


def _runs_writes(op, writers):
    """Whether fetching ``op`` runs a write unconditionally: a write (or an op calling a
    function that writes) among its data and control ancestors outside every tf.cond branch
    (DCGAN's ``tf.identity`` under ``control_dependencies([ema.apply(...)])``)."""
    graph = op.graph
    for name in ancestor_names(op):
        a = graph.get_operation_by_name(name)
        if (a.type in graph_ops.WRITE_OPS or _calls_writer(a, writers)) and not in_cond_branch(a):
            return True
    return False


def in_cond_branch(op):
    """Inside a v1 tf.cond branch: fetching it fails when the branch is not taken.

    The control-flow context is lost when a GraphDef is imported, so the structure is read: a
    Switch among the op's data and control ancestors reached without passing a Merge (the
    cond's join) puts the op in a branch."""
    if op._control_flow_context is not None:  # pylint: disable=protected-access
        return True
    seen, stack = set(), [op]
    while stack:
        o = stack.pop()
        if o.name in seen:
            continue
        seen.add(o.name)
        if o.type in graph_ops.SWITCH_OPS:
            return True
        if o.type in graph_ops.MERGE_OPS or o.type in graph_ops.VARIABLE_OPS:
            continue
        stack.extend(t.op for t in o.inputs)
        stack.extend(o.control_inputs)
    return False


def _update_result(op, writers=frozenset(), merge=True):
    """An update's result, not a prediction output: a write (an assign, or an If/call whose
    function writes) among its data ancestors, such as the Merge or Identity of tf.layers' and
    Keras' update conds, or a read that waits on a write (``assign_moving_average``'s
    ``ReadVariableOp_1`` after its ``AssignSubVariableOp``)."""
    if any(c.type in graph_ops.WRITE_OPS for c in op.control_inputs):
        return True
    if op.type == "Merge":
        if not merge:
            return False
        return walk.any_ancestor([op], lambda o: o.type in graph_ops.WRITE_OPS)
    return _writes_upstream(op, writers)


def _writes_upstream(op, writers=frozenset()):
    """Whether a write (an assign, or an op calling a function that writes) is among the op's
    data ancestors: an update's result is not a prediction output."""
    return walk.any_ancestor(
        [op], lambda o: o.type in graph_ops.WRITE_OPS or _calls_writer(o, writers), control=False)


def ancestor_names(op):
    """Names of every op ``op`` depends on, through data and control inputs."""
    return {o.name for o in walk.ancestors([op])}


def _descendant_names(ops, consumers):
    seen, stack = set(), list(ops)
    while stack:
        o = stack.pop()
        if o.name in seen:
            continue
        seen.add(o.name)
        stack.extend(consumers.get(o.name, []))
    return seen
