"""Hand-written batch norm: ``(x - mean) * rsqrt(var + eps)`` or ``(x - mean) / sqrt(var + eps)``
(``pow`` forms included), then a per-channel affine tail ``* gamma + beta`` (either may be
missing; batch renormalisation's ``* r + d`` may sit between). Root op chain:
``Add(var, eps) -> Rsqrt|Sqrt -> Mul|RealDiv(Sub(x, mean), .) -> [Mul gamma] -> [Add beta]``.
``x`` must not itself be a per-channel parameter."""

from tf1_repro.tools.finder.patterns import register_bn_pattern
from tf1_repro.tools.finder.patterns._root import (ROOT_OPS, affine_tail, divisions, make_norm,
                                                    match_root)

NAME = "centred"


@register_bn_pattern(NAME, ROOT_OPS)
def match(ctx, op):
    """The ``Norm`` of a hand-written ``(x - mean) / sqrt(var + eps)`` root, else None."""
    root = match_root(ctx, op)
    if root is None:
        return None
    for u, centred in divisions(ctx, root):
        if ctx.is_centred(centred) and not ctx.stat_like(centred.op.inputs[0]):
            y, gamma, offset, rescaled = affine_tail(ctx, u.outputs[0])
            gamma = root.gamma if root.gamma is not None else gamma
            return make_norm(ctx, root, NAME, centred.op.inputs[0], y, centred.op.inputs[1],
                             gamma, offset, rescaled)
    return None
