"""``ema-zero-bias`` (warning): zero-started, undebiased shadows after too few updates."""

import numpy as np

from tf1_repro.tools.doctor.base import WARNING, Check, register


@register
class EmaZeroBias(Check):
    """Rule: both shadows start at 0, are not debiased (the finder's ``zero_debias``, read from
    the update's structure), and ``global_step < 3 / (1 - decay)``: after k updates a shadow holds
    only ``1 - decay**k`` of the average (``1 - 0.9**30 = 0.958``)."""

    id = "ema-zero-bias"
    severity = WARNING
    fix = ("train longer than 3/(1-decay) steps, use zero_debias=True, or start the shadows from "
           "the first batch's statistics")

    def layer(self, ctx, layer):
        decay, step = layer.decay, ctx.global_step
        if decay is not None and 0 < decay < 1 and step is not None and \
                step < 3 / (1 - decay) and zero_initialised(ctx.doc, layer) and \
                not layer.zero_debias:
            yield self.finding(
                layer.name,
                f"shadows start at 0, are not debiased, and global step {step} < "
                f"3/(1-decay) = {3 / (1 - decay):.0f}: they hold only 1-decay^k = "
                f"{1 - decay ** step:.3f} of the average")


def zero_initialised(doc, layer):
    """Both shadows start at 0 (known from names, else read from their initializers in the
    graph); None when unknown."""
    if layer.zero_initialised is not None:
        return layer.zero_initialised
    defs = doc.variable_defs()
    starts = []
    for role in ("moving_mean", "moving_variance"):
        var = defs.get(layer.statistic(role) or "")
        value = doc.static_value(var.initial_value_name) if var is not None else None
        if value is None:
            return None
        starts.append(bool(np.all(np.asarray(value) == 0)))
    return all(starts)
