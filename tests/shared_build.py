"""Test models built once per test run, even when pytest-xdist runs the tests in several workers.

API::

    from shared_build import shared_folder, built_once
    base = shared_folder(tmp_path_factory, "model_suite")  # one folder for every worker
    path = built_once(os.path.join(base, name), lambda out_dir: build(out_dir))

Each worker has a basetemp of its own (``.../popen-gw0``); their common parent is the run's, so a
folder there is shared. ``built_once`` builds under an exclusive ``fcntl`` lock on a file beside
the folder, and marks the folder done with the builder's JSON result in a file beside it: the first worker builds,
the others wait and read the result."""

import contextlib
import fcntl
import json
import os


def shared_folder(tmp_path_factory, name):
    """``name`` under the run's common temporary folder (the parent of a worker's basetemp)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    folder = os.path.join(str(base), name)
    os.makedirs(folder, exist_ok=True)
    return folder


@contextlib.contextmanager
def _locked(path):
    with open(path, "w", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def built_once(out_dir, build):
    """``build(out_dir)``'s result (JSON-able), built by one process only: later calls, from this
    process or another, read the result recorded beside it in ``out_dir.built``."""
    done = out_dir.rstrip(os.sep) + ".built"
    with _locked(out_dir.rstrip(os.sep) + ".lock"):
        if os.path.exists(done):
            with open(done, encoding="utf-8") as f:
                return json.load(f)
        os.makedirs(out_dir, exist_ok=True)
        result = build(out_dir)
        with open(done, "w", encoding="utf-8") as f:
            json.dump(result, f)
        return result


def keras_models(tmp_path_factory, name, script, npz_names):
    """``(folder, {key: array})``: ``python script FOLDER`` run in a tf-keras child process
    (``TF_USE_LEGACY_KERAS=1``), then ``python script FOLDER --keras3`` in a Keras 3 one, once per
    test run (``built_once``); the arrays of the ``npz_names`` files they wrote, merged."""
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    import numpy as np  # pylint: disable=import-outside-toplevel

    def build(out):
        base = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore",
                    CUDA_VISIBLE_DEVICES="-1")
        base.pop("TF_USE_LEGACY_KERAS", None)
        for extra, env in (([], dict(base, TF_USE_LEGACY_KERAS="1")), (["--keras3"], base)):
            done = subprocess.run([sys.executable, script, out, *extra], capture_output=True,
                                  text=True, env=env, check=False, timeout=600)
            assert done.returncode == 0, done.stderr[-2000:]
    folder = os.path.join(shared_folder(tmp_path_factory, "shared"), name)
    built_once(folder, build)
    arrays = {}
    for npz in npz_names:
        with np.load(os.path.join(folder, npz)) as f:
            arrays.update(dict(f))
    return folder, arrays
