"""doctor: every legacy artefact gets exactly its findings; exit codes; bad inputs; refusal to run."""
# pylint: disable=redefined-outer-name
import hashlib
import warnings
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import model_suite
from model_suite import SUITE, suite_artefact  # noqa: F401  pylint: disable=unused-import
from tf1_repro import cli
from tf1_repro.tools import doctor
from tf1_repro.comparisons.implementations import tf_layers_batch_normalization
import support

REPORT_KEYS = {"source", "format", "bn_layers", "dropouts", "findings", "healthy"}
LAYER_KEYS = {"name", "kind", "input", "output", "gamma", "beta", "moving_mean", "moving_variance",
              "epsilon", "decay", "mode"}
FINDING_KEYS = {"id", "severity", "layer", "message"}


@pytest.fixture(scope="module")
def reports(suite_artefact):
    """Each suite case's report, diagnosed once (static and dynamic checks)."""
    return {name: doctor.diagnose(suite_artefact(name)) for name in SUITE}


@pytest.mark.parametrize("name", sorted(SUITE))
def test_each_artefact_gets_exactly_its_findings(reports, name):
    case, report = SUITE[name], reports[name]
    assert {f["id"] for f in report["findings"]} == case.expected_findings
    assert report["healthy"] is case.healthy
    assert report["format"] == case.format
    for f in report["findings"]:
        assert f["severity"] == doctor.FINDINGS[f["id"]][0]
        assert f["fix"] == doctor.FINDINGS[f["id"]][1] and "\n" not in f["fix"]
    if case.outputs:  # the dynamic checks ran on the prediction outputs with the prediction feeds
        assert report["ran"] is True
        assert set(case.outputs) <= set(report["outputs"])
        assert report["feeds"] == {k: v for k, v in case.feeds.items()}
        assert report["inputs"] == sorted(case.inputs)
    else:
        assert report["ran"] is False


def test_all_four_formats_are_covered():
    assert {c.format for c in SUITE.values()} == {"checkpoint", "meta_graph", "saved_model",
                                                   "frozen_graph"}


def test_json_keys_are_exact(reports):
    report = json.loads(json.dumps(reports["tf_layers_unwired"]))
    assert REPORT_KEYS <= set(report)
    layer = report["bn_layers"][0]
    assert LAYER_KEYS <= set(layer)
    assert (layer["name"], layer["kind"]) == ("block1/batch_normalization", "batch_normalization")
    assert layer["moving_mean"] == "block1/batch_normalization/moving_mean"
    assert layer["mode"]["name"] == "training"
    assert all(FINDING_KEYS <= set(f) for f in report["findings"])
    dropouts = json.loads(json.dumps(reports["saved_model_keep_prob_const"]))["dropouts"]
    assert dropouts[0]["keep_prob"]["value"] == 0.5 and {"name", "keep_prob"} <= set(dropouts[0])


def test_article_zero_bias_fraction_is_computed(reports):
    (f,) = [f for f in reports["article"]["findings"] if f["id"] == "ema-zero-bias"]
    assert "global step 5 < 3/(1-decay) = 30" in f["message"]
    assert f"{1 - 0.9 ** 5:.3f}" in f["message"]  # 0.410 of the average after 5 updates


def test_no_run_keeps_static_findings_only(suite_artefact):
    ema = doctor.diagnose(suite_artefact("ema_outside_cond"), run=False)
    assert {f["id"] for f in ema["findings"]} == {"mode-placeholder-without-default"}
    assert ema["ran"] is False
    frozen = doctor.diagnose(suite_artefact("fused_frozen_training_true"), run=False)
    assert {f["id"] for f in frozen["findings"]} == {"inference-batch-dependent"}


def _digest(directory):
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(directory)):
        for name in sorted(files):
            with open(os.path.join(root, name), "rb") as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def test_feed_override_and_nothing_written(suite_artefact):
    path = suite_artefact("ema_outside_cond")
    before = _digest(os.path.dirname(path))
    report = doctor.diagnose(path, feeds={"training": "true"})
    assert report["feeds"] == {"training:0": True}
    # training=True at prediction: batch statistics, so sample 0 depends on its batch
    assert "inference-batch-dependent" in {f["id"] for f in report["findings"]}
    assert _digest(os.path.dirname(path)) == before


