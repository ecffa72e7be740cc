"""train-vs-inference: with training=False a prediction does not depend on its batch.

Trains the article-style dense model, then predicts the same held-out samples
in chunks of 1, 2, 4, ..., 256 per ``session.run``, in both modes. With
training=False the layer uses the moving averages, so the logits are the same
for every chunk size; with training=True it uses the chunk's own statistics,
so they change with the chunk (and a chunk of 1 collapses to one prediction).
"""

import numpy as np

from tf1_repro.model import data
from tf1_repro.experiments import _common
from tf1_repro.experiments.core import Claim, Param, Result, Series, at_least, data_param, register

SAMPLES = {"blobs": 256, "digits": 512}  # held-out samples predicted (digits: 512 of its 539)
CHUNKS = [1, 2, 4, 8, 16, 32, 64, 128, 256]


@register("train-vs-inference", "with training=False a sample's prediction is the same in any "
          "batch; with training=True it depends on the batch", [
              Param("steps", 300, "training steps", at_least(1)),
              Param("batch_size", 64, "training batch size", at_least(2)),
              data_param(),
          ])
def run(p, seed, bn):
    dataset = data.make(p["data"], seed)
    x_test, y_test = data.held_out(dataset, SAMPLES[p["data"]], seed)
    with _common.trained_model(dataset, p["steps"], p["batch_size"], 0.8, seed, bn) as (g, sess, model):
        infer = {c: _common.logits_in_chunks(sess, model, x_test, c, False) for c in CHUNKS}
        # training=True runs update the shadows; they come after every prediction-mode run
        train = {c: _common.logits_in_chunks(sess, model, x_test, c, True) for c in CHUNKS}
    full = CHUNKS[-1]  # the reference: the largest chunk
    rows, infer_diff, train_diff = [], {}, {}
    for c in CHUNKS:
        infer_diff[c] = float(np.abs(infer[c] - infer[full]).max())
        train_diff[c] = float(np.abs(train[c] - train[full]).max())
        rows.append([c, infer_diff[c], float((infer[c].argmax(1) == y_test).mean()),
                     train_diff[c], float((train[c].argmax(1) == y_test).mean())])
    # one sample per run with training=True: bn_input outputs beta, so every sample gets one class;
    # the best that can score is the largest class's share of the held-out set
    largest_share = float(np.bincount(y_test).max() / len(y_test))
    scale = float(np.abs(infer[full]).max())
    tol = 64 * float(np.spacing(np.float32(scale)))
    claims = [
        Claim("inference-batch-independent",
              f"training=False: max |logits(chunk c) - logits(chunk {full})| over c in {CHUNKS} "
              f"(tolerance 64 float32 ulps of the largest logit {scale:.3g}: matmul blocking "
              f"may change with the chunk)",
              max(infer_diff.values()), 0.0, tol),
        Claim("training-mode-batch-dependent",
              f"training=True: max |logits(chunk c) - logits(chunk {full})| over c < {full} is at "
              f"least 1000x the inference tolerance: the batch's own statistics are used",
              max(v for c, v in train_diff.items() if c != full), 1000 * tol, relation=">="),
        Claim("single-sample-training-mode-one-class",
              f"training=True, one sample per run: held-out accuracy ({len(y_test)} {dataset.name} "
              f"samples) is at most the largest class's share {largest_share:.3f} (every sample gets "
              f"the same class), vs {rows[0][2]:.3f} with training=False",
              rows[0][4], largest_share, relation="<="),
    ]
    series = {"logit_difference": Series(CHUNKS, {
        "training=False": [infer_diff[c] for c in CHUNKS],
        "training=True": [train_diff[c] for c in CHUNKS]},
        "samples per session.run", f"max |logits - logits(chunk {full})|", log_x=True, symlog_y=True,
        reference={"0 (training=False tolerance: 64 ulps)": (0.0, tol)},
        claim="inference-batch-independent"),
        "accuracy": Series(CHUNKS, {"training=False": [r[2] for r in rows],
                                    "training=True": [r[4] for r in rows]},
                           "samples per session.run", f"held-out accuracy ({dataset.name})",
                           categories=[str(c) for c in CHUNKS],
                           reference={"largest class share (one class for all)": (largest_share, 0)},
                           claim="single-sample-training-mode-one-class")}
    return Result(
        headers=["samples per run", "infer: max diff", "infer: accuracy", "train-mode: max diff",
                 "train-mode: accuracy"],
        rows=rows, claims=claims, series=series, graph=g)
