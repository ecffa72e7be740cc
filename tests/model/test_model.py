"""The article-style model: both variants train, BN names per layer, checkpoint round trip."""

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from conftest import assert_same_values
from tf1_repro.model import data
from tf1_repro.layers.bn import article_variable_names
from tf1_repro.model import ArticleModel

BN_LAYERS = {"dense": ["bn_input", "bn_hidden"], "conv": ["bn_conv"]}


def _dataset(kind):
    return data.DATASETS[kind]()


def _train(sess, model, dataset, steps, batch_size=32, seed=0):
    return [model.train_step(sess, *data.train_batch(dataset, batch_size, seed, step), keep_prob=0.8)[0]
            for step in range(steps)]


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_both_variants_learn_and_predict_in_prediction_mode(kind, graph, variable_values):
    dataset = _dataset(kind)
    model = ArticleModel(dataset.input_shape, dataset.classes, kind=kind)
    names = {v.op.name for v in tf.global_variables()}
    for layer in BN_LAYERS[kind]:
        assert set(article_variable_names(layer).values()) <= names
    assert model.training.op.name == "training" and model.training.dtype == tf.bool
    assert model.keep_prob.op.name == "keep_prob" and model.keep_prob.dtype == tf.float32
    x_test, y_test = data.held_out(dataset, 256, seed=0)
    with tf.Session(graph=graph) as sess:
        sess.run(model.init_op)
        chance = 1.0 / dataset.classes
        losses = _train(sess, model, dataset, steps=60)
        assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
        before = variable_values(sess)
        accuracy = model.evaluate(sess, x_test, y_test)
        assert accuracy > chance + 0.3
        assert_same_values(before, variable_values(sess))  # prediction mode changes nothing


def test_checkpoint_restores_in_a_fresh_graph_and_session(tmp_path):
    dataset = _dataset("dense")
    x_test, _ = data.held_out(dataset, 64, seed=0)
    with tf.Graph().as_default() as g:
        model = ArticleModel(dataset.input_shape, dataset.classes)
        with tf.Session(graph=g) as sess:
            sess.run(model.init_op)
            _train(sess, model, dataset, steps=20)
            expected = model.logits_for(sess, x_test, training=False, keep_prob=1.0)
            path = model.saver.save(sess, str(tmp_path / "model.ckpt"), global_step=model.global_step)
    assert path.endswith("model.ckpt-20")
    with tf.Graph().as_default() as g:
        model = ArticleModel(dataset.input_shape, dataset.classes)
        with tf.Session(graph=g) as sess:
            model.saver.restore(sess, tf.train.latest_checkpoint(str(tmp_path)))
            assert sess.run(model.global_step) == 20
            got = np.concatenate([model.logits_for(sess, x_test[i:i + 1], training=False, keep_prob=1.0)
                                  for i in range(len(x_test))])
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_the_bn_builder_is_pluggable(graph):
    built = []

    def spy(inputs, training, name, moving_decay, eps):
        built.append((name, moving_decay, eps))
        return inputs

    ArticleModel((4,), 2, bn=spy, moving_decay=0.5, eps=1e-3)
    assert built == [("bn_input", 0.5, 1e-3), ("bn_hidden", 0.5, 1e-3)]


def test_bad_model_settings(graph):
    with pytest.raises(ValueError, match=r"^ArticleModel: kind must be one of \('dense', 'conv'\), got 'rnn'$"):
        ArticleModel((4,), 2, kind="rnn")
    with pytest.raises(ValueError, match=r"input_shape must have 3 dimension\(s\) for kind='conv', got \(4,\)"):
        ArticleModel((4,), 2, kind="conv")


def test_conv_flatten_head_and_bad_head():
    with tf.Graph().as_default():
        model = ArticleModel((8, 8, 1), 10, kind="conv", width=4, head="flatten")
        kernel = tf.get_default_graph().get_tensor_by_name("logits/kernel:0")
        assert kernel.shape.as_list() == [8 * 8 * 4, 10] and model.config["head"] == "flatten"
    with tf.Graph().as_default():
        assert "head" not in ArticleModel((8, 8, 1), 2, kind="conv", width=4).config  # mean: as before
    with tf.Graph().as_default(), pytest.raises(ValueError) as err:
        ArticleModel((8,), 3, head="flatten")
    assert str(err.value) == ("ArticleModel: head must be 'mean', or 'flatten' with kind='conv', got "
                              "'flatten' with kind='dense'")
