"""TF2 ``tf.nn.dropout``: ``SelectV2(uniform >= rate, x * 1/(1 - rate), 0)`` with a stateful draw
(``stateless`` takes the stateless ones), no tf.cond around it. Op chain:
``RandomUniform -> GreaterEqual -> SelectV2``."""

from tf1_repro.tools.finder.patterns import register_dropout_pattern
from tf1_repro.tools.finder.patterns._mask import (SELECT_OPS, DropoutMatch, data_mode,
                                                    is_stateless, selects_mask)

NAME = "tf2_select"


@register_dropout_pattern(NAME, SELECT_OPS)
def match(ctx, rand, op, mask_region):
    """A select of a stateful draw's mask outside a mode's tf.cond."""
    if not is_stateless(rand) and selects_mask(op, mask_region) and \
            data_mode(ctx, op.inputs[1]) is None:
        return DropoutMatch(NAME, "tf.nn.dropout", rand, op, op.inputs[1])
    return None
