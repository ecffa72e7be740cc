"""Hand-written dropout: the data multiplied by a mask built from a random draw (``x *
floor(keep_prob + uniform)``, ``x * cast(uniform < keep_prob)``, ...), scaled (inverted) or not
(vanilla). Op chain: ``Random* -> {Add, Floor, Greater*, Less*, Cast, ...} -> Mul(x, .)``. Tried
after ``tf1_floor``: every other Mul of the data by the mask."""

from tf1_repro.tools.finder.patterns import register_dropout_pattern
from tf1_repro.tools.finder.patterns._mask import DropoutMatch, multiplied_data

NAME = "hand-written"


@register_dropout_pattern(NAME, ("Mul",))
def match(ctx, rand, op, mask_region):  # pylint: disable=unused-argument
    """A ``Mul`` of the data by the mask."""
    data = multiplied_data(op, mask_region)
    return None if data is None else DropoutMatch(NAME, "hand-written", rand, op, data)
