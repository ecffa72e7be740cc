"""TensorBoard event files for an experiment: its graph, scalars and histograms.

The graph shows the article's ``tf.cond`` and EMA ops; scalars come from the
experiment's series (one tag per line), histograms from arrays it recorded.
View with ``make tensorboard`` (``tensorboard --logdir runs/tensorboard --host 127.0.0.1
--port 6006``); ``serve`` starts such a server for a test or a script and stops it.
"""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import tensorflow.compat.v1 as tf


def _histogram(values, bins=30):
    values = np.asarray(values, dtype=np.float64).ravel()
    counts, edges = np.histogram(values, bins=bins)
    return tf.HistogramProto(min=float(values.min()), max=float(values.max()), num=values.size,
                             sum=float(values.sum()), sum_squares=float((values ** 2).sum()),
                             bucket_limit=edges[1:].tolist(), bucket=counts.tolist())


def write_result(logdir, name, result):
    """Write one run under ``logdir/name``, replacing the event files an earlier run of it left
    there (a second event file in one run folder makes TensorBoard warn and overwrite the graph);
    returns that folder."""
    run_dir = os.path.join(logdir, name)
    if os.path.isdir(run_dir):
        for entry in os.listdir(run_dir):
            path = os.path.join(run_dir, entry)
            if entry.startswith("events.out.tfevents.") and os.path.isfile(path):
                os.remove(path)
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


def free_port(host="127.0.0.1"):
    """A TCP port nobody listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(logdir, runs=(), port=None, host="127.0.0.1", timeout=90.0):
    """Run a real TensorBoard server on ``host:port`` (a free port by default) over ``logdir``.

    Waits until ``/data/runs`` lists every name in ``runs`` (``TimeoutError`` after
    ``timeout`` seconds, ``RuntimeError`` if the server exits), yields its base URL,
    then stops it (terminate, kill after 20 s).
    """
    port = port or free_port(host)
    base = f"http://{host}:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir),
                             "--host", host, "--port", str(port), "--reload_interval", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"tensorboard exited with status {proc.returncode}: "
                                   f"{proc.stdout.read().strip()[-500:]}")
            try:
                with urllib.request.urlopen(f"{base}/data/runs", timeout=5) as response:
                    listed = json.loads(response.read().decode())
                if set(runs) <= set(listed):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"tensorboard on {base} did not list {sorted(runs)} within "
                                   f"{timeout:g} s")
            time.sleep(0.5)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
