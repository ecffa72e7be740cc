"""variance-shift: dropout before BN makes the moving variance wrong at prediction time.

Li et al., "Understanding the Disharmony between Dropout and Batch
Normalization by Variance Shift", CVPR 2019. For x ~ N(mean, std^2) and inverted
dropout z = x * mask / k in training:

    Var_train(z) = (mean^2 + std^2)/k - mean^2,   Var_predict(z) = std^2  (dropout off)

so the moving variance (an EMA of biased batch variances: (n-1)/n of Var_train)
overstates the prediction-time variance by the factor above, and prediction
normalises with the wrong scale. Part 2 trains the dense model with dropout
placed before ``bn_hidden`` and shows the accuracy before and after the fix:
re-estimating the moving averages with dropout off (training=True,
keep_prob=1.0 forward passes, no gradient step).
"""

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.model import data
from tf1_repro.layers.bn import bn_variables
from tf1_repro.layers.dropout import inverted_dropout, keep_prob_placeholder
from tf1_repro.experiments import _common
from tf1_repro.experiments.core import (Claim, Param, Result, Series, data_param, finite, keep_prob,
                                        positive, register)

CHANNELS = 16
BATCH = 256
STEPS = 300
DECAY = 0.9
TEST = 20000
REESTIMATE = 100  # forward passes with dropout off for the fix


@register("variance-shift", "dropout before BN: the moving variance is (mean^2+std^2)/keep_prob - "
          "mean^2, larger than the prediction-time variance std^2", [
              Param("keep_prob", 0.5, "keep probability of the dropout before BN", keep_prob),
              Param("mean", 1.0, "mean of the layer's input", finite),
              Param("std", 1.0, "standard deviation of the layer's input", positive),
              data_param(),
          ])
