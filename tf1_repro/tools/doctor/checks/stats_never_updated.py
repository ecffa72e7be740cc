"""``stats-never-updated`` (error): the moving statistics still hold their initial values although
training happened."""

import numpy as np

from tf1_repro.tools.doctor.base import ERROR, UPDATE_OPS_FIX, Check, register


@register
class StatsNeverUpdated(Check):
    """Rule: moving mean all 0 and moving variance all 1 (or all 0, zero-initialised shadows)
    while training happened: gamma != 1 or beta != 0 somewhere, or global step > 0."""

    id = "stats-never-updated"
    severity = ERROR
    fix = ("wire the BN updates into the train op (" + UPDATE_OPS_FIX + "; for a Keras layer add "
           "layer.updates), then retrain or recompute the statistics (python -m tf1_repro "
           "recalibrate)")
    tf2_fix = ("train with the layer called in training mode (model(x, training=True) in a custom "
               "loop, or fit), so its moving statistics update, or recompute them from training "
               "data (python -m tf1_repro recalibrate PATH --data ...)")

    def layer(self, ctx, layer):
        mean, var = ctx.doc.value(layer.moving_mean), ctx.doc.value(layer.moving_variance)
        if mean is None or var is None or not np.all(mean == 0) or \
                not (np.all(var == 1) or np.all(var == 0)):
            return
        gamma, beta = ctx.doc.value(layer.gamma), ctx.doc.value(layer.beta)
        evidence = []
        if gamma is not None and np.any(gamma != 1):
            evidence.append("gamma moved from 1")
        if beta is not None and np.any(beta != 0):
            evidence.append("beta moved from 0")
        if ctx.global_step:
            evidence.append(f"global step {ctx.global_step}")
        if evidence:
            yield self.finding(layer.name, f"moving mean all 0 and moving variance all "
                               f"{var.flat[0]:g} (their initial values) while training happened "
                               f"({', '.join(evidence)})")