def _cli(capsys, *argv):
    code = cli.main(["doctor", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exit_codes_and_json(suite_artefact, capsys, tmp_path):
    code, out, _ = _cli(capsys, suite_artefact("tf_layers_wired"))
    assert code == 0 and "healthy: 0 error(s)" in out
    out_json = tmp_path / "r.json"
    code, out, _ = _cli(capsys, suite_artefact("tf_layers_unwired"), "--json", str(out_json))
    assert code == 1 and "error: stats-never-updated [block1/batch_normalization]" in out
    assert "fix: with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS))" in out
    assert json.loads(out_json.read_text())["healthy"] is False


def _frozen(path, build):
    """Write a frozen GraphDef built by build() (Consts only) to path."""
    with tf.Graph().as_default() as g:
        build()
        with open(path, "wb") as f:
            f.write(g.as_graph_def().SerializeToString())
    return str(path)


def _fused_net(x):
    c = x.shape[-1]
    y, _, _ = tf.nn.fused_batch_norm(x, tf.ones([c]), tf.zeros([c]), mean=tf.zeros([c]),
                                     variance=tf.ones([c]), is_training=True)
    return tf.identity(y, name="out")


def test_refuses_to_run_file_and_python_ops(tmp_path):
    marker = tmp_path / "written"

    def with_write_file():
        x = tf.placeholder(tf.float32, [None, 2, 2, 3], name="x")
        write = tf.io.write_file(str(marker), "ran")
        with tf.control_dependencies([write]):
            _fused_net(tf.identity(x))

    def with_py_func():
        x = tf.placeholder(tf.float32, [None, 2, 2, 3], name="x")
        y = tf.py_func(lambda a: a, [x], tf.float32)
        y.set_shape(x.shape)
        _fused_net(y)

    for build, op in ((with_write_file, "WriteFile"), (with_py_func, "PyFunc")):
        report = doctor.diagnose(_frozen(tmp_path / f"{op}.pb", build))
        assert report["ran"] is False
        assert any(n.startswith(f"not run: the subgraph of the outputs holds {op}")
                   for n in report["notes"])
        # the static findings are still reported: is_training true in a frozen FusedBatchNorm
        assert {f["id"] for f in report["findings"]} == {"inference-batch-dependent"}
    assert not marker.exists()


def _open_shape_graph():
    x = tf.placeholder(tf.float32, [None, None, 2, 3], name="x")
    _fused_net(x)


def test_unknown_shapes_need_input_shape_or_data(tmp_path):
    path = _frozen(tmp_path / "open.pb", _open_shape_graph)
    with pytest.raises(doctor.DoctorError, match=r"input x .* shape \[None, None, 2, 3\]: say it "
                       r"with --input-shape x=N"):
        doctor.diagnose(path)
    assert doctor.diagnose(path, input_shapes={"x": (4, 2, 2, 3)})["ran"] is True
    np.savez(tmp_path / "d.npz", x=np.ones((3, 5, 2, 3), np.float32))
    report = doctor.diagnose(path, data=str(tmp_path / "d.npz"))
    assert report["ran"] is True and report["inputs"] == ["x:0"]


def test_bad_inputs_exit_2_with_one_line(suite_artefact, capsys, tmp_path):
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\x00not a graph")
    not_npz = tmp_path / "x.npz"
    not_npz.write_text("nope")
    path = suite_artefact("tf_layers_wired")
    cases = [
        ([str(tmp_path / "missing")], "missing: no such file"),
        ([str(garbage)], "garbage.pb: not a GraphDef"),
        ([path, "--feed", "training"], "--feed must be NAME=VALUE (e.g. training=false), got 'training'"),
        ([path, "--feed", "nope=1"], "--feed nope: no such tensor in"),
        ([path, "--feed", "training=maybe"], "--feed training: VALUE must be true, false, a number "
                                             "or a JSON list, got 'maybe'"),
        ([path, "--input-shape", "x=4,a"], "--input-shape must be NAME=N,..."),
        ([path, "--input-shape", "labels=4"], "--input-shape labels is not an input of the outputs"),
        ([path, "--data", str(not_npz)], "x.npz: not a readable .npz file"),
        ([path, "--json", str(tmp_path / "no" / "r.json")], f"its directory '{tmp_path / 'no'}' does not exist"),
        ([], "the following arguments are required: PATH"),
    ]
    np.savez(tmp_path / "wrong.npz", labels=np.zeros(4))
    cases.append(([path, "--data", str(tmp_path / "wrong.npz")],
                  "--data labels:0 is not an input of the outputs run"))
    np.savez(tmp_path / "shape.npz", x=np.zeros((3, 5), np.float32))  # x is [None, 6]
    cases.append(([path, "--data", str(tmp_path / "shape.npz")], "the inputs do not fit"))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for f in os.listdir(os.path.dirname(path)):  # a copy with its .data file cut in half
        if f.startswith(os.path.basename(path) + "."):
            with open(os.path.join(os.path.dirname(path), f), "rb") as src:
                data = src.read()
            (corrupt / f).write_bytes(data[:len(data) // 2] if ".data-" in f else data)
    cases.append(([str(corrupt / os.path.basename(path))], "is unreadable (IndexError"))
    for argv, expected in cases:
        code, _, err = _cli(capsys, *argv)
        assert code == 2, argv
        assert err.count("\n") == 1 and expected in err, (argv, err)
        assert "Traceback" not in err


def test_help_says_what_it_runs(capsys):
    with pytest.raises(SystemExit):
        cli.main(["doctor", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "none of the artefact's own save, restore, init or main ops run" in text
    assert "run only the prediction outputs" in text and "Imports no user code" in text
    assert "refuse to run" in text


def test_a_failing_run_leaves_the_static_findings(tmp_path):
    """A variable the checkpoint lacks stays uninitialised: the run fails, the report says so."""
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 2], name="x")
        saved = tf.get_variable("saved", [2], initializer=tf.ones_initializer())
        missing = tf.get_variable("missing", [2], initializer=tf.ones_initializer())
        tf.identity(x * saved + missing, name="out")
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver([saved]).save(sess, str(tmp_path / "model.ckpt"))
    report = doctor.diagnose(prefix + ".meta")
    assert report["ran"] is False and report["findings"] == []
    assert any(n.startswith("not run: running the outputs failed (FailedPreconditionError")
               for n in report["notes"])


def test_saved_model_main_op_never_runs(tmp_path):
    """The SavedModel's variables are assigned from variables/variables, not by its loader: its
    main_op (here writing a file) does not run, while the prediction outputs do."""
    marker = tmp_path / "main_op_ran"
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 2], name="x")
        w = tf.get_variable("w", [2], initializer=tf.ones_initializer())
        out = tf.identity(x * w, name="out")
        main_op = tf.group(tf.io.write_file(str(marker), "ran"))
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            builder = tf.saved_model.builder.SavedModelBuilder(str(tmp_path / "sm"))
            builder.add_meta_graph_and_variables(
                sess, ["serve"], main_op=main_op,
                signature_def_map={"serving_default": tf.saved_model.signature_def_utils
                                   .predict_signature_def({"x": x}, {"out": out})})
            builder.save()
    report = doctor.diagnose(str(tmp_path / "sm"))
    assert report["ran"] is True and report["outputs"] == ["out:0"] and report["findings"] == []
    assert not marker.exists()


@pytest.mark.parametrize("wired", [False, True])
def test_update_ops_members_outside_any_layer(tmp_path, wired):
    """An UPDATE_OPS member no BN layer owns still counts: unwired, it is reported without a layer."""
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 2], name="x")
        w = tf.get_variable("w", [2, 1])
        counter = tf.get_variable("counter", [], initializer=tf.zeros_initializer(), trainable=False)
        tf.add_to_collection(tf.GraphKeys.UPDATE_OPS, counter.assign_add(1.0, name="count"))
        loss = tf.reduce_mean(tf.square(tf.matmul(x, w)))
        with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS) if wired else []):
            tf.train.GradientDescentOptimizer(0.1).minimize(loss)
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
    findings = doctor.diagnose(prefix, run=False)["findings"]
    if wired:
        assert findings == []
    else:
        assert [(f["id"], f["layer"]) for f in findings] == [("update-ops-not-in-train-op", None)]
        assert "1 UPDATE_OPS member(s)" in findings[0]["message"] and "(e.g. count)" in findings[0]["message"]


