"""``inference-batch-dependent`` (error): prediction normalises with the batch's statistics."""

from tf1_repro.tools.doctor.base import ERROR, Check, register


@register
class InferenceBatchDependent(Check):
    """Rule, three ways:

    * the finder shows a layer's prediction uses batch statistics (training fixed True, or a
      frozen ``FusedBatchNorm`` with ``is_training`` true);
    * a serving client leaves a training (or learning phase) ``PlaceholderWithDefault`` at a True
      default (reported on the BN layers it switches, or on the input when it switches no dropout
      either);
    * running: sample 0's outputs change when the rest of its batch changes.

    On a TF2 SavedModel or Keras file the frozen serving function is read the same way (a
    ``FusedBatchNormV3`` with ``is_training`` true, or moments computed from the input).
    """

    id = "inference-batch-dependent"
    severity = ERROR
    fix = ("export with training=False (a placeholder_with_default(False) or is_training=False), "
           "so prediction uses the moving statistics")
    tf2_fix = ("rebuild the model calling the BatchNormalization layer without training=True and "
               "reload the weights (model.load_weights), then save it again; or python -m "
               "tf1_repro to-inference PATH --fix-training-mode")

    def layer(self, ctx, layer):
        if layer.stats_at_prediction is False:
            yield self.finding(layer.name, "prediction normalises with the batch's statistics "
                               "(training fixed True, or is_training true in a FusedBatchNorm)")

    def serving_default(self, ctx, default):
        m = default.mode
        if m.role in ("training", "learning_phase") and bool(m.default) and \
                (default.bn_layers or not default.dropouts):
            yield self.finding(", ".join(default.bn_layers) or m.name,
                               f"{default.where} the batch's statistics instead of the moving ones")

    def dynamic(self, ctx, run):
        if run.dependent:
            yield self.finding(None, f"sample 0's {', '.join(run.dependent)} changes when the rest "
                               f"of its batch changes, {run.how}")
