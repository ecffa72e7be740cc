"""Export a trained article-style model for prediction: a SavedModel and a frozen GraphDef.

A shortcut over the general path (``tf1_repro.tools.inference.to_inference``)
with the demo's defaults: the checkpoint's own training graph (its ``.meta``)
goes through the same passes as any user's graph: ``training`` and
``keep_prob`` become constants (False, 1.0), the ``tf.cond`` and its EMA
updates disappear, dropout is removed, the variables are frozen and each BN
is folded into the MatMul before it (``bn_input`` on the raw input stays one
multiply-add). Both artefacts take only ``x`` and are verified against the
checkpoint's graph run with training=False, keep_prob=1.0.

``tf.graph_util.convert_variables_to_constants`` alone cannot freeze this
graph: the EMA update sits inside the ``tf.cond``, so it keeps the
``AssignMovingAvg`` ops and importing the frozen graph fails ("Input 0 of node
.../AssignMovingAvg/Switch was passed float from ...ema:0 incompatible with
expected float_ref"); the general path resolves the ``tf.cond`` first.
"""

import os

import tensorflow.compat.v1 as tf

from tf1_repro.layers.bn import make_article_variables
from tf1_repro.graph import artefacts
from tf1_repro.graph.errors import InputError
from tf1_repro.model import ArticleModel

SAVED_MODEL = "saved_model"
FROZEN = "frozen_graph.pb"
INPUT, LOGITS, PREDICTIONS = "x:0", "output_logits:0", "output_predictions:0"


def inference_bn(inputs, training, name, moving_decay, eps):  # pylint: disable=unused-argument
    """The article's layer at prediction time only, with its variable names."""
    with tf.variable_scope(name):
        gamma, beta, mean, var = make_article_variables(inputs.shape[-1])
        return tf.nn.batch_normalization(inputs, mean, var, beta, gamma, eps)


def _output_names(config):
    """The logits and predictions tensor names ArticleModel gives in a graph of its own."""
    with tf.Graph().as_default():
        model = ArticleModel(**config)
        return model.logits.name, model.predictions.name


def export(checkpoint_dir, out_dir, latency_runs=0):
    """Write out_dir/saved_model and out_dir/frozen_graph.pb from the latest checkpoint.

    Returns ``ok`` (every artefact verified against the checkpoint's graph), the paths, the
    input and output names and ``report`` (the to-inference report: BN layers folded, ops
    before/after, each artefact's verification). Bad input raises ``InputError`` (a
    ``ValueError``) before anything is written.
    """
    from tf1_repro.tools import inference  # pylint: disable=import-outside-toplevel
    prefix = artefacts.latest_checkpoint(checkpoint_dir) if os.path.isdir(checkpoint_dir) else None
    if not prefix:
        raise InputError(f"export: --checkpoint must be a directory holding a checkpoint, got "
                         f"{checkpoint_dir!r}")
    try:
        config = ArticleModel.load_config(checkpoint_dir)
    except ValueError as err:  # no model.json: its message names it ("checkpoint: ...")
        raise InputError(str(err)) from None
    saved_model = os.path.join(out_dir, SAVED_MODEL)
    if os.path.exists(saved_model):
        raise InputError(f"export: --out must not hold {SAVED_MODEL} yet, got {out_dir!r}")
    logits, predictions = _output_names(config)
    try:
        report = inference.to_inference(
            prefix, [logits, predictions], out_dir, inputs=[INPUT],
            feeds={"training": False, "keep_prob": 1.0}, formats=("saved_model", "frozen"),
            latency_runs=latency_runs,
            aliases={logits: LOGITS.split(":")[0], predictions: PREDICTIONS.split(":")[0]},
            input_keys={INPUT: "x"}, output_keys={LOGITS: "logits", PREDICTIONS: "predictions"})
    except inference.InferenceError as err:
        raise InputError(f"export: {err}") from None
    return {"ok": report["ok"], "checkpoint": prefix, "saved_model": saved_model,
            "frozen_graph": os.path.join(out_dir, FROZEN),
            "inputs": [INPUT], "outputs": [LOGITS, PREDICTIONS], "report": report}


def format_report(result):
    """What ``export`` prints: the artefacts written, with their input and outputs."""
    return (f"exported {result['checkpoint']}:\n  SavedModel   {result['saved_model']} "
            f"(signature serving_default: x -> logits, predictions)\n  frozen graph "
            f"{result['frozen_graph']} (feed {result['inputs'][0]}, fetch "
            f"{', '.join(result['outputs'])})")


def format_problem(result):
    """The line for stderr when an exported artefact differs from the checkpoint's graph (the
    command then exits 1), or None when every artefact was verified."""
    if result["ok"]:
        return None
    worst = max(a["max_abs_diff"] for a in result["report"]["artefacts"].values())
    return (f"the exported graph differs from the checkpoint's (max |diff| {worst:.3g}): not "
            f"verified")


def load_frozen(path):
    """A fresh graph with the frozen GraphDef imported under no prefix."""
    graph_def = tf.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    return graph