TF2_SCRIPT = """
import json, os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
from tf1_repro.tools import doctor
assert tf.executing_eagerly()
print(json.dumps([sorted({f["id"] for f in doctor.diagnose(p)["findings"]}) for p in sys.argv[1:]]))
assert tf.executing_eagerly()
"""


@pytest.mark.slow
def test_works_in_a_tf2_process(suite_artefact):
    """diagnose builds its own graphs: a process with TF2 behaviour (eager) gets the same findings."""
    names = ["ema_outside_cond", "saved_model_keep_prob_const", "fused_frozen_training_true"]
    done = subprocess.run([sys.executable, "-c", TF2_SCRIPT, *map(suite_artefact, names)],
                          capture_output=True, text=True, cwd=support.ROOT, check=False, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got == [sorted(SUITE[n].expected_findings) for n in names]


@pytest.mark.parametrize("feed,expected", [
    ("training=no", "--feed training: VALUE must be true, false, a number or a JSON list, got 'no'"),
    ("training=0.5", "--feed training must be true or false for a bool tensor, got 0.5"),
    ("x=[1,2]", "--feed x must have shape [None, 6], got [2]"),
    ("nope=1", "--feed nope: no such tensor in")])
def test_feed_values_are_checked_with_and_without_a_run(suite_artefact, capsys, feed, expected):
    path = suite_artefact("ema_outside_cond")
    for flags in ([], ["--no-run"]):
        code, out, err = _cli(capsys, path, "--feed", feed, *flags)
        assert (code, out) == (2, ""), flags
        assert err.count("\n") == 1 and expected in err, (flags, err)


def test_serving_defaults_are_what_clients_get(suite_artefact):
    """simple_save with keep_prob and training placeholder_with_default(0.5 / True) outside the
    signature: two client runs differ (measured here), the doctor says so statically and from
    its own client run; with keep_prob in the signature (the client feeds it) nothing is said."""
    path = suite_artefact("saved_model_training_defaults")
    with tf.Graph().as_default() as g, tf.Session(graph=g) as sess:
        meta = tf.saved_model.loader.load(sess, ["serve"], path)
        signature = meta.signature_def["serving_default"]
        assert list(signature.inputs) == ["x"]
        x = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
        first, second = (sess.run(signature.outputs["logits"].name, {signature.inputs["x"].name: x})
                         for _ in range(2))
        assert not np.allclose(first, second)  # dropout on for every client
    report = doctor.diagnose(path)
    (dropout,) = [f for f in report["findings"] if f["id"] == "dropout-at-inference"]
    assert dropout["layer"] == "dropout"
    assert dropout["message"].startswith("keep_prob is placeholder_with_default(0.5), not among the "
                                         "signature's inputs")
    assert "confirmed by running: the same input twice gives different logits:0 as a serving " \
        "client runs the signature (only its inputs fed; keep_prob, training left at their " \
        "defaults)" in dropout["message"]
    (batch,) = [f for f in report["findings"] if f["id"] == "inference-batch-dependent"]
    assert batch["layer"] == "block1/batch_normalization"
    assert "training is placeholder_with_default(True)" in batch["message"]
    twin = doctor.diagnose(suite_artefact("saved_model_keep_prob_in_signature"))
    assert twin["findings"] == [] and twin["ran"] is True
    assert "only its inputs fed, training left at their defaults" in " ".join(twin["notes"])


def _vanilla_checkpoint(directory):
    """x -> fc1 -> tf.layers BN(training) -> relu -> vanilla dropout -> logits: training
    h * floor(keep_prob + U), prediction h * keep_prob (keep_prob a Placeholder)."""
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 6], name="x")
        training = tf.placeholder(tf.bool, [], name="training")
        keep_prob = tf.placeholder(tf.float32, [], name="keep_prob")
        h = model_suite._dense(x, 8, "fc1")
        h = tf.nn.relu(tf_layers_batch_normalization()(h, training=training, name="bn"))
        h = tf.cond(training, lambda: h * tf.floor(keep_prob + tf.random_uniform(tf.shape(h))),
                    lambda: h * keep_prob)
        tf.identity(model_suite._dense(h, 3, "out"), name="logits")
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            return tf.train.Saver().save(sess, os.path.join(str(directory), "model.ckpt"))


