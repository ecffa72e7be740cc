"""Small constant subgraphs (epsilon, decay, keep_prob, a predicate) evaluated in NumPy: nothing is
run in TensorFlow."""

import numpy as np

from tf1_repro.tools.finder import modes

MAX_DEPTH = 32
BINARY = {"Sub": np.subtract, "Add": np.add, "AddV2": np.add, "Mul": np.multiply,
          "RealDiv": np.divide, "Div": np.divide, "Maximum": np.maximum,
          "Minimum": np.minimum, "Equal": np.equal, "NotEqual": np.not_equal,
          "LogicalAnd": np.logical_and, "LogicalOr": np.logical_or,
          "Greater": np.greater, "Less": np.less, "GreaterEqual": np.greater_equal}
UNARY = {"Neg": np.negative, "Reciprocal": np.reciprocal, "Sqrt": np.sqrt,
         "Rsqrt": lambda a: 1 / np.sqrt(a), "Square": np.square, "LogicalNot": np.logical_not}


def evaluate(ctx, tensor, assume=None, depth=0):
    """NumPy value of ``tensor`` if it is built from Consts only (Merges resolved by ``assume``,
    ``{predicate tensor name: bool}``, else by taking their training branch); else None."""
    op = tensor.op
    if depth > MAX_DEPTH:
        return None
    try:
        if op.type == "Const":
            from tensorflow.python.framework import tensor_util  # pylint: disable=import-outside-toplevel
            return tensor_util.MakeNdarray(op.get_attr("value"))
        if op.type in ("Identity", "Snapshot", "StopGradient", "Cast", "Enter") or \
                (op.type in ("Switch", "RefSwitch")):
            v = evaluate(ctx, op.inputs[0], assume, depth + 1)
            if v is not None and op.type == "Cast":
                v = v.astype(op.outputs[0].dtype.as_numpy_dtype)
            return v
        if op.type in ("PlaceholderWithDefault", "Placeholder") and assume and op.name in assume:
            return np.asarray(assume[op.name])
        if op.type == "Merge":
            chosen = merge_branch(ctx, op, assume)
            if chosen is not None:
                return evaluate(ctx, op.inputs[chosen], assume, depth + 1)
            return None
        args = [evaluate(ctx, t, assume, depth + 1) for t in op.inputs]
        if any(a is None for a in args):
            return None
        if op.type in BINARY:
            return BINARY[op.type](args[0], args[1])
        if op.type in UNARY:
            return UNARY[op.type](args[0])
    except Exception:  # pylint: disable=broad-except
        return None
    return None


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
