"""Find every batch-norm layer and every dropout in a TF1 graph by structure, not by name.

``find(graph)`` takes a ``tf.Graph``, a ``GraphDef`` or a ``MetaGraphDef`` (its
collections are used) and returns a ``Findings`` with ``bn_layers``, ``dropouts``
and ``mode_inputs``. Nothing is run: the graph is read, and small constant
subgraphs (epsilon, decay, keep_prob, a predicate) are evaluated in NumPy.

**Batch norm.** A normalisation op is one of

* ``FusedBatchNorm``/``V2``/``V3`` (epsilon, ``is_training`` from its attributes);
* ``BatchNormWithGlobalNormalization`` (``variance_epsilon``);
* ``rsqrt(var + eps)`` or ``sqrt(var + eps)`` with the centred input: what
  ``tf.nn.batch_normalization`` builds (``x*inv + (beta - mean*inv)``,
  ``inv = rsqrt(var + eps)*gamma``) and the hand-written
  ``(x - mean) / sqrt(var + eps) * gamma + beta`` forms.

Each statistic is traced back through the ops that only move it (Identity,
Switch/Merge, reads of variables, Squeeze/Reshape/ExpandDims, Enter, Cast) to
its sources, branch by branch of any ``tf.cond``: a variable or a Const (the
*moving* statistic), or a computation on the batch (the *batch* statistic).
Normalisation ops that share a variable are one layer (the two branches of a
fused ``tf.cond``, or a layer built twice with Python bools). Its name is the
longest scope its variables share (a Const, such as slim's ``scale=False`` gamma named
after the op scope, never shortens it); two layers never have one name (see
``pipeline.unique_names``).

The **update ops** of a moving statistic are the ops that write it, other than
its initializer and a checkpoint restore. The decay is read from the update:
``AssignSub(s, (s - v) * (1 - d))`` (``assign_moving_average``,
``ExponentialMovingAverage``, tf.layers and Keras) or ``s <- d*s + (1-d)*v``,
with ``tf.cond``-selected constants taken in training mode. Where an update lives
(``update_location``):

* ``"output"``: it runs whenever the layer's output runs (an ancestor of the
  output, as in the article: inside the true branch of its ``tf.cond``), or of a
  tensor that hands the output on unchanged, which then is the output (slim's and
  contrib's ``updates_collections=None``, Sonnet's ``update_ops_collection=None``);
* ``"UPDATE_OPS"`` / ``"collection:NAME"``: it feeds a member of that collection;
* ``"separate-op:NAME"``: only the op ``NAME`` runs it (a two-stage "assigner",
  a Keras layer's updates in a TF1 graph, ``ema.apply`` kept aside);
* ``None``: no update op (a frozen graph, or statistics never updated).

**Calls.** A layer whose variables several calls share (two towers, ``reuse=True``, a Keras
model called on its own ``Input`` and again on the user's tensor) lists each call's
``[input, output]`` in ``call_sites`` and in ``call_modes`` its mode (``prediction``,
``training``, ``switched`` by a mode input, ``both``), whether a train op runs it (``trained``)
and the update ops computed from its input (``update_ops``; ``calls``). The layer's
``input``/``output`` are those of the call that runs in prediction mode, else of the first
switched one the train op runs, else of the first switched one (``layer.call_key``), with a
note; a chosen switched call's mode input is the layer's ``mode``, and its updates (those of
the calls the train op runs) say where the layer's updates live. Which call each tool uses is
``tf1_repro.tools.calls``' rule.

**Mode.** The predicate of the ``tf.cond`` that selects the statistics (or the
input of the fused ops) is traced to a bool ``Placeholder``, a
``PlaceholderWithDefault`` or a ``Const``; a layer built twice (train and
predict) without a switch has mode ``python_bool``; a frozen FusedBatchNorm's
mode is its ``is_training`` attribute.

**Dropout.** From every random op forward to the op that applies the mask to
the data (``SelectV2(mask, x*scale, 0)`` of ``tf.nn.dropout``/Keras, or
``x * floor(keep_prob + uniform)`` of TF 1.x and hand-written code), then back
through any scaling: ``x / keep_prob`` or ``x * 1/(1 - rate)`` is the
*inverted* convention, none is *vanilla*. ``keep_prob`` (or ``rate``) is traced
to its placeholder or Const.

**Code map.** Each form of batch norm and of dropout is a registered pattern in ``patterns/``
(one module each, tried in ``patterns.BN_PATTERN_MODULES`` / ``DROPOUT_PATTERN_MODULES`` order);
the analyses after a match are modules that take and return frozen dataclasses: ``grouping``
(layers, calls), ``calls`` (which calls a train op runs, each call's updates), ``parameters``, ``layer_mode``, ``updates`` (update ops and where they live),
``decay`` (decay, schedule cap, zero-debias), ``estimator``, ``control_flow`` (TF2 notes),
``dropout``; ``layer`` and ``pipeline`` put them together. ``context.GraphContext`` is the
read-only graph with memoised walks (``consts`` memoises its evaluations there too: every walk is linear
in the graph's size); ``trace``, ``consts`` and ``modes`` read statistics,
constants and mode inputs.
"""

from tf1_repro.graph.ops import (FUSED_BN_OPS, GLOBAL_BN_OP, RANDOM_DRAW_OPS, VARIABLE_OPS,
                                 WRITE_OPS)
from tf1_repro.tools.finder import pipeline
from tf1_repro.tools.finder.context import SKIP_COLLECTIONS, GraphContext
from tf1_repro.tools.finder.model import (PREDICTION_VALUES, BNLayer, Dropout, Findings, ModeInput,
                                          describe)
from tf1_repro.tools.finder.trace import TRANSPARENT
from tf1_repro.tools.finder.updates import RESTORE_SCOPE

FUSED = FUSED_BN_OPS
GLOBAL = GLOBAL_BN_OP
RANDOM_OPS = RANDOM_DRAW_OPS


def find(graph, collections=None):
    """Every BN layer, dropout and mode input of ``graph`` (tf.Graph, GraphDef or MetaGraphDef).

    ``collections`` (``{name: [op or tensor names]}``) adds to or replaces the
    graph's own collections (a GraphDef has none).
    """
    return pipeline.run(GraphContext(as_graph(graph), collections))


def as_graph(graph):
    """``graph`` as a ``tf.Graph`` (a GraphDef or MetaGraphDef is imported into a new one)."""
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    from tensorflow.core.protobuf import meta_graph_pb2  # pylint: disable=import-outside-toplevel

    if isinstance(graph, tf.Graph):
        return graph
    if isinstance(graph, meta_graph_pb2.MetaGraphDef):
        g = tf.Graph()
        with g.as_default():
            tf.train.import_meta_graph(graph, clear_devices=True)
        return g
    if isinstance(graph, tf.GraphDef):
        g = tf.Graph()
        with g.as_default():
            tf.import_graph_def(graph, name="")
        return g
    raise TypeError(f"finder.find: graph must be a tf.Graph, GraphDef or MetaGraphDef, "
                    f"got {type(graph).__name__}")


__all__ = ["find", "describe", "Findings", "BNLayer", "Dropout", "ModeInput", "RESTORE_SCOPE",
           "PREDICTION_VALUES", "VARIABLE_OPS", "WRITE_OPS", "FUSED", "GLOBAL", "RANDOM_OPS",
           "TRANSPARENT", "SKIP_COLLECTIONS", "GraphContext", "as_graph"]