@pytest.mark.filterwarnings("ignore::UserWarning")  # tf.layers BN is deprecated
def test_vanilla_keep_prob_is_never_bound_to_one(tmp_path):
    """Prediction multiplies by keep_prob's training value: without --feed the outputs that
    depend on it are not run (the BN checks run on the BN output) and a note says why; with
    --feed keep_prob=0.8 everything runs with 0.8."""
    prefix = _vanilla_checkpoint(tmp_path)
    report = doctor.diagnose(prefix)
    assert report["ran"] is True and "keep_prob:0" not in report["feeds"]
    assert report["outputs"] == ["bn/batchnorm/add_1:0"] and report["findings"][0]["id"] == NO_DEFAULT_ID
    (note,) = [n for n in report["notes"] if "vanilla" in n]
    assert note.startswith("the dropout-dependent outputs (logits:0) were not run")
    assert "give it with --feed keep_prob=VALUE; 1.0 would be wrong" in note
    fed = doctor.diagnose(prefix, feeds={"keep_prob": "0.8"})
    assert fed["outputs"] == ["logits:0"] and fed["feeds"]["keep_prob:0"] == pytest.approx(0.8)
    assert "keep_prob fed 0.8 from --feed: a vanilla dropout" in " ".join(fed["notes"])
    assert [f["id"] for f in fed["findings"]] == [NO_DEFAULT_ID]


