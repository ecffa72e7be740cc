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
from tf1_repro.comparisons import implementations
from tf1_repro.tools import migrate
from tf1_repro.model import train

import bn_builders as lb
import support
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


# ---- statistics shaped to broadcast, NCHW, graphs the finder misses, notes, shared layers ----

def _save(folder, build, shapes, steps=3, scale=2.0):
    """``build({name: placeholder}, training)`` trained ``steps`` steps on N(1, scale) batches
    (UPDATE_OPS run), saved with its .meta (``with_meta``) and without (``no_meta``)."""
    rng = np.random.default_rng(0)
    with tf.Graph().as_default() as graph:
        xs = {name: tf.placeholder(tf.float32, shape, name=name) for name, shape in shapes.items()}
        training = tf.placeholder_with_default(False, [], name="training")
        outputs = build(xs, training)
        updates = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(steps):
                feed = {x: rng.normal(1.0, scale, [8] + shapes[n][1:]).astype(np.float32)
                        for n, x in xs.items()}
                sess.run([outputs, updates], {**feed, training: True})
            saver = tf.train.Saver()
            return (saver.save(sess, str(folder / "with_meta" / "m.ckpt")),
                    saver.save(sess, str(folder / "no_meta" / "m.ckpt"), write_meta_graph=False))


def _hand_written(x, training, stat_shape, axes, eps=1e-3, scale=True):
    """Statistics (and gamma, beta) of ``stat_shape``; Sonnet-style updates in UPDATE_OPS."""
    gamma = tf.get_variable("gamma", stat_shape, initializer=tf.ones_initializer()) if scale else None
    beta = tf.get_variable("beta", stat_shape, initializer=tf.zeros_initializer())
    mm = tf.get_variable("moving_mean", stat_shape, initializer=tf.zeros_initializer(), trainable=False)
    mv = tf.get_variable("moving_variance", stat_shape, initializer=tf.ones_initializer(),
                         trainable=False)
    mean, var = tf.nn.moments(x, axes, keep_dims=True)
    lb._updates_in_collection(training, [(mm, mean), (mv, var)], 0.9, tf.GraphKeys.UPDATE_OPS)
    m, v = tf.cond(training, lambda: (tf.identity(mean), tf.identity(var)),
                   lambda: (tf.identity(mm), tf.identity(mv)))
    return tf.nn.batch_normalization(x, m, v, beta, gamma, eps)


def _broadcast_shapes(xs, training):
    with tf.variable_scope("sonnet"):
        outs = [lb.stats_1c_sonnet(xs["dense"], training)]  # (1, C)
    with tf.variable_scope("slim/BatchNorm"):
        outs.append(_hand_written(xs["nhwc"], training, [1, 1, 1, 3], [0, 1, 2], scale=False))
    with tf.variable_scope("nchw"):
        outs.append(_hand_written(xs["nchw"], training, [1, 3, 1, 1], [0, 2, 3]))
    h = tf.layers.conv2d(xs["nchw"], 6, 3, data_format="channels_first", name="conv")
    outs.append(tf.layers.batch_normalization(h, axis=1, fused=True, training=training,
                                              name="fused_nchw"))
    return outs


@pytest.fixture(scope="module")
def broadcast(tmp_path_factory):
    folder = tmp_path_factory.mktemp("broadcast")
    with_meta, no_meta = _save(folder, _broadcast_shapes, {
        "dense": [None, 4], "nhwc": [None, 5, 5, 3], "nchw": [None, 3, 5, 5]})
    reports = {how: migrate.migrate(prefix, out=str(folder / f"out_{how}"))
               for how, prefix in (("graph", with_meta), ("names", no_meta))}
    return folder, with_meta, reports


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`tf.layers")
def test_statistics_shaped_to_broadcast_are_written_as_vectors_and_verified(broadcast):
    folder, prefix, reports = broadcast
    for how, report in reports.items():
        entries = {e["name"]: e for e in report["layers"]}
        assert report["ok"], how
        assert entries["sonnet/batch_norm"]["stored_shapes"] == {
            "moving_mean": [1, 4], "moving_variance": [1, 4], "beta": [1, 4]}
        assert entries["slim/BatchNorm"]["stored_shapes"]["moving_mean"] == [1, 1, 1, 3]
        assert entries["nchw"]["stored_shapes"]["gamma"] == [1, 3, 1, 1]
        assert "beta stored as [1, 4] (broadcast to the channel axis): written to weights.npz " \
               "as (4,)" in entries["sonnet/batch_norm"]["notes"]
        for e in entries.values():
            assert e["relative_diff"] <= 1e-5, (how, e["name"])
    checkpoint = _read(prefix)
    with np.load(folder / "out_graph" / "weights.npz") as weights:
        for key in ("sonnet/batch_norm/moving_variance", "slim/BatchNorm/moving_mean",
                    "nchw/gamma", "fused_nchw/moving_variance"):
            assert weights[key].ndim == 1
            assert weights[key].tobytes() == checkpoint[key].tobytes(), key  # reshaped only
    with open(folder / "out_graph" / "layers.json", encoding="utf-8") as f:
        assert {e["name"]: e["stored_shapes"]["moving_mean"] for e in json.load(f)}[
            "nchw"] == [1, 3, 1, 1]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`tf.layers")
