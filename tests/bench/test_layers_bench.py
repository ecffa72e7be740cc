"""The benchmark runs at tiny sizes and writes valid JSON (no timing is asserted)."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_runs_at_tiny_sizes_and_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "tf1_repro", "bench", "--repeat", "2", "--shapes",
                           "8,4;2,3,3,4", "--hygiene-steps", "20", "--json", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    cases = result["cases"]
    assert {(c["impl"], c["mode"]) for c in cases} == {
        (i, m) for i in ("article", "fast", "fused", "tf.layers", "copy") for m in ("train", "infer")
        if not (i == "copy" and m == "train")}
    assert {tuple(c["shape"]) for c in cases} == {(8, 4), (2, 3, 3, 4)}
    for c in cases:
        assert set(c) == {"impl", "shape", "mode", "median_ms", "ratio_to_fused", "ratio_to_copy"}
        assert c["median_ms"] > 0
        if c["impl"] == "fused":
            assert c["ratio_to_fused"] == 1.0
    assert result["hygiene"]["steps"] == 20 and result["hygiene"]["graph_ops_constant"] is True
    assert "x fused" in done.stdout and "feed_dict cost" in done.stdout and "peak RSS" in done.stdout


def test_bad_shapes_exit_2():
    done = subprocess.run([sys.executable, "-m", "tf1_repro", "bench", "--shapes", "8"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 2 and "each shape must be N,C or N,H,W,C" in done.stderr