NO_DEFAULT_ID = "mode-placeholder-without-default"


def test_zero_debias_is_read_from_the_update_not_from_names(tmp_path):
    """Two zero-started hand-written BN layers, 5 steps: ``pre_bn`` zero-debiased (its
    ``pre_bn/moving_mean/biased`` ends like ``bn/moving_mean/biased``), ``bn`` not: only ``bn``
    has the zero bias."""
    def two_layers(h, training):
        h = model_suite._hand_written(variance_init=0.0, zero_debias=True, scope="pre_bn")(h, training)
        return model_suite._hand_written(variance_init=0.0, scope="bn")(h, training)
    prefix = model_suite._train(str(tmp_path), (6,), two_layers, steps=5)
    report = doctor.diagnose(prefix, run=False)
    assert [(f["id"], f["layer"]) for f in report["findings"]] == [
        ("ema-zero-bias", "bn"), (NO_DEFAULT_ID, "training")]


def test_update_location_is_the_finders_on_the_whole_graph(tmp_path):
    """tf_keras Sequential (Dense, BN, Dropout, Dense) called on a placeholder, model.updates
    wired by control_dependencies into the train op: the doctor says what ``find`` says."""
    import tf_keras as keras  # pylint: disable=import-outside-toplevel
    from tf1_repro.graph import artefacts  # pylint: disable=import-outside-toplevel
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 6], name="x")
        labels = tf.placeholder(tf.int64, [None], name="labels")
        model = keras.Sequential([keras.layers.Dense(8, input_shape=(6,)),
                                  keras.layers.BatchNormalization(name="bn"),
                                  keras.layers.Dropout(0.5), keras.layers.Dense(3)])
        logits = model(x)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels,
                                                                             logits=logits))
        with tf.control_dependencies(model.updates):
            train_op = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
        tf.add_to_collection(tf.GraphKeys.TRAIN_OP, train_op)
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
    found = artefacts.load(prefix).find()
    report = doctor.diagnose(prefix, run=False)
    assert [b.update_location for b in found.bn_layers] == ["collection:train_op"]
    assert [b["update_location"] for b in report["bn_layers"]] == ["collection:train_op"]
    assert report["findings"] == []


@pytest.mark.parametrize("default,expected", [(0.5, {"dropout-at-inference"}), (1.0, set())])
def test_frozen_keep_prob_default_is_what_clients_get(tmp_path, default, expected):
    """Every PlaceholderWithDefault of a frozen graph stays at its default for a client."""
    def build():
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        keep_prob = tf.placeholder_with_default(default, [], name="keep_prob")
        tf.identity(tf.nn.dropout(x * 2.0, keep_prob=keep_prob), name="out")
    report = doctor.diagnose(_frozen(tmp_path / "frozen.pb", build))
    assert {f["id"] for f in report["findings"]} == expected and report["ran"] is True
    if expected:
        assert report["findings"][0]["message"].startswith(
            "keep_prob is placeholder_with_default(0.5), in a frozen graph: every serving client")


