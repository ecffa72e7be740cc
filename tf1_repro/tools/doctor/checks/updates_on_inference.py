"""``updates-on-inference`` (error): a prediction run changes a BN layer's moving statistics."""

from tf1_repro.tools.doctor.base import ERROR, Check, register


@register
class UpdatesOnInference(Check):
    """Rule, two ways:

    * running: the first prediction run (the outputs on a batch, with the prediction feeds)
      changed a moving statistic; one finding per layer, naming the statistics that changed;
    * a TF2 SavedModel's signature (or a Keras file's ``model(x, training=False)``) writes a
      moving statistic: the reader records the writes of the functions the signature calls
      (``Artefact.writes``, mapped to variable paths), which the frozen graph it runs cannot
      show; one finding per layer.
    """

    id = "updates-on-inference"
    severity = ERROR
    fix = ("build the update inside the training branch: ema.apply inside the tf.cond's true "
           "branch, or run UPDATE_OPS only with the train op")
    tf2_fix = ("rebuild the model calling the BatchNormalization layer without training=True and "
               "reload the weights (model.load_weights), then save it again; or python -m "
               "tf1_repro to-inference PATH --fix-training-mode")

    def graph(self, ctx):
        writes = getattr(ctx.doc.art, "writes", None) or []
        owner = _owners(ctx)
        for layer_name in sorted({owner[w["variable"]] for w in writes if w.get("variable") in owner}):
            names = sorted({w["variable"] for w in writes if owner.get(w.get("variable")) == layer_name})
            ops = sorted({w["op"] for w in writes if owner.get(w.get("variable")) == layer_name})
            yield self.finding(layer_name, f"the serving function writes {', '.join(names)} "
                               f"({', '.join(ops)}) on every call")

    def dynamic(self, ctx, run):
        owner = _owners(ctx)
        for layer_name in sorted({owner[n] for n in run.changed if n in owner}):
            names = [n for n in run.changed if owner.get(n) == layer_name]
            yield self.finding(layer_name, f"a prediction run changed {', '.join(names)}")


def _owners(ctx):
    """``{moving statistic name (a TF2 artefact's: also its variable path): layer name}``."""
    paths = getattr(ctx.doc.art, "variable_paths", None) or {}
    owner = {}
    for layer in ctx.layers:
        for role in ("moving_mean", "moving_variance"):
            name = layer.statistic(role)
            if name:
                owner[name] = layer.name
                if name in paths:
                    owner[paths[name]] = layer.name
    return owner
