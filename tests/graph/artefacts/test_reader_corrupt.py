"""Corrupt TF2 SavedModels and Keras files: one line, nothing written, the user's files intact."""

import os
import shutil

import pytest

from tf1_repro.graph import artefacts
from tf2_model_files import tf2_models  # noqa: F401  pylint: disable=unused-import

pytestmark = pytest.mark.slow  # each TF2 load is a child process (about 6 s)


def _truncated(source, target):
    data = open(source, "rb").read()
    with open(target, "wb") as f:
        f.write(data[: len(data) // 2])


def _snapshot(folder):
    return {os.path.join(d, f): open(os.path.join(d, f), "rb").read()
            for d, _, files in os.walk(folder) for f in files}


def test_corrupt_inputs_raise_one_line_and_write_nothing(tf2_models, tmp_path):
    folder, _ = tf2_models
    _truncated(os.path.join(folder, "k3.keras"), tmp_path / "cut.keras")
    _truncated(os.path.join(folder, "tfk.h5"), tmp_path / "cut.h5")
    garbage = tmp_path / "garbage_sm"
    garbage.mkdir()
    (garbage / "saved_model.pb").write_bytes(b"\x00\xffnot a saved model")
    cut_sm = tmp_path / "cut_sm"
    shutil.copytree(os.path.join(folder, "tfk_saved_model"), cut_sm)
    _truncated(os.path.join(folder, "tfk_saved_model", "saved_model.pb"), cut_sm / "saved_model.pb")
    no_vars = tmp_path / "no_variables"
    shutil.copytree(os.path.join(folder, "tfk_saved_model"), no_vars)
    shutil.rmtree(no_vars / "variables")
    cut_vars = tmp_path / "cut_variables"
    shutil.copytree(os.path.join(folder, "tfk_saved_model"), cut_vars)
    data = next(f for f in os.listdir(cut_vars / "variables") if f.startswith("variables.data"))
    _truncated(cut_vars / "variables" / data, cut_vars / "variables" / data)
    shutil.copy(os.path.join(folder, "weights_only.h5"), tmp_path / "weights_only.h5")
    cases = {
        tmp_path / "cut.keras": "not a readable .keras zip (BadZipFile",
        tmp_path / "cut.h5": "not a readable HDF5 Keras file (",
        garbage: "not a SavedModel (",
        cut_sm: "not a SavedModel (",
        no_vars: "a TF2 SavedModel without its variables/ folder (18 variables in its object graph)",
        cut_vars: "the SavedModel cannot be loaded (",
        tmp_path / "weights_only.h5": "an HDF5 file with no model_config (weights only?)",
    }
    before = _snapshot(tmp_path)
    for path, message in cases.items():
        with pytest.raises(artefacts.ArtefactError) as err:
            artefacts.load(str(path))
        line = str(err.value)
        assert "\n" not in line and message in line, line
        assert line.split(": ")[0] in (str(path), str(path / "saved_model.pb")), line
    assert _snapshot(tmp_path) == before


# The same refusals through every tool's command line: exit 2, one line naming the file, the
# user's folder unchanged and nothing written to --out.

CORRUPT = ("truncated TF2 saved_model.pb", "truncated TF1 saved_model.pb", "random-bytes .pb",
           "truncated .keras", "truncated .h5", "empty directory", "garbage checkpoint .index",
           "directory of a garbage checkpoint")
TOOLS = {"find": [], "doctor": [], "to-inference": ["--out", "OUT"],
         "recalibrate": ["--data", "DATA", "--out", "OUT"], "migrate": ["--to", "keras3", "--out", "OUT"]}


def _tf1_models(work):
    """A TF1 checkpoint (``work/ckpt/model.ckpt-3`` with its .meta) and a TF1 SavedModel
    (``work/export/saved_model``) of one article BN layer."""
    from tf1_repro.layers.bn import bn_layer  # pylint: disable=import-outside-toplevel
    from tests.conftest import tf  # pylint: disable=import-outside-toplevel
    with tf.Graph().as_default() as graph:
        x = tf.placeholder(tf.float32, [None, 3], name="x")
        training = tf.placeholder_with_default(False, [], name="training")
        y = tf.identity(bn_layer(x, training, name="bn"), name="y")
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, str(work / "ckpt" / "model.ckpt"), global_step=3)
            tf.saved_model.simple_save(sess, str(work / "export" / "saved_model"), {"x": x}, {"y": y})


@pytest.fixture(scope="module")
def corrupt_inputs(tf2_models, tmp_path_factory):
    """``(user folder, {case: path}, data .npz)``: each corrupt input made from a real model."""
    import numpy as np  # pylint: disable=import-outside-toplevel
    folder, _ = tf2_models
    work = tmp_path_factory.mktemp("corrupt_work")
    _tf1_models(work)  # (not the train command: it enables op determinism process-wide)
    user = tmp_path_factory.mktemp("corrupt_user")
    paths = dict(zip(CORRUPT, (user / "tf2_sm", user / "tf1_sm", user / "random.pb", user / "cut.keras",
                               user / "cut.h5", user / "empty", user / "ckpt" / "model.ckpt-3",
                               user / "ckpt")))
    for name, source in (("tf2_sm", os.path.join(folder, "tfk_saved_model")),
                         ("tf1_sm", work / "export" / "saved_model")):
        shutil.copytree(source, user / name)
        _truncated(os.path.join(source, "saved_model.pb"), user / name / "saved_model.pb")
    (user / "random.pb").write_bytes(np.random.default_rng(0).bytes(2000))
    _truncated(os.path.join(folder, "k3.keras"), user / "cut.keras")
    _truncated(os.path.join(folder, "tfk.h5"), user / "cut.h5")
    (user / "empty").mkdir()
    shutil.copytree(work / "ckpt", user / "ckpt")
    (user / "ckpt" / "model.ckpt-3.index").write_bytes(np.random.default_rng(1).bytes(500))
    data = work / "data.npz"
    np.savez(data, x=np.zeros((4, 2), np.float32))
    return user, paths, data


def _tree_hash(folder):
    import hashlib  # pylint: disable=import-outside-toplevel
    digest = hashlib.sha256()
    for root, dirs, files in sorted(os.walk(folder)):
        dirs.sort()
        digest.update(root.encode())
        for name in sorted(files):
            digest.update(name.encode() + open(os.path.join(root, name), "rb").read())
    return digest.hexdigest()


@pytest.mark.parametrize("case", CORRUPT)
@pytest.mark.parametrize("tool", list(TOOLS))
def test_every_tool_refuses_a_corrupt_input_in_one_line(tool, case, corrupt_inputs, tmp_path, capsys):
    from tf1_repro import cli  # pylint: disable=import-outside-toplevel
    user, paths, data = corrupt_inputs
    path, out = str(paths[case]), tmp_path / "out"
    before = _tree_hash(user)
    capsys.readouterr()
    code = cli.main([tool, path, *[{"OUT": str(out), "DATA": str(data)}.get(a, a) for a in TOOLS[tool]]])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2, captured.out + captured.err
    assert len(lines) == 1 and "Traceback" not in captured.err, captured.err
    assert lines[0].startswith(f"python -m tf1_repro {tool}: ") and path in lines[0], lines[0]
    assert "--outputs" not in lines[0], lines[0]  # the file's problem, not a missing argument
    with pytest.raises(artefacts.ArtefactError) as err:
        artefacts.load(path)
    reason = str(err.value).split(": ", 1)[1]  # the reader's line, after the path it names
    if (tool, case) != ("recalibrate", "empty directory"):  # says "without a checkpoint" itself
        assert reason in lines[0], (reason, lines[0])
    assert _tree_hash(user) == before
    assert not out.exists() or not os.listdir(out)