def test_a_bn_shared_by_two_towers_runs_both_towers(tmp_path):
    """Siamese code reuses one BN on two inputs: both are inputs of what the doctor runs, and a
    --data file giving both is accepted."""
    from tf1_repro.comparisons.implementations import tf_layers_batch_normalization  # pylint: disable=import-outside-toplevel
    rng = np.random.default_rng(0)
    with tf.Graph().as_default() as graph, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        xa = tf.placeholder(tf.float32, [None, 4], name="xa")
        xb = tf.placeholder(tf.float32, [None, 4], name="xb")
        training = tf.placeholder_with_default(False, [], name="training")
        towers = []
        for x, reuse in ((xa, False), (xb, True)):
            with tf.variable_scope("tower", reuse=reuse):
                h = tf.matmul(x, tf.get_variable("fc/w", [4, 6]))
                towers.append(tf_layers_batch_normalization()(h, training=training, name="bn"))
        tf.identity(tf.concat(towers, 1), name="features")
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            prefix = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
    np.savez(tmp_path / "data.npz", xa=rng.standard_normal((8, 4)).astype(np.float32),
             xb=rng.standard_normal((8, 4)).astype(np.float32))
    report = doctor.diagnose(prefix, data=str(tmp_path / "data.npz"))
    assert [site[0] for site in report["bn_layers"][0]["call_sites"]] == ["tower/MatMul:0",
                                                                          "tower_1/MatMul:0"]
    assert report["outputs"] == ["features:0"] and report["healthy"]


def test_a_failed_runs_note_keeps_the_informative_line():
    """Fetching a tf.cond branch that is not taken fails with 'Graph execution error:' then the
    reason: the note keeps the reason."""
    with tf.Graph().as_default() as built:
        x = tf.placeholder(tf.float32, [2], name="x")
        tf.cond(tf.placeholder_with_default(False, [], name="p"),
                lambda: tf.identity(x * 2.0, name="inside"), lambda: x)
    with tf.Graph().as_default(), tf.Session() as sess:
        tf.import_graph_def(built.as_graph_def(), name="")
        with pytest.raises(tf.errors.InvalidArgumentError) as caught:
            sess.run("cond/inside:0", {"x:0": [1.0, 2.0]})
    assert caught.value.message.splitlines()[0] == "Graph execution error:"
    assert doctor._error_line(caught.value.message) == "Retval[0] does not have value"


def _dcgan_batch_norm(x, ema, train):
    """DCGAN-tensorflow's batch_norm class: train -> ema.apply under control_dependencies and
    the batch's moments; else the EMA averages (variables shared by reuse=True)."""
    with tf.variable_scope("bn"):
        beta = tf.get_variable("beta", [x.shape[-1]], initializer=tf.zeros_initializer())
        gamma = tf.get_variable("gamma", [x.shape[-1]], initializer=tf.ones_initializer())
        if train:
            mean, var = tf.nn.moments(x, [0], name="moments")
            with tf.control_dependencies([ema.apply([mean, var])]):
                mean, var = tf.identity(mean), tf.identity(var)
            _dcgan_batch_norm.averages = (ema.average(mean.op.inputs[0]),
                                          ema.average(var.op.inputs[0]))
        else:
            mean, var = _dcgan_batch_norm.averages
        return tf.nn.batch_normalization(x, mean, var, beta, gamma, 1e-5)


