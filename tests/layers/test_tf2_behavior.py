"""The layer is graph-agnostic: with TF2 behaviour left on (resource variables,
control flow v2) inside a tf.Graph it gives the TF1-behaviour numbers."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import support

SCRIPT = Path(support.TESTS) / "schedule_script.py"


def _run(tmp_path, *flags):
    out = tmp_path / f"run{''.join(flags)}.npz"
    subprocess.run([sys.executable, str(SCRIPT), str(out), *flags], check=True, timeout=300)
    return np.load(out)


def test_same_numbers_with_tf2_behaviour_in_a_graph(tmp_path):
    tf2 = _run(tmp_path)
    tf1 = _run(tmp_path, "--tf1")
    assert list(tf2["kinds"]) == ["ResourceVariable"] and bool(tf2["control_flow_v2"])
    assert list(tf1["kinds"]) == ["RefVariable"] and not bool(tf1["control_flow_v2"])
    assert "If" in tf2["op_types"] or "StatelessIf" in tf2["op_types"]  # a cond_v2 op
    assert {"Switch", "Merge"} <= set(tf1["op_types"]) and "If" not in tf1["op_types"]
    assert list(tf2["names"]) == list(tf1["names"]) == [
        "bn/gamma", "bn/beat", "bn/bn/moments/Squeeze/ema", "bn/bn/moments/Squeeze_1/ema"]
    for key in ("outputs", "means", "variances"):
        np.testing.assert_allclose(tf2[key], tf1[key], rtol=1e-6, atol=1e-6, err_msg=key)
