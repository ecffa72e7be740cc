"""Hand-written dropout: the data multiplied by a mask built from a random draw (``x *
floor(keep_prob + uniform)``, ``x * cast(uniform < keep_prob)``, ...), scaled (inverted) or not
(vanilla). Op chain: ``Random* -> {Add, Floor, Greater*, Less*, Cast, ...} -> Mul(x, .)``: every
Mul of the data by the mask that is not TF 1.x's (``tf1_floor``)."""

from tf1_repro.tools.finder.patterns import register_dropout_pattern
from tf1_repro.tools.finder.patterns._mask import DropoutMatch, is_tf1_floor, multiplied_data

NAME = "hand-written"


@register_dropout_pattern(NAME, ("Mul",))
def match(ctx, rand, op, mask_region):  # pylint: disable=unused-argument
    """A ``Mul`` of the data by the mask, not TF 1.x's."""
    data = multiplied_data(op, mask_region)
    if data is None or is_tf1_floor(op, data):
        return None
    return DropoutMatch(NAME, "hand-written", rand, op, data)
