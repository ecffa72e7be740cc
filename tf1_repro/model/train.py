"""Resumable, deterministic training and prediction from checkpoints (``train``, ``predict``).

Nothing is lost to an interruption: the global step, the weights, Adam's slots
and the BN shadows are all checkpoint variables; batch ``step`` is a pure
function of (seed, step) (``data.train_batch``) and so is its dropout mask
(the model's ``dropout_rng="stateless"``); ops run deterministically
(``tf.config.experimental.enable_op_determinism``). A run killed at any point
and restarted with the same command ends with variables bitwise equal to an
uninterrupted run's. TensorFlow writes a checkpoint's files before it points
the ``checkpoint`` state file at them (an atomic rename), so a kill during a
write leaves the previous checkpoint in force; an unreadable checkpoint is
reported in one line and the newest readable one is used instead.
"""

import glob
import json
import os
import re
import time
import warnings

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro import progress as progress_display
from tf1_repro.layers import checks
from tf1_repro.graph.errors import InputError
from tf1_repro.model import data
from tf1_repro.model.feed import SingleSampleTrainingWarning
from tf1_repro.model import ArticleModel

PREFIX = "model.ckpt"
RUN_FILE = "train.json"
LOG_FILE = "train_log.jsonl"
HELD_OUT = 2048


class TrainError(InputError):
    """A refused or failed command: one line for stderr, exit status 2."""


def _checkpoints(directory):
    """Checkpoint prefixes in ``directory``, newest (highest step) first."""
    found = set()
    state = None
    try:
        state = tf.train.get_checkpoint_state(directory)
    except Exception:  # pylint: disable=broad-except  (a corrupt state file: fall back to the files)
        pass
    if state:
        found.update(os.path.join(directory, os.path.basename(p)) for p in state.all_model_checkpoint_paths)
    found.update(p[:-len(".index")] for p in glob.glob(os.path.join(directory, f"{PREFIX}-*.index")))

    def step(prefix):
        match = re.search(r"-(\d+)$", prefix)
        return int(match.group(1)) if match else -1
    return sorted(found, key=step, reverse=True)


def restore_latest(sess, saver, directory, log):
    """Restore the newest readable checkpoint; None if there is none at all.

    Each unreadable one is reported in one line naming its files; TrainError if
    checkpoints exist but none can be read.
    """
    candidates = _checkpoints(directory)
    for prefix in candidates:
        try:
            saver.restore(sess, prefix)
            return prefix
        except (tf.errors.OpError, ValueError) as err:
            reason = str(err).strip().splitlines()[0][:160]
            files = ", ".join(sorted(os.path.basename(f) for f in glob.glob(prefix + ".*"))) or "missing"
            log(f"checkpoint {prefix} is unreadable ({type(err).__name__}: {reason}; files: {files}); "
                f"trying an older one")
    if candidates:
        raise TrainError(f"checkpoint: no readable checkpoint in {directory} "
                         f"({len(candidates)} found, all unreadable)")
    return None


def _check_out(out, needed_bytes):
    """Create --out and prove a checkpoint fits, before training starts."""
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise TrainError(f"train: --out must be a directory we can create, got {out!r} "
                         f"({err.strerror or err})") from None
    probe = os.path.join(out, ".tf1_repro_space_probe")
    try:
        with open(probe, "wb") as f:
            f.write(b"\0" * needed_bytes)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:
        raise TrainError(f"train: --out must be writable with room for a checkpoint (~{needed_bytes // 1024} "
                         f"KiB), got {out!r}: {err.strerror or err}") from None
    finally:
        if os.path.exists(probe):
            os.remove(probe)


def _run_settings(out, settings):
    """The settings of the run already in ``out`` must equal these (or there is none)."""
    path = os.path.join(out, RUN_FILE)
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            previous = json.load(f)
        for key, value in settings.items():
            if previous.get(key) != value:
                raise TrainError(
                    f"train: --{key.replace('_', '-')} must match the run being resumed in {out} "
                    f"({previous.get(key)}), got {value}; use the same settings or another --out")
    return path


def enable_determinism():
    """``tf.config.experimental.enable_op_determinism()``: deterministic kernels, process-wide."""
    import tensorflow as tf2  # pylint: disable=import-outside-toplevel
    tf2.config.experimental.enable_op_determinism()


