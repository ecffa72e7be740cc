"""The variance estimator a moving variance averages: ``biased`` (the batch variance of
``tf.nn.moments``: a ``Mean``), ``unbiased`` (the fused kernel's batch variance in training, output
2, or a Bessel correction ``var * n / (n - 1)``), else None."""

import numpy as np

from tf1_repro.graph.ops import FUSED_BN_OPS


def variance_estimator(ctx, readings, moving_var):
    """The estimator of the values the updates of ``moving_var`` average in (``readings``:
    ``((stat, DecayReading), ...)``); the last update that tells wins."""
    found = None
    for stat, reading in readings:
        if stat == moving_var and reading.value is not None:
            found = estimator_of(ctx, reading.value) or found
    return found


def estimator_of(ctx, value):
    """The estimator of the batch variance ``value`` is computed with, else None."""
    for src in ctx.trace(value):
        if src.kind != "batch":
            continue
        op = src.op
        if op.type in FUSED_BN_OPS:
            return "unbiased" if src.output == 2 else None
        if op.type == "Mean":
            return "biased"
        if op.type in ("RealDiv", "Div") and is_bessel(ctx, op):
            return "unbiased"
    return None


def is_bessel(ctx, div):
    """``(v * n) / (n - 1)`` or ``v * (n / (n - 1))``: the Bessel correction."""
    num, den = div.inputs
    if den.op.type != "Sub" or ctx.const_value(den.op.inputs[1]) is None or \
            not np.all(ctx.const_value(den.op.inputs[1]) == 1):
        return False
    n = den.op.inputs[0]
    return n in list(num.op.inputs) or num is n
