"""A small classifier in the article's style: placeholders, ``bn_layer``, keep_prob dropout.

As in the article, the model holds::

    self.training  = tf.placeholder(tf.bool, name="training")
    self.keep_prob = tf.placeholder(tf.float32, name="keep_prob")

and every ``session.run`` is fed through ``self.feed`` (``tf1_repro.model.feed.make_feed``),
which refuses bad values before they reach the graph.

``kind='dense'`` ([N, F] inputs)::

    x -> bn_input -> fc1 (no bias) -> bn_hidden -> relu -> dropout -> logits

or, with ``dropout_before_bn=True`` (the variance-shift set-up of Li et al., 2019)::

    x -> bn_input -> fc1 (no bias) -> relu -> dropout -> bn_hidden -> logits

``kind='conv'`` ([N, H, W, C] inputs)::

    x -> conv1 3x3 (no bias) -> bn_conv -> relu -> dropout -> mean over H, W -> logits

(``head='flatten'``: the dropout's output flattened instead of averaged, e.g. for the digits,
where a stroke is matters.)

``bn_input`` sits on the raw inputs so its moving mean and variance can be set
beside the data's population moments. The moving-average updates run inside
the train op, because the article's layer puts them in the ``tf.cond``.
"""

import json
import os

import tensorflow.compat.v1 as tf
from tensorflow import nn as tf2_nn

from tf1_repro.layers.bn import bn_layer
from tf1_repro.layers.dropout import inverted_dropout, keep_prob_placeholder
from tf1_repro.model.feed import make_feed

KINDS = ("dense", "conv")
CONFIG_FILE = "model.json"


def _dense(inputs, units, name, use_bias, seed):
    with tf.variable_scope(name):
        kernel = tf.get_variable(
            "kernel", [inputs.shape[-1], units], initializer=tf.glorot_uniform_initializer(seed=seed))
        outputs = tf.matmul(inputs, kernel)
        if use_bias:
            outputs += tf.get_variable("bias", [units], initializer=tf.zeros_initializer())
        return outputs


def _conv3x3(inputs, filters, name, seed):
    with tf.variable_scope(name):
        kernel = tf.get_variable(
            "kernel", [3, 3, inputs.shape[-1], filters],
            initializer=tf.glorot_uniform_initializer(seed=seed))
        return tf.nn.conv2d(inputs, kernel, strides=[1, 1, 1, 1], padding="SAME")


