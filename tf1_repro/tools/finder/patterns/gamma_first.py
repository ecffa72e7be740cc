"""Gamma first (slim style): ``gamma * (x - mean) / sqrt(var + eps) + beta`` (or ``* rsqrt``): the
multiplier is applied to the centred tensor before the division. Root op chain:
``Add(var, eps) -> Rsqrt|Sqrt -> Mul|RealDiv(Mul(gamma, Sub(x, mean)), .) -> [Add beta]``."""

from tf1_repro.tools.finder.patterns import register_bn_pattern
from tf1_repro.tools.finder.patterns._root import (ROOT_OPS, affine_tail, divisions, make_norm,
                                                    match_root)

NAME = "gamma_first"


@register_bn_pattern(NAME, ROOT_OPS)
def match(ctx, op):
    """The ``Norm`` of a gamma-first root, else None."""
    root = match_root(ctx, op)
    if root is None:
        return None
    for u, scaled in divisions(ctx, root):
        if scaled.op.type != "Mul" or ctx.is_centred(scaled):
            continue
        a, b = scaled.op.inputs
        for gamma, centred in ((a, b), (b, a)):
            if ctx.is_centred(centred) and ctx.stat_like(gamma):
                if ctx.stat_like(centred.op.inputs[0]):
                    break
                y, _, offset, rescaled = affine_tail(ctx, u.outputs[0])
                return make_norm(ctx, root, NAME, centred.op.inputs[0], y, centred.op.inputs[1],
                                 gamma, offset, rescaled)
    return None
