"""Recalibrating a TF2 SavedModel, ``.keras`` or ``.h5``: the same passes and checks as for a
TF1 checkpoint, over the frozen serving function; the result written in the same format.

1. ``tf2_source.load`` freezes the signature (``--signature``, default ``serving_default``;
   Keras files: ``model(x, training=False)``) in a child process; an unsafe signature is not
   loaded and is refused here (nothing runs).
2. The finder reads the frozen graph; the moving statistics of its BN layers become variables
   of our copy (``tf2_source.open_frozen``), and ``stages.plan_run`` + ``passes.run_passes``
   run exactly as for a checkpoint: upstream first, each layer's input moments, the check pass.
3. The writer of the format (``writers``) writes ``--out`` and verifies it bit for bit.
4. The written artefact is read back with ``artefacts.load``: its statistics Consts must equal
   the new values; its serving graph, run on the first batch with those Consts run as variables
   (the computation our graph did), must give our recalibrated graph's outputs within 64 float32
   ulps of the outputs' scale (measured: 0); run as served (TensorFlow folds the Consts, so float32
   roundings differ, more with depth) its outputs must be finite, and the largest difference is
   reported (``output_as_served_max_error``).
"""

import numpy as np

from tf1_repro.graph import artefacts
from tf1_repro.tools.recalibrate import tf2_source
from tf1_repro.tools.recalibrate.common import CHECK_ULPS, UNIT_ROUNDOFF, WHERE, RecalibrateError
from tf1_repro.tools.recalibrate.data import Data, batches, open_data
from tf1_repro.tools.recalibrate.passes import run_passes
from tf1_repro.tools.recalibrate.stages import plan_run, refuse_failed_check
from tf1_repro.tools.recalibrate.writers import writer_for

recognise = tf2_source.recognise


def recalibrate_tf2(path, data, out, *, signature, feeds, batch_size, max_samples, labels, predictions,
                    force, bar_factory, log, find):
    """See ``recalibrate.recalibrate``; ``path`` is a TF2 SavedModel, ``.keras`` or ``.h5``."""
    fmt, source = tf2_source.located(path)
    writer = writer_for(fmt)
    writer.check_out(source, out, force)
    data = data if isinstance(data, Data) else open_data(data)
    art = tf2_source.load(path, signature)
    data, keys = tf2_source.data_by_placeholder(data, art)
    tf2_source.check_data_keys(data, art)
    found = find(art.graph_def)
    graph, sess = tf2_source.open_frozen(art, tf2_source.statistics_consts(art, found))
    notes = [f"data key {key!r} feeds the signature input {art.inputs[key]}"
             for key in sorted(keys.renamed)]
    try:
        layers, predictions_tensor, plan = plan_run(
            graph, tf2_source.ConstReader(art), found, art.source, data, feeds, labels,
            tf2_source.predictions_name(art, predictions), notes)
        graph.finalize()
        report = run_passes(sess, data, plan, layers, predictions_tensor, batch_size, max_samples,
                            bar_factory, log)
        batch = next(batches(data, list(plan.data), batch_size, max_samples), None)
        reference = tf2_source.output_values(sess, graph, art, plan, batch) if batch else None
    finally:
        sess.close()
    report.update({"source": art.source, "format": art.format, "signature": art.signature,
                   "signatures": art.signature_names, "meta": None, "data": data.spec, "out": out,
                   "notes": notes, "feeds": plan.report()})
    refuse_failed_check(report)
    new_values = {layer.mean_key: layer.new_mean.reshape(layer.shape).astype(layer.dtype)
                  for layer in layers}
    new_values.update({layer.var_key: layer.new_var.reshape(layer.shape).astype(layer.dtype)
                       for layer in layers})
    written = writer.write(art, out, new_values, force)
    written["replaced_variables"] = sorted(art.variable_paths[c] for c in new_values)
    written["reloaded"] = verify_reloaded(art, writer.target(art.source, out), new_values, plan, batch,
                                          reference)
    report["written"] = written
    return report


def verify_reloaded(art, path, new_values, plan, batch, reference):
    """Read the written artefact back (``artefacts.load``): the statistics Consts equal the new
    values and its serving graph reproduces ``reference`` on ``batch``."""
    try:
        again = artefacts.load(path, signature=art.signature if art.format == "saved_model_tf2" else None)
    except artefacts.ArtefactError as err:
        raise RecalibrateError(f"{WHERE}: verification failed: the written model cannot be read "
                               f"back ({err})") from None
    by_path = {p: c for c, p in again.variable_paths.items()}
    for const, value in new_values.items():
        name = by_path.get(art.variable_paths[const])
        got = np.asarray(again.read(name)) if name else None
        if got is None or got.dtype != value.dtype or got.tobytes() != value.tobytes():
            raise RecalibrateError(f"{WHERE}: verification failed: {path} read back serves "
                                   f"{art.variable_paths[const]} = {got}, not the new values")
    result = {"path": path, "statistics_equal": len(new_values), "signatures": again.signature_names}
    if reference is None:
        return result
    stats = {by_path[art.variable_paths[c]] for c in new_values}
    same_error, tolerance = _run_again(again, art, plan, batch, reference, stats)
    if not same_error <= tolerance:
        raise RecalibrateError(f"{WHERE}: verification failed: {path} read back gives outputs off by "
                               f"{same_error:.3g} from the recalibrated graph's (tolerance {tolerance:.3g})")
    as_served, _ = _run_again(again, art, plan, batch, reference, set())
    if not np.isfinite(as_served):
        raise RecalibrateError(f"{WHERE}: verification failed: {path} read back gives non-finite outputs")
    result.update(output_max_error=same_error, output_tolerance=tolerance, output_as_served_max_error=as_served,
                  samples_run=len(next(iter(batch.values()))))
    return result


def _run_again(again, art, plan, batch, reference, variables):
    """(largest |difference|, tolerance) between ``again``'s outputs on ``batch`` and ``reference``,
    with its Consts ``variables`` run as variables (as in our graph: the same computation, so the
    same floats) or, when empty, as served (TensorFlow may fold the Consts: float32 rounding
    differences that grow with depth)."""
    placeholder_key = {tensor.split(":")[0]: key for key, tensor in art.inputs.items()}
    graph, sess = tf2_source.open_frozen(again, variables)
    feed = {}
    for data_key, tensor in plan.data.items():
        key = placeholder_key.get(tensor.op.name)
        name = again.inputs.get(key, tensor.name) if key else tensor.name
        target = graph.get_tensor_by_name(name)
        feed[target] = np.asarray(batch[data_key]).astype(target.dtype.as_numpy_dtype)
    for tensor, value in plan.constant.items():
        feed[graph.get_tensor_by_name(tensor.name)] = value
    fetches = {key: graph.get_tensor_by_name(again.outputs.get(key, name)) for key, name in art.outputs.items()}
    try:
        got = sess.run(fetches, feed)
    finally:
        sess.close()
    error, scale = 0.0, 0.0
    for key, value in reference.items():
        value = np.asarray(value, np.float64)
        error = max(error, float(np.max(np.abs(np.asarray(got[key], np.float64) - value), initial=0.0)))
        scale = max(scale, float(np.max(np.abs(value), initial=0.0)))
    return error, CHECK_ULPS * UNIT_ROUNDOFF * max(scale, 1e-30)
