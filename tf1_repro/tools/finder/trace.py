"""Where a statistic or parameter comes from: a tensor traced back through the ops that only move
it (Identity, Switch/Merge, reads of variables, Squeeze/Reshape/ExpandDims, Enter, Cast, TF2 If
branches that return an input) to its sources, branch by branch of any ``tf.cond``."""

import dataclasses

from tf1_repro.graph.ops import FUSED_BN_OPS, IF_OPS, MERGE_OPS, SWITCH_OPS, VARIABLE_OPS

# Ops that pass a statistic on unchanged (for finding where it comes from).
TRANSPARENT = ("Identity", "Snapshot", "StopGradient", "Squeeze", "Reshape", "ExpandDims",
               "Enter", "RefEnter", "Cast", "PreventGradient", "CheckNumerics", "IdentityN")
# Ops a batch's data arrives through (a statistic computed from one is the batch's).
DATA_SOURCES = ("Placeholder", "PlaceholderWithDefault", "IteratorGetNext", "QueueDequeueV2",
                "QueueDequeueManyV2")
MAX_DEPTH = 64


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
    """Where a traced tensor comes from: ``kind`` is ``variable``, ``const``, ``batch`` (computed
    from the data) or ``tensor`` (anything else); ``op``/``output`` the source tensor;
    ``branches`` the ``(predicate tensor, port)`` of each tf.cond Switch passed on the way."""

    kind: str
    op: object
    output: int
    branches: tuple = ()


def trace(ctx, tensor, branches=(), depth=0):
    """Sources of ``tensor``: a list of ``Source`` with the (predicate, port) path taken."""
    op = tensor.op
    if depth > MAX_DEPTH:
        return [Source("tensor", op, tensor.value_index, branches)]
    if op.type in VARIABLE_OPS:
        return [Source("variable", op, tensor.value_index, branches)]
    if op.type == "Const":
        return [Source("const", op, tensor.value_index, branches)]
    if op.type in ("ReadVariableOp",) or (op.type in TRANSPARENT and op.inputs):
        if op.type == "IdentityN":
            return trace(ctx, op.inputs[tensor.value_index], branches, depth + 1)
        return trace(ctx, op.inputs[0], branches, depth + 1)
    if op.type in SWITCH_OPS:
        pred = op.inputs[1]
        return trace(ctx, op.inputs[0], branches + ((pred, tensor.value_index),), depth + 1)
    if op.type in IF_OPS:
        return _trace_if(ctx, tensor, branches, depth)
    if op.type in MERGE_OPS:
        out = []
        for t in op.inputs:
            out += trace(ctx, t, branches, depth + 1)
        return out
    if op.type in FUSED_BN_OPS and tensor.value_index in (1, 2):
        # batch_mean / batch_variance: the batch's in training, the inputs' otherwise
        if op.get_attr("is_training"):
            return [Source("batch", op, tensor.value_index, branches)]
        return trace(ctx, op.inputs[2 + tensor.value_index], branches, depth + 1)
    if op.type in ("Placeholder", "PlaceholderWithDefault"):
        return [Source("tensor", op, tensor.value_index, branches)]
    return [Source("batch" if computes_from_data(ctx, op) else "tensor", op, tensor.value_index,
                   branches)]


def _trace_if(ctx, tensor, branches, depth):
    """TF2 control flow: each branch function returns one of the If's inputs (through Identity /
    ReadVariableOp) or computes something the finder does not read."""
    op = tensor.op
    pred, out = op.inputs[0], []
    for port, attr in ((1, "then_branch"), (0, "else_branch")):
        arg = ctx.function_returns_arg(op.get_attr(attr).name, tensor.value_index)
        if arg is None:
            out.append(Source("tensor", op, tensor.value_index, branches + ((pred, port),)))
        else:
            out += trace(ctx, op.inputs[1 + arg], branches + ((pred, port),), depth + 1)
    return out


def computes_from_data(ctx, op):
    """A statistic computed here from a floating placeholder/data tensor (not from variables
    alone)."""
    for name in ctx.ancestors(op):
        a = ctx.op(name)
        if a.type in DATA_SOURCES and a.outputs and a.outputs[0].dtype.base_dtype.is_floating:
            return True
    return False


def reads(ctx, tensor, stat):
    """Whether ``tensor`` traces back to the variable named ``stat``."""
    return any(s.op.name == stat for s in ctx.trace(tensor))

