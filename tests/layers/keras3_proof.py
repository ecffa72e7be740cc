"""Keras 3 side of tests/layers/test_keras3.py, run in a child process with TF2 behaviour.

argv: IN.npz (schedules from the test: ``{prefix}/batch_i`` and ``{prefix}/training``),
OUT.npz, WORKDIR. Replays each schedule through ``ArticleBatchNormalization`` eagerly and
under ``tf.function`` (``keras3_worker.replay``), trains a small ``keras.Model`` with ``fit``,
saves it to ``.keras`` and reloads it, exercises both dropout layers and the argument
checks. Arrays go to OUT.npz; everything else is printed as one JSON line.
"""

import json
import os
import sys

import numpy as np
import keras

from tf1_repro.keras import ArticleBatchNormalization, InvertedDropout, VanillaDropout
from tf1_repro.comparisons import keras3_worker


def replay(arrays):
    prefixes = sorted({k.split("/")[0] for k in arrays})
    schedules = [{"prefix": p, "training": arrays[f"{p}/training"].tolist()} for p in prefixes]
    specs = [{"name": mode, "layer": "article", "mode": mode} for mode in ("eager", "function")]
    out, _ = keras3_worker.replay(arrays, {"schedules": schedules, "specs": specs})
    return out


def fit_save_reload(workdir):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(64, 4)) * [1.0, 2.0, 3.0, 4.0] + [5.0, -1.0, 0.0, 2.0]).astype("float32")
    y = (x[:, 0] > 5.0).astype(int) + (x[:, 3] > 2.0).astype(int)  # learnable labels 0..2
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    h = ArticleBatchNormalization(name="bn_input")(inputs)
    h = keras.layers.Dense(8, use_bias=False)(h)
    h = ArticleBatchNormalization(name="bn_hidden")(h)
    h = InvertedDropout(0.8, seed=1, name="inverted")(keras.layers.ReLU()(h))
    h = VanillaDropout(0.9, seed=2, name="vanilla")(h)
    model = keras.Model(inputs, keras.layers.Dense(3)(h))
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, shuffle=False)
    before = model.predict(x, verbose=0)
    path = os.path.join(workdir, "model.keras")
    model.save(path)
    reloaded = keras.models.load_model(path)
    after = reloaded.predict(x, verbose=0)
    bn = reloaded.get_layer("bn_input")
    return {"losses": history.history["loss"], "identical": bool(np.array_equal(before, after)),
            "max_diff": float(np.abs(before - after).max()),
            "reloaded_classes": [type(reloaded.get_layer(n)).__name__
                                 for n in ("bn_input", "bn_hidden", "inverted", "vanilla")],
            "reloaded_config": {"momentum": bn.momentum, "epsilon": bn.epsilon,
                                "keep_prob": reloaded.get_layer("vanilla").keep_prob},
            "moving_mean_input": np.asarray(bn.moving_mean.numpy()).tolist(),
            "data_mean": x.mean(axis=0).tolist(), "steps": 3 * (64 // 16)}


def dropouts():
    ones = np.ones((200, 500), "float32")
    result = {}
    for cls, keep in ((InvertedDropout, 0.8), (VanillaDropout, 0.8)):
        layer = cls(keep, seed=3)
        train = np.asarray(layer(ones, training=True))
        result[cls.__name__] = {"train_values": sorted(set(np.round(train.ravel(), 6).tolist())),
                                "kept_fraction": float((train != 0).mean()),
                                "predict_values": sorted(set(np.asarray(
                                    layer(ones, training=False)).ravel().tolist()))}
    return result


def refusals():
    messages = []
    for call in (lambda: ArticleBatchNormalization(momentum=1.5),
                 lambda: ArticleBatchNormalization(epsilon=0.0),
                 lambda: InvertedDropout(0.0),
                 lambda: ArticleBatchNormalization()(np.ones((4, 2), "float32"), training="yes")):
        try:
            call()
            messages.append(None)
        except (TypeError, ValueError) as err:
            messages.append(f"{type(err).__name__}: {err}")
    return messages


def main(in_path, out_path, workdir):
    with np.load(in_path) as loaded:
        arrays = dict(loaded)
    np.savez(out_path, **replay(arrays))
    print(json.dumps({"fit": fit_save_reload(workdir), "dropout": dropouts(),
                      "refusals": refusals(), "keras": keras.__version__,
                      "backend": keras.backend.backend()}))


if __name__ == "__main__":
    main(*sys.argv[1:])
