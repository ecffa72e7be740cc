"""Keras dropout: ``SelectV2(uniform >= rate, x * 1/(1 - rate), 0)`` inside the true branch of a
``tf.cond`` on the learning phase (``K.in_train_phase``): a select whose data comes through a
Switch whose predicate is a mode input. Op chain: ``RandomUniform -> GreaterEqual -> SelectV2``."""

from tf1_repro.tools.finder.patterns import register_dropout_pattern
from tf1_repro.tools.finder.patterns._mask import (SELECT_OPS, DropoutMatch, data_mode,
                                                    selects_mask)

NAME = "keras"


@register_dropout_pattern(NAME, SELECT_OPS)
def match(ctx, rand, op, mask_region):
    """A select of the mask whose data a mode input's tf.cond switches."""
    if selects_mask(op, mask_region) and data_mode(ctx, op.inputs[1]) is not None:
        return DropoutMatch(NAME, "keras", rand, op, op.inputs[1])
    return None