@pytest.mark.filterwarnings("ignore::UserWarning")  # tf.layers BN is deprecated
@pytest.mark.parametrize("style", ["tf_layers_resource", "dcgan_towers"])
def test_update_results_are_never_outputs(tmp_path, style):
    """tf.layers BN with resource variables (its AssignMovingAvg/ReadVariableOp_1 lie in the
    update cond's branch) and DCGAN's ema.apply tower beside a sampler tower: the update
    reads are not run as outputs, the run succeeds, and nothing is reported."""
    rng = np.random.default_rng(0)
    with tf.Graph().as_default() as g, tf.variable_scope("", use_resource=True):
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        if style == "tf_layers_resource":
            training = tf.placeholder_with_default(False, [], name="training")
            h = tf_layers_batch_normalization()(tf.layers.dense(x, 3, name="fc"), training=training,
                                                name="bn")
            loss = tf.reduce_mean(tf.square(h - 1.0))
            with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
                train_op = tf.train.GradientDescentOptimizer(0.1).minimize(loss)
            feeds = {training: True}
        else:
            ema = tf.train.ExponentialMovingAverage(decay=0.9)
            towers = []
            for train, reuse in ((True, False), (False, True)):
                with tf.variable_scope("disc", reuse=reuse):
                    towers.append(_dcgan_batch_norm(tf.layers.dense(x, 3, name="fc"), ema, train))
            tf.identity(towers[1], name="sampler")
            train_op = tf.train.AdamOptimizer(0.01).minimize(tf.reduce_mean(tf.square(towers[0])))
            feeds = {}
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            for _ in range(3):
                sess.run(train_op, {x: rng.standard_normal((8, 4)), **feeds})
            prefix = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
    report = doctor.diagnose(prefix)
    assert report["ran"] is True and report["findings"] == [], report["notes"]
    assert not any("AssignMovingAvg" in name for name in report["outputs"])
    if style == "dcgan_towers":  # the loss runs ema.apply: only the sampler is a prediction
        assert report["outputs"] == ["sampler:0"]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_tf2_control_flow_layers_are_not_misread(tmp_path):
    """Built with control flow v2 (If ops, as under disable_eager_execution alone): a non-fused
    tf.layers BN with an inf moving variance still gets stats-not-finite, no mode finding; the
    fused BN inside If functions is not analysed, and the notes say so."""
    with support.tf2_control_flow():
        with tf.Graph().as_default() as g, tf.variable_scope("", use_resource=True):
            x = tf.placeholder(tf.float32, [None, 4], name="x")
            training = tf.placeholder_with_default(False, [], name="training")
            h = tf.layers.batch_normalization(x, training=training, name="bn")
            out = tf.layers.batch_normalization(tf.reshape(h, [-1, 1, 1, 4]), training=training,
                                                fused=True, name="fused_bn")
            tf.identity(out, name="y")
            assert {op.type for op in g.get_operations()} & {"If", "StatelessIf"}
            with tf.Session(graph=g) as sess:
                sess.run(tf.global_variables_initializer())
                variance = [v for v in tf.global_variables() if v.op.name == "bn/moving_variance"]
                sess.run(variance[0].assign([1.0, np.inf, 2.0, 1.0]))
                prefix = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
    report = doctor.diagnose(prefix)
    assert [(f["id"], f["layer"]) for f in report["findings"]] == [("stats-not-finite", "bn")]
    assert any(n.startswith("TF2 control flow") and "FusedBatchNorm" in n for n in report["notes"])
    assert "note: TF2 control flow" in doctor.format_report(report)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_constant_assign_is_not_an_update(tmp_path):
    """mv.assign([1, inf, 2, 1]) run once by hand and saved in the .meta: not an update op left
    out of the train op; the inf it wrote is reported."""
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        training = tf.placeholder_with_default(False, [], name="training")
        h = tf_layers_batch_normalization()(x, training=training, name="bn")
        with tf.control_dependencies(tf.get_collection(tf.GraphKeys.UPDATE_OPS)):
            tf.train.GradientDescentOptimizer(0.1).minimize(tf.reduce_mean(tf.square(h)))
        variance = [v for v in tf.global_variables() if v.op.name == "bn/moving_variance"][0]
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            sess.run(variance.assign([1.0, np.inf, 2.0, 1.0]))
            prefix = tf.train.Saver().save(sess, str(tmp_path / "model.ckpt"))
    report = doctor.diagnose(prefix, run=False)
    assert [(f["id"], f["layer"]) for f in report["findings"]] == [("stats-not-finite", "bn")]


# ---- the summary (ruff/pylint style): one line per finding id, its fix once; --verbose: every one

DEEP_LAYERS = 5


@pytest.fixture(scope="module")
def deep_unwired(tmp_path_factory):
    """A 5-BN-layer dense net (tf.layers BN in b0..b4) trained 3 steps with UPDATE_OPS never wired:
    stats-never-updated and update-ops-not-in-train-op on every layer."""
    directory = tmp_path_factory.mktemp("deep_unwired")
    bn = tf_layers_batch_normalization()
    with tf.Graph().as_default() as g, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        training = tf.placeholder(tf.bool, name="training")
        h = x
        for i in range(DEEP_LAYERS):
            with tf.variable_scope(f"b{i}"):
                w = tf.get_variable("kernel", [h.shape[-1], 4],
                                    initializer=tf.glorot_uniform_initializer(seed=i))
                h = tf.nn.relu(bn(tf.matmul(h, w), training=training))
        logits = tf.identity(h, name="logits")
        loss = tf.reduce_mean(tf.square(logits - 1.0))
        step = tf.train.get_or_create_global_step()
        tf.train.GradientDescentOptimizer(0.1).minimize(loss, global_step=step)
        train_op = g.get_operation_by_name("GradientDescent")
        with tf.Session(graph=g) as sess:
            sess.run(tf.global_variables_initializer())
            rng = np.random.default_rng(0)
            for _ in range(3):
                sess.run(train_op, {x: rng.normal(3, 2, (8, 4)), training: True})
            return tf.train.Saver().save(sess, str(directory / "model.ckpt"), global_step=step)


