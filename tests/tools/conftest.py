"""Fixtures shared by the tests of the tools for users' saved models."""

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from tf1_repro.model import ArticleModel


@pytest.fixture(scope="module")
def article_checkpoint(tmp_path_factory):
    """ArticleModel (conv: conv1 -> bn_conv -> relu -> dropout -> mean -> logits), 20 steps."""
    ckpt = tmp_path_factory.mktemp("article_ckpt")
    with tf.Graph().as_default() as g:
        model = ArticleModel((4, 4, 2), 3, kind="conv", width=4)
        with tf.Session(graph=g) as sess:
            sess.run(model.init_op)
            rng = np.random.default_rng(0)
            for _ in range(20):
                x = rng.normal(3.0, 2.0, (16, 4, 4, 2)).astype(np.float32)
                model.train_step(sess, x, rng.integers(0, 3, 16), 0.8)
            model.saver.save(sess, str(ckpt / "model.ckpt"))
            frozen = tf.graph_util.convert_variables_to_constants(sess, g.as_graph_def(),
                                                                  [model.logits.op.name])
            names = (model.logits.name, model.predictions.name)
    return str(ckpt / "model.ckpt"), names, frozen
