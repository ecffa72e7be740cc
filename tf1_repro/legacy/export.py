"""Export a trained article-style model for prediction: a SavedModel and a frozen GraphDef.

Both take only ``x``: ``training`` and ``keep_prob`` are ``placeholder_with_default``
(False and 1.0). The article's training graph itself cannot be frozen: its EMA
update sits inside the ``tf.cond``, so ``convert_variables_to_constants`` keeps
the ``AssignMovingAvg`` ops and importing the frozen graph fails ("Input 0 of
node .../AssignMovingAvg/Switch was passed float from ...ema:0 incompatible
with expected float_ref"). The export therefore builds the prediction path
with ``inference_bn``: the same four variables under the article's names (so
the checkpoint restores as is), normalising with the moving averages and
nothing else.
"""

import os

import tensorflow.compat.v1 as tf

from tf1_repro.layers.bn import make_article_variables
from tf1_repro.model import ArticleModel

SAVED_MODEL = "saved_model"
FROZEN = "frozen_graph.pb"
INPUT, LOGITS, PREDICTIONS = "x:0", "output_logits:0", "output_predictions:0"


def inference_bn(inputs, training, name, moving_decay, eps):  # pylint: disable=unused-argument
    """The article's layer at prediction time only, with its variable names."""
    with tf.variable_scope(name):
        gamma, beta, mean, var = make_article_variables(inputs.shape[-1])
        return tf.nn.batch_normalization(inputs, mean, var, beta, gamma, eps)


def export(checkpoint_dir, out_dir):
    """Write out_dir/saved_model and out_dir/frozen_graph.pb from the latest checkpoint."""
    prefix = tf.train.latest_checkpoint(checkpoint_dir) if os.path.isdir(checkpoint_dir) else None
    if not prefix:
        raise ValueError(f"export: --checkpoint must be a directory holding a checkpoint, got "
                         f"{checkpoint_dir!r}")
    config = ArticleModel.load_config(checkpoint_dir)
    saved_model = os.path.join(out_dir, SAVED_MODEL)
    if os.path.exists(saved_model):
        raise ValueError(f"export: --out must not hold {SAVED_MODEL} yet, got {out_dir!r}")
    with tf.Graph().as_default() as graph:
        model = ArticleModel(**config, bn=inference_bn, serving=True)
        logits = tf.identity(model.logits, name="output_logits")
        predictions = tf.identity(model.predictions, name="output_predictions")
        saver = tf.train.Saver(tf.global_variables())
        with tf.Session(graph=graph) as sess:
            saver.restore(sess, prefix)
            builder = tf.saved_model.builder.SavedModelBuilder(saved_model)
            signature = tf.saved_model.signature_def_utils.predict_signature_def(
                inputs={"x": model.x}, outputs={"logits": logits, "predictions": predictions})
            builder.add_meta_graph_and_variables(
                sess, [tf.saved_model.tag_constants.SERVING],
                signature_def_map={"serving_default": signature}, strip_default_attrs=True)
            builder.save()
            frozen = tf.graph_util.convert_variables_to_constants(
                sess, graph.as_graph_def(), ["output_logits", "output_predictions"])
    frozen_path = os.path.join(out_dir, FROZEN)
    with open(frozen_path, "wb") as f:
        f.write(frozen.SerializeToString())
    return {"checkpoint": prefix, "saved_model": saved_model, "frozen_graph": frozen_path,
            "inputs": [INPUT], "outputs": [LOGITS, PREDICTIONS]}


def load_frozen(path):
    """A fresh graph with the frozen GraphDef imported under no prefix."""
    graph_def = tf.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    graph = tf.Graph()
    with graph.as_default():
        tf.import_graph_def(graph_def, name="")
    return graph
