"""``variance-not-positive`` (error): a moving variance holds a value <= 0."""

import numpy as np

from tf1_repro.tools.doctor.base import ERROR, Check, register


@register
class VarianceNotPositive(Check):
    """Rule: a BN layer's moving variance has a value <= 0 (NaN is ``stats-not-finite``'s)."""

    id = "variance-not-positive"
    severity = ERROR
    fix = "recompute the statistics from training data (python -m tf1_repro recalibrate)"

    def layer(self, ctx, layer):
        var = ctx.doc.value(layer.moving_variance)
        if var is not None and np.any(var <= 0):
            yield self.finding(layer.name, f"moving_variance {layer.moving_variance} has "
                               f"{int(np.sum(var <= 0))} value(s) <= 0: min {np.nanmin(var):.4g}")