def test_nchw_layers_are_built_on_the_channel_axis(broadcast):
    _, _, reports = broadcast
    graph = {e["name"]: e for e in reports["graph"]["layers"]}
    assert {n: e["channel_axis"] for n, e in graph.items()} == {
        "sonnet/batch_norm": -1, "slim/BatchNorm": -1, "nchw": 1, "fused_nchw": 1}
    assert {n: e["verified_against"] for n, e in graph.items()} == dict.fromkeys(graph, "graph")
    assert "channels on axis 1 (NCHW): the Keras 3 layer is BatchNormalization(axis=1)" in \
        graph["fused_nchw"]["notes"]
    names = {e["name"]: e for e in reports["names"]["layers"]}
    # without a graph the axis comes from the (1, C, 1, 1) shape; the fused layer's (6,) says -1
    assert (names["nchw"]["channel_axis"], names["fused_nchw"]["channel_axis"]) == (1, -1)
    assert names["nchw"]["verified_against"] == "self-check"


def _not_understood(xs, training):
    """tf.layers names, but 1 / sqrt(var + eps) through tf.math.reciprocal instead of rsqrt: the
    finder finds no layer. ``bn``
    keeps tf.nn.batch_normalization's op names (bn/batchnorm/add_1), ``bn2`` does not."""
    outs = []
    for name, scope in (("bn", "batchnorm"), ("bn2", "norm")):
        x = xs["x"] * 0.03  # batch variance ~1e-3, so epsilon matters
        with tf.variable_scope(name):
            gamma = tf.get_variable("gamma", [4], initializer=tf.ones_initializer())
            mm = tf.get_variable("moving_mean", [4], initializer=tf.zeros_initializer(),
                                 trainable=False)
            mv = tf.get_variable("moving_variance", [4], initializer=tf.ones_initializer(),
                                 trainable=False)
            mean, var = tf.nn.moments(x, [0])
            lb._updates_in_collection(training, [(mm, mean), (mv, var)], 0.5,
                                      tf.GraphKeys.UPDATE_OPS)
            m, v = tf.cond(training, lambda: (tf.identity(mean), tf.identity(var)),
                           lambda: (tf.identity(mm), tf.identity(mv)))
            with tf.name_scope(scope):
                inv = tf.math.reciprocal(tf.sqrt(v + 1e-3)) * gamma
                outs.append(x * inv + (-m * inv))
    return outs


@pytest.mark.slow
def test_graph_not_understood_is_checked_against_the_graphs_own_output(tmp_path):
    prefix, _ = _save(tmp_path, _not_understood, {"x": [None, 4]}, steps=10)
    report = migrate.migrate(prefix, out=str(tmp_path / "out"))
    assert report["found_by"] == "names" and report["graph"] and not report["ok"]
    bn, bn2 = report["layers"]
    assert bn["verified_against"] == "graph output bn/batchnorm/add_1:0 (found by name)"
    assert bn["assumed"] == ["epsilon", "momentum"]
    assert "epsilon 1e-05 assumed (the .meta graph was not understood); --epsilon sets it" in \
        bn["notes"]
    assert not bn["ok"] and bn["relative_diff"] > 0.1  # eps 1e-5 vs the graph's 1e-3, var ~1e-3
    assert any(n.startswith("the Keras 3 layer with epsilon 1e-05 (not read from the graph) "
                            "differs from the graph's own output") for n in bn["notes"])
    assert bn2["verified_against"] == "self-check" and bn2["ok"]
    assert "no bn2/batchnorm/add_1 output found in the graph: the check is only a self-check" in \
        bn2["notes"]
    text = migrate.format_report(report)
    assert "found by checkpoint names (the .meta graph was not understood)" in text
    assert text.endswith("FAILED (limit 1e-05 relative per layer; only a self-check for bn2)")
    fixed = migrate.migrate(prefix, out=str(tmp_path / "out"), epsilon=1e-3, force=True)
    assert fixed["layers"][0]["relative_diff"] <= 1e-5 and fixed["ok"]


