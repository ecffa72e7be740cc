"""mc-dropout: dropout left on at prediction time makes outputs a random variable.

The article: without turning dropout off, the same input gives different
outputs, which follow a distribution (useful for diversity, e.g. in text
generation). The dense model's logits are a linear read-out of the dropout
layer, logits = (h * mask / k) W + b, so with inverted dropout:

* E[logits] = h W + b, the deterministic (keep_prob=1.0) output;
* Var[logit_c] = (1 - k)/k * sum_j h_j^2 W_jc^2 exactly;
* the mean of P passes misses the deterministic output by sd/sqrt(P).

Both are checked through normalised squares whose expectation is 1:
(mean_P - det)^2 P / Var and sample variance / Var, averaged per sample over
classes; the tolerance is 5 standard errors estimated from the spread of the
per-sample values over the samples.
"""

import numpy as np

from tf1_repro.model import data
from tf1_repro.experiments import _common
from tf1_repro.experiments.core import (Claim, Param, Result, Series, at_least, data_param, keep_prob,
                                        register)

SAMPLES = 1024
SHOWN = 8


@register("mc-dropout", "dropout left on at prediction gives a different output each pass; their "
          "mean approaches the deterministic output as 1/sqrt(passes)", [
              Param("keep_prob", 0.8, "keep probability in training and in the MC passes", keep_prob),
              Param("passes", 400, "stochastic passes per sample", at_least(16)),
              data_param(),
          ])
def run(p, seed, bn):
    k, passes = p["keep_prob"], p["passes"]
    dataset = data.make(p["data"], seed)
    x_test, y_test = data.held_out(dataset, SAMPLES, seed)
    with _common.trained_model(dataset, 200, 64, k, seed, bn) as (graph, sess, model):
        kernel = graph.get_tensor_by_name("logits/kernel:0")
        det, h, w = sess.run([model.logits, model.features, kernel],
                             model.feed(x_test, training=False, keep_prob=1.0))
        feed = model.feed(x_test, training=False, keep_prob=k)
        runs = np.array([sess.run(model.logits, feed) for _ in range(passes)])  # [P, S, C]
    theory_var = (1 - k) / k * (h.astype(np.float64) ** 2) @ (w.astype(np.float64) ** 2)  # [S, C]
    live = theory_var > 0
    differs = float((runs[1:] != runs[:1]).any(axis=2).mean())

    def normalised_error(count):
        err2 = (runs[:count].mean(0) - det) ** 2 * count
        return _per_sample(np.where(live, err2 / np.where(live, theory_var, 1), np.nan))

    levels = sorted({max(2, passes // 16), max(2, passes // 4), passes})
    errors = {n: normalised_error(n) for n in levels}
    var_ratio = _per_sample(np.where(live, runs.var(0, ddof=1) / np.where(live, theory_var, 1), np.nan))
    rms_theory = float(np.sqrt(theory_var.mean()))
    rows = []
    for n in levels:
        rms = float(np.sqrt(((runs[:n].mean(0) - det) ** 2).mean()))
        rows.append([n, rms, rms_theory / np.sqrt(n), float(errors[n].mean())])
    mc_std = runs.std(0, ddof=1)
    det_class = det.argmax(1)
    agree = (runs.argmax(2) == det_class).mean(0)
    notes = ["per-sample predictive distribution (first samples): "
             + "; ".join(f"#{i}: class {det_class[i]}, agreement {agree[i]:.2f}, logit sd "
                         f"{mc_std[i, det_class[i]]:.3f} (theory {np.sqrt(theory_var[i, det_class[i]]):.3f})"
                         for i in range(SHOWN)),
             f"{float((agree < 1).mean()):.1%} of samples change class in at least one of {passes} "
             f"passes (the diversity the article mentions for text generation)",
             f"held-out accuracy ({len(y_test)} {dataset.name} samples): deterministic "
             f"{float((det_class == y_test).mean()):.4f}, one stochastic pass (mean over passes) "
             f"{float((runs.argmax(2) == y_test).mean()):.4f}, MC mean of {passes} passes "
             f"{float((runs.mean(0).argmax(1) == y_test).mean()):.4f}"]
    claims = [
        Claim("inference-outputs-vary",
              f"training=False, keep_prob={k:g}: fraction of passes 2..{passes} whose logits differ "
              f"from pass 1 for the same input, over {SAMPLES} samples (at least 0.9)",
              differs, 0.9, relation=">="),
        Claim("mc-mean-converges",
              f"after {passes} passes, (MC mean - deterministic)^2 * passes / Var averages 1: the error "
              f"shrinks as sd/sqrt(passes) (tolerance 5 standard errors over {SAMPLES} samples, "
              f"{5 * _se(errors[passes]):.3g})",
              float(errors[passes].mean()), 1.0, 5 * _se(errors[passes])),
        Claim("predictive-variance-matches-theory",
              f"sample variance over {passes} passes / ((1-k)/k sum h^2 W^2) averages 1 (tolerance "
              f"5 standard errors over {SAMPLES} samples, {5 * _se(var_ratio):.3g})",
              float(var_ratio.mean()), 1.0, 5 * _se(var_ratio)),
    ]
    # mc-mean-converges: mean normalised squared error 1 +- tol, i.e. RMS error x sqrt(1 +- tol)
    tol = 5 * _se(errors[passes])
    series = {"mc_error": Series(levels, {"RMS |MC mean - deterministic|": [r[1] for r in rows],
                                          "theory sd/sqrt(passes)": [r[2] for r in rows]},
                                 "passes", "logit error", log_x=True, log_y=True,
                                 theory=["theory sd/sqrt(passes)"],
                                 band={"theory sd/sqrt(passes)": (
                                     [r[2] * np.sqrt(max(0.0, 1 - tol)) for r in rows],
                                     [r[2] * np.sqrt(1 + tol) for r in rows])},
                                 claim="mc-mean-converges")}
    return Result(headers=["passes", "RMS error of MC mean", "theory RMS sd/sqrt(passes)",
                           "normalised squared error (expect 1)"],
                  rows=rows, claims=claims, series=series, graph=graph, notes=notes,
                  histograms={f"mc_logits/sample0_class{c}": [(0, runs[:, 0, c])]
                              for c in range(runs.shape[2])})


def _per_sample(values):
    """Average a [samples, classes] array over classes, ignoring NaN (dead units); drop empty rows."""
    counts = np.sum(~np.isnan(values), axis=1)
    sums = np.nansum(values, axis=1)
    return sums[counts > 0] / counts[counts > 0]


def _se(values):
    return float(values.std(ddof=1) / np.sqrt(len(values)))
