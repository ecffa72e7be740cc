"""migrate: TF1 checkpoints to Keras 3 (verified per layer in a Keras 3 child process) and back.

Artefacts are real: the demo checkpoint is trained by ``model.train.train`` (with its .meta, so
the structural finder runs); a second checkpoint holds an article layer, a tf.layers layer
with center=False and slim-named statistics with scale=False, saved without a graph.
"""

import json
import os

import numpy as np
import pytest

from tf1_repro import cli
from tf1_repro.layers.bn import article_variable_names, bn_layer
from tf1_repro.legacy import implementations, migrate
from tf1_repro.model import train

from tests.conftest import tf

ROLES = ("gamma", "beta", "moving_mean", "moving_variance")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The demo checkpoint (30 steps) and its migration to Keras 3 (one Keras child process)."""
    folder = tmp_path_factory.mktemp("migrate")
    train.train(str(folder / "train"), 30, log=lambda line: None)
    report = migrate.migrate(str(folder / "train"), to="keras3", out=str(folder / "keras3"))
    return folder, report


def _read(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


@pytest.mark.slow
def test_demo_weights_are_the_checkpoints_values_unchanged(demo):
    folder, report = demo
    assert report["written"] == ["weights.npz", "layers.json", "model.keras"]
    assert os.path.isfile(folder / "keras3" / "model.keras")
    checkpoint = _read(str(folder / "train" / "model.ckpt-30"))
    with np.load(folder / "keras3" / "weights.npz") as weights:
        assert sorted(weights) == sorted(f"{n}/{r}" for n in ("bn_input", "bn_hidden") for r in ROLES)
        for name in ("bn_input", "bn_hidden"):
            keys = article_variable_names(name)
            for role in ROLES:
                assert weights[f"{name}/{role}"].tobytes() == checkpoint[keys[role]].tobytes()


@pytest.mark.slow
def test_demo_layers_json_read_from_the_graph_and_verified(demo):
    folder, report = demo
    with open(folder / "keras3" / "layers.json", encoding="utf-8") as f:
        entries = json.load(f)
    assert [e["name"] for e in entries] == ["bn_input", "bn_hidden"]
    first = entries[0]
    assert first["source"] == {"gamma": "bn_input/gamma", "beta": "bn_input/beat",
                               "moving_mean": "bn_input/bn_input/moments/Squeeze/ema",
                               "moving_variance": "bn_input/bn_input/moments/Squeeze_1/ema"}
    for e in entries:  # settings read from the graph by the finder, none assumed
        assert (e["momentum"], e["epsilon"], e["moving_variance_estimator"], e["assumed"]) == (
            0.9, 1e-5, "biased", [])
        assert e["keras_layer"] == "ArticleBatchNormalization"
        assert e["ok"] and e["relative_diff"] <= 1e-5
    assert report["found_by"] == "graph" and report["ok"]


@pytest.mark.slow
def test_demo_model_predicts_and_continues_training_like_tf1(demo):
    d = demo[1]["demo_model"]
    assert d["step"] == 30 and d["prediction_samples"] == 256
    assert d["prediction_relative"] <= 1e-5
    assert d["reloaded_identical"]
    # bn_input's beta feeds fc1 -> bn_hidden (training mode), which removes any constant shift:
    # its gradient is 0 in exact arithmetic, only rounding noise, which Adam rescales to steps
    assert list(d["gradient_free"]) == ["bn_input/beat"]
    assert d["gradient_free"]["bn_input/beat"] <= 1e-6 * d["largest_gradient"]
    pinned = d["trajectory_relative_diff_per_step"]["pinned"]
    assert len(pinned) == 20 and max(pinned) <= 1e-4
    assert d["trajectory_checked"] == "pinned" and d["ok"]


def _mixed_checkpoint(folder):
    """article layer + tf.layers center=False + slim scale=False, random values, no .meta."""
    rng = np.random.default_rng(3)
    with tf.Graph().as_default() as graph:
        x = tf.placeholder(tf.float32, [None, 4])
        with tf.variable_scope("block1"):
            bn_layer(x, True, "bn")
        implementations.tf_layers_batch_normalization()(
            x, training=True, center=False, name="block2/batch_normalization")
        with tf.variable_scope("conv1/BatchNorm"):
            for name in ("beta", "moving_mean", "moving_variance"):
                tf.get_variable(name, [4])
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            for v in tf.global_variables():
                value = rng.uniform(0.5, 2.0, v.shape.as_list()).astype(np.float32)
                v.load(value, sess)
            return tf.train.Saver().save(sess, str(folder / "mixed.ckpt"), write_meta_graph=False)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`tf.layers.batch_normalization` is deprecated")
def test_checkpoint_without_graph_every_naming(tmp_path):
    prefix = _mixed_checkpoint(tmp_path)
    report = migrate.migrate(prefix, to="keras3", out=str(tmp_path / "out"), epsilon=1e-3)
    assert report["found_by"] == "names" and report["demo_model"] is None and report["ok"]
    entries = {e["name"]: e for e in report["layers"]}
    assert sorted(entries) == ["block1/bn", "block2/batch_normalization", "conv1/BatchNorm"]
    assert [entries[n]["keras_layer"] for n in sorted(entries)] == [
        "ArticleBatchNormalization", "BatchNormalization", "BatchNormalization"]
    assert entries["block2/batch_normalization"]["source"]["beta"] is None
    assert entries["conv1/BatchNorm"]["source"]["gamma"] is None
    for e in entries.values():
        assert (e["epsilon"], e["momentum"]) == (1e-3, 0.9)
        assert e["assumed"][0] == "momentum"  # epsilon came from --epsilon
        assert e["relative_diff"] <= 1e-5
    values = _read(prefix)
    with np.load(tmp_path / "out" / "weights.npz") as weights:
        np.testing.assert_array_equal(weights["conv1/BatchNorm/gamma"], np.ones(4, np.float32))
        np.testing.assert_array_equal(weights["block2/batch_normalization/beta"], np.zeros(4))
        assert weights["conv1/BatchNorm/moving_variance"].tobytes() == \
            values["conv1/BatchNorm/moving_variance"].tobytes()


@pytest.mark.slow
def test_round_trip_to_article_and_back_is_bitwise(demo, tmp_path):
    folder, _ = demo
    npz = str(folder / "keras3" / "weights.npz")
    back = migrate.migrate(npz, to="article", out=str(tmp_path / "article"))
    assert back["bitwise"] and back["names_found_again"] and back["ok"]
    checkpoint = _read(str(folder / "train" / "model.ckpt-30"))
    written = _read(back["checkpoint"])
    assert sorted(written) == sorted(k for n in ("bn_input", "bn_hidden")
                                     for k in article_variable_names(n).values())
    for key, value in written.items():
        assert value.tobytes() == checkpoint[key].tobytes(), key
    from_keras = migrate.migrate(str(folder / "keras3" / "model.keras"), to="article",
                                 out=str(tmp_path / "from_keras"))
    assert from_keras["other_weights"] == ["fc1/kernel", "logits/bias", "logits/kernel"]
    for key, value in _read(from_keras["checkpoint"]).items():  # via the .keras's weights.h5
        assert value.tobytes() == checkpoint[key].tobytes(), key
    # TF1 serving keeps working: the whole demo model restores from the Keras 3 file
    x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
    logits = [_serving_logits(folder / "train", prefix, x)
              for prefix in (str(folder / "train" / "model.ckpt-30"), from_keras["checkpoint"])]
    np.testing.assert_array_equal(logits[0], logits[1])
    # with test_demo_weights_are_the_checkpoints_values_unchanged: checkpoint -> weights.npz ->
    # article checkpoint and checkpoint -> model.keras -> article checkpoint are bitwise


def _serving_logits(train_dir, prefix, x):
    from tf1_repro.model import ArticleModel  # pylint: disable=import-outside-toplevel
    config = ArticleModel.load_config(str(train_dir))
    with tf.Graph().as_default() as graph:
        model = ArticleModel(**config, serving=True)
        saver = tf.train.Saver([v for v in tf.global_variables() if v.op.name != "global_step"])
        with tf.Session(graph=graph) as sess:
            saver.restore(sess, prefix)
            return sess.run(model.logits, {model.x: x})


def _cli(capsys, *argv):
    code = cli.main(["migrate", *argv])
    err = capsys.readouterr().err
    return code, err


def test_no_bn_layers_exits_2_with_one_line(tmp_path, capsys):
    with tf.Graph().as_default() as graph:
        tf.get_variable("dense/kernel", [3, 4])
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver().save(sess, str(tmp_path / "plain.ckpt"), write_meta_graph=False)
    code, err = _cli(capsys, prefix, "--to", "keras3", "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("python -m tf1_repro migrate: PATH must hold BN layers")
    assert "got none among the 1 variables" in err
    assert not os.path.exists(tmp_path / "out")


def test_unreadable_data_exits_2(tmp_path, capsys):
    with tf.Graph().as_default() as graph:
        tf.get_variable("dense/kernel", [3, 4])
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver().save(sess, str(tmp_path / "plain.ckpt"), write_meta_graph=False)
    (tmp_path / "data.npz").write_text("not an npz")
    code, err = _cli(capsys, prefix, "--to", "keras3", "--out", str(tmp_path / "out"),
                     "--data", str(tmp_path / "data.npz"))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("python -m tf1_repro migrate: --data must be a .npz file of input arrays")


def test_wrong_statistics_shape_exits_2(tmp_path, capsys):
    names = article_variable_names("bn")
    with tf.Graph().as_default() as graph:
        for role, key in names.items():
            tf.get_variable(key, [5] if role == "moving_variance" else [4])
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver().save(sess, str(tmp_path / "bad.ckpt"), write_meta_graph=False)
    code, err = _cli(capsys, prefix, "--to", "keras3", "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1
    assert err == ("python -m tf1_repro migrate: layer bn: moving_variance must have the shape of "
                   "gamma (4,), got (5,) (bn/bn/moments/Squeeze_1/ema)\n")
    assert not os.path.exists(tmp_path / "out")


def test_existing_weights_without_force_exits_2_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "weights.npz").write_bytes(b"earlier")
    code, err = _cli(capsys, str(tmp_path / "missing"), "--to", "keras3", "--out", str(out))
    assert code == 2 and "PATH must be a TF1 checkpoint" in err  # PATH is checked first
    with tf.Graph().as_default() as graph:
        tf.get_variable("bn/gamma", [2])
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver().save(sess, str(tmp_path / "c.ckpt"), write_meta_graph=False)
    code, err = _cli(capsys, prefix, "--to", "keras3", "--out", str(out))
    assert code == 2 and err.count("\n") == 1
    assert err == (f"python -m tf1_repro migrate: --out must not hold weights.npz already (pass "
                   f"--force to overwrite), got {str(out)!r} with weights.npz\n")
    assert (out / "weights.npz").read_bytes() == b"earlier"
    assert sorted(os.listdir(out)) == ["weights.npz"]
