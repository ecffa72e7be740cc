"""``stats-trainable`` (warning): a moving statistic is a trainable variable."""

from tf1_repro.tools.doctor.base import WARNING, Check, register


@register
class StatsTrainable(Check):
    """Rule: a BN layer's moving mean or moving variance is in ``trainable_variables`` (the
    optimizer moves it too); one finding per statistic."""

    id = "stats-trainable"
    severity = WARNING
    fix = ("make the moving statistics non-trainable (trainable=False), so the optimizer does not "
           "move them")

    def layer(self, ctx, layer):
        for role in ("moving_mean", "moving_variance"):
            name = layer.statistic(role)
            if name and name in ctx.trainable:
                yield self.finding(layer.name, f"{role} {name} is in TRAINABLE_VARIABLES: the "
                                   "optimizer moves it too")