def _notes_and_sharing(xs, training):
    outs = [tf.layers.batch_normalization(xs["x"], training=training, renorm=True, name="renorm")]
    step = tf.train.get_or_create_global_step()
    with tf.variable_scope("ema_bn"):
        gamma = tf.get_variable("gamma", [4], initializer=tf.ones_initializer())
        beta = tf.get_variable("beta", [4], initializer=tf.zeros_initializer())
        mean, var = tf.nn.moments(xs["x"], [0])
        ema = tf.train.ExponentialMovingAverage(0.99, num_updates=step, name="ema")

        def train():
            with tf.control_dependencies([ema.apply([mean, var]), tf.assign_add(step, 1)]):
                return tf.identity(mean), tf.identity(var)
        m, v = tf.cond(training, train, lambda: (tf.identity(ema.average(mean)),
                                                 tf.identity(ema.average(var))))
        outs.append(tf.nn.batch_normalization(xs["x"], m, v, beta, gamma, 1e-5))
    for i in range(2):  # two towers sharing one tf.layers BN
        with tf.variable_scope("tower", reuse=i > 0):
            w = tf.get_variable("w", [4, 4])
        outs.append(tf.layers.batch_normalization(tf.matmul(xs["x"] * (i + 1.0), w),
                                                  training=training, name="shared", reuse=i > 0))
    return outs


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`tf.layers")
def test_renorm_decay_schedule_and_shared_layer_notes(tmp_path):
    prefix, _ = _save(tmp_path, _notes_and_sharing, {"x": [None, 4]})
    report = migrate.migrate(prefix, out=str(tmp_path / "out"))
    assert report["found_by"] == "graph" and report["ok"]
    layers = {e["name"]: e for e in report["layers"]}
    assert sorted(layers) == ["ema_bn", "renorm", "shared"]
    assert "renorm is dropped: the TF1 layer uses batch renormalisation, the Keras 3 layer is a " \
           "plain BatchNormalization; prediction is the same (moving statistics, gamma, beta), " \
           "continued training is not (no r/d corrections; renorm/renorm_mean, " \
           "renorm/renorm_stddev not migrated)" in layers["renorm"]["notes"]
    ema_bn = layers["ema_bn"]
    assert (ema_bn["momentum"], ema_bn["assumed"]) == (0.99, ["moving_variance_estimator"])
    assert not any("assumed" in note for note in ema_bn["notes"])
    # min(0.99, (1 + n) / (10 + n)) reaches 0.99 when n >= (10 * 0.99 - 1) / (1 - 0.99) = 890
    assert any(n.startswith("the TF1 decay is a schedule, min(0.99, (1 + step) / (10 + step))")
               and "capped at 0.99 from step 890" in n for n in ema_bn["notes"])
    shared = layers["shared"]
    assert [c[0] for c in shared["call_sites"]] == ["MatMul:0", "MatMul_1:0"]
    assert len(shared["call_site_relative_diffs"]) == 2
    assert max(shared["call_site_relative_diffs"]) <= 1e-5
    assert any(n.startswith("the variables are shared by 2 calls (inputs MatMul:0, MatMul_1:0): "
                            "one Keras 3 layer serves them all; verified on each call's own "
                            "input and output") for n in shared["notes"])


def _vanilla_dropout_then_bn(xs, training):
    keep_prob = tf.placeholder_with_default(0.8, [], name="keep_prob")
    h = lb.dropout_vanilla(xs["x"], keep_prob, training)
    return tf.layers.batch_normalization(h, training=training, name="bn")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`tf.layers")
