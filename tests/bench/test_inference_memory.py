"""bench-inference's memory measurement runs on the bench's small network and computes its fields
(peak RSS of to-inference in a child process, the baselines, the variables' bytes); no amount of
memory is asserted."""

import sys

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.bench import inference, memory


def test_memory_measure_on_the_bench_network_computes_every_field():
    result = memory.measure(cases=("article_net",), latency_runs=0)
    assert set(result) == {"tf_import_mb", "latency_runs", "cases"}
    assert result["latency_runs"] == 0 and result["tf_import_mb"] > 0
    (case,) = result["cases"]
    assert set(case) == {"case", "model_bytes", "restore_mb", "peak_rss_mb",
                         "peak_over_restore_mb", "step_peaks_mb", "largest_step_mb",
                         "peak_over_largest_step", "seconds", "ok"}
    assert case["case"] == "article_net" and case["ok"] is True
    assert case["peak_rss_mb"] > 0 and case["restore_mb"] > 0 and case["seconds"] > 0
    assert case["peak_over_restore_mb"] == case["peak_rss_mb"] - case["restore_mb"]
    # each step ran alone in its own child (a failed step would be None)
    assert set(case["step_peaks_mb"]) == set(memory.STEPS)
    assert all(p is not None and p > 0 for p in case["step_peaks_mb"].values())
    assert case["largest_step_mb"] == max(case["step_peaks_mb"].values())
    assert case["peak_over_largest_step"] == case["peak_rss_mb"] / case["largest_step_mb"]
    # the variables' bytes: what build_network declares, counted here from the graph
    with tf.Graph().as_default():
        inference.build_network(with_bn=True)
        declared = sum(int(np.prod(v.shape.as_list())) * v.dtype.base_dtype.size
                       for v in tf.global_variables())
    assert case["model_bytes"] == declared
    text = memory.format_memory(result)
    assert "article_net" in text and "peak RSS" in text and "largest step" in text


def test_child_peak_reports_the_child_alone():
    status, peak, seconds = memory.child_peak(
        [sys.executable, "-c", "b = bytearray(200 * 2 ** 20); b[::4096] = b'x' * len(b[::4096])"])
    assert status == 0 and seconds > 0
    # what is checked is the measuring, not a budget: the child touched 200 MB of pages
    assert peak >= 200


def test_child_peak_does_not_count_the_parents_pages():
    import resource  # pylint: disable=import-outside-toplevel
    status, peak, _ = memory.child_peak([sys.executable, "-c", "import sys; sys.exit(3)"])
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # TensorFlow is imported here
    assert status == 3 and peak < own
