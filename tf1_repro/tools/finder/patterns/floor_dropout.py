"""TF 1.x ``tf.nn.dropout``: ``(x / keep_prob) * floor(keep_prob + uniform)`` in a ``dropout``
scope: the mask is a ``Floor`` input of the ``Mul`` and the data is scaled (inverted). Op chain:
``RandomUniform -> Add(keep_prob) -> Floor -> Mul(x / keep_prob, .)``."""

from tf1_repro.tools.finder.patterns import register_dropout_pattern
from tf1_repro.tools.finder.patterns._mask import DropoutMatch, is_tf1_floor, multiplied_data

NAME = "tf1_floor"


@register_dropout_pattern(NAME, ("Mul",))
def match(ctx, rand, op, mask_region):  # pylint: disable=unused-argument
    """A ``Mul`` of scaled data by a floored mask, named ``*dropout*``."""
    data = multiplied_data(op, mask_region)
    if data is None or not is_tf1_floor(op, data):
        return None
    return DropoutMatch(NAME, "tf.nn.dropout", rand, op, data)