def test_vanilla_dropout_keep_prob_must_come_from_data(tmp_path, capsys):
    prefix, _ = _save(tmp_path, _vanilla_dropout_then_bn, {"x": [None, 4]})
    code, err = _cli(capsys, prefix, "--to", "keras3", "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1
    head, _, tail = err.partition(" before the BN layers ")  # the dropout's name is the finder's
    assert head.startswith("python -m tf1_repro migrate: --data must give placeholder 'keep_prob', "
                           "the keep_prob of vanilla dropout ")
    assert tail == ("(prediction multiplies by keep_prob, so it needs the value it trained with, "
                    "which the graph does not hold), got no --data\n")
    assert not os.path.exists(tmp_path / "out")
    np.savez(tmp_path / "data.npz", keep_prob=np.float32(0.8))
    report = migrate.migrate(prefix, out=str(tmp_path / "out"), data=str(tmp_path / "data.npz"))
    assert report["ok"] and report["layers"][0]["relative_diff"] <= 1e-5


def _control_flow_v2_bn(xs, training):
    """tf.layers BN built under TF2 control flow (If ops), as without disable_v2_behavior()."""
    with support.tf2_control_flow():
        return [tf.layers.batch_normalization(xs["x"], training=training, name="bn")]


@pytest.mark.filterwarnings("ignore:`tf.layers")
def test_tf2_control_flow_exits_2_and_writes_nothing(tmp_path, capsys):
    prefix, _ = _save(tmp_path, _control_flow_v2_bn, {"x": [None, 4]}, steps=1)
    code, err = _cli(capsys, prefix, "--to", "keras3", "--out", str(tmp_path / "out"))
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("python -m tf1_repro migrate: the graph uses TF2 control flow (If ops "
                          "bn/cond")
    assert err.endswith("rebuild it under tf.compat.v1.disable_v2_behavior() (or "
                        "tf.compat.v1.disable_control_flow_v2()) and save again; nothing written\n")
    assert not os.path.exists(tmp_path / "out")


def _dcgan_towers(xs, training):  # pylint: disable=unused-argument
    """DCGAN-tensorflow's batch_norm class: the training tower (train=True) normalises with the
    batch's moments and updates an EMA of them; the sampler tower (train=False, reuse) reads the EMA."""
    with tf.variable_scope("d_bn1"):
        beta = tf.get_variable("beta", [4], initializer=tf.zeros_initializer())
        gamma = tf.get_variable("gamma", [4], initializer=tf.random_normal_initializer(1.0, 0.02))
        mean, var = tf.nn.moments(xs["x"], [0], name="moments")
        ema = tf.train.ExponentialMovingAverage(decay=0.9)
        with tf.control_dependencies([ema.apply([mean, var])]):
            m, v = tf.identity(mean), tf.identity(var)
        train_out = tf.nn.batch_norm_with_global_normalization(xs["x"], m, v, beta, gamma, 1e-5, True)
        sample_out = tf.nn.batch_norm_with_global_normalization(
            xs["x"] * 2.0, ema.average(mean), ema.average(var), beta, gamma, 1e-5, True)
    return [train_out, sample_out]


def test_shared_bn_checks_only_the_call_using_moving_statistics(tmp_path):
    prefix, _ = _save(tmp_path, _dcgan_towers, {"x": [None, 4]}, steps=3)
    report = migrate.migrate(prefix, out=str(tmp_path / "out"))
    (layer,) = report["layers"]
    assert report["ok"] and layer["relative_diff"] <= 1e-5
    assert [c[0] for c in layer["call_sites"]] == ["d_bn1/mul:0"]
    assert "call(s) on x:0 normalise with batch statistics (a training call) and are not checked: " \
           "Keras 3 prediction uses the moving statistics" in layer["notes"]


@pytest.mark.filterwarnings("ignore:`tf.layers")
def test_a_failing_run_names_the_users_placeholders_and_tfs_cause_in_a_short_line(tmp_path, capsys):
    """Issue #20.4: the line once listed every restore placeholder Artefact.open adds (534 on a
    real model) and ended at "Graph execution error:". BN layers whose input needs an int
    placeholder (``ids``) that --data does not give: the run fails for TensorFlow's reason."""
    with tf.Graph().as_default() as graph:
        images = tf.placeholder(tf.float32, [None, 4], name="images")
        ids = tf.placeholder(tf.int32, [None], name="ids")
        training = tf.placeholder_with_default(False, [], name="training")
        h = images + tf.nn.embedding_lookup(tf.get_variable("table", [10, 4]), ids)
        for i in range(30):
            h = tf.layers.batch_normalization(tf.layers.dense(h, 4, name=f"dense{i}"),
                                              training=training, name=f"bn{i}")
        variables = len(tf.global_variables())
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver().save(sess, str(tmp_path / "model" / "m.ckpt"))
            with pytest.raises(tf.errors.OpError) as run:  # TensorFlow's own error for this run
                sess.run(h, {images: np.ones((2, 4), np.float32)})
    cause = run.value.message.split("\nNode: 'ids'\n")[1].splitlines()[0]
    assert cause.startswith("You must feed a value for placeholder tensor 'ids'")
    np.savez(tmp_path / "data.npz", images=np.ones((2, 4), np.float32))
    code, err = _cli(capsys, prefix, "--to", "keras3", "--out", str(tmp_path / "out"),
                     "--data", str(tmp_path / "data.npz"))
    assert variables >= 150  # each restored through a placeholder of our own
    assert code == 2 and err.count("\n") == 1, err
    assert err == ("python -m tf1_repro migrate: --data must feed the graph's inputs for the BN "
                   "layers (fed --data: 'images'; nothing: 'ids'), got InvalidArgumentError: "
                   f"{cause}\n")
    assert "tf1_repro_restore" not in err and "Graph execution error" not in err
    assert len(err) < 400
    assert not os.path.exists(tmp_path / "out")
