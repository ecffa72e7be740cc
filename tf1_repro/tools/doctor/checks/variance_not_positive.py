"""``variance-not-positive`` (error): a moving variance has a value < 0, or is 0 on every channel."""

import numpy as np

from tf1_repro.tools.doctor.base import ERROR, Check, register


@register
class VarianceNotPositive(Check):
    """Rule: a BN layer's moving variance has a value < 0, or is exactly 0 on every channel (no
    channel saw data varying: shadows zeroed, or never computed). NaN is ``stats-not-finite``'s;
    exactly 0 on some channels only is ``dead-channel``'s (a dead unit: a warning)."""

    id = "variance-not-positive"
    severity = ERROR
    fix = "recompute the statistics from training data (python -m tf1_repro recalibrate)"

    def layer(self, ctx, layer):
        var = ctx.doc.value(layer.moving_variance)
        if var is None or not var.size:
            return
        negative = int(np.sum(var < 0))
        if negative:
            yield self.finding(layer.name, f"moving_variance {layer.moving_variance} has "
                               f"{negative} value(s) < 0: min {np.nanmin(var):.4g}")
        elif np.all(var == 0):
            yield self.finding(layer.name, f"moving_variance {layer.moving_variance} is 0 on all "
                               f"{var.size} channel(s): no statistics were computed from data")
