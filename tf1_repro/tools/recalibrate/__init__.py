"""Recalibrate: exact population BN statistics for a user's checkpoint, weights frozen.

For every BN layer the structural finder (``tf1_repro.tools.finder``) finds,
the moving mean and variance are replaced by the exact per-channel moments of
the layer's input over the given data, with everything upstream in prediction
mode (``finder.prediction_feeds()``: training False, keep_prob 1.0, ...) and
upstream BN layers already using their recalibrated statistics. A *vanilla*
dropout's keep_prob (training ``h * mask``, prediction ``h * keep_prob``) has no
prediction value in the graph (it is the training keep_prob): recalibrate refuses
until ``--feed NAME=VALUE`` gives it. The report lists every feed used.

A BN layer whose variables are shared by several calls (towers built with
``reuse=True``; ``BNLayer.call_sites``) gets the moments of its prediction calls' inputs
pooled into one population (Chan's rule over the calls), since one pair of moving
statistics normalises every such call; each call's output is checked on its own. The
prediction calls are ``tools.calls``' (every call but a training tower's, which normalises
with the batch's statistics even at prediction, and an unused call: the untrained twin of a
trained switched call, such as a Keras model's call on its own ``Input``); only their inputs'
placeholders are asked for, and a note names the calls left out.
Pooling includes the spread between the calls' means, which an EMA of per-batch
variances would miss; it is the variance of what the layer sees over the data.
A call whose input depends on the layer's own output (recurrent reuse) is refused.

The finder reads the checkpoint's MetaGraphDef, not the session's graph, whose
restore assigns could read as writes of gamma/beta (renorm layers). A layer's
input depends on every BN layer upstream of it, so layers are grouped by
depth (the longest chain of BN layers above them); all layers of one depth
share one pass over the data and their statistics are loaded into the
session's variables before the next depth's pass. A model needs
``max depth + 1`` passes, plus one check pass.

Streaming moments (memory independent of the data size). Each batch gives, per
channel c, in float64 inside the graph: ``n_b`` (values per channel: batch x
spatial positions), the batch mean ``m_b`` and ``M2_b = sum (x - m_b)^2``.
Batches merge by Chan et al.'s parallel rule::

    n = n_a + n_b,  delta = m_b - m_a,
    m = m_a + delta * n_b / n,  M2 = M2_a + M2_b + delta^2 * n_a * n_b / n

which is exact in exact arithmetic and in float64 agrees with one big batch to
~1e-15 relative. The population variance is ``M2 / n``.

Variance convention (what the stored moving variance means):

* ``biased`` (the article's layer, ``tf.layers``/Keras non-fused, every EMA of
  ``tf.nn.moments``): their moving variance averages biased batch variances,
  so the exact value is the biased population variance ``M2 / n``.
* ``unbiased`` (the fused kernel, ``FusedBatchNorm*``, which averages
  Bessel-corrected batch variances ``n_b/(n_b-1) * s_b^2``): we store
  ``M2 / (n - 1)``, the same Bessel-corrected estimator over the whole data.
  Why: it is what that moving variance estimates (E[n_b/(n_b-1) s_b^2] = sigma^2),
  so continued fused training keeps averaging the same quantity and the value
  does not jump; and it differs from ``M2 / n`` only by ``n/(n-1)`` (reported;
  1 + 1e-6 for a million values per channel), far below the EMA's noise.

Checks on the result (one more pass, prediction mode): for each recalibrated
layer with stored mean m and variance v (float32), input population mean mu and
variance s2, its output ``gamma (x - m)/sqrt(v + eps) + beta`` has per-channel
mean ``beta + gamma (mu - m)/sqrt(v + eps)`` (= beta up to m's float32
rounding) and variance ``gamma^2 s2/(v + eps)`` (= gamma^2 v/(v + eps) for the
biased convention). Tolerance: each float32 output is off by at most a few
ulps of its scale ``S = |gamma| (max|x| + |m|)/sqrt(v + eps) + |beta|``; we
allow ``64 u S`` for the mean and ``2 * 64 u S sqrt(var) + (64 u S)^2`` for the
variance, u = 2^-24 (float32 unit roundoff).

The report's "var change" is the largest relative change ``|new - old| / |old|``
over the channels ("from 0" when a channel's old variance is 0, "was non-finite" when it was
NaN/inf; the JSON lists such channels in mean_was_non_finite / variance_was_non_finite).

The new checkpoint has the source's variable names; every variable that is not
a recalibrated moving statistic is copied bit for bit (optimizer slots and the
global step included), with the ``checkpoint`` state file and a copy of the
``.meta``. The source is only read. Everything is validated and computed before
anything is written; a refused call writes nothing.

The package: ``common`` (constants, ``RecalibrateError``), ``moments`` (``ChannelMoments``),
``data`` (``--data``), ``plan`` (the layers, their depths and the ops added), ``feeds`` (what
each pass feeds), ``stages`` (the plan of a run, shared by every format), ``passes`` (the passes
and the report's numbers), ``report`` (the checks and the text) and ``write`` (the new
checkpoint); for TF2 SavedModels and Keras files, ``tf2`` (the run), ``tf2_source`` (the frozen
serving graph with the statistics as variables) and ``writers`` (one per format).
"""

