"""``dead-channel`` (warning): a moving variance is exactly 0 on some channels, a dead unit."""

import numpy as np

from tf1_repro.tools.doctor.base import WARNING, Check, register

SHOWN = 8  # channel indices a message lists before "..."


@register
class DeadChannel(Check):
    """Rule: a BN layer's moving variance is exactly 0 on some of its channels (not all: that is
    ``variance-not-positive``) and none of its values is < 0 or non-finite (the errors of a
    broken layer say so). A variance computed from
    data is exactly 0 only when the channel's input was constant (a ReLU upstream that never
    fires, a zeroed filter): ``recalibrate`` stores 0 there, and a long EMA decays to 0. At
    prediction such a channel outputs beta while its input stays at the moving mean."""

    id = "dead-channel"
    severity = WARNING
    fix = ("nothing to recompute: the channel's input was constant in the data; if it should "
           "carry signal, look at the layer feeding it (a ReLU that never fires), else prune it")

    def layer(self, ctx, layer):
        var = ctx.doc.value(layer.moving_variance)
        if var is None or not var.size:
            return
        flat = np.asarray(var).ravel()
        if np.any(flat < 0) or not np.all(np.isfinite(flat)):
            return  # a broken layer: its errors say so
        dead = np.flatnonzero(flat == 0)
        if not dead.size or dead.size == flat.size:
            return
        shown = ", ".join(str(int(i)) for i in dead[:SHOWN])
        shown += ", ..." if dead.size > SHOWN else ""
        mean = ctx.doc.value(layer.moving_mean)
        at = ""
        if mean is not None and np.asarray(mean).size == flat.size:
            values = np.asarray(mean, np.float64).ravel()[dead[:SHOWN]]
            at = f"; its moving mean there: {', '.join(f'{v:.4g}' for v in values)}"
        yield self.finding(layer.name, f"moving_variance {layer.moving_variance} is exactly 0 on "
                           f"{dead.size} of {flat.size} channel(s) [{shown}]: a dead unit (its "
                           f"input was constant in the data){at}; the channel outputs beta")
