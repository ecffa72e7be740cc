"""Stateless dropout (``tf.nn.experimental.stateless_dropout``): ``SelectV2(uniform >= rate,
x * 1/(1 - rate), 0)`` with the uniform drawn by a ``StatelessRandomUniform*`` op, no tf.cond
around it. Op chain: ``StatelessRandomUniformV2 -> GreaterEqual -> SelectV2``."""

from tf1_repro.tools.finder.patterns import register_dropout_pattern
from tf1_repro.tools.finder.patterns._mask import (SELECT_OPS, DropoutMatch, data_mode,
                                                    is_stateless, selects_mask)

NAME = "stateless"


@register_dropout_pattern(NAME, SELECT_OPS)
def match(ctx, rand, op, mask_region):
    """A select of a mask drawn by a stateless random op, outside a mode's tf.cond."""
    if is_stateless(rand) and selects_mask(op, mask_region) and \
            data_mode(ctx, op.inputs[1]) is None:
        return DropoutMatch(NAME, "tf.nn.dropout", rand, op, op.inputs[1])
    return None