class ArticleModel:
    """Build the model in the current default graph.

    Args:
      input_shape: one sample's shape: (F,) for dense, (H, W, C) for conv.
      num_classes: number of classes (labels 0..num_classes-1).
      kind: 'dense' or 'conv'.
      width: hidden units (dense) or conv filters.
      learning_rate: Adam's step size.
      moving_decay, eps: passed to every BN layer.
      seed: op-level seed of the initialisers and of the dropout mask.
      dropout_before_bn: dense only: put dropout before bn_hidden instead of after it.
      bn: the BN builder, ``bn(inputs, training, name, moving_decay, eps)``;
        the article's ``bn_layer`` unless another is given (to compare layers).
      head: conv only: 'mean' (average over H, W) or 'flatten' before the logits.
    """

    def __init__(self, input_shape, num_classes, kind="dense", width=32, learning_rate=0.01,
                 moving_decay=0.9, eps=1e-5, seed=0, bn=bn_layer, dropout_before_bn=False,
                 serving=False, dropout_rng="stateful", head="mean"):
        if kind not in KINDS:
            raise ValueError(f"ArticleModel: kind must be one of {KINDS}, got {kind!r}")
        input_shape = tuple(input_shape)
        wanted_rank = 1 if kind == "dense" else 3
        if len(input_shape) != wanted_rank:
            raise ValueError(
                f"ArticleModel: input_shape must have {wanted_rank} dimension(s) for "
                f"kind={kind!r}, got {input_shape}")
        self.kind = kind
        self.num_classes = num_classes
        self.config = {"input_shape": list(input_shape), "num_classes": num_classes, "kind": kind,
                       "width": width, "learning_rate": learning_rate, "moving_decay": moving_decay,
                       "eps": eps, "seed": seed, "dropout_before_bn": dropout_before_bn,
                       "dropout_rng": dropout_rng, **({"head": head} if head != "mean" else {})}
        self.x = tf.placeholder(tf.float32, (None,) + input_shape, name="x")
        self.y = tf.placeholder(tf.int64, [None], name="y")
        if serving:
            self.training = tf.placeholder_with_default(False, [], name="training")
            self.keep_prob = tf.placeholder_with_default(1.0, [], name="keep_prob")
        else:
            self.training = tf.placeholder(tf.bool, name="training")
            self.keep_prob = keep_prob_placeholder()
        if dropout_rng not in ("stateful", "stateless"):
            raise ValueError(f"ArticleModel: dropout_rng must be 'stateful' or 'stateless', got "
                             f"{dropout_rng!r}")
        if head not in ("mean", "flatten") or (head == "flatten" and kind != "conv"):
            raise ValueError(f"ArticleModel: head must be 'mean', or 'flatten' with kind='conv', got "
                             f"{head!r} with kind={kind!r}")
        if dropout_before_bn and kind != "dense":
            raise ValueError("ArticleModel: dropout_before_bn must be False for kind='conv', got True")
        self.bn_inputs, self.bn_outputs = {}, {}  # layer name -> tensor, in build order

        def norm(inputs, name):
            self.bn_inputs[name] = inputs
            self.bn_outputs[name] = bn(inputs, self.training, name, moving_decay, eps)
            return self.bn_outputs[name]

        self.dropout_seed = None
        if dropout_rng == "stateless":
            self.dropout_seed = tf.placeholder_with_default(
                tf.constant([seed, 0], tf.int64), [2], name="dropout_seed")

        def drop(inputs):
            if self.dropout_seed is None:
                return inverted_dropout(inputs, self.keep_prob, seed=seed + 1)
            return tf2_nn.experimental.stateless_dropout(
                inputs, rate=1.0 - self.keep_prob, seed=self.dropout_seed)

        if kind == "dense":
            h = norm(self.x, "bn_input")
            h = _dense(h, width, "fc1", use_bias=False, seed=seed)
            if dropout_before_bn:
                self.features = tf.nn.relu(h)
                h = norm(drop(self.features), "bn_hidden")
            else:
                self.features = tf.nn.relu(norm(h, "bn_hidden"))
                h = drop(self.features)
        else:
            self.features = tf.nn.relu(norm(_conv3x3(self.x, width, "conv1", seed=seed), "bn_conv"))
            h = drop(self.features)
        if kind == "conv":
            h = tf.reduce_mean(h, axis=[1, 2]) if head == "mean" else \
                tf.reshape(h, [-1, int(h.shape[1]) * int(h.shape[2]) * int(h.shape[3])])
        self.logits = _dense(h, num_classes, "logits", use_bias=True, seed=seed + 2)
        self.predictions = tf.argmax(self.logits, axis=1)
        self.loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=self.y, logits=self.logits))
        self.accuracy = tf.reduce_mean(tf.cast(tf.equal(self.predictions, self.y), tf.float32))
        self.global_step = tf.train.get_or_create_global_step()
        self.train_op = None if serving else tf.train.AdamOptimizer(learning_rate).minimize(
            self.loss, global_step=self.global_step)
        self.init_op = tf.global_variables_initializer()
        self.saver = tf.train.Saver(max_to_keep=3)

    def save_config(self, directory):
        """Write model.json (the constructor's arguments) into a checkpoint directory."""
        with open(os.path.join(directory, CONFIG_FILE), "w", encoding="utf-8") as f:
            json.dump(self.config, f, indent=2)

    @staticmethod
    def load_config(directory):
        """The constructor's arguments saved by ``save_config``; ValueError if absent."""
        path = os.path.join(directory, CONFIG_FILE)
        if not os.path.isfile(path):
            raise ValueError(f"checkpoint: directory must hold {CONFIG_FILE} (written with the "
                             f"checkpoint by tf1_repro), got {directory!r} without it")
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    def feed(self, x, *, training, keep_prob, y=None, step=None, check_finite=True):
        """A checked feed_dict (see ``tf1_repro.model.feed.make_feed``)."""
        return make_feed(self, x, training=training, keep_prob=keep_prob, y=y, step=step,
                         check_finite=check_finite)

    def train_step(self, sess, x, y, keep_prob, step=None, check_finite=True):
        """One Adam step with training=True; also updates every BN's moving averages.

        Returns (loss, batch accuracy) of the batch before the step.
        """
        feed = self.feed(x, training=True, keep_prob=keep_prob, y=y, step=step,
                         check_finite=check_finite)
        _, loss, accuracy = sess.run([self.train_op, self.loss, self.accuracy], feed)
        return float(loss), float(accuracy)

    def logits_for(self, sess, x, *, training, keep_prob):
        """Logits of a batch in the given mode (a training=True run updates the shadows)."""
        return sess.run(self.logits, self.feed(x, training=training, keep_prob=keep_prob))

    def predict(self, sess, x):
        """Class predictions in prediction mode: training=False, keep_prob=1.0."""
        return sess.run(self.predictions, self.feed(x, training=False, keep_prob=1.0))

    def evaluate(self, sess, x, y):
        """Accuracy in prediction mode."""
        feed = self.feed(x, training=False, keep_prob=1.0, y=y)
        return float(sess.run(self.accuracy, feed))
