"""Argument checks shared by the layers, the feed helper and the command line.

Every check raises ``TypeError`` (wrong kind of value) or ``ValueError`` (right
kind, outside what is allowed) with one message of the form::

    <where>: <argument> must be <what is allowed>, got <what was received>

and builds nothing: no op and no variable is added to any graph before the
check passes, so a refused call leaves the graph and its variables as they were.
"""

import math
import numbers

import numpy as np


def _tf():
    """TensorFlow, imported on first use so value checks (keep_prob, training)
    work in a command-line parser before TensorFlow is loaded."""
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    return tf


def describe(value):
    """A short echo of a received value for error messages: type and value."""
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {value.shape}"
    if hasattr(value, "dtype") and hasattr(value, "shape") and hasattr(value.dtype, "name"):
        return f"a {value.dtype.name} tensor of shape {value.shape}"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def real_number(where, name, value):
    """``value`` as a float; refuses bools, non-numbers and NaN."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where}: {name} must be a real number, got {describe(value)}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{where}: {name} must be a real number, got nan")
    return value


def check_keep_prob(where, keep_prob):
    """keep_prob = 1 - dropout rate must lie in (0, 1]; returns it as a float.

    The article's graph accepts anything: ``tf.nn.dropout`` silently outputs all
    zeros for keep_prob=0 and shrinks outputs for keep_prob > 1, so this check
    runs before ``session.run``.
    """
    allowed = "in (0, 1] (keep_prob = 1 - dropout rate; 1.0 turns dropout off)"
    if isinstance(keep_prob, np.ndarray) and keep_prob.shape == ():
        keep_prob = keep_prob.item()
    if isinstance(keep_prob, (bool, np.bool_)) or not isinstance(keep_prob, numbers.Real):
        raise TypeError(f"{where}: keep_prob must be a number {allowed}, got {describe(keep_prob)}")
    keep_prob = float(keep_prob)
    if not 0.0 < keep_prob <= 1.0:  # NaN fails this comparison too
        consequence = ""
        if keep_prob == 0.0:
            consequence = " (tf.nn.dropout would silently output all zeros)"
        elif keep_prob > 1.0:
            consequence = " (tf.nn.dropout would silently shrink every output)"
        raise ValueError(f"{where}: keep_prob must be {allowed}, got {keep_prob!r}{consequence}")
    return keep_prob


def check_training_value(where, training):
    """A fed ``training`` value must be a Python (or NumPy) bool."""
    if isinstance(training, np.ndarray) and training.shape == () and training.dtype == bool:
        training = training.item()
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(
            f"{where}: training must be a bool (True to train on batch statistics, "
            f"False to predict with the moving averages), got {describe(training)}")
    return bool(training)


def check_training_tensor(where, training):
    """The layer's ``training`` argument: a Python bool or a scalar tf.bool tensor."""
    if isinstance(training, (bool, np.bool_)):
        return
    tf = _tf()
    if isinstance(training, (tf.Tensor, tf.Variable)):
        rank = training.shape.ndims
        if training.dtype.base_dtype == tf.bool and rank in (None, 0):
            return
    raise TypeError(
        f"{where}: training must be a Python bool or a scalar tf.bool tensor "
        f"(e.g. tf.placeholder(tf.bool, name='training')), got {describe(training)}")


def check_bn_settings(where, moving_decay, eps, name):
    """The layer's settings: 0 <= moving_decay <= 1, eps > 0 and finite, a non-empty name."""
    decay = real_number(where, "moving_decay", moving_decay)
    if not 0.0 <= decay <= 1.0:
        raise ValueError(
            f"{where}: moving_decay must be in [0, 1] (shadow <- decay * shadow + "
            f"(1 - decay) * batch value), got {decay!r}")
    epsilon = real_number(where, "eps", eps)
    if not 0.0 < epsilon < math.inf:
        raise ValueError(
            f"{where}: eps must be a finite number > 0 (it keeps 1/sqrt(var + eps) finite "
            f"when a batch has variance 0), got {epsilon!r}")
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(
            f"{where}: name must be a non-empty string without '/', got {describe(name)}")


def check_bn_inputs(where, inputs):
    """``inputs``: a float32 tensor of known rank >= 2 and known last dimension."""
    tf = _tf()
    if not isinstance(inputs, (tf.Tensor, tf.Variable)):
        raise TypeError(
            f"{where}: inputs must be a tf.Tensor (e.g. a tf.placeholder), got {describe(inputs)}")
    if inputs.dtype.base_dtype != tf.float32:
        raise TypeError(
            f"{where}: inputs must be float32 (gamma and beat are made by tf.get_variable "
            f"with its default dtype float32, which only float32 inputs can be normalised "
            f"with), got {inputs.dtype.base_dtype.name}")
    rank = inputs.shape.ndims
    if rank is None or rank < 2:
        raise ValueError(
            f"{where}: inputs must have rank >= 2 ([batch, features] for dense layers, "
            f"[batch, height, width, channels] for conv layers), got "
            f"{'unknown rank' if rank is None else f'rank {rank}'} (shape {inputs.shape})")
    if tf.Dimension(inputs.shape[-1]).value is None:
        raise ValueError(
            f"{where}: inputs must have a known last (channel) dimension, which sets the "
            f"shape of gamma and beat, got shape {inputs.shape}")


def check_scope_is_new(where, name, param_names):
    """Refuse a layer name whose variables already exist, and reuse=True scopes.

    ``tf.get_variable`` would fail half-way with "Variable ... already exists",
    and under ``reuse=True`` ``ExponentialMovingAverage.apply`` fails because it
    must make new shadow variables (under ``AUTO_REUSE`` it silently makes a
    second pair, so gamma/beat would be shared and the shadows not). This check
    runs before anything is built and says what to do instead.
    """
    tf = _tf()
    scope = tf.get_variable_scope()
    advice = ("the article's layer cannot share its variables (its ExponentialMovingAverage "
              "makes new shadow variables at every build): build it once and feed training "
              "to switch between training and prediction")
    if scope.reuse is True:
        raise ValueError(
            f"{where}: the enclosing variable scope must not reuse variables, got "
            f"tf.variable_scope({scope.name!r}, reuse=True); {advice}")
    prefix = f"{scope.name}/{name}" if scope.name else name
    existing = {v.op.name for v in tf.global_variables()}
    taken = [f"{prefix}/{p}" for p in param_names if f"{prefix}/{p}" in existing]
    if taken:
        raise ValueError(
            f"{where}: name must be unused in this graph's variable scope, got name={name!r} "
            f"whose variable {taken[0]} already exists; pass another name (e.g. "
            f"name={name + '_2'!r}); {advice}")
