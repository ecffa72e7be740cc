"""The training loop shared by the demo, the experiments and the command line."""

import time

from tf1_repro.model import data


def train(sess, model, dataset, steps, batch_size, keep_prob, seed, log=None, start=0,
          check_finite=True, sample=None):
    """Run ``train_step`` for steps start..steps-1 on batches that depend only on (seed, step).

    ``sample(step)`` overrides where batches come from (default: fresh draws from
    ``dataset``). Logs a progress line five times when ``log`` is given.
    Returns {"first_loss", "last_loss", "losses", "seconds"}.
    """
    sample = sample or (lambda step: data.train_batch(dataset, batch_size, seed, step))
    started = time.perf_counter()
    every = max(1, (steps - start) // 5)
    losses = []
    for step in range(start, steps):
        x, y = sample(step)
        loss, accuracy = model.train_step(sess, x, y, keep_prob, step=step, check_finite=check_finite)
        losses.append(loss)
        done = step + 1 - start
        if log and (done % every == 0 or step + 1 == steps):
            rate = done / (time.perf_counter() - started)
            log(f"step {step + 1:5d}/{steps}  loss {loss:.3f}  batch accuracy {accuracy:.3f}  "
                f"{rate:,.0f} steps/s")
    return {"first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "losses": losses, "seconds": time.perf_counter() - started}
