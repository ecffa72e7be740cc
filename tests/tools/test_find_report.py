"""find's report and JSON (tools/find_report.py): the text the command has always printed for a
small checkpoint (a tf.layers BN switched by a placeholder and a vanilla dropout whose keep_prob
the user must feed), and the command printing exactly that."""

import json
import warnings

import pytest
import tensorflow.compat.v1 as tf

from tf1_repro import cli
from tf1_repro.graph import artefacts
from tf1_repro.tools import find_report

# What `python -m tf1_repro find DIR` printed for this graph before the report left cli.py.
EXPECTED = """\
checkpoint {dir}
  BN bn [batch_normalization] eps=0.001 decay=0.99 mode=training (Placeholder) updates=UPDATE_OPS moving stats at prediction=True
  dropout cond [hand-written, vanilla] keep_prob from placeholder keep_prob
prediction feeds: training:0=False
  must be fed by you: keep_prob:0 (keep_prob of a vanilla dropout: prediction multiplies by its training value)
  note (cond): no scaling in training: prediction multiplies by keep_prob (the article's first way): prediction needs keep_prob's training value fed, not 1.0"""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint directory with its .meta: x -> tf.layers BN -> vanilla dropout -> logits."""
    out = tmp_path_factory.mktemp("small")
    with tf.Graph().as_default():
        x = tf.placeholder(tf.float32, [None, 4], name="x")
        training = tf.placeholder(tf.bool, [], name="training")
        keep_prob = tf.placeholder(tf.float32, [], name="keep_prob")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            h = tf.layers.batch_normalization(x, training=training, name="bn")
        mask = tf.floor(keep_prob + tf.random_uniform(tf.shape(h)))
        tf.identity(tf.cond(training, lambda: h * mask, lambda: h * keep_prob), name="logits")
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, str(out / "model.ckpt"))
    return str(out)


def test_format_find_is_the_report_find_printed(checkpoint):
    art, found = find_report.read(checkpoint)
    assert find_report.format_find(art, found) == EXPECTED.format(dir=checkpoint)


def test_the_command_prints_the_report_and_writes_the_payload(checkpoint, tmp_path, capsys):
    target = tmp_path / "layers.json"
    assert cli.main(["find", checkpoint, "--json", str(target)]) == 0
    assert capsys.readouterr().out == EXPECTED.format(dir=checkpoint) + f"\nwrote {target}\n"
    payload = json.loads(target.read_text())
    assert payload["source"] == checkpoint and payload["format"] == "checkpoint"
    assert payload["prediction_feeds"] == {"training:0": False}
    assert payload["unbound_mode_inputs"] == ["keep_prob:0"]
    assert [layer["name"] for layer in payload["bn_layers"]] == ["bn"]


def test_a_checkpoint_without_its_meta_is_refused(checkpoint, tmp_path):
    prefix = tmp_path / "model.ckpt"
    for suffix in (".index", ".data-00000-of-00001"):
        (tmp_path / ("model.ckpt" + suffix)).write_bytes(
            open(checkpoint + "/model.ckpt" + suffix, "rb").read())
    with pytest.raises(artefacts.ArtefactError, match="^" + str(prefix).replace(".", r"\.") +
                       ": a checkpoint without its .meta graph: nothing to read the structure "
                       r"from \(try doctor, which reads the variable names\)$"):
        find_report.read(str(prefix))
