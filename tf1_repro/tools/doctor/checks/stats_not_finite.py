"""``stats-not-finite`` (error): a moving statistic holds NaN or inf."""

import numpy as np

from tf1_repro.tools.doctor.base import ERROR, Check, register, short


@register
class StatsNotFinite(Check):
    """Rule: a BN layer's moving mean or moving variance holds a NaN or an inf; one finding per
    statistic, counting the non-finite values."""

    id = "stats-not-finite"
    severity = ERROR
    fix = ("recompute the statistics from training data (python -m tf1_repro recalibrate) and find "
           "where training diverged (tf.debugging.check_numerics)")

    def layer(self, ctx, layer):
        for role in ("moving_mean", "moving_variance"):
            value = ctx.doc.value(layer.statistic(role))
            if value is not None and not np.all(np.isfinite(value)):
                bad = int(np.sum(~np.isfinite(value)))
                yield self.finding(layer.name, f"{role} {layer.statistic(role)} holds {bad} "
                                   f"non-finite value(s) of {value.size}: {short(value)}")