def _groups(findings):
    """The summary computed here from the per-layer findings: id -> (severity, layers, findings,
    first message), in the order ids first appear."""
    out = {}
    for f in findings:
        sev, names, count, example = out.get(f["id"], (f["severity"], [], 0, f["message"]))
        out[f["id"]] = (sev, names + ([f["layer"]] if f["layer"] and f["layer"] not in names else []),
                        count + 1, example)
    return out


def test_summary_prints_one_line_per_id_and_its_fix_once(deep_unwired, capsys, tmp_path):
    out_json = tmp_path / "r.json"
    code, out, _ = _cli(capsys, deep_unwired, "--no-run", "--json", str(out_json))
    report = json.loads(out_json.read_text())
    assert code == 1
    ids = {f["id"] for f in report["findings"]}
    assert ids == {"stats-never-updated", "update-ops-not-in-train-op",
                   "mode-placeholder-without-default"}
    lines = out.splitlines()
    first = {}
    for f in report["findings"]:
        first.setdefault(f["id"], f)
    for fid in ids:
        mine = [ln for ln in lines if ln.startswith(f"{doctor.FINDINGS[fid][0]}: {fid}")]
        assert len(mine) == 1, (fid, mine)
        assert lines.count(f"    fix: {doctor.FINDINGS[fid][1]}") == 1, fid
        assert first[fid]["message"] in mine[0], fid
    (update,) = [ln for ln in lines if ln.startswith("error: update-ops-not-in-train-op")]
    assert update.startswith(
        "error: update-ops-not-in-train-op: 5 layers (b0/batch_normalization, b1/batch_normalization, "
        "b2/batch_normalization, ...): " + first["update-ops-not-in-train-op"]["message"])
    assert update.endswith(" (+4 more)")
    assert "b3/batch_normalization" not in out.split("fix:")[-1]  # the layer table has them all
    # one id, one line: the last line counts ids, and says how many findings there are
    assert lines[-2] == ("NOT HEALTHY: 2 error(s), 0 warning(s), 1 info(s) (11 findings; "
                         "--verbose lists each) (static checks only)")


def test_verbose_prints_every_finding_with_its_fix(deep_unwired, capsys):
    code, out, _ = _cli(capsys, deep_unwired, "--no-run", "--verbose")
    report = doctor.diagnose(deep_unwired, run=False)
    assert code == 1
    lines = out.splitlines()
    for f in report["findings"]:
        where = f" [{f['layer']}]" if f["layer"] else ""
        line = f"{f['severity']}: {f['id']}{where}: {f['message']}"
        i = lines.index(line)
        assert lines[i + 1] == f"    fix: {f['fix']}"
    update = [ln for ln in lines if ln.startswith("error: update-ops-not-in-train-op")]
    assert len(update) == DEEP_LAYERS
    assert lines.count(f"    fix: {doctor.FINDINGS['update-ops-not-in-train-op'][1]}") == DEEP_LAYERS


def test_json_summary_is_the_findings_grouped_by_id(deep_unwired, reports):
    for report in [doctor.diagnose(deep_unwired, run=False), reports["trainable_stats"],
                   reports["tf_layers_unwired"]]:
        report = json.loads(json.dumps(report))
        expected = _groups(report["findings"])
        assert [s["id"] for s in report["summary"]] == list(expected)
        for s in report["summary"]:
            sev, names, count, example = expected[s["id"]]
            assert (s["severity"], s["names"], s["layers"], s["findings"], s["example"]) == \
                (sev, names, len(names), count, example)
    deep = doctor.diagnose(deep_unwired, run=False)["summary"]
    assert {s["id"]: (s["layers"], s["findings"]) for s in deep} == {
        "stats-never-updated": (5, 5), "update-ops-not-in-train-op": (5, 5),
        "mode-placeholder-without-default": (1, 1)}
    # two findings on one layer: one layer, two findings
    (trainable,) = [s for s in reports["trainable_stats"]["summary"] if s["id"] == "stats-trainable"]
    assert (trainable["layers"], trainable["findings"]) == (1, 2)


def test_one_layer_per_id_prints_as_verbose_does(reports):
    report = reports["tf_layers_unwired"]
    assert doctor.format_report(report) == doctor.format_report(report, verbose=True)
