"""The passes over the data: one per depth of BN layers (their input moments, then their new
statistics loaded into the session), then the check pass (their outputs' moments); the report's
numbers."""

import dataclasses
import time

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.tools.recalibrate.common import CHECK_ULPS, WHERE, RecalibrateError
from tf1_repro.tools.recalibrate.data import array_of, batches
from tf1_repro.tools.recalibrate.feeds import check_shape, checked_sum
from tf1_repro.tools.recalibrate.moments import ChannelMoments
from tf1_repro.tools.recalibrate.report import layer_report


@dataclasses.dataclass
class Pass:
    """One pass over the data: its name, size, time and fingerprint (the sum of its data)."""

    name: str
    samples: int = 0
    batches: int = 0
    seconds: float = 0.0
    fingerprint: float = 0.0


def _run_pass(sess, data, feeds, fetches, batch_size, max_samples, name, on_batch, bar_factory, total):
    """One pass over the data in prediction mode; ``on_batch(results, batch)`` per batch.

    One ``session.run`` per batch through ``Session.make_callable`` (the fetch and feed
    structure is resolved once, at the first batch, not per batch).
    """
    record = Pass(name)
    started = time.perf_counter()
    flat = tf.nest.flatten(fetches)
    constants = list(feeds.constant.items())
    constant_values = [v for _, v in constants]
    run, data_items = None, None
    required = list(feeds.data) + ([feeds.labels] if feeds.labels else [])
    with bar_factory(name, total=total, unit="batch") as bar:
        for batch in batches(data, required, batch_size, max_samples, feeds.optional):
            size = len(next(iter(batch.values())))
            if size == 0:
                continue
            if run is None:
                data_items = list(feeds.data.items()) + [(k, feeds.optional[k]) for k in batch
                                                         if k in feeds.optional and k not in feeds.data]
                run = sess.make_callable(flat, feed_list=[t for t, _ in constants] + [t for _, t in data_items])
            values = []
            for key, tensor in data_items:
                if key not in batch:
                    raise RecalibrateError(f"{WHERE}: --data {data.spec} batch {record.batches} has no key "
                                           f"{key!r}, which the first batch had")
                value = batch[key]
                if record.batches == 0 or data.kind == "generator":
                    check_shape(key, value.shape, tensor, "batch" if data.kind == "generator" else "array")
                record.fingerprint += checked_sum(key, value, record.samples)
                values.append(value if value.dtype == tensor.dtype.as_numpy_dtype
                              else value.astype(tensor.dtype.as_numpy_dtype))
            on_batch(tf.nest.pack_sequence_as(fetches, run(*constant_values, *values)), batch)
            record.samples += size
            record.batches += 1
            bar.update(1)
    record.seconds = time.perf_counter() - started
    return record


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1, **info):
        pass


def no_progress(desc, total=None, unit="it", initial=0):  # pylint: disable=unused-argument
    """A progress factory that shows nothing (``tf1_repro.progress.factory()`` shows a bar)."""
    return _NoBar()


def _accuracy_counter(labels_key):
    state = {"correct": 0, "total": 0}

    def count(predicted, batch):
        labels = np.asarray(batch[labels_key])
        predicted = np.asarray(predicted)
        if predicted.ndim == labels.ndim + 1:
            predicted = predicted.argmax(-1)
        if labels.ndim == predicted.ndim + 1:
            labels = labels.argmax(-1)
        if predicted.shape != labels.shape:
            raise RecalibrateError(f"{WHERE}: --predictions gives shape {predicted.shape} per batch, "
                                   f"--labels {labels.shape}; they must match (class ids or scores)")
        state["correct"] += int((predicted == labels).sum())
        state["total"] += int(labels.size)
    return state, count