def run(p, seed, bn):
    k, mean, std = p["keep_prob"], p["mean"], p["std"]
    rng = np.random.default_rng(seed)
    graph = tf.Graph()
    with graph.as_default():
        x, training = _common.placeholders(CHANNELS)
        kp = keep_prob_placeholder()
        z = inverted_dropout(x, kp, seed=int(rng.integers(1, 2**31)))
        out = bn(z, training, "bn", DECAY, _common.EPS)
        moving_var = bn_variables("bn")["moving_variance"]
        init = tf.global_variables_initializer()
        graph.finalize()
        with tf.Session(graph=graph) as sess:
            sess.run(init)
            fourth, second = [], []
            for _ in range(STEPS):
                batch = (mean + std * rng.standard_normal((BATCH, CHANNELS))).astype(np.float32)
                zb, _ = sess.run([z, out], {x: batch, training: True, kp: k})
                c = zb - zb.mean(0)
                fourth.append((c ** 4).mean())
                second.append((c ** 2).mean())
            learned = sess.run(moving_var).astype(np.float64)
            test = (mean + std * rng.standard_normal((TEST, CHANNELS))).astype(np.float32)
            z_test = sess.run(z, {x: test, kp: 1.0})
    var_train = (mean ** 2 + std ** 2) / k - mean ** 2
    bessel = (BATCH - 1) / BATCH
    expected_moving = bessel * var_train
    # EMA noise: Var(batch var) = (mu4 - sigma^4)/n per channel, times (1-d)/(1+d) in steady state,
    # averaged over CHANNELS channels
    mu4, sigma2 = float(np.mean(fourth)), float(np.mean(second))
    se_moving = np.sqrt((1 - DECAY) / (1 + DECAY) * (mu4 - sigma2 ** 2) / BATCH / CHANNELS)
    measured_moving = float(learned.mean())
    predict_var = float(z_test.astype(np.float64).var(axis=0).mean())
    ratio = predict_var / measured_moving
    expected_ratio = std ** 2 / expected_moving
    se_var = np.sqrt(2 / (TEST * CHANNELS))  # relative, Gaussian
    se_ratio = expected_ratio * np.sqrt((se_moving / expected_moving) ** 2 + 2 / (TEST * CHANNELS))

    accuracy = _accuracy_cost(k, seed, bn, p["data"])
    claims = [
        Claim("moving-var-matches-train-variance",
              f"moving variance after {STEPS} steps (mean of {CHANNELS} channels) = (n-1)/n * "
              f"((mean^2+std^2)/keep_prob - mean^2) = {bessel:.4f} * {var_train:.4g} (n={BATCH}; "
              f"tolerance 5 standard errors of the EMA, 5*{se_moving:.2g}, from the measured fourth "
              f"moment)",
              measured_moving, expected_moving, 5 * se_moving),
        Claim("shift-matches-closed-form",
              f"prediction-time variance (dropout off, {TEST} samples) / moving variance = std^2 / "
              f"((n-1)/n * Var_train) (tolerance 5 standard errors, 5*{se_ratio:.2g})",
              ratio, expected_ratio, 5 * se_ratio),
    ]
    rows = [["dropout before BN (trained shadows)", accuracy["before"], accuracy["moving_var_before"],
             accuracy["predict_var"]],
            ["after re-estimating with dropout off", accuracy["after"], accuracy["moving_var_after"],
             accuracy["predict_var"]]]
    return Result(
        headers=[f"dense model on {p['data']}, keep_prob {k:g}", "held-out accuracy", "bn_hidden moving var (mean)",
                 "bn_hidden input var at prediction (mean)"],
        rows=rows, claims=claims, graph=graph,
        series={"standalone_shift": Series([0, 1], {
            "measured": [measured_moving, predict_var],
            "closed form": [expected_moving, std ** 2]},
            f"standalone layer, x ~ N({mean:g}, {std:g}^2), dropout keep_prob {k:g} before BN",
            "variance (mean of channels)", theory=["closed form"],
            # 5 standard errors: the EMA's, and a variance estimate's over TEST x CHANNELS samples
            band={"closed form": ([expected_moving - 5 * se_moving, std ** 2 * (1 - 5 * se_var)],
                                  [expected_moving + 5 * se_moving, std ** 2 * (1 + 5 * se_var)])},
            categories=["moving variance\n(n-1)/n ((m^2+s^2)/k - m^2)", "prediction-time variance\ns^2"],
            claim="moving-var-matches-train-variance"),
            "moving_var_vs_predict_var": Series([0, 1], {
                "moving variance": [accuracy["moving_var_before"], accuracy["moving_var_after"]],
                "prediction-time variance": [accuracy["predict_var"]] * 2},
                f"dense model on {p['data']} (held-out accuracy {accuracy['before']:.4f} -> "
                f"{accuracy['after']:.4f})", "bn_hidden variance (channel mean)",
                categories=["trained with dropout", "re-estimated, dropout off"])},
        notes=[f"standalone layer: Var_train = {var_train:.4g}, Var_predict = {std ** 2:.4g}, learned "
               f"moving variance {measured_moving:.4g}, prediction-time variance {predict_var:.4g}",
               "model: here bn_hidden feeds the linear logits layer directly, so the shift mostly "
               "rescales every channel alike and barely moves the argmax; Li et al. 2019 report the accuracy "
               "cost on deep nets where nonlinear layers follow (not measured here)"])


def _accuracy_cost(k, seed, bn, data_name="blobs"):
    dataset = data.make(data_name, seed)
    x_test, y_test = data.held_out(dataset, 2048, seed)
    with _common.trained_model(dataset, 300, 64, k, seed, bn, dropout_before_bn=True) as (g, sess, model):
        hidden = bn_variables("bn_hidden")["moving_variance"]
        inputs = model.bn_inputs["bn_hidden"]
        before = model.evaluate(sess, x_test, y_test)
        moving_before = float(sess.run(hidden).mean())
        predict_var = float(sess.run(inputs, model.feed(x_test, training=False, keep_prob=1.0))
                            .var(axis=0).mean())
        for step in range(REESTIMATE):  # the fix: forward passes with dropout off update the shadows
            xb, _ = data.train_batch(dataset, 64, seed + 1, step)
            sess.run(model.logits, model.feed(xb, training=True, keep_prob=1.0))
        after = model.evaluate(sess, x_test, y_test)
        moving_after = float(sess.run(hidden).mean())
    return {"before": before, "after": after, "moving_var_before": moving_before,
            "moving_var_after": moving_after, "predict_var": predict_var}
