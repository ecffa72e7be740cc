"""Shared by the dropout patterns: what a dropout match is, which tensors are data, how the kept
values are scaled, and which mode input switches the data's branch."""

import dataclasses

SELECT_OPS = ("SelectV2", "Select")


@dataclasses.dataclass(frozen=True, eq=False)
class DropoutMatch:
    """A matched dropout: ``pattern`` and the Dropout ``kind`` it gives, the random op ``rand``,
    the op that applies the mask (``apply_op``) and the data tensor it applies it to (``data``,
    possibly already scaled)."""

    pattern: str
    kind: str
    rand: object
    apply_op: object
    data: object


def is_data(t, depth=0):
    """A tensor with a batch dimension (not a scalar keep_prob, rate or scale)."""
    if t.shape.rank is not None:
        return t.shape.rank >= 2
    if depth > 8 or t.op.type in ("Const", "Placeholder", "PlaceholderWithDefault"):
        return False
    return any(is_data(i, depth + 1) for i in t.op.inputs)


def scaling(data):
    """``(scale_by, x)``: the inverted convention's scaling of the data (``("div", keep_prob)`` for
    ``x / keep_prob``, ``("mul", scale)`` for ``x * scale``) and the unscaled data; ``(None,
    data)`` when it is not scaled (vanilla)."""
    x = data
    if x.op.type in ("RealDiv", "Div") and is_data(x.op.inputs[0]) and not is_data(x.op.inputs[1]):
        return ("div", x.op.inputs[1]), x.op.inputs[0]
    if x.op.type == "Mul":
        a, b = x.op.inputs
        if is_data(a) and not is_data(b):
            return ("mul", b), a
        if is_data(b) and not is_data(a):
            return ("mul", a), b
    return None, x


def data_mode(ctx, data):
    """The ModeInput of the tf.cond around ``data`` (Keras's learning phase), else None."""
    for p, _ in ctx.switch_path(data):
        mode = ctx.mode_of(p)
        if mode:
            return mode
    return None


def selects_mask(op, mask_region):
    """``op`` is ``Select(mask, data, 0)`` with a mask built from the random draw."""
    return op.type in SELECT_OPS and op.inputs[0].op.name in mask_region


def multiplied_data(op, mask_region):
    """The data a ``Mul`` multiplies by the mask, else None."""
    if op.type != "Mul":
        return None
    other = [t for t in op.inputs if t.op.name not in mask_region]
    if other and is_data(other[0]) and any(t.op.name in mask_region for t in op.inputs):
        return other[0]
    return None


def is_stateless(rand):
    """A draw by a stateless random op (``StatelessRandomUniform*``, ...)."""
    return rand.type.startswith("Stateless")


def is_tf1_floor(op, data):
    """TF 1.x ``tf.nn.dropout``'s ``Mul``: named ``*dropout*``, scaled data, a ``Floor`` mask."""
    return "dropout" in op.name and scaling(data)[0] is not None and \
        any(t.op.type == "Floor" for t in op.inputs)