def run_passes(sess, data, plan, layers, predictions, batch_size, max_samples, bar_factory, log):
    """Depth by depth: moments, then load them; then the check pass. Returns the report."""
    total_batches = None
    if data.kind != "generator":
        n = len(array_of(data.arrays[next(iter(plan.data))])) if plan.data else 0
        n = min(n, max_samples) if max_samples else n
        total_batches = -(-n // batch_size)
    passes = []
    accuracy = {}
    deepest = max(layer.depth for layer in layers)
    for depth in range(deepest + 1):
        group = [layer for layer in layers if layer.depth == depth]
        for layer in group:
            layer.site_moments = [ChannelMoments(layer.channels) for _ in layer.sites]
        fetches = {"moments": [layer.input_moments for layer in group]}
        state, count = _accuracy_counter(plan.labels) if (depth == 0 and predictions is not None) \
            else (None, None)
        if count:
            fetches["predictions"] = predictions

        def on_batch(results, batch, group=group, count=count):
            for layer, per_site in zip(group, results["moments"]):
                for moments, m in zip(layer.site_moments, per_site):
                    moments.merge(m["count"], m["mean"], m["m2"], m["absmax"])
            if count:
                count(results["predictions"], batch)
        record = _run_pass(sess, data, plan, fetches, batch_size, max_samples,
                           f"pass {depth + 1}/{deepest + 2}: depth {depth} ({len(group)} layer(s))",
                           on_batch, bar_factory, total_batches)
        _check_pass(passes, record, data)
        passes.append(record)
        if state:
            accuracy["before"] = state["correct"] / max(state["total"], 1)
        _load_statistics(sess, group, record)
        log(f"pass {depth + 1}: {record.samples} samples, {record.seconds:.2f} s")
    # check pass: prediction-mode outputs of every recalibrated layer (and accuracy after)
    for layer in layers:
        layer.out_moments = [ChannelMoments(layer.channels) for _ in layer.sites]
    fetches = {"outputs": [layer.output_moments for layer in layers]}
    state, count = _accuracy_counter(plan.labels) if predictions is not None else (None, None)
    if count:
        fetches["predictions"] = predictions

    def on_check(results, batch):
        for layer, per_site in zip(layers, results["outputs"]):
            for moments, m in zip(layer.out_moments, per_site):
                moments.merge(m["count"], m["mean"], m["m2"])
        if count:
            count(results["predictions"], batch)
    record = _run_pass(sess, data, plan, fetches, batch_size, max_samples,
                       f"pass {deepest + 2}/{deepest + 2}: check", on_check, bar_factory, total_batches)
    _check_pass(passes, record, data)
    passes.append(record)
    if state:
        accuracy["after"] = state["correct"] / max(state["total"], 1)
    rows = [layer_report(layer) for layer in layers]
    return _summary(passes, rows, deepest, accuracy)


def _load_statistics(sess, group, record):
    """Pool each layer's calls, refuse too few or non-finite values, and load the new mean and
    variance into the session's variables (the next depth's inputs depend on them)."""
    for layer in group:
        layer.moments = ChannelMoments.pooled(layer.site_moments)
        if layer.moments.count < 2:
            raise RecalibrateError(
                f"{WHERE}: BN layer {layer.info.name} needs at least 2 values per channel for a "
                f"variance, got {layer.moments.count} ({record.samples} sample(s))")
        if not (np.all(np.isfinite(layer.moments.mean)) and np.all(np.isfinite(layer.moments.m2))):
            raise RecalibrateError(f"{WHERE}: BN layer {layer.info.name}'s input is not finite over the "
                                   f"data (the model, not the data, produced NaN/inf)")
        layer.new_mean = layer.moments.mean
        layer.new_var = layer.moments.variance(layer.ddof)
        stored = {layer.mean_value: layer.new_mean.reshape(layer.shape).astype(layer.dtype),
                  layer.var_value: layer.new_var.reshape(layer.shape).astype(layer.dtype)}
        sess.run(layer.assign, stored)


def _summary(passes, rows, deepest, accuracy):
    """The report's numbers: samples, layers, passes, throughput, accuracy and the checks."""
    recal_seconds = sum(p.seconds for p in passes[:-1])
    return {
        "samples": passes[0].samples,
        "layers": [dict(row, samples=passes[0].samples) for row in rows],
        "passes": {"recalibration": deepest + 1, "check": 1, "total": deepest + 2,
                   "per_pass": [{"name": p.name, "samples": p.samples, "batches": p.batches,
                                 "seconds": p.seconds, "samples_per_second": p.samples / p.seconds
                                 if p.seconds else None} for p in passes]},
        "throughput": {"samples_per_second_per_pass": passes[0].samples * (deepest + 1) / recal_seconds
                       if recal_seconds else None,
                       "seconds": sum(p.seconds for p in passes)},
        "accuracy": accuracy or None,
        "checks_ok": all(r["check"]["holds"] for r in rows),
        "check_tolerance": f"{CHECK_ULPS} float32 ulps (u = 2^-24) of each channel's output scale "
                           f"S = |gamma| (max|x| + |m|)/sqrt(v + eps) + |beta|: mean within {CHECK_ULPS} u S, "
                           f"variance within 2 {CHECK_ULPS} u S sqrt(var) + ({CHECK_ULPS} u S)^2",
    }


def _check_pass(passes, record, data):
    if passes and (record.samples != passes[0].samples or record.fingerprint != passes[0].fingerprint):
        raise RecalibrateError(
            f"{WHERE}: --data {data.spec} must give the same data on every pass (FUNC is called once per "
            f"pass), got {record.samples} samples (sum {record.fingerprint:.17g}) after "
            f"{passes[0].samples} (sum {passes[0].fingerprint:.17g})")