import tensorflow.compat.v1 as tf

from tf1_repro.graph import safety
from tf1_repro.graph.control_flow import tf2_control_flow
from tf1_repro.tools import finder
from tf1_repro.tools.recalibrate.common import (
    CHECK_ULPS, DEFAULT_BATCH, SCOPE, UNIT_ROUNDOFF, WHERE, RecalibrateError, tensor_named)
from tf1_repro.tools.recalibrate.data import Data, open_data
from tf1_repro.tools.recalibrate.feeds import parse_feed, plan_feeds
from tf1_repro.tools.recalibrate.moments import ChannelMoments
from tf1_repro.tools.recalibrate.passes import no_progress, run_passes
from tf1_repro.tools.recalibrate.plan import (
    build, call_sites, checkpoint_reader, depths, open_checkpoint, prepare_layers, resolve_checkpoint)
from tf1_repro.tools.recalibrate.report import (
    _change_text, format_report, non_finite, relative_change)
from tf1_repro.tools.recalibrate import tf2
from tf1_repro.tools.recalibrate.stages import check_settings, plan_run, refuse_failed_check
from tf1_repro.tools.recalibrate.write import check_out, write_checkpoint

_plan, _refuse_failed_check, _check_settings = plan_run, refuse_failed_check, check_settings


def recalibrate(path, data, out, feeds=None, batch_size=DEFAULT_BATCH, max_samples=None, labels=None,
                predictions=None, force=False, progress=None, log=None, find=None, signature=None):
    """Recalibrate every BN layer of the checkpoint at ``path`` over ``data``; write it to ``out``.

    Args:
      path: checkpoint prefix or directory holding a checkpoint and its ``.meta``.
      data: ``FILE.npz`` / ``FILE.npy`` / ``module.py:FUNC`` (imports and calls user code), or a ``Data``.
      out: directory for the new checkpoint (refused if it holds one, unless ``force``).
      feeds: {placeholder name: value} for inputs neither the data nor the finder covers.
      batch_size: samples per run for .npz/.npy data (a FUNC's batches are used as yielded).
      max_samples: use at most this many samples.
      labels, predictions: a data key and a tensor name: accuracy before and after.
      progress: a progress factory ``make(desc, total, unit) -> bar`` such as
        ``tf1_repro.progress.factory()`` (None: no display).
      find: ``find(meta_graph) -> Findings`` (default ``tf1_repro.tools.finder.find``), given the
        checkpoint's MetaGraphDef; node names are those of the graph the passes run.
      signature: a TF2 SavedModel's signature (default ``serving_default``).

    ``path`` may also be a TF2 SavedModel, a Keras 3 ``.keras`` or a tf-keras ``.h5`` (``tf2``):
    the data is then keyed by the signature's input keys or its input tensor names, and ``out``
    receives the same format (the SavedModel directory, or ``out/<the file's name>``).

    Returns the report (a JSON-able dict). Raises RecalibrateError (nothing written).
    """
    if find is None:
        find = finder.find
    check_settings(batch_size, max_samples, labels, predictions)
    bar_factory = progress or no_progress
    log = log or (lambda line: None)
    if isinstance(path, str) and tf2.recognise(path):
        return tf2.recalibrate_tf2(path, data, out, signature=signature, feeds=feeds, batch_size=batch_size,
                                   max_samples=max_samples, labels=labels, predictions=predictions,
                                   force=force, bar_factory=bar_factory, log=log, find=find)
    if signature is not None:
        raise RecalibrateError(f"{WHERE}: --signature applies to a TF2 SavedModel, got a checkpoint "
                               f"path {path!r}")
    prefix, meta = resolve_checkpoint(path)
    check_out(out, prefix, force)
    data = data if isinstance(data, Data) else open_data(data)
    reader = checkpoint_reader(prefix)
    graph, sess, meta_graph = open_checkpoint(prefix, meta)
    notes = []
    try:
        layers, predictions_tensor, plan = plan_run(graph, reader, find(meta_graph), meta, data,
                                                 feeds, labels, predictions, notes)
        graph.finalize()
        report = run_passes(sess, data, plan, layers, predictions_tensor, batch_size, max_samples,
                            bar_factory, log)
    finally:
        sess.close()
    report.update({"source": prefix, "meta": meta, "data": data.spec, "out": out, "notes": notes,
                   "feeds": plan.report()})
    refuse_failed_check(report)
    new_values = {}
    for layer in layers:
        new_values[layer.mean_key] = layer.new_mean.reshape(layer.shape).astype(layer.dtype)
        new_values[layer.var_key] = layer.new_var.reshape(layer.shape).astype(layer.dtype)
    report["written"] = write_checkpoint(prefix, meta, out, new_values, force)
    return report
