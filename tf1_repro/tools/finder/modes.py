"""Mode inputs: what switches a layer between training and prediction. A cond predicate is traced to
a bool ``Placeholder``, a ``PlaceholderWithDefault`` or a bool ``Const`` (its *root*); the
``ModeInput`` of a root is made once per graph (``ctx.mode_cache``), so every layer and dropout
switched by one placeholder holds the same object."""

import numpy as np

from tf1_repro.tools.finder.model import ModeInput

# Ops a predicate passes through on its way from its root (Consts beside it are compared with).
PREDICATE_OPS = ("Identity", "LogicalNot", "Cast", "Switch", "Equal", "NotEqual", "Squeeze",
                 "Reshape", "Enter", "Greater", "GreaterEqual", "Less", "LessEqual")
MAX_DEPTH = 32


def mode_of(ctx, pred):
    """The ModeInput behind a cond predicate, or None when it is computed from other data."""
    root = pred_root(pred)
    if root is None:
        return None
    if root.name in ctx.mode_cache:
        return ctx.mode_cache[root.name]
    role = "learning_phase" if "learning_phase" in root.name else "training"
    default = None
    if root.type == "PlaceholderWithDefault":
        default = ctx.const_value(root.inputs[0])
    elif root.type == "Const":
        default = ctx.const_value(root.outputs[0])
    if default is not None:
        default = default.item() if np.ndim(default) == 0 else default.tolist()
    if isinstance(default, (bool, np.bool_)):
        default = bool(default)
    prediction = 0 if (role == "learning_phase" and not root.outputs[0].dtype.is_bool) else False
    mode = ModeInput(root.name, role, root.type, default, prediction)
    ctx.mode_cache[root.name] = mode
    return mode


def pred_root(tensor, depth=0):
    """The placeholder or bool Const a predicate is computed from, else None."""
    op = tensor.op
    if depth > MAX_DEPTH:
        return None
    if op.type in ("Placeholder", "PlaceholderWithDefault") or (
            op.type == "Const" and op.outputs[0].dtype.is_bool):
        return op
    if op.type in PREDICATE_OPS:
        roots = [pred_root(t, depth + 1) for t in op.inputs
                 if t.op.type != "Const" or op.type in ("Identity", "Cast", "Switch")]
        roots = [r for r in roots if r is not None]
        return roots[0] if len(roots) == 1 else (roots[0] if roots and op.type == "Switch" else None)
    return None


def pred_in_training(ctx, pred, mode):
    """The predicate's value when ``mode`` is fed training (True / learning phase 1)."""
    value = True if mode.op != "Const" else mode.default
    if mode.role == "learning_phase" and not isinstance(mode.prediction_value, bool):
        value = 1
    out = ctx.const_value(pred, {mode.name: value})
    return None if out is None else bool(out)


def pred_in_prediction(ctx, pred, mode):
    """The predicate's value when ``mode`` is fed its prediction value."""
    value = mode.default if mode.op == "Const" else mode.prediction_value
    out = ctx.const_value(pred, {mode.name: value})
    return None if out is None else bool(out)


def branch_taken_at_prediction(ctx, branches, mode):
    """Whether every ``(predicate, port)`` of a traced path is the branch prediction takes."""
    ok = True
    for p, port in branches:
        taken = pred_in_prediction(ctx, p, mode)
        if taken is None or bool(taken) != bool(port):
            ok = False
    return ok
