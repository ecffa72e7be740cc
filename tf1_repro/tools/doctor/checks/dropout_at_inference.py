"""``dropout-at-inference`` (error): prediction drops units."""

from tf1_repro.tools.doctor.base import ERROR, Check, register


@register
class DropoutAtInference(Check):
    """Rule, three ways:

    * in a serving artefact (SavedModel, frozen graph, TF2 SavedModel or Keras file: the frozen
      serving function) a dropout's keep_prob is a Const < 1 (or its rate a Const > 0) that no
      mode input switches off (Keras removes a dropout called in inference mode, so one left in
      the serving function drops);
    * a serving client leaves a keep_prob (rate) ``PlaceholderWithDefault`` at a default that is
      not its prediction value, or a training default True that switches a dropout on;
    * running: the same input twice gives different outputs.
    """

    id = "dropout-at-inference"
    severity = ERROR
    fix = ("feed keep_prob=1.0 (rate=0) at prediction, or export with tf.placeholder_with_default"
           "(1.0, []) (rate 0.0) instead of a Const or a training default")
    tf2_fix = ("rebuild the model calling the Dropout layer without training=True and reload the "
               "weights (model.load_weights), then save it again; or python -m tf1_repro "
               "to-inference PATH --fix-training-mode")

    def graph(self, ctx):
        if ctx.format not in ("saved_model", "frozen_graph", "saved_model_tf2", "keras",
                              "keras_h5"):
            return
        for d in ctx.dropouts:
            kp, mode = d.keep_prob or {}, d.mode
            value = kp.get("value")
            if kp.get("source") != "const" or value is None:
                continue
            if mode is not None and not (mode["op"] == "Const" and bool(mode["default"])):
                continue  # a mode input switches it off at prediction (Keras' learning phase)
            if value > 0 if kp.get("param") == "rate" else value < 1:
                yield self.finding(d.name, f"{kp.get('param', 'keep_prob')} is a Const {value:g} "
                                   f"({kp.get('name')}) in an artefact meant for serving")

    def serving_default(self, ctx, default):
        m, users = default.mode, default.dropouts
        if m.role in ("keep_prob", "rate"):
            if float(m.default) != float(m.prediction_value):
                yield self.finding(", ".join(users) or m.name,
                                   f"{default.where} dropout with {m.role} {float(m.default):g}")
        elif m.role in ("training", "learning_phase") and bool(m.default) and users:
            yield self.finding(", ".join(users), f"{default.where} dropout switched on")

    def dynamic(self, ctx, run):
        if run.differ:
            yield self.finding(None, f"the same input twice gives different "
                               f"{', '.join(run.differ)} {run.how}")
