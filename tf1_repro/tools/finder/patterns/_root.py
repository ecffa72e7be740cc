"""Shared by the BN patterns written with ops: the root ``rsqrt(var + eps)`` / ``sqrt(var + eps)``
(the ``Pow`` forms included), and the per-channel affine tail after the normalised tensor.

Root forms (``ROOT_FORMS``, op type or ``(op type, exponent)`` -> what it computes):
``Rsqrt`` and ``pow(., -0.5)`` are ``Rsqrt``; ``Sqrt`` and ``pow(., 0.5)`` are ``Sqrt``. The root's
input is ``Add``/``AddV2`` of a uniform Const epsilon in (0, 1) and the variance. For an
``Rsqrt`` whose one consumer is ``* gamma`` (gamma per-channel, not a centred tensor), the
scaled inverse ``rsqrt(var + eps) * gamma`` is what the rest multiplies by.
"""

import dataclasses

import numpy as np

from tf1_repro.tools.finder.norm import Norm

ROOT_OPS = ("Rsqrt", "Sqrt", "Pow")
ROOT_FORMS = {"Rsqrt": "Rsqrt", "Sqrt": "Sqrt", ("Pow", -0.5): "Rsqrt", ("Pow", 0.5): "Sqrt"}
ADD_OPS = ("Add", "AddV2")


@dataclasses.dataclass(frozen=True, eq=False)
class Root:
    """A matched root: ``op``, ``kind`` (``Rsqrt`` or ``Sqrt``), ``var`` (the variance tensor),
    ``eps``, ``inv`` (the tensor the rest multiplies or divides by: the root's output or
    ``rsqrt * gamma``) and ``gamma`` (the multiplier folded into ``inv``, else None)."""

    op: object
    kind: str
    var: object
    eps: float
    inv: object
    gamma: object = None


def root_kind(ctx, op):
    """``Rsqrt`` for rsqrt and ``pow(., -0.5)``, ``Sqrt`` for sqrt and ``pow(., 0.5)``, else None."""
    if op.type != "Pow":
        return ROOT_FORMS.get(op.type)
    exponent = ctx.const_value(op.inputs[1])
    if exponent is None or np.size(exponent) != 1:
        return None
    return ROOT_FORMS.get(("Pow", float(np.ravel(exponent)[0])))


def match_root(ctx, op):
    """The ``Root`` at ``op``, else None."""
    if op.type not in ROOT_OPS or op.inputs[0].op.type not in ADD_OPS:
        return None
    kind = root_kind(ctx, op)
    if kind is None:
        return None
    add = op.inputs[0].op
    eps, var = None, None
    for i in (0, 1):
        value = ctx.const_value(add.inputs[i])
        if value is not None and np.size(value) >= 1 and np.all(value == np.ravel(value)[0]):
            eps, var = float(np.ravel(value)[0]), add.inputs[1 - i]
    if var is None or not 0 < eps < 1:
        return None
    inv, gamma = op.outputs[0], None
    cons = ctx.consumers.get(op.name, [])
    # tf.nn.batch_normalization: inv = rsqrt * gamma, then x*inv and mean*inv
    if kind == "Rsqrt" and len(cons) == 1 and cons[0].type == "Mul":
        other = ctx.other(cons[0], inv)
        if not ctx.is_centred(other) and ctx.stat_like(other):
            gamma, inv = other, cons[0].outputs[0]
    return Root(op, kind, var, eps, inv, gamma)


def affine_tail(ctx, t):
    """After the normalised tensor, a chain of per-channel ``* p`` / ``+ p`` ops: ``(output,
    gamma, beta, rescaled)``. Gamma is the first multiplier read from a variable or Const, beta
    the first such addend; the others (batch renormalisation's ``* r + d`` between them) are
    counted in ``rescaled``."""
    gamma = offset = None
    rescaled = 0
    while True:
        cons = ctx.consumers.get(t.op.name, [])
        if len(cons) != 1 or cons[0].type not in ("Mul", "Add", "AddV2", "BiasAdd"):
            return t, gamma, offset, rescaled
        other = ctx.other(cons[0], t)
        if other.name == t.name or not ctx.stat_like(other):
            return t, gamma, offset, rescaled
        from_vars = all(src.kind in ("variable", "const") for src in ctx.trace(other))
        if cons[0].type == "Mul" and gamma is None and from_vars:
            gamma = other
        elif cons[0].type != "Mul" and offset is None and from_vars:
            offset = other
        else:
            rescaled += 1
        t = cons[0].outputs[0]


def make_norm(ctx, root, pattern, x, y, mean, gamma, offset, rescaled=0):
    """The ``Norm`` of a pattern built on ``root`` (kind ``batch_normalization``)."""
    mean_src, var_src = tuple(ctx.trace(mean)), tuple(ctx.trace(root.var))
    return Norm(op=root.op, kind="batch_normalization", x=x, y=y, eps=root.eps,
                scale=tuple(ctx.trace(gamma)) if gamma is not None else (),
                offset=tuple(ctx.trace(offset)) if offset is not None else (),
                mean=mean_src, var=var_src,
                batch=any(s.kind == "batch" for s in mean_src + var_src), pattern=pattern,
                rescaled=rescaled,
                mean_batch=tuple(s for s in mean_src if s.kind == "batch"),
                var_batch=tuple(s for s in var_src if s.kind == "batch"))


def divisions(ctx, root):
    """The consumers of ``root.inv`` that apply it to a centred tensor: ``(op, other operand)``
    for ``other * rsqrt`` or ``other / sqrt``."""
    out = []
    for u in ctx.consumers.get(root.inv.op.name, []):
        if root.kind == "Rsqrt" and u.type == "Mul":
            out.append((u, ctx.other(u, root.inv)))
        elif root.kind == "Sqrt" and u.type in ("RealDiv", "Div") and u.inputs[1].name == root.inv.name:
            out.append((u, u.inputs[0]))
    return out
