"""recalibrate: exact BN statistics for a user's checkpoint, on real checkpoints, through the CLI.

Expected statistics are NumPy float64 moments, computed here, of each BN input as
the recalibrated checkpoint's own graph computes it (upstream in prediction
mode with the new statistics). A stored statistic is float32, so "equal" means
within one float32 ulp of the float64 value (rounding the float64 result).
"""

import glob
import hashlib
import json
import os
import warnings

import numpy as np
import pytest
import tensorflow.compat.v1 as tf
import support

from tf1_repro import cli
from tf1_repro.layers.bn import article_variable_names, bn_layer
from tf1_repro.tools import recalibrate as rc
from tf1_repro.comparisons.implementations import keras_batch_normalization_class, tf_layers_batch_normalization
from tf1_repro.model import data, demo

STEPS = 200
TRAIN_SIZE = 4096


# ---------------------------------------------------------------- models saved as users save them

def _dense(h, units, name, seed):
    with tf.variable_scope(name):
        kernel = tf.get_variable("kernel", [h.shape[-1], units],
                                 initializer=tf.glorot_uniform_initializer(seed=seed))
        return tf.matmul(h, kernel)


def _train_and_save(directory, build, sample, steps, wired=True, keep_prob=None):
    """Build ``build(x, training) -> (logits, extra updates)`` with Adam, train on ``sample(step)``, save."""
    graph = tf.Graph()
    with graph.as_default():
        tf.set_random_seed(0)
        x_shape = sample(0)[0].shape[1:]
        x = tf.placeholder(tf.float32, (None,) + x_shape, name="x")
        y = tf.placeholder(tf.int64, [None], name="y")
        training = tf.placeholder(tf.bool, [], name="training")
        logits, updates = build(x, training)
        tf.argmax(logits, 1, name="predictions")
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        step = tf.train.get_or_create_global_step()
        with tf.control_dependencies(updates if wired else []):
            train_op = tf.train.AdamOptimizer(0.01).minimize(loss, global_step=step)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            for i in range(steps):
                xb, yb = sample(i)
                feed = {x: xb, y: yb, training: True}
                if keep_prob is not None:
                    feed[graph.get_tensor_by_name("keep_prob:0")] = keep_prob
                sess.run(train_op, feed)
            return tf.train.Saver().save(sess, os.path.join(directory, "model.ckpt"), global_step=step)


def _tf_layers_builder(x, training):
    """x -> tf.layers BN -> dense 16 -> tf.layers BN -> relu -> dense 3 (updates in UPDATE_OPS)."""
    bn = tf_layers_batch_normalization()
    h = bn(x, training=training, momentum=0.9, name="bn_in")
    h = bn(_dense(h, 16, "fc1", 1), training=training, momentum=0.9, name="bn_hidden")
    return _dense(tf.nn.relu(h), 3, "logits", 2), tf.get_collection(tf.GraphKeys.UPDATE_OPS)


def _keras_conv_builder(x, training):
    """x [N, 8, 8, 1] -> conv 3x3 x4 -> tf-keras BN (fused kernel) -> relu -> mean -> dense 2."""
    with tf.variable_scope("conv1"):
        kernel = tf.get_variable("kernel", [3, 3, 1, 4], initializer=tf.glorot_uniform_initializer(seed=1))
        h = tf.nn.conv2d(x, kernel, [1, 1, 1, 1], "SAME")
    layer = keras_batch_normalization_class()(momentum=0.9, name="bn_conv")
    h = tf.reduce_mean(tf.nn.relu(layer(h, training=training)), axis=[1, 2])
    return _dense(h, 2, "logits", 2), list(layer.updates)


def _dropout_bn_builder(x, training):
    """x -> tf.nn.dropout(keep_prob) -> the article's bn_layer -> dense 3 (the variance-shift set-up)."""
    keep_prob = tf.placeholder(tf.float32, [], name="keep_prob")
    h = bn_layer(tf.nn.dropout(x, keep_prob=keep_prob, seed=3), training, "bn")
    return _dense(h, 3, "logits", 2), []


def _branches_builder(x, training):
    """Two BN layers side by side on x (depth 0, one pass), a third on their concatenation (depth 1)."""
    bn = tf_layers_batch_normalization()
    left = bn(_dense(x, 4, "left", 1), training=training, name="bn_left")
    right = bn(_dense(x, 4, "right", 2), training=training, name="bn_right")
    h = bn(tf.concat([left, tf.nn.relu(right)], 1), training=training, name="bn_join")
    return _dense(h, 3, "logits", 3), tf.get_collection(tf.GraphKeys.UPDATE_OPS)


def _no_bn_builder(x, training):
    return _dense(x, 3, "logits", 2), []


def _scaled_builder(x, training):
    """BN on x * scale, a placeholder the data does not hold."""
    scale = tf.placeholder(tf.float32, [], name="scale")
    return _tf_layers_builder(x * scale, training)


@pytest.fixture(scope="module")
def blobs():
    dataset = data.Blobs(seed=0)
    x, y = dataset.sample(TRAIN_SIZE, np.random.default_rng(5))
    x_test, y_test = data.held_out(dataset, 2048, 0)
    return dataset, x, y, x_test, y_test


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("recalibrate")


@pytest.fixture(scope="module")
def blobs_npz(work, blobs):
    path = str(work / "blobs.npz")
    np.savez(path, x=blobs[1], y=blobs[2])
    return path


