"""Fused batch norm: one ``FusedBatchNorm`` / ``V2`` / ``V3`` op, inputs ``(x, scale, offset, mean,
variance)``. Epsilon and ``is_training`` are attributes. In training (``is_training=True`` and no
``exponential_avg_factor``) it normalises with the batch's statistics (outputs 1 and 2) and its
mean/variance inputs are ignored; otherwise it reads them."""

from tf1_repro.graph.ops import FUSED_BN_OPS
from tf1_repro.tools.finder.norm import Norm
from tf1_repro.tools.finder.patterns import register_bn_pattern
from tf1_repro.tools.finder.trace import Source

ROOT_OPS = FUSED_BN_OPS


@register_bn_pattern("fused", ROOT_OPS)
def match(ctx, op):
    """The ``Norm`` of a fused BN op."""
    if op.type not in ROOT_OPS:
        return None
    x, scale, offset, mean, var = op.inputs[:5]
    training = bool(op.get_attr("is_training"))
    factor = op.get_attr("exponential_avg_factor") if op.type == "FusedBatchNormV3" else 1.0
    reads_inputs = not (training and factor == 1.0)
    return Norm(op=op, kind="fused", x=x, y=op.outputs[0], eps=float(op.get_attr("epsilon")),
                scale=tuple(ctx.trace(scale)), offset=tuple(ctx.trace(offset)),
                mean=tuple(ctx.trace(mean)) if reads_inputs else (),
                var=tuple(ctx.trace(var)) if reads_inputs else (),
                batch=training, pattern="fused", fused_factor=factor,
                mean_ignored=tuple(ctx.trace(mean)), var_ignored=tuple(ctx.trace(var)),
                mean_batch=(Source("batch", op, 1, ()),) if training else (),
                var_batch=(Source("batch", op, 2, ()),) if training else ())
