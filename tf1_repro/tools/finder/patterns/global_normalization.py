"""``BatchNormWithGlobalNormalization`` (TF 0.x graphs): one op, inputs ``(t, mean, variance, beta,
gamma)``, epsilon in ``variance_epsilon``; gamma is read only with
``scale_after_normalization``. It always normalises with its mean/variance inputs."""

from tf1_repro.graph.ops import GLOBAL_BN_OP
from tf1_repro.tools.finder.norm import Norm
from tf1_repro.tools.finder.patterns import register_bn_pattern

ROOT_OPS = (GLOBAL_BN_OP,)


@register_bn_pattern("global_normalization", ROOT_OPS)
def match(ctx, op):
    """The ``Norm`` of a ``BatchNormWithGlobalNormalization`` op."""
    if op.type not in ROOT_OPS:
        return None
    t, m, v, beta, gamma = op.inputs[:5]
    scaled = bool(op.get_attr("scale_after_normalization"))
    return Norm(op=op, kind="global_normalization", x=t, y=op.outputs[0],
                eps=float(op.get_attr("variance_epsilon")),
                scale=tuple(ctx.trace(gamma)) if scaled else (), offset=tuple(ctx.trace(beta)),
                mean=tuple(ctx.trace(m)), var=tuple(ctx.trace(v)), batch=False,
                pattern="global_normalization")
