"""What ``tf.nn.batch_normalization`` builds: ``inv = rsqrt(var + eps) * gamma``, then
``y = x * inv + (beta - mean * inv)``. Without gamma (``scale=False``) ``inv`` is the rsqrt itself;
without beta (``center=False``) the second term is ``-mean * inv`` (a ``Neg``) or
``(-mean) * inv``. ``pow(var + eps, -0.5)`` stands for the rsqrt. Root op chain:
``Add(var, eps) -> Rsqrt -> [Mul gamma] -> {Mul x -> Add, Mul mean -> Sub/Neg}``."""

from tf1_repro.tools.finder.patterns import register_bn_pattern
from tf1_repro.tools.finder.patterns._root import ROOT_OPS, make_norm, match_root

NAME = "nn_batch_normalization"


@register_bn_pattern(NAME, ROOT_OPS)
def match(ctx, op):
    """The ``Norm`` of a ``tf.nn.batch_normalization`` root, else None."""
    root = match_root(ctx, op)
    if root is None or root.kind != "Rsqrt":
        return None
    inv = root.inv
    muls = [u for u in ctx.consumers.get(inv.op.name, []) if u.type == "Mul"]
    if len(muls) != 2:
        return None
    tails = {m.name: ctx.consumers.get(m.name, []) for m in muls}
    xm = [m for m in muls if any(n.type in ("Add", "AddV2") for n in tails[m.name])]
    mm = [m for m in muls if any(n.type in ("Sub", "Neg") for n in tails[m.name])]
    negated = [m for m in muls if ctx.other(m, inv).op.type == "Neg"]
    if not mm and len(negated) == 1 and len(xm) == 2:
        # center=False: x*inv + (-mean)*inv
        mm, xm = negated, [m for m in xm if m is not negated[0]]
    if not (len(xm) == 1 and len(mm) == 1 and xm[0] is not mm[0]):
        return None
    x, mean = ctx.other(xm[0], inv), ctx.other(mm[0], inv)
    offset = None
    subs = [n for n in tails[mm[0].name] if n.type in ("Sub", "Neg")]
    if subs:
        offset = subs[0].inputs[0] if subs[0].type == "Sub" else None
    else:
        mean = mean.op.inputs[0]  # the Neg's input
    y = [n for n in tails[xm[0].name] if n.type in ("Add", "AddV2")][0].outputs[0]
    return make_norm(ctx, root, NAME, x, y, mean, root.gamma, offset)
