"""tf1_repro.keras: the article's layer and dropout as Keras 3 layers, against the TF1 graph.

The TF1 side runs here (the pytest process has TF1 behaviour); the Keras 3 side runs in one
child process (tests/layers/keras3_proof.py) that keeps TF2 behaviour.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tf1_repro.comparisons.compare_keras3 import article_run
from tests.support import TESTS

pytestmark = pytest.mark.slow  # one Keras 3 child process for the module, ~7 s

# prediction before training, training, prediction, training again, prediction
FLAGS = [False, True, True, True, False, True, True, False, False]
SHAPES = {"r2": (16, 3), "r4": (6, 2, 3, 3)}


def _batches(shape, seed):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=shape) * rng.uniform(0.5, 3.0, size=shape[-1])
             + rng.normal(2.0, 2.0, size=shape[-1])).astype(np.float32) for _ in FLAGS]


@pytest.fixture(scope="module")
def proof(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keras3")
    arrays, reference = {}, {}
    for seed, (prefix, shape) in enumerate(SHAPES.items()):
        batches = _batches(shape, seed)
        arrays.update({f"{prefix}/batch_{i}": b for i, b in enumerate(batches)})
        arrays[f"{prefix}/training"] = np.array(FLAGS)
        reference[prefix] = article_run(batches, FLAGS)  # the TF1 bn_layer graph, a session
    np.savez(folder / "in.npz", **arrays)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("TF_USE_LEGACY_KERAS", None)
    done = subprocess.run([sys.executable, os.path.join(TESTS, "layers", "keras3_proof.py"),
                           str(folder / "in.npz"), str(folder / "out.npz"), str(folder)],
                          capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    with np.load(folder / "out.npz") as out:
        keras_out = dict(out)
    return reference, keras_out, json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("prefix", sorted(SHAPES))
@pytest.mark.parametrize("mode", ["eager", "function"])
def test_same_sequence_as_the_tf1_graph_within_1e_6(proof, prefix, mode):
    reference, keras_out, _ = proof
    for i, (out, mean, var) in enumerate(reference[prefix]):
        scale = max(1.0, float(np.abs(out).max()))  # step 0 predicts gamma*x/sqrt(1e-5): ~1e3
        assert np.abs(keras_out[f"{prefix}/{mode}/out_{i}"] - out).max() <= 1e-6 * scale, i
        assert np.abs(keras_out[f"{prefix}/{mode}/moving_mean_{i}"] - mean).max() <= 1e-6, i
        assert np.abs(keras_out[f"{prefix}/{mode}/moving_variance_{i}"] - var).max() <= 1e-6, i
    # the shadows moved (4 training steps from zero) and prediction steps left them alone
    final_mean = reference[prefix][-1][1]
    assert np.abs(final_mean).min() > 0.1
    np.testing.assert_array_equal(keras_out[f"{prefix}/{mode}/moving_mean_8"],
                                  keras_out[f"{prefix}/{mode}/moving_mean_6"])


def test_initial_shadows_are_zero_not_one(proof):
    _, keras_out, _ = proof
    np.testing.assert_array_equal(keras_out["r2/eager/initial_moving_variance"], np.zeros(3))


def test_model_trains_with_fit_saves_and_reloads_identically(proof):
    fit = proof[2]["fit"]
    assert fit["identical"], fit["max_diff"]
    assert fit["reloaded_classes"] == ["ArticleBatchNormalization", "ArticleBatchNormalization",
                                       "InvertedDropout", "VanillaDropout"]
    assert fit["reloaded_config"] == {"momentum": 0.9, "epsilon": 1e-5, "keep_prob": 0.9}
    assert fit["losses"][-1] < fit["losses"][0]
    # 12 fit steps of decay 0.9 from a zero shadow: moving mean ~ (1 - 0.9**12) = 72% of the data's
    ratio = np.array(fit["moving_mean_input"]) / np.array(fit["data_mean"])
    assert np.abs(ratio[[0, 3]] - (1 - 0.9 ** fit["steps"])).max() < 0.1


def test_dropout_conventions(proof):
    d = proof[2]["dropout"]
    inverted, vanilla = d["InvertedDropout"], d["VanillaDropout"]
    assert inverted["train_values"] == [0.0, 1.25]  # x / 0.8 where kept
    assert inverted["predict_values"] == [1.0]      # x
    assert vanilla["train_values"] == [0.0, 1.0]    # x * mask
    assert vanilla["predict_values"] == [np.float32(0.8).item()]  # x * keep_prob
    se = (0.8 * 0.2 / 100_000) ** 0.5
    for r in (inverted, vanilla):
        assert abs(r["kept_fraction"] - 0.8) < 5 * se


def test_bad_arguments_name_the_argument(proof):
    momentum, epsilon, keep_prob, training = proof[2]["refusals"]
    assert momentum == "ValueError: ArticleBatchNormalization: momentum must be in [0, 1], got 1.5"
    assert epsilon == "ValueError: ArticleBatchNormalization: epsilon must be in (0, inf), got 0.0"
    assert keep_prob == "ValueError: InvertedDropout: keep_prob must be in (0, 1], got 0.0"
    assert training.startswith("TypeError: ArticleBatchNormalization: training must be a Python "
                               "bool or None")


def test_importing_tf1_repro_keras_is_explicit():
    code = ("import sys, tf1_repro, tf1_repro.layers, tf1_repro.tools.naming; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          timeout=120)
    assert done.stdout.split() == ["False", "False"]
