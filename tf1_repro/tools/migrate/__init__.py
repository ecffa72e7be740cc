"""``migrate``: BN weights from any TF1 checkpoint to Keras 3, verified layer by layer, and back.

``to_keras3(path, out)``:

1. Load the checkpoint (``artefacts.load``: a prefix, a directory, or a ``.meta``). With a
   graph (``PREFIX.meta``) the structural finder gives each BN layer's variables, epsilon,
   decay (an ``ExponentialMovingAverage(c, num_updates=step)`` schedule: its cap ``c``, read
   from the graph), channel axis, call sites and moving-variance estimator. Layers it does
   not find (or without a graph) come from ``naming.layers_from_names`` (article,
   tf.layers/Keras, slim; scale/center=False); their epsilon/momentum are *assumed* (1e-5 and
   0.9, or ``--epsilon``/``--momentum``), and with a graph the report says it was not
   understood. Statistics, gamma and beta may be (C,) or broadcast to one axis ((1, C),
   (1, 1, 1, C), (1, C, 1, 1)); the channel axis is then the non-1 one.
2. Write ``weights.npz`` (``{layer}/gamma|beta|moving_mean|moving_variance``, the
   checkpoint's values unchanged, reshaped to (C,); a missing gamma/beta is 1/0, noted) and
   ``layers.json`` (with the stored shapes, channel axis and what each layer was checked
   against).
3. Verify in Keras 3 (a child process): each layer is built with the converted weights
   (``ArticleBatchNormalization`` for the article's layers on the last axis, stock
   ``BatchNormalization(axis=channel_axis)`` otherwise; ``compare-keras3`` measures that both
   reproduce their TF1 layer) and fed the inputs the TF1 layer gets in prediction mode: from
   ``--data``, or random inputs pushed through the user's graph (restored, prediction feeds;
   every call of a layer shared by several calls, each against its own output; a vanilla
   dropout's keep_prob before a layer has no prediction value in the graph and must be an
   array in ``--data``, else the command refuses). A layer the
   finder missed is checked against the graph's own ``{layer}/batchnorm/add_1`` output when
   there is exactly one (so an assumed epsilon that is wrong fails); otherwise, and without a
   graph, the check is only a self-check: random inputs at the layer's moving statistics fed
   to the article's TF1 ``bn_layer`` restored with the same values and epsilon. A layer
   fails above ``TOLERANCE`` relative (max |diff| / max |TF1 output|). Batch renormalisation
   is dropped (noted: prediction is the same, continued training is not).
4. For the demo model (``model.json`` beside the checkpoint): ``model.keras`` with
   ``ArticleBatchNormalization``; its predictions vs the TF1 checkpoint's on held-out data;
   then ``train_steps`` more training steps in both (the same batches, dropout off,
   Adam's state from the checkpoint), comparing every BN shadow after every step.

``to_article(path, out)``: Keras 3 weights (``weights.npz`` as above, or a ``.weights.h5``)
to an article-named TF1 checkpoint ``DIR/model.ckpt`` (``P/gamma``, ``P/beat``,
``P/P/moments/Squeeze/ema``, ``P/P/moments/Squeeze_1/ema``; from a ``.weights.h5`` or
``.keras`` also Dense/Conv ``{layer}/kernel`` and ``{layer}/bias``), read back and compared
bitwise, names found again by ``naming``.

Bad input raises ``MigrateError`` (one line; exit status 2) before anything is written.

The package: ``common`` (settings, ``MigrateError``, the ``--out`` check), ``layer``
(``MigrateLayer``, what passes between the stages), ``discover`` (layers and their Keras 3
settings and values), ``verify`` (the TF1 side of the check and the comparison), ``demo`` (the
demo model's check), ``keras3`` (``to_keras3``), ``article`` (``to_article``) and ``report``.
"""

from tf1_repro.tools.migrate.article import read_keras_weights, to_article
from tf1_repro.tools.migrate.common import (
    ARTICLE_PREFIX, DEFAULT_EPSILON, DEFAULT_MOMENTUM, LAYERS, MODEL, RANDOM_BATCH, REPORT, ROLES,
    TARGETS, TOLERANCE, TRAJECTORY_TOLERANCE, WEIGHTS, MigrateError, check_settings)
from tf1_repro.tools.migrate.discover import discover, layer_weights
from tf1_repro.tools.migrate.keras3 import to_keras3
from tf1_repro.tools.migrate.layer import MigrateLayer
from tf1_repro.tools.migrate.report import format_report


def migrate(path, to="keras3", out=None, epsilon=None, momentum=None, data=None, force=False,
            seed=0, train_steps=20):
    """``to_keras3`` or ``to_article``; see the module docstring."""
    check_settings(to, epsilon, momentum, train_steps)
    if not out:
        raise MigrateError("migrate: --out must be a directory, got none")
    if to == "article":
        return to_article(path, out, force=force)
    return to_keras3(path, out, epsilon, momentum, data, force, seed, train_steps)
