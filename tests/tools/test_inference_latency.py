"""to-inference's timing (``tools/inference/latency.py``): one variant at a time, each runner
closed before the next opens; a variant that cannot run is a line, not a traceback."""

import gc
import weakref

import numpy as np
import pytest
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


def _graphs_alive(before):
    """The tf.Graph objects with operations alive after a full collection that are not in
    ``before`` (an empty one is a thread's default graph, made on first use)."""
    gc.collect()
    return [o for o in gc.get_objects()
            if isinstance(o, tf.Graph) and o not in before and o.get_operations()]


def test_to_inference_holds_one_served_model_at_a_time(article_checkpoint, tmp_path, monkeypatch):
    """When each served model opens (each format's runner, then the unfolded graph timed), the
    original's session is closed, no earlier runner is open, and no TensorFlow graph of an
    earlier one (or of the original, the finder or the converters) is alive: a TF format's
    runner holds its own graph and nothing else, ONNX Runtime's and TFLite's none. Every
    variant is timed."""
    prefix, (logits, _), _ = article_checkpoint
    before = weakref.WeakSet(o for o in gc.get_objects() if isinstance(o, tf.Graph))
    live, opened, sessions = set(), [], []

    def counting(open_runner):
        def open_(*args, **kwargs):
            # the original's session: closed, or collected already
            assert sessions and all(s() is None or s()._closed for s in sessions)  # pylint: disable=protected-access
            assert not live, f"{open_runner.__name__} opens while another runner is open"
            runner = open_runner(*args, **kwargs)
            alive = _graphs_alive(before)
            opened.append((open_runner.__name__, len(alive)))
            key = object()
            live.add(key)
            close = runner.close

            def closing():
                live.discard(key)
                close()
            runner.close = closing
            return runner
        return open_

    def session(graph, sess, *args, **kwargs):
        sessions.append(weakref.ref(sess))  # (a list of the sessions would keep them alive)
        return open_session(graph, sess, *args, **kwargs)
    open_session = formats.open_session
    monkeypatch.setattr(formats, "open_session", session)
    # (open_frozen opens through open_graph_def: counted once, as open_frozen)
    for name in ("open_frozen", "open_saved_model", "open_onnx", "open_tflite"):
        monkeypatch.setattr(formats, name, counting(getattr(formats, name)))
    report = inf.to_inference(prefix, [logits], str(tmp_path / "served"), latency_runs=2)
    assert report["ok"], report
    assert not live
    # 4 formats verified (the frozen one's runner timed as "folded"), then the unfolded graph;
    # beside each: the graphs alive when it had opened
    assert opened == [("open_saved_model", 1), ("open_frozen", 1), ("open_onnx", 0),
                      ("open_tflite", 0), ("open_frozen", 1)]
    assert list(report["latency_ms"]) == list(latency.VARIANTS)
    assert all(set(t) == {"1", "64"} for t in report["latency_ms"].values())


def test_a_timing_copy_that_cannot_be_written_is_a_latency_line(article_checkpoint, tmp_path,
                                                                 monkeypatch):
    """The unfolded graph is written to the scratch folder to be timed later; when that write
    fails (here: the disk is full), that variant's latency is None with the reason, and the rest
    of the run goes on."""
    prefix, (logits, _), _ = article_checkpoint
    write = formats.write_frozen

    def full_disk(graph_def, path):
        if path.endswith("unfolded.pb"):
            raise OSError(28, "No space left on device")
        return write(graph_def, path)
    monkeypatch.setattr(formats, "write_frozen", full_disk)
    report = inf.to_inference(prefix, [logits], str(tmp_path / "served"), formats=["frozen"],
                              latency_runs=1)
    assert report["latency_ms"]["frozen_unfolded"] is None
    assert report["latency_errors"] == {
        "frozen_unfolded": "cannot run: OSError: [Errno 28] No space left on device"}
    assert report["artefacts"]["frozen"]["error"] is None and not report["ok"]
    assert set(report["latency_ms"]["folded"]) == {"1", "64"}


def test_a_closed_runner_lets_go_of_its_graph_while_it_is_still_held(tmp_path):
    """``close()`` drops what holds the graph and session, so they are collected at the next
    collection even while the caller still holds the runner (to-inference's loop does until
    its next turn), and a closed runner cannot run."""
    path = formats.write_frozen(_frozen_scale_graph(), str(tmp_path / "g.pb"))
    runner = formats.open_frozen(path, ["y:0"])
    assert runner.run(BATCHES[1])[0].tolist() == [[2.0, 2.0, 2.0]]
    graph = weakref.ref(next(o for o in gc.get_objects() if isinstance(o, tf.Graph) and
                             [op.name for op in o.get_operations()] == ["x", "mul/x", "mul", "y"]))
    runner.close()
    gc.collect()
    assert graph() is None
    with pytest.raises(RuntimeError, match="the runner is closed"):
        runner.run(BATCHES[1])