def _blob_batches(dataset):
    return lambda step: data.train_batch(dataset, 64, 0, step)


@pytest.fixture(scope="module")
def tf_layers_pair(work, blobs):
    """The same model trained on the same batches, UPDATE_OPS not wired / wired."""
    sample = _blob_batches(blobs[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        broken = _train_and_save(str(work / "unwired"), _tf_layers_builder, sample, STEPS, wired=False)
        twin = _train_and_save(str(work / "wired"), _tf_layers_builder, sample, STEPS, wired=True)
    return broken, twin


# ---------------------------------------------------------------- helpers

def _cli(capsys, *argv):
    code = cli.main(["recalibrate", "--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _run_ok(capsys, path, data_spec, out, *extra):
    json_path = str(out) + ".json"
    code, text, err = _cli(capsys, str(path), "--data", data_spec, "--out", str(out), "--json",
                           json_path, *extra)
    assert code == 0, err
    with open(json_path, encoding="utf-8") as f:
        return json.load(f), text


def _restore(prefix):
    graph = tf.Graph()
    with graph.as_default():
        saver = tf.train.import_meta_graph(prefix + ".meta")
    sess = tf.Session(graph=graph)
    saver.restore(sess, prefix)
    return graph, sess


def _prediction_feed(graph, x):
    feed = {graph.get_tensor_by_name("x:0"): x, graph.get_tensor_by_name("training:0"): False}
    if "keep_prob" in {op.name for op in graph.get_operations()}:
        feed[graph.get_tensor_by_name("keep_prob:0")] = 1.0
    return feed


def _accuracy(prefix, x, y):
    graph, sess = _restore(prefix)
    with sess:
        return float((sess.run("predictions:0", _prediction_feed(graph, x)) == y).mean())


def _assert_exact_statistics(report, x, ddof_by_kind=None):
    """Each layer's stored mean/variance = NumPy moments of its input (as DIR's graph computes it)."""
    prefix = report["written"]["prefix"]
    reader = tf.train.load_checkpoint(prefix)
    graph, sess = _restore(prefix)
    with sess:
        for layer in report["layers"]:
            inputs = sess.run(layer["input"], _prediction_feed(graph, x)).astype(np.float64)
            flat = inputs.reshape(-1, inputs.shape[-1])
            ddof = (ddof_by_kind or {}).get(layer["kind"], 0)
            expected = {layer["moving_mean"]: flat.mean(0), layer["moving_variance"]: flat.var(0, ddof=ddof)}
            for key, value in expected.items():
                stored = reader.get_tensor(key).astype(np.float64)
                ulp = np.spacing(np.abs(value).astype(np.float32)).astype(np.float64)
                assert np.all(np.abs(stored - value) <= ulp), (layer["name"], key, stored - value, ulp)
            assert layer["values_per_channel"] == flat.shape[0]


def _findings(prefix):
    from tf1_repro.tools import doctor  # pylint: disable=import-outside-toplevel
    return {f["id"] for f in doctor.diagnose(prefix, run=False)["findings"]}


def _digests(directory):
    return {p: hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in sorted(glob.glob(os.path.join(directory, "*")))}


# ---------------------------------------------------------------- 1. UPDATE_OPS never wired

def test_unwired_update_ops_recalibrated_to_exact_statistics(capsys, work, blobs, blobs_npz, tf_layers_pair):
    broken, twin = tf_layers_pair
    source_files = _digests(os.path.dirname(broken))
    before = tf.train.load_checkpoint(broken)
    assert np.all(before.get_tensor("bn_in/moving_mean") == 0)  # never updated: initial values
    assert np.all(before.get_tensor("bn_hidden/moving_variance") == 1)
    assert "stats-never-updated" in _findings(broken)
    report, text = _run_ok(capsys, broken, blobs_npz, work / "fixed1")
    assert "stats-never-updated" not in _findings(report["written"]["prefix"])

    assert [layer["name"] for layer in report["layers"]] == ["bn_in", "bn_hidden"]
    assert [layer["depth"] for layer in report["layers"]] == [0, 1]
    assert report["passes"]["recalibration"] == 2 and report["passes"]["total"] == 3
    assert all(layer["variance_stored"] == "biased M2/n" for layer in report["layers"])
    assert all(layer["samples"] == TRAIN_SIZE for layer in report["layers"])
    assert report["checks_ok"] and "2 recalibration pass(es) + 1 check pass" in text
    _assert_exact_statistics(report, blobs[1])

    # every other variable bit for bit (Adam slots, global step); the source untouched
    after = tf.train.load_checkpoint(report["written"]["prefix"])
    replaced = set(report["written"]["replaced"])
    assert replaced == {"bn_in/moving_mean", "bn_in/moving_variance", "bn_hidden/moving_mean",
                        "bn_hidden/moving_variance"}
    names = before.get_variable_to_shape_map()
    assert set(after.get_variable_to_shape_map()) == set(names)
    assert {"global_step", "fc1/kernel/Adam", "bn_in/gamma/Adam_1"} <= set(names)
    for name in set(names) - replaced:
        assert before.get_tensor(name).tobytes() == after.get_tensor(name).tobytes(), name
    assert tf.train.latest_checkpoint(str(work / "fixed1")) == report["written"]["prefix"]
    assert _digests(os.path.dirname(broken)) == source_files

    # held-out accuracy back to the correctly wired twin's (same batches), within 1 point
    x_test, y_test = blobs[3], blobs[4]
    fixed, wired, unwired = (_accuracy(p, x_test, y_test) for p in (report["written"]["prefix"], twin, broken))
    assert abs(fixed - wired) <= 0.01, (fixed, wired, unwired)


# ---------------------------------------------------------------- 2. tf-keras BN in a TF1 graph

def test_keras_bn_in_tf1_graph_fused_convention(capsys, work):
    dataset = data.Stripes()
    sample = lambda step: data.train_batch(dataset, 32, 0, step)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        broken = _train_and_save(str(work / "keras_unwired"), _keras_conv_builder, sample, 150, wired=False)
        twin = _train_and_save(str(work / "keras_wired"), _keras_conv_builder, sample, 150, wired=True)
    assert np.all(tf.train.load_checkpoint(broken).get_tensor("bn_conv/moving_variance") == 1)
    assert "stats-never-updated" in _findings(broken)
    x, y = dataset.sample(1024, np.random.default_rng(7))
    path = str(work / "stripes.npz")
    np.savez(path, x=x, y=y)
    report, text = _run_ok(capsys, broken, path, work / "keras_fixed", "--labels", "y",
                           "--predictions", "predictions:0", "--batch-size", "100")
    (layer,) = report["layers"]
    assert layer["name"] == "bn_conv" and layer["kind"] == "fused"
    # the fused kernel's moving variance averages Bessel-corrected batch variances: M2/(n-1) stored
    assert layer["variance_stored"] == "unbiased M2/(n-1)" and "fused kernel: stored M2/(n-1)" in text
    assert layer["values_per_channel"] == 1024 * 8 * 8
    _assert_exact_statistics(report, x, ddof_by_kind={"fused": 1})
    assert "stats-never-updated" not in _findings(report["written"]["prefix"])
    x_test, y_test = dataset.sample(1024, np.random.default_rng(8))
    fixed, wired = _accuracy(report["written"]["prefix"], x_test, y_test), _accuracy(twin, x_test, y_test)
    assert abs(fixed - wired) <= 0.01, (fixed, wired)
    assert set(report["accuracy"]) == {"before", "after"}


# ---------------------------------------------------------------- 3. dropout before BN

def test_dropout_before_bn_variance_matches_closed_form(capsys, work, blobs, blobs_npz):
    dataset, x = blobs[0], blobs[1]
    keep = 0.5
    broken = _train_and_save(str(work / "shift"), _dropout_bn_builder, _blob_batches(dataset), STEPS,
                             keep_prob=keep)
    report, text = _run_ok(capsys, broken, blobs_npz, work / "shift_fixed", "--labels", "y",
                           "--predictions", "predictions")
    assert "prediction feeds: keep_prob=1.0, training=False" in text  # inverted dropout: off at 1.0
    (layer,) = report["layers"]
    old, new = np.array(layer["old_variance"]), np.array(layer["new_variance"])
    # closed form (Li et al. 2019): with dropout off the BN input is x, variance = population_var;
    # tolerance 5 standard errors of a sample variance of TRAIN_SIZE values, sqrt((mu4 - var^2)/n)
    centred = x.astype(np.float64) - x.mean(0)
    se = np.sqrt(((centred ** 4).mean(0) - (centred ** 2).mean(0) ** 2) / len(x))
    assert np.all(np.abs(new - dataset.population_var) <= 5 * se), (new, dataset.population_var, se)
    # before: the EMA of training-time variances, (mean^2 + var)/keep - mean^2 > var: a shift of >= 5 SE
    mean, var = dataset.population_mean, dataset.population_var
    shifted = (mean ** 2 + var) / keep - mean ** 2
    assert np.all(old - new > 5 * se) and np.all(shifted > var)
    acc = report["accuracy"]
    assert 0 <= acc["before"] <= 1 and 0 <= acc["after"] <= 1
    assert f"{acc['before']:.4f} before -> {acc['after']:.4f} after" in text


# ---------------------------------------------------------------- 4. the article's layer after 5 steps

def test_article_layer_after_five_steps_is_exact(capsys, work, blobs, blobs_npz):
    out = str(work / "demo5")
    demo.run_demo(steps=5, batch_size=16, test_size=64, out_dir=out, log=lambda _: None)
    report, _ = _run_ok(capsys, out, blobs_npz, work / "demo5_fixed")
    by_name = {layer["name"]: layer for layer in report["layers"]}
    assert set(by_name) == {"bn_input", "bn_hidden"}
    names = article_variable_names("bn_input")
    assert by_name["bn_input"]["moving_mean"] == names["moving_mean"]
    # before: zero-initialised, not debiased: sum_k 0.1 * 0.9**(4-k) * mean(batch k), weights sum 1 - 0.9**5
    batches = [data.train_batch(blobs[0], 16, 0, k)[0].astype(np.float64) for k in range(5)]
    ema = sum(0.1 * 0.9 ** (4 - k) * b.mean(0) for k, b in enumerate(batches))
    np.testing.assert_allclose(by_name["bn_input"]["old_mean"], ema, rtol=1e-5, atol=1e-6)
    # exact: float64 moments of the raw data, rounded once to float32
    x = blobs[1].astype(np.float64)
    reader = tf.train.load_checkpoint(report["written"]["prefix"])
    assert np.array_equal(reader.get_tensor(names["moving_mean"]), x.mean(0).astype(np.float32))
    assert np.array_equal(reader.get_tensor(names["moving_variance"]), x.var(0).astype(np.float32))
    _assert_exact_statistics(report, blobs[1])


def test_layers_at_the_same_depth_share_a_pass(capsys, work, blobs, blobs_npz):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prefix = _train_and_save(str(work / "branches"), _branches_builder, _blob_batches(blobs[0]), 0)
    report, _ = _run_ok(capsys, prefix, blobs_npz, work / "branches_fixed")
    assert {layer["name"]: layer["depth"] for layer in report["layers"]} == \
        {"bn_left": 0, "bn_right": 0, "bn_join": 1}
    assert report["passes"]["recalibration"] == 2
    assert [p["name"] for p in report["passes"]["per_pass"]] == [
        "pass 1/3: depth 0 (2 layer(s))", "pass 2/3: depth 1 (1 layer(s))", "pass 3/3: check"]
    _assert_exact_statistics(report, blobs[1])


# ---------------------------------------------------------------- 5. streaming == one batch

def test_streaming_equals_one_big_batch(work, blobs_npz, tf_layers_pair):
    results = [rc.recalibrate(tf_layers_pair[0], blobs_npz, str(work / f"stream_{b}"), batch_size=b)
               for b in (7, TRAIN_SIZE)]
    for small, big in zip(*(r["layers"] for r in results)):
        for key in ("new_mean", "new_variance"):
            a, b = np.array(small[key]), np.array(big[key])
            scale = np.sqrt(np.array(big["new_variance"])) if key == "new_mean" else np.abs(b)
            assert np.all(np.abs(a - b) <= 1e-6 * scale), (small["name"], key)
    assert results[0]["passes"]["per_pass"][0]["batches"] == -(-TRAIN_SIZE // 7)


def test_channel_moments_chan_merge_matches_numpy(rng):
    values = rng.normal(3.0, 2.0, size=(1001, 5)) * [1, 10, 100, 1e3, 1e4]
    streamed = rc.ChannelMoments(5)
    for start in range(0, 1001, 13):
        streamed.add(values[start:start + 13])
    whole = values.astype(np.float64)
    assert streamed.count == 1001
    np.testing.assert_allclose(streamed.mean, whole.mean(0), rtol=1e-12)
    np.testing.assert_allclose(streamed.variance(0), whole.var(0), rtol=1e-12)
    np.testing.assert_allclose(streamed.variance(1), whole.var(0, ddof=1), rtol=1e-12)


def test_data_sources_agree(capsys, work, blobs, blobs_npz, tf_layers_pair):
    """.npz, .npy and module.py:FUNC give the same statistics."""
    x = blobs[1]
    np.save(str(work / "x.npy"), x)
    module = work / "feeds.py"
    module.write_text("import numpy as np\n\ndef batches():\n"
                      f"    x = np.load({str(work / 'x.npy')!r})\n"
                      "    for i in range(0, len(x), 500):\n        yield {'x': x[i:i + 500]}\n")
    reports = [_run_ok(capsys, tf_layers_pair[0], spec, work / f"src_{i}")[0]
               for i, spec in enumerate((str(work / "x.npy"), f"{module}:batches"))]
    reference = rc.recalibrate(tf_layers_pair[0], blobs_npz, str(work / "src_ref"))
    for report in reports:
        for got, want in zip(report["layers"], reference["layers"]):
            assert np.allclose(got["new_variance"], want["new_variance"], rtol=1e-6)
            assert got["samples"] == TRAIN_SIZE


# ---------------------------------------------------------------- 6. bad input: exit 2, one line, nothing written

@pytest.fixture(scope="module")
def odd_models(work, blobs):
    sample = _blob_batches(blobs[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        no_bn = _train_and_save(str(work / "no_bn"), _no_bn_builder, sample, 2)
        scaled = _train_and_save(str(work / "scaled"), _scaled_builder,
                                 sample, 0)
    return no_bn, scaled


def _bad_cases(work, blobs, tf_layers_pair, odd_models):
    x = blobs[1]
    np.savez(str(work / "narrow.npz"), x=x[:, :7])
    bad = x[:100].copy()
    bad[37, 2] = np.nan
    np.savez(str(work / "nan.npz"), x=bad)
    np.savez(str(work / "one.npz"), x=x[:1])
    inf_module = work / "inf_feeds.py"
    inf_module.write_text("import numpy as np\n\ndef batches():\n    for i in range(3):\n"
                          "        x = np.ones((10, 8), np.float32)\n        if i == 2:\n"
                          "            x[4, 0] = np.inf\n        yield {'x': x}\n")
    broken = tf_layers_pair[0]
    return [
        ([broken, "--data", str(work / "narrow.npz")],
         "data array 'x' has shape (4096, 7), but placeholder x:0 takes (None, 8)"),
        ([broken, "--data", str(work / "nan.npz")], "data 'x' must be finite, got nan in sample 37"),
        ([broken, "--data", f"{inf_module}:batches"], "data 'x' must be finite, got inf in sample 24"),
        ([odd_models[0], "--data", str(work / "blobs.npz")], "PATH must hold a graph with BN layers, got none"),
        ([odd_models[1], "--data", str(work / "blobs.npz")],
         "placeholder 'scale' is needed to compute the BN inputs but the data has no 'scale' (keys: x, y) "
         "and no --feed scale=VALUE was given"),
        ([broken, "--data", str(work / "one.npz")],
         "BN layer bn_in needs at least 2 values per channel for a variance, got 1 (1 sample(s))"),
        ([broken, "--data", str(work / "missing.npz")], "--data must be an existing file"),
        ([broken, "--data", "no_such_module.py:f"], "no file 'no_such_module.py'"),
        ([str(work / "nowhere"), "--data", str(work / "blobs.npz")], "PATH must be a checkpoint prefix"),
        ([broken, "--data", str(work / "blobs.npz"), "--labels", "y"], "--labels and --predictions go together"),
        ([broken, "--data", str(work / "blobs.npz"), "--labels", "y", "--predictions", "nope:0"],
         "--predictions must name a tensor in the graph, got 'nope:0'"),
        ([broken, "--data", str(work / "blobs.npz"), "--feed", "training"], "--feed must be NAME=VALUE"),
        ([broken, "--data", str(work / "blobs.npz"), "--labels", "label", "--predictions", "predictions:0"],
         "--labels must be a key of the data, got 'label' (keys: x, y)"),
    ]


def test_bad_inputs_exit_2_one_line_write_nothing(capsys, work, blobs, blobs_npz, tf_layers_pair, odd_models):
    source_files = _digests(os.path.dirname(tf_layers_pair[0]))
    for i, (argv, message) in enumerate(_bad_cases(work, blobs, tf_layers_pair, odd_models)):
        out = work / f"refused_{i}"
        code, text, err = _cli(capsys, *argv, "--out", str(out))
        assert code == 2, (argv, err)
        assert err.count("\n") == 1 and message in err, (message, err)
        assert "Traceback" not in err and not os.path.exists(out), argv
    assert _digests(os.path.dirname(tf_layers_pair[0])) == source_files
    # the scaled model works once --feed gives the placeholder
    report, _ = _run_ok(capsys, odd_models[1], blobs_npz, work / "scaled_fixed", "--feed", "scale=2.0")
    assert np.allclose(report["layers"][0]["new_mean"], 2 * blobs[1].astype(np.float64).mean(0), rtol=1e-6)


def test_check_catches_a_misread_layer(work, blobs_npz, tf_layers_pair):
    """The check pass stops a wrong result: told epsilon 0.1 (the layers use 1e-3), the outputs'
    variance gamma^2 var/(var + 1e-3) misses gamma^2 var/(var + 0.1) far beyond 64 ulps; nothing written."""
    from tf1_repro.tools import finder  # pylint: disable=import-outside-toplevel

    def misread(graph):
        found = finder.find(graph)
        assert [layer.epsilon for layer in found.bn_layers] == pytest.approx([1e-3, 1e-3])
        for layer in found.bn_layers:
            layer.epsilon = 0.1
        return found
    with pytest.raises(rc.RecalibrateError, match="the check failed for BN layer bn_in .* nothing written"):
        rc.recalibrate(tf_layers_pair[0], blobs_npz, str(work / "wrong"), find=misread)
    assert not os.path.exists(work / "wrong")


def test_out_holding_a_checkpoint_needs_force(capsys, work, blobs_npz, tf_layers_pair):
    out = work / "twice"
    _run_ok(capsys, tf_layers_pair[0], blobs_npz, out)
    files = _digests(str(out))
    code, _, err = _cli(capsys, tf_layers_pair[0], "--data", blobs_npz, "--out", str(out))
    assert code == 2 and "already holds a checkpoint" in err and "--force" in err
    assert _digests(str(out)) == files
    code, _, err = _cli(capsys, tf_layers_pair[0], "--data", blobs_npz, "--out",
                        os.path.dirname(tf_layers_pair[0]), "--force")
    assert code == 2 and "must not be the source checkpoint's directory" in err
    report, _ = _run_ok(capsys, tf_layers_pair[0], blobs_npz, out, "--force")
    assert report["written"]["latest_checkpoint"] == os.path.join(str(out), "model.ckpt-200")


def test_a_copied_checkpoint_directory_is_read_and_protected_as_itself(capsys, work, blobs_npz,
                                                                     tf_layers_pair):
    """TF1 Savers write absolute paths into the ``checkpoint`` state file, so a copied folder
    still names the original: the copy's own files are read, and --out COPY --force is refused."""
    import shutil  # pylint: disable=import-outside-toplevel
    source = os.path.dirname(tf_layers_pair[0])
    copy = work / "copied_checkpoint"
    shutil.copytree(source, copy)
    assert str(source) in (copy / "checkpoint").read_text()
    files = _digests(str(copy))
    code, _, err = _cli(capsys, str(copy), "--data", blobs_npz, "--out", str(copy), "--force")
    assert code == 2 and "must not be the source checkpoint's directory" in err
    assert _digests(str(copy)) == files
    report, _ = _run_ok(capsys, str(copy), blobs_npz, work / "from_copy")
    assert report["source"].startswith(str(copy))


# ---------------------------------------------------------------- every legacy builder: exact or refused

REFUSED = {
    "ema_outside_cond": "updates its moving statistics whenever it predicts",
    "batch_stats_at_inference": "all using batch statistics at prediction",
    "local_stats_at_prediction": "all using batch statistics at prediction",
    "batch_stats_only": "all using batch statistics at prediction",
}
UNBIASED = {"bessel_corrected", "tf_layers_fused", "python_bool_separate"}


@pytest.mark.slow
def test_every_legacy_builder_exact_or_refused(capsys, work):
    """Saved right after initialisation; x [512, 2, 2, 4] ~ N(3, 2^2): stored = NumPy moments of x."""
    import bn_builders as lb  # pylint: disable=import-outside-toplevel
    x = (3 + 2 * np.random.default_rng(0).standard_normal((512, 2, 2, 4))).astype(np.float32)
    path = str(work / "conv.npz")
    np.savez(path, x=x)
    flat = x.reshape(-1, 4).astype(np.float64)
    names = ["article", "decay_half_eps_1e3", "zero_debiased", "update_ops_only", "bessel_corrected",
             "trainable_moving_stats", "python_bool_shared", "python_bool_separate", "tf_layers_non_fused",
             "tf_layers_fused", "gamma_random_normal", "stats_1c_sonnet", "two_stage_assigner",
             "custom_collection", "renorm_like"] + sorted(REFUSED)
    for name in names:
        directory = work / "builders" / name
        directory.mkdir(parents=True)
        with tf.Graph().as_default() as graph, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            inputs = tf.placeholder(tf.float32, [None, 2, 2, 4], name="x")
            training = tf.placeholder(tf.bool, [], name="training")
            if name.startswith("python_bool"):
                getattr(lb, name)(inputs, True)
                getattr(lb, name)(inputs, False)
            else:
                getattr(lb, name)(inputs, training)
            with tf.Session(graph=graph) as sess:
                sess.run(tf.global_variables_initializer())
                tf.train.Saver().save(sess, str(directory / "m.ckpt"))
        code, _, err = _cli(capsys, str(directory), "--data", path, "--out", str(directory) + "_out",
                            "--json", str(directory) + ".json")
        if name in REFUSED:
            assert code == 2 and REFUSED[name] in err and not os.path.exists(str(directory) + "_out"), (name, err)
            continue
        assert code == 0, (name, err)
        with open(str(directory) + ".json", encoding="utf-8") as f:
            (layer,) = json.load(f)["layers"]
        ddof = 1 if name in UNBIASED else 0
        assert layer["variance_stored"] == ("unbiased M2/(n-1)" if ddof else "biased M2/n"), name
        reader = tf.train.load_checkpoint(str(directory) + "_out")
        expected = {layer["moving_mean"]: flat.mean(0), layer["moving_variance"]: flat.var(0, ddof=ddof)}
        for key, want in expected.items():
            got = reader.get_tensor(key).astype(np.float64).reshape(-1)
            assert np.all(np.abs(got - want) <= np.spacing(want.astype(np.float32))), (name, key)


# ---------------------------------------------------------------- round 2: modes, shared layers, renorm, NCHW

def _save_small(directory, build, steps=0):
    """``build() -> (feed for a training step, train op or None)`` in a new graph; ``steps`` plain
    SGD steps, then a Saver checkpoint in ``directory``."""
    with tf.Graph().as_default() as graph, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tf.set_random_seed(0)
        feed, train_op = build()
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(steps):
                sess.run(train_op, feed)
            return tf.train.Saver().save(sess, os.path.join(str(directory), "m.ckpt"))


def _assert_stored(prefix, expected):
    """Each stored statistic equals float32 rounding of the float64 value, within one float32 ulp."""
    reader = tf.train.load_checkpoint(prefix)
    for key, want in expected.items():
        got = reader.get_tensor(key).astype(np.float64).reshape(-1)
        assert np.all(np.abs(got - want) <= np.spacing(np.abs(want).astype(np.float32))), (key, got, want)


@pytest.fixture(scope="module")
def small_x():
    return (3 + 2 * np.random.default_rng(1).standard_normal((512, 4))).astype(np.float32)


def test_vanilla_dropout_keep_prob_needs_feed_then_exact(capsys, work, small_x):
    """Vanilla dropout (training h*mask, prediction h*keep_prob) before a BN: prediction mode feeds the
    training keep_prob, which the graph does not hold. Refused without --feed; with --feed keep_prob=0.5
    the statistics are those of 0.5*x exactly."""
    import bn_builders as lb  # pylint: disable=import-outside-toplevel

    def build():
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        training = tf.placeholder(tf.bool, [], name="training")
        keep_prob = tf.placeholder(tf.float32, [], name="keep_prob")
        lb.tf_layers_non_fused(lb.dropout_vanilla(x, keep_prob, training), training)
        return None, None
    prefix = _save_small(work / "vanilla", build)
    path = str(work / "vanilla.npz")
    np.savez(path, x=small_x)
    code, _, err = _cli(capsys, prefix, "--data", path, "--out", str(work / "vanilla_out"))
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert "placeholder 'keep_prob' is the keep_prob of vanilla dropout" in err
    assert "pass --feed keep_prob=VALUE (the keep_prob it trained with)" in err
    assert not os.path.exists(work / "vanilla_out")
    report, text = _run_ok(capsys, prefix, path, work / "vanilla_out", "--feed", "keep_prob=0.5")
    assert "prediction feeds: keep_prob=0.5 (--feed), training=False" in text
    assert report["feeds"] == [{"name": "keep_prob", "value": 0.5, "source": "--feed"},
                               {"name": "training", "value": False, "source": "prediction mode"}]
    h = 0.5 * small_x.astype(np.float64)  # prediction: h * keep_prob (0.5 is exact in float32)
    _assert_stored(report["written"]["prefix"], {"batch_normalization/moving_mean": h.mean(0),
                                                 "batch_normalization/moving_variance": h.var(0)})


def test_shared_bn_pools_every_call(capsys, work, small_x):
    """Two towers x_a, x_b -> one matmul kernel -> one tf.layers BN (reuse=True): the stored statistics
    are the moments of both calls' inputs pooled, and each call's output passes the check."""
    def build():
        x_a = tf.placeholder(tf.float32, [None, 4], name="x_a")
        x_b = tf.placeholder(tf.float32, [None, 4], name="x_b")
        training = tf.placeholder(tf.bool, [], name="training")
        kernel = tf.get_variable("w", [4, 3], initializer=tf.glorot_uniform_initializer(seed=1))
        bn = tf_layers_batch_normalization()
        bn(tf.matmul(x_a, kernel), training=training, name="bn")
        bn(tf.matmul(x_b, kernel), training=training, name="bn", reuse=True)
        return None, None
    prefix = _save_small(work / "towers", build)
    x_b = 2 * small_x[::-1] + 5  # another distribution on the second tower
    path = str(work / "towers.npz")
    np.savez(path, x_a=small_x, x_b=x_b)
    report, text = _run_ok(capsys, prefix, path, work / "towers_out")
    (layer,) = report["layers"]
    assert [c["input"] for c in layer["calls"]] == ["MatMul:0", "MatMul_1:0"]
    assert all(c["check"]["holds"] for c in layer["calls"]) and layer["values_per_channel"] == 2 * 512
    assert "variables shared by 2 calls" in text
    kernel = tf.train.load_checkpoint(prefix).get_tensor("w").astype(np.float64)
    pooled = np.concatenate([small_x @ kernel, x_b @ kernel])  # float64; the graph's float32 matmul
    graph, sess = _restore(report["written"]["prefix"])        # is what is stored: take its outputs
    with sess:
        a, b = sess.run(["MatMul:0", "MatMul_1:0"], {"x_a:0": small_x, "x_b:0": x_b, "training:0": False})
    inputs = np.concatenate([a, b]).astype(np.float64)
    assert np.allclose(inputs, pooled, rtol=1e-5, atol=1e-4)
    _assert_stored(report["written"]["prefix"], {"bn/moving_mean": inputs.mean(0),
                                                 "bn/moving_variance": inputs.var(0)})


def test_renorm_check_uses_real_gamma_beta(capsys, work, small_x):
    """tf.layers renorm=True, trained 3 SGD steps so gamma != 1 and beta != 0: the check uses them."""
    import bn_builders as lb  # pylint: disable=import-outside-toplevel

    def build():
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        training = tf.placeholder(tf.bool, [], name="training")
        y = lb.tf_layers_renorm(x, training)
        loss = tf.reduce_mean(tf.square(y - [1.0, -2.0, 3.0, 0.5]))
        return {x: small_x[:64], training: True}, tf.train.GradientDescentOptimizer(0.1).minimize(loss)
    prefix = _save_small(work / "renorm", build, steps=3)
    reader = tf.train.load_checkpoint(prefix)
    assert np.all(reader.get_tensor("batch_normalization/gamma") != 1)
    assert np.all(reader.get_tensor("batch_normalization/beta") != 0)
    path = str(work / "renorm.npz")
    np.savez(path, x=small_x)
    report, text = _run_ok(capsys, prefix, path, work / "renorm_out")
    assert report["checks_ok"] and "batch renormalisation" in text
    x = small_x.astype(np.float64)
    _assert_stored(report["written"]["prefix"], {"batch_normalization/moving_mean": x.mean(0),
                                                 "batch_normalization/moving_variance": x.var(0)})


def test_nchw_statistics_over_channel_axis_1(capsys, work):
    """conv2d(data_format="NCHW") -> hand-written BN with (1, C, 1, 1) statistics: moments over
    axes (0, 2, 3), exact."""
    from tensorflow.python.training import moving_averages  # pylint: disable=import-outside-toplevel

    def build():
        x = tf.placeholder(tf.float32, [None, 2, 3, 3], name="x")
        training = tf.placeholder(tf.bool, [], name="training")
        kernel = tf.get_variable("k", [1, 1, 2, 3], initializer=tf.glorot_uniform_initializer(seed=2))
        h = tf.nn.conv2d(x, kernel, [1, 1, 1, 1], "SAME", data_format="NCHW")
        with tf.variable_scope("bn"):
            def var(name, value, trainable=True):
                return tf.get_variable(name, [1, 3, 1, 1], initializer=tf.constant_initializer(value),
                                       trainable=trainable)
            gamma, beta = var("gamma", 1.5), var("beta", 0.25)
            moving_mean, moving_var = var("moving_mean", 0.0, False), var("moving_variance", 1.0, False)

            def train():
                mean, variance = tf.nn.moments(h, [0, 2, 3], keepdims=True)
                with tf.control_dependencies([
                        moving_averages.assign_moving_average(moving_mean, mean, 0.9, zero_debias=False),
                        moving_averages.assign_moving_average(moving_var, variance, 0.9, zero_debias=False)]):
                    return tf.nn.batch_normalization(h, mean, variance, beta, gamma, 1e-3)
            tf.cond(training, train, lambda: tf.nn.batch_normalization(h, moving_mean, moving_var, beta,
                                                                      gamma, 1e-3))
        return None, None
    prefix = _save_small(work / "nchw", build)
    x = (1 + 3 * np.random.default_rng(2).standard_normal((128, 2, 3, 3))).astype(np.float32)
    path = str(work / "nchw.npz")
    np.savez(path, x=x)
    report, _ = _run_ok(capsys, prefix, path, work / "nchw_out")
    assert report["checks_ok"] and report["layers"][0]["values_per_channel"] == 128 * 3 * 3
    graph, sess = _restore(report["written"]["prefix"])
    with sess:
        h = sess.run("Conv2D:0", {"x:0": x, "training:0": False}).astype(np.float64)
    _assert_stored(report["written"]["prefix"], {"bn/moving_mean": h.mean((0, 2, 3)),
                                                 "bn/moving_variance": h.var((0, 2, 3))})


def test_variance_change_is_relative_to_the_old_value():
    """|new - old| / |old|: 1 -> 8.1e4 is a change of 80,999 (8.1e6 %), not 100 %; from 0 is "from 0"."""
    old, new = np.array([1.0, 2.0]), np.array([8.1e4, 1.0])
    assert rc.relative_change(old, new) == (pytest.approx((8.1e4 - 1) / 1), 0)
    row = {"largest_variance_change_relative": (8.1e4 - 1) / 1, "variance_channels_changed_from_zero": 0}
    assert rc._change_text(row) == "8.1e+06%"  # pylint: disable=protected-access
    assert rc.relative_change(np.array([0.0, 4.0]), np.array([3.0, 5.0])) == (pytest.approx(0.25), 1)
    from_zero = dict(row, variance_channels_changed_from_zero=1)
    assert rc._change_text(from_zero) == "from 0"  # pylint: disable=protected-access


def test_relative_paths_write_a_state_file_that_finds_the_checkpoint(work, blobs_npz, tf_layers_pair,
                                                                      monkeypatch):
    """With a relative --out, TensorFlow's update_checkpoint_state would write a path relative to
    the working directory into the ``checkpoint`` file; the written one must name the file beside it."""
    monkeypatch.chdir(work)
    report = rc.recalibrate(tf_layers_pair[0], blobs_npz, "relative_out")
    state = (work / "relative_out" / "checkpoint").read_text()
    base = os.path.basename(report["written"]["latest_checkpoint"])
    assert state.splitlines()[0] == f'model_checkpoint_path: "{base}"'
    assert tf.train.latest_checkpoint(str(work / "relative_out")) == str(work / "relative_out" / base)


def _control_flow_v2_bn(x, training):
    """tf.layers BN with a training placeholder built under TF2 control flow (If ops, as a graph
    built with only disable_eager_execution() has)."""
    with support.tf2_control_flow():
        return tf.layers.batch_normalization(x, training=training, name="bn")


@pytest.mark.filterwarnings("ignore:`tf.layers")
def test_tf2_control_flow_refused_in_one_line(capsys, work, small_x):
    def build():
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        _control_flow_v2_bn(x, tf.placeholder_with_default(False, [], name="training"))
        return None, None
    prefix = _save_small(work / "cf2", build)
    meta = tf.MetaGraphDef()
    with open(prefix + ".meta", "rb") as f:
        meta.ParseFromString(f.read())
    assert "If" in {node.op for node in meta.graph_def.node}
    path = str(work / "cf2.npz")
    np.savez(path, x=small_x)
    code, _, err = _cli(capsys, prefix, "--data", path, "--out", str(work / "cf2_out"))
    assert code == 2 and err.count("\n") == 1, err
    assert "recalibrate: the graph uses TF2 control flow (If ops bn/cond" in err
    assert "rebuild it under tf.compat.v1.disable_v2_behavior() (or " \
           "tf.compat.v1.disable_control_flow_v2()) and save again; nothing written" in err
    assert not os.path.exists(work / "cf2_out")


def test_non_finite_old_variance_reported_without_warning(capsys, work, small_x):
    """An inf moving variance (a corrupted checkpoint) is replaced by the data's; the report says
    "was non-finite" for that channel (JSON: its index, old value null) and numpy warns nothing."""
    def build():
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        tf_layers_batch_normalization()(x, training=tf.placeholder_with_default(False, []), name="bn")
        var = [v for v in tf.global_variables() if v.op.name == "bn/moving_variance"][0]
        return None, tf.assign(var, [1.0, np.inf, 1.0, 1.0])
    prefix = _save_small(work / "inf_var", build, steps=1)
    path = str(work / "inf_var.npz")
    np.savez(path, x=small_x)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        report, text = _run_ok(capsys, prefix, path, work / "inf_var_out")
    (layer,) = report["layers"]
    assert layer["variance_was_non_finite"] == [1] and layer["mean_was_non_finite"] == []
    assert layer["old_variance"] == [1.0, None, 1.0, 1.0]
    assert "was non-finite" in text and "nan%" not in text
    assert "moving variance was non-finite (NaN/inf) in channel(s) 1: replaced by the data's" in text
    _assert_stored(report["written"]["prefix"], {"bn/moving_variance": small_x.astype(np.float64).var(0)})
