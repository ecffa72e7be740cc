"""to-inference's timing (``tools/inference/latency.py``): one variant at a time, each runner
closed before the next opens; a variant that cannot run is a line, not a traceback."""

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.tools import inference as inf
from tf1_repro.tools.inference import formats, latency


def _frozen_scale_graph():
    """y = 2 x on x [None, 3] (a frozen GraphDef)."""
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        tf.identity(2.0 * x, name="y")
    return g.as_graph_def()


class Counted:
    """A real runner with its runs and close counted."""

    def __init__(self, runner):
        self.runner, self.runs, self.closed = runner, 0, False

    def run(self, feeds):
        self.runs += 1
        return self.runner.run(feeds)

    def close(self):
        self.closed = True
        self.runner.close()


BATCHES = {1: {"x:0": np.ones((1, 3), np.float32)}, 64: {"x:0": np.ones((64, 3), np.float32)}}


def test_time_variant_warms_up_times_every_size_and_closes_the_runner():
    counted = Counted(formats.open_graph_def(_frozen_scale_graph(), ["y:0"]))
    medians, error = latency.time_variant("folded", lambda: counted, BATCHES, runs=5)
    assert error is None and set(medians) == {"1", "64"} and min(medians.values()) > 0
    assert counted.runs == 2 * (1 + 5)  # 2 sizes x (1 warm-up + 5 rounds)
    assert counted.closed


def test_time_variant_that_cannot_run_is_a_line_and_its_runner_is_closed():
    counted = Counted(formats.open_graph_def(_frozen_scale_graph(), ["y:0"]))
    wrong = {1: {"x:0": np.ones((1, 4), np.float32)}}  # 4 columns into a [None, 3] placeholder
    medians, error = latency.time_variant("folded", lambda: counted, wrong, runs=5)
    assert medians is None and counted.closed
    assert error.startswith("cannot run: ValueError: Cannot feed value of shape (1, 4)"), error
    assert "\n" not in error


def test_time_variant_that_cannot_open_is_a_line():
    def refuse():
        raise OSError("no such file: model.onnx")
    assert latency.time_variant("onnxruntime", refuse, BATCHES, runs=1) == (
        None, "cannot run: OSError: no such file: model.onnx")


def test_to_inference_holds_one_served_model_at_a_time(article_checkpoint, tmp_path, monkeypatch):
    """Every runner of a served model (each format's, and the unfolded / folded graphs timed) is
    closed before the next one opens: at most one is open at any moment, and all are closed at
    the end; every variant is timed."""
    prefix, (logits, _), _ = article_checkpoint
    live, most, opened = set(), [0], []

    def counting(open_runner):
        def open_(*args, **kwargs):
            runner = open_runner(*args, **kwargs)
            key = object()
            live.add(key)
            most[0] = max(most[0], len(live))
            opened.append(open_runner.__name__)
            close = runner.close

            def closing():
                live.discard(key)
                close()
            runner.close = closing
            return runner
        return open_
    # (open_frozen opens through open_graph_def: counted once, as open_frozen)
    for name in ("open_frozen", "open_saved_model", "open_onnx", "open_tflite"):
        monkeypatch.setattr(formats, name, counting(getattr(formats, name)))
    report = inf.to_inference(prefix, [logits], str(tmp_path / "served"), latency_runs=2)
    assert report["ok"], report
    assert most[0] == 1 and not live
    # 4 formats verified (the frozen one's runner timed as "folded"), then the unfolded graph
    assert sorted(opened) == sorted(["open_saved_model", "open_frozen", "open_onnx", "open_tflite",
                                     "open_frozen"])
    assert list(report["latency_ms"]) == list(latency.VARIANTS)
    assert all(set(t) == {"1", "64"} for t in report["latency_ms"].values())
