"""The reference ``--fix-training-mode`` checks a repaired Keras file against: the model run by
Keras with every layer in inference mode, in a child process with TF2 behaviour (the command
runs TF1 behaviour).

* ``.keras`` (Keras 3): loaded with ``keras.saving.load_model(path, safe_mode=True)`` and called
  ``model(x, training=False)`` (Keras 3 passes the call's ``training`` to every layer, over a
  ``training=True`` given when the model was built).
* ``.h5`` (tf-keras): tf-keras keeps a ``training=True`` given when the functional model was
  built, whatever the call says; so the model is rebuilt from its config with that argument
  removed from every layer call (``strip_training``; its classes checked first, as the reader
  does: the safe mode tf-keras lacks), its weights loaded from the file, and called
  ``model(x, training=False)``.

``keras_outputs(path, fmt, inputs)`` -> [arrays]; ``KerasReferenceError`` (one line) when the
child fails. Nothing is written next to the user's file (a temporary folder holds the arrays).
"""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
FORMATS = ("keras", "keras_h5")


class KerasReferenceError(RuntimeError):
    """The child could not run the Keras model (message: one line)."""


def keras_outputs(path, fmt, inputs, timeout=600):
    """The Keras model's outputs (every layer in inference mode) on ``inputs`` (arrays in the
    model's input order)."""
    with tempfile.TemporaryDirectory(prefix="tf1_repro_keras_ref_") as folder:
        np.savez(os.path.join(folder, "in.npz"), *inputs)
        with open(os.path.join(folder, "in.json"), "w", encoding="utf-8") as f:
            json.dump({"path": os.path.abspath(path), "legacy": fmt == "keras_h5"}, f)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore",
                   CUDA_VISIBLE_DEVICES="-1",
                   PYTHONPATH=os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p))
        env.pop("TF_USE_LEGACY_KERAS", None)
        if fmt == "keras_h5":
            env["TF_USE_LEGACY_KERAS"] = "1"
        done = subprocess.run([sys.executable, "-m", "tf1_repro.tools.inference.keras_reference", folder],
                              capture_output=True, text=True, timeout=timeout, env=env, check=False,
                              cwd=folder)
        out = os.path.join(folder, "out.npz")
        if done.returncode != 0 or not os.path.isfile(out):
            last = [line for line in done.stderr.strip().splitlines() if line.strip()]
            raise KerasReferenceError(f"the Keras reference run failed (status {done.returncode}: "
                                      f"{last[-1][:200] if last else 'no message'})")
        with np.load(out) as f:
            return [f[f"arr_{i}"] for i in range(len(f.files))]


def strip_training(config, inside=False):
    """``config`` with every ``training`` argument of a layer call (under ``inbound_nodes``)
    removed."""
    if isinstance(config, dict):
        return {k: strip_training(v, inside or k == "inbound_nodes") for k, v in config.items()
                if not (inside and k == "training")}
    if isinstance(config, list):
        return [strip_training(v, inside) for v in config]
    return config


def _run(folder):
    """The child's side: load, call with ``training=False``, write ``out.npz``."""
    with open(os.path.join(folder, "in.json"), encoding="utf-8") as f:
        params = json.load(f)
    with np.load(os.path.join(folder, "in.npz")) as f:
        inputs = [f[f"arr_{i}"] for i in range(len(f.files))]
    if params["legacy"]:
        import h5py  # pylint: disable=import-outside-toplevel
        import tf_keras  # pylint: disable=import-outside-toplevel
        from tf1_repro.graph.artefacts.child import _check_classes  # pylint: disable=import-outside-toplevel,protected-access
        with h5py.File(params["path"], "r") as f:
            raw = f.attrs["model_config"]
        config = strip_training(json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw))
        _check_classes(config, tf_keras)
        model = tf_keras.models.model_from_json(json.dumps(config))
        model.load_weights(params["path"])
    else:
        import keras  # pylint: disable=import-outside-toplevel
        model = keras.saving.load_model(params["path"], compile=False, safe_mode=True)
    outputs = model(inputs if len(inputs) > 1 else inputs[0], training=False)
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    np.savez(os.path.join(folder, "out.npz"), *[np.asarray(o) for o in outputs])


if __name__ == "__main__":
    _run(sys.argv[1])
