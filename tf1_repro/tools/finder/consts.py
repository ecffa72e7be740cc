"""Small constant subgraphs (epsilon, decay, keep_prob, a predicate) evaluated in NumPy: nothing is
run in TensorFlow.

The walk only goes up through ops it can compute (``PASS``, ``BINARY``, ``UNARY``, a resolved
``Merge``): any other op (a convolution, a read of a variable) answers None at once, without
looking at its inputs. Answers are memoised per graph context on (tensor, assumption), so every
tensor is evaluated at most once per assumption: the cost is linear in the size of the graph,
whatever the number of questions (an EMA update asks about the data path beside its decay). An
answer cut short by ``MAX_DEPTH`` is not memoised, so no answer depends on the order of the
questions."""

import numpy as np

from tf1_repro.tools.finder import modes

MAX_DEPTH = 32
PASS = ("Identity", "Snapshot", "StopGradient", "Cast", "Enter", "Switch", "RefSwitch")
BINARY = {"Sub": np.subtract, "Add": np.add, "AddV2": np.add, "Mul": np.multiply,
          "RealDiv": np.divide, "Div": np.divide, "Maximum": np.maximum,
          "Minimum": np.minimum, "Equal": np.equal, "NotEqual": np.not_equal,
          "LogicalAnd": np.logical_and, "LogicalOr": np.logical_or,
          "Greater": np.greater, "Less": np.less, "GreaterEqual": np.greater_equal}
UNARY = {"Neg": np.negative, "Reciprocal": np.reciprocal, "Sqrt": np.sqrt,
         "Rsqrt": lambda a: 1 / np.sqrt(a), "Square": np.square, "LogicalNot": np.logical_not}
_PLACEHOLDERS = ("PlaceholderWithDefault", "Placeholder")


def evaluate(ctx, tensor, assume=None):
    """NumPy value of ``tensor`` if it is built from Consts only (Merges resolved by ``assume``,
    ``{predicate tensor name: bool}``, else by taking their training branch); else None. The
    value is read-only (it is shared by every caller that asks)."""
    cache = ctx.__dict__.setdefault("const_cache", {})
    key = tuple(sorted((k, repr(v)) for k, v in assume.items())) if assume else ()
    return _evaluate(ctx, tensor, assume, cache.setdefault(key, {}), 0)[0]


def _evaluate(ctx, tensor, assume, memo, depth):
    """``(value or None, complete)``; ``complete`` is False when ``MAX_DEPTH`` cut the walk."""
    if tensor.name in memo:
        return memo[tensor.name], True
    op = tensor.op
    if depth > MAX_DEPTH:
        return None, False
    value, complete = None, True
    try:
        if op.type == "Const":
            from tensorflow.python.framework import tensor_util  # pylint: disable=import-outside-toplevel
            value = tensor_util.MakeNdarray(op.get_attr("value"))
        elif op.type in PASS:
            value, complete = _evaluate(ctx, op.inputs[0], assume, memo, depth + 1)
            if value is not None and op.type == "Cast":
                value = value.astype(op.outputs[0].dtype.as_numpy_dtype)
        elif op.type in _PLACEHOLDERS:
            if assume and op.name in assume:
                value = np.asarray(assume[op.name])
        elif op.type == "Merge":
            chosen = merge_branch(ctx, op, assume)
            if chosen is not None:
                value, complete = _evaluate(ctx, op.inputs[chosen], assume, memo, depth + 1)
        elif op.type in BINARY or op.type in UNARY:
            args = []
            for t in op.inputs:
                arg, done = _evaluate(ctx, t, assume, memo, depth + 1)
                complete = complete and done
                if arg is None:
                    break
                args.append(arg)
            if len(args) == len(op.inputs):
                value = BINARY[op.type](args[0], args[1]) if op.type in BINARY else \
                    UNARY[op.type](args[0])
    except Exception:  # pylint: disable=broad-except
        value = None
    if value is not None:
        value = np.asarray(value)
        value.setflags(write=False)
    if complete:
        memo[tensor.name] = value
    return value, complete


def merge_branch(ctx, merge, assume):
    """Index of the Merge input taken under ``assume`` (or in training when no assumption)."""
    for i, t in enumerate(merge.inputs):
        for pred, port in ctx.switch_path(t):
            value = evaluate(ctx, pred, assume) if assume else None
            if value is None:
                mode = modes.mode_of(ctx, pred)
                value = None
                if mode is not None and assume is None:
                    value = modes.pred_in_training(ctx, pred, mode)
            if value is not None and bool(value) == bool(port):
                return i
    return None
