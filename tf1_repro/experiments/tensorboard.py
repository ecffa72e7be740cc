"""TensorBoard event files for an experiment: its graph, scalars and histograms.

The graph shows the article's ``tf.cond`` and EMA ops; scalars come from the
experiment's series (one tag per line), histograms from arrays it recorded.
View with ``pip install tensorboard`` then ``tensorboard --logdir DIR``.
"""

import os

import numpy as np
import tensorflow.compat.v1 as tf


def _histogram(values, bins=30):
    values = np.asarray(values, dtype=np.float64).ravel()
    counts, edges = np.histogram(values, bins=bins)
    return tf.HistogramProto(min=float(values.min()), max=float(values.max()), num=values.size,
                             sum=float(values.sum()), sum_squares=float((values ** 2).sum()),
                             bucket_limit=edges[1:].tolist(), bucket=counts.tolist())


def write_result(logdir, name, result):
    """Write one run under ``logdir/name``; returns that folder."""
    run_dir = os.path.join(logdir, name)
    writer = tf.summary.FileWriter(run_dir, graph=result.graph)
    try:
        for series_name, series in result.series.items():
            integer_x = all(float(v).is_integer() for v in series.x)
            for label, values in series.lines.items():
                tag = f"{series_name}/{label}".replace(" ", "_")
                for i, (x, y) in enumerate(zip(series.x, values)):
                    if y is None or not np.isfinite(y):
                        continue
                    step = int(x) if integer_x else i
                    writer.add_summary(tf.Summary(value=[tf.Summary.Value(
                        tag=tag, simple_value=float(y))]), step)
        for tag, points in result.histograms.items():
            for step, values in points:
                writer.add_summary(tf.Summary(value=[tf.Summary.Value(
                    tag=tag, histo=_histogram(values))]), int(step))
    finally:
        writer.close()
    return run_dir
