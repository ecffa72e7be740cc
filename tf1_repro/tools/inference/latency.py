"""Latency of the served variants: interleaved timing rounds, the median per batch size.
(Moved unchanged from ``tools/inference.py``.)"""

import numpy as np

from tf1_repro.graph.errors import run_error_line

def measure_latency(runners, batches, runs=30, seed=0, progress=None, errors=None):
    """{variant: {str(size): median ms}} over ``runs`` interleaved rounds (new random order
    each round, after one warm-up run of each); ``progress`` (a progress factory) counts rounds.
    A variant whose warm-up run raises gets None, its reason in ``errors`` ({variant: line})."""
    import time  # pylint: disable=import-outside-toplevel
    from tf1_repro import progress as progress_display  # pylint: disable=import-outside-toplevel
    errors = {} if errors is None else errors
    for v in runners:
        for s in batches:
            try:
                runners[v].run(batches[s])
            except Exception as err:  # pylint: disable=broad-except
                errors.setdefault(v, f"cannot run: {type(err).__name__}: {run_error_line(err)}")
    live = {v: r for v, r in runners.items() if v not in errors}
    rng = np.random.default_rng(seed)
    times = {(v, s): [] for v in live for s in batches}
    keys = list(times)
    with progress_display.resolve(progress)("timing", runs, "round") as bar:
        for _ in range(runs):
            _timed_round(runners, batches, keys, times, rng, time)
            bar.update(1)
    return {v: None if v in errors else {str(s): float(np.median(times[(v, s)])) for s in batches}
            for v in runners}



def _timed_round(runners, batches, keys, times, rng, time):
    """One run of every (variant, batch) pair in a new random order, times appended (ms)."""
    for i in rng.permutation(len(keys)):
        v, s = keys[i]
        start = time.perf_counter()
        runners[v].run(batches[s])
        times[(v, s)].append((time.perf_counter() - start) * 1e3)


VARIANTS = ("original", "frozen_unfolded", "folded", "onnxruntime", "tflite")
