"""Models built by library code that users run (TF-Slim nets, tf-keras applications), small, trained
a few steps and saved as checkpoints with their ``.meta``: the real-model cases of the issues
"Right on real models" and "Real-model defects".

API::

    from real_models import REAL, real_model      # real_model: a pytest fixture
    path = real_model("slim_inception_v2_two_towers")  # built on first use, then cached

``REAL[name](out_dir) -> (path, info)`` builds one; ``info`` holds what a test needs (input and
output tensor names, the training and evaluation outputs of two-tower nets).

TF-Slim 1.1.0 imports ``tf_keras.legacy_tf_layers.*``, which tf-keras 2.21 keeps at
``tf_keras.src.legacy_tf_layers.*``: ``import_slim`` aliases the module names in ``sys.modules``
(no code changes), as users do; and ``ops.Tensor`` and ``control_flow_ops.cond`` (read for a tensor
``is_training``), which TF 2.21 keeps at ``framework.tensor.Tensor`` and ``ops.cond.cond``.
"""

import json
import os

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

from shared_build import built_once, shared_folder

BATCH = 8
CLASSES = 5
STEPS = 3


def import_slim():
    """``tf_slim`` with tf-keras 2.21's legacy layers aliased where TF-Slim 1.1.0 looks for them
    (the shim lives in ``tf1_repro.bench.memory``, whose ResNet-50 case builds with it)."""
    from tf1_repro.bench.memory import import_slim as package_import_slim  # pylint: disable=import-outside-toplevel
    return package_import_slim()


def _train_and_save(graph, x, labels, loss, out_dir, steps=STEPS, updates=None, feeds_extra=None):
    """SGD ``steps`` steps on N(0, 1) images with the UPDATE_OPS (or ``updates``) wired; save."""
    with graph.as_default():
        step = tf.train.get_or_create_global_step()
        wired = tf.get_collection(tf.GraphKeys.UPDATE_OPS) if updates is None else updates
        with tf.control_dependencies(wired):
            train = tf.train.GradientDescentOptimizer(0.01).minimize(loss, global_step=step)
        saver = tf.train.Saver()
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            rng = np.random.default_rng(0)
            shape = (BATCH,) + tuple(x.shape[1:])
            for _ in range(steps):
                feed = {x: rng.normal(size=shape).astype(np.float32),
                        labels: rng.integers(0, CLASSES, BATCH)}
                feed.update(feeds_extra or {})
                sess.run(train, feed)
            return saver.save(sess, os.path.join(out_dir, "model.ckpt"), global_step=step)


def slim_inception_v2_two_towers(out_dir):
    """TF-Slim ``inception_v2`` (depth_multiplier 0.1, 32x32) built twice on one placeholder: a
    training tower (``is_training=True``) and an evaluation tower (``reuse=True``,
    ``is_training=False``), each a Python bool; slim BN has ``scale=False`` (gamma is a Const)."""
    slim = import_slim()
    from tf_slim.nets import inception_v2  # pylint: disable=import-outside-toplevel
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [None, 32, 32, 3], name="images")
        labels = tf.placeholder(tf.int32, [None], name="labels")
        with slim.arg_scope(inception_v2.inception_v2_arg_scope()):
            logits, _ = inception_v2.inception_v2(x, num_classes=CLASSES, is_training=True,
                                                  depth_multiplier=0.1)
            eval_logits, _ = inception_v2.inception_v2(x, num_classes=CLASSES, is_training=False,
                                                       depth_multiplier=0.1, reuse=True)
        loss = tf.losses.sparse_softmax_cross_entropy(labels, logits)
    prefix = _train_and_save(graph, x, labels, loss, out_dir)
    return prefix, {"inputs": {"images:0": (None, 32, 32, 3)}, "train_output": logits.name,
                    "eval_output": eval_logits.name}


def keras_mobilenet_v2_on_a_tensor(out_dir):
    """A tf-keras application built on its own ``Input`` (``MobileNetV2``, alpha 0.35, 32x32,
    ``weights=None``), then called on the user's tensor ``images`` with a ``training`` placeholder,
    its updates for that call (``model.get_updates_for(images)``) wired into the train op: the
    common way to use a Keras application inside a TF1 graph."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras  # pylint: disable=import-outside-toplevel
    graph = tf.Graph()
    with graph.as_default():
        model = tf_keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35,
                                                  weights=None, classes=CLASSES)
        x = tf.placeholder(tf.float32, [None, 32, 32, 3], name="images")
        training = tf.placeholder_with_default(False, [], name="training")
        labels = tf.placeholder(tf.int32, [None], name="labels")
        probs = model(x, training=training)
        loss = tf.losses.sparse_softmax_cross_entropy(labels, tf.math.log(probs + 1e-7))
        updates = model.get_updates_for(x)
    prefix = _train_and_save(graph, x, labels, loss, out_dir, updates=updates,
                             feeds_extra={training: True})
    return prefix, {"inputs": {"images:0": (None, 32, 32, 3)}, "output": probs.name,
                    "own_input": model.inputs[0].name}


REAL = {"slim_inception_v2_two_towers": slim_inception_v2_two_towers,
        "keras_mobilenet_v2_on_a_tensor": keras_mobilenet_v2_on_a_tensor}


def build_real(name, base_dir):
    """Build REAL[name] under base_dir/name unless there; (path, info)."""
    def build(out_dir):
        import warnings  # pylint: disable=import-outside-toplevel
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return REAL[name](out_dir)
    path, info = built_once(os.path.join(base_dir, name), build)
    return path, info


@pytest.fixture(scope="session")
def real_model(tmp_path_factory):
    """``real_model(name) -> (path, info)``: REAL[name] built once per session."""
    base = shared_folder(tmp_path_factory, "real_models")
    return lambda name: build_real(name, base)
