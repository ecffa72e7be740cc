"""Latency of the served variants: the median milliseconds per batch size.

* ``time_variant`` (what ``to-inference`` reports): one variant at a time. Its runner is opened,
  run once per batch size (the warm-up), timed for ``runs`` rounds (each round runs every batch
  size once, in a new random order) and closed before the next variant is opened, so only one
  served model is in memory at a time (TensorFlow's first run of a frozen graph holds many times
  its weights for a moment: measured on a TF-Slim ResNet-50, 94 MB of weights, 0.9 GB above the
  parsed graph).
* ``measure_latency`` (the benchmarks, on small models): every runner alive, the variants
  interleaved in each round, so that a change in the machine's load falls on all of them alike.
"""

import time

import numpy as np

from tf1_repro.graph.errors import run_error_line

VARIANTS = ("original", "frozen_unfolded", "folded", "onnxruntime", "tflite")


def cannot_run(err):
    """The one line a variant that cannot be opened or run gets in ``latency_errors``."""
    return f"cannot run: {type(err).__name__}: {run_error_line(err)}"


def time_variant(variant, open_runner, batches, runs=30, seed=0, progress=None):
    """(``measure_latency``'s medians for this one variant, None) for the runner
    ``open_runner()`` returns, closed afterwards (``Runner.close`` collects its memory); (None,
    ``cannot_run`` line) when it cannot be opened or run. ``progress`` (a progress factory): a
    bar ``timing VARIANT`` of ``runs`` rounds."""
    try:
        runner = open_runner()
    except Exception as err:  # pylint: disable=broad-except
        return None, cannot_run(err)
    errors = {}
    try:
        medians = measure_latency({variant: runner}, batches, runs, seed, progress, errors,
                                  desc=f"timing {variant}")[variant]
    except Exception as err:  # pylint: disable=broad-except
        return None, cannot_run(err)
    finally:
        runner.close()
    return medians, errors.get(variant)


def measure_latency(runners, batches, runs=30, seed=0, progress=None, errors=None, desc="timing"):
    """{variant: {str(size): median ms}} over ``runs`` interleaved rounds (new random order
    each round, after one warm-up run of each); ``progress`` (a progress factory) counts rounds
    in a bar ``desc``. A variant whose warm-up run raises gets None, its reason in ``errors``
    ({variant: line}); an exception in a timed round propagates."""
    from tf1_repro import progress as progress_display  # pylint: disable=import-outside-toplevel
    errors = {} if errors is None else errors
    for v in runners:
        for s in batches:
            try:
                runners[v].run(batches[s])
            except Exception as err:  # pylint: disable=broad-except
                errors.setdefault(v, cannot_run(err))
    live = {v: r for v, r in runners.items() if v not in errors}
    rng = np.random.default_rng(seed)
    times = {(v, s): [] for v in live for s in batches}
    keys = list(times)
    with progress_display.resolve(progress)(desc, runs, "round") as bar:
        for _ in range(runs):
            _timed_round(runners, batches, keys, times, rng)
            bar.update(1)
    return {v: None if v in errors else {str(s): float(np.median(times[(v, s)])) for s in batches}
            for v in runners}


def _timed_round(runners, batches, keys, times, rng):
    """One run of every (variant, batch) pair in a new random order, times appended (ms)."""
    for i in rng.permutation(len(keys)):
        v, s = keys[i]
        start = time.perf_counter()
        runners[v].run(batches[s])
        times[(v, s)].append((time.perf_counter() - start) * 1e3)