def train(out, steps, seed=0, batch_size=64, keep_prob=0.8, checkpoint_every=100, log=print,
          check_finite=True, progress=None):
    """Train the demo model to ``steps`` steps in ``out``, resuming from its checkpoints.

    For bitwise reproducibility call ``enable_determinism()`` first (global and
    one-way, so the command line does it, not this function).

    ``progress``: a ``tf1_repro.progress`` factory; the bar counts steps (loss beside it).

    Returns {"start", "step", "checkpoint", "interrupted", "losses"}.
    """
    keep_prob = checks.check_keep_prob("train: --keep-prob", keep_prob)
    for name, value, minimum in (("steps", steps, 1), ("batch_size", batch_size, 1),
                                 ("checkpoint_every", checkpoint_every, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise TrainError(f"train: --{name.replace('_', '-')} must be an integer >= {minimum}, "
                             f"got {value!r}")
    if batch_size == 1:
        log("warning: --batch-size 1: every batch has variance 0, so each bn_layer outputs its beta "
            "in training (the article's point); the model will not learn much")
    dataset = data.Blobs(seed=seed)
    with tf.Graph().as_default() as graph:
        model = ArticleModel(dataset.input_shape, dataset.classes, seed=seed, dropout_rng="stateless")
        variable_bytes = sum(int(np.prod(v.shape.as_list())) * 4 for v in tf.global_variables())
        graph.finalize()
        _check_out(out, 4 * variable_bytes + 2 * graph.as_graph_def().ByteSize())
        settings = {"seed": seed, "batch_size": batch_size, "keep_prob": keep_prob}
        run_file = _run_settings(out, settings)
        with tf.Session(graph=graph) as sess:
            restored = restore_latest(sess, model.saver, out, log)
            if restored is None:
                sess.run(model.init_op)
                with open(run_file, "w", encoding="utf-8") as f:
                    json.dump(settings, f)
                model.save_config(out)
            start = int(sess.run(model.global_step))
            log(f"{'resumed from ' + restored if restored else 'new run in ' + out} at step {start}; "
                f"training to step {steps}")
            result = {"start": start, "step": start, "checkpoint": restored, "interrupted": False,
                      "losses": []}
            if start >= steps:
                return result
            every = min(500, max(1, (steps - start) // 20))
            started = time.perf_counter()
            with open(os.path.join(out, LOG_FILE), "a", encoding="utf-8") as losses, \
                    warnings.catch_warnings(), \
                    progress_display.resolve(progress)("train", steps, "step", start) as bar:
                warnings.simplefilter("ignore", SingleSampleTrainingWarning)
                try:
                    for step in range(start, steps):
                        x, y = data.train_batch(dataset, batch_size, seed, step)
                        loss, _ = model.train_step(sess, x, y, keep_prob, step=step,
                                                   check_finite=check_finite)
                        result["step"] = step + 1
                        result["losses"].append(loss)
                        losses.write(json.dumps({"step": step + 1, "loss": loss}) + "\n")
                        bar.update(1, loss=loss)
                        if (step + 1) % every == 0 or step + 1 == steps:
                            rate = (step + 1 - start) / (time.perf_counter() - started)
                            log(f"step {step + 1}/{steps}  loss {loss:.4f}  {rate:,.0f} steps/s")
                        if (step + 1) % checkpoint_every == 0 and step + 1 < steps:
                            losses.flush()
                            model.saver.save(sess, os.path.join(out, PREFIX), global_step=step + 1)
                except KeyboardInterrupt:
                    result["interrupted"] = True
            # the graph's step, not the loop's: a Ctrl-C may land after a train op ran
            result["step"] = int(sess.run(model.global_step))
            result["checkpoint"] = model.saver.save(sess, os.path.join(out, PREFIX),
                                                    global_step=result["step"])
            if result["interrupted"]:
                log(f"interrupted after step {result['step']}: saved {result['checkpoint']}; run the "
                    f"same command to resume")
            else:
                log(f"done: step {result['step']}, checkpoint {result['checkpoint']}")
    return result


def predict(checkpoint_dir, batch_size=256, log=print):
    """Accuracy of the latest readable checkpoint on held-out data, in prediction mode."""
    if not os.path.isdir(checkpoint_dir):
        raise TrainError(f"predict: --checkpoint must be a directory holding checkpoints, got "
                         f"{checkpoint_dir!r}")
    if not os.access(checkpoint_dir, os.R_OK | os.X_OK):
        raise TrainError(f"predict: --checkpoint must be readable, got {checkpoint_dir!r}")
    try:
        config = ArticleModel.load_config(checkpoint_dir)
    except ValueError as err:
        raise TrainError(f"predict: {err}") from None
    dataset = data.Blobs(seed=config["seed"])
    x_test, y_test = data.held_out(dataset, HELD_OUT, config["seed"])
    with tf.Graph().as_default() as graph:
        model = ArticleModel(**config)
        graph.finalize()
        with tf.Session(graph=graph) as sess:
            prefix = restore_latest(sess, model.saver, checkpoint_dir, log)
            if prefix is None:
                raise TrainError(f"predict: --checkpoint must hold a checkpoint, got "
                                 f"{checkpoint_dir!r} without one")
            predictions = np.concatenate([model.predict(sess, x_test[i:i + batch_size])
                                          for i in range(0, len(x_test), batch_size)])
    accuracy = float((predictions == y_test).mean())
    return {"checkpoint": prefix, "accuracy": accuracy, "samples": len(x_test), "batch_size": batch_size}
