"""``updates-on-inference`` (error): a prediction run changes a BN layer's moving statistics."""

from tf1_repro.tools.doctor.base import ERROR, Check, register


@register
class UpdatesOnInference(Check):
    """Rule: the first prediction run (the outputs on a batch, with the prediction feeds) changed
    a moving statistic; one finding per layer, naming the statistics that changed."""

    id = "updates-on-inference"
    severity = ERROR
    fix = ("build the update inside the training branch: ema.apply inside the tf.cond's true "
           "branch, or run UPDATE_OPS only with the train op")

    def dynamic(self, ctx, run):
        owner = {layer.statistic(r): layer.name for layer in ctx.layers
                 for r in ("moving_mean", "moving_variance") if layer.statistic(r)}
        for layer_name in sorted({owner[n] for n in run.changed if n in owner}):
            names = [n for n in run.changed if owner.get(n) == layer_name]
            yield self.finding(layer_name, f"a prediction run changed {', '.join(names)}")
