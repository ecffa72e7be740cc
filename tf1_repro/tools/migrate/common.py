"""What every stage of ``migrate`` shares: the settings, the error, the ``--out`` check."""

import numpy as np

from tf1_repro.graph import paths
from tf1_repro.graph.errors import InputError
from tf1_repro.tools import naming

WHERE = "migrate"
TARGETS = ("keras3", "article")
ROLES = naming.ROLES
TOLERANCE = 1e-5
TRAJECTORY_TOLERANCE = 1e-4
WEIGHTS, LAYERS, MODEL, REPORT = "weights.npz", "layers.json", "model.keras", "migration.json"
ARTICLE_PREFIX = "model.ckpt"
DEFAULT_EPSILON, DEFAULT_MOMENTUM = 1e-5, 0.9
RANDOM_BATCH = 64

# migrate's --out messages predate the shared check; kept word for word. No writability check:
# the files are written at the end (an unwritable --out fails there).
OUT_WORDING = paths.OutWording(
    is_file="{what} must be a directory, got {out!r}, which is a file",
    holds="{what} must not hold {name} already (pass --force to overwrite), got {out!r} with {name}")


class MigrateError(InputError):
    """A refused input: one line, exit status 2; nothing was written."""


def nice(value):
    """A float32 setting (9.99999975e-06) as the short decimal it was written as (1e-05)."""
    return None if value is None else float(str(np.float32(value)))


def check_settings(to, epsilon, momentum, train_steps):
    """The command's settings, checked in one place."""
    if to not in TARGETS:
        raise MigrateError(f"migrate: --to must be one of {', '.join(TARGETS)}, got {to!r}")
    if epsilon is not None and not (isinstance(epsilon, (int, float)) and 0 < epsilon < np.inf):
        raise MigrateError(f"migrate: --epsilon must be a finite number > 0, got {epsilon!r}")
    if momentum is not None and not (isinstance(momentum, (int, float)) and 0 <= momentum <= 1):
        raise MigrateError(f"migrate: --momentum must be in [0, 1] (the TF1 decay), got {momentum!r}")
    if isinstance(train_steps, bool) or not isinstance(train_steps, int) or train_steps < 0:
        raise MigrateError(f"migrate: train_steps must be an integer >= 0, got {train_steps!r}")


def check_out(out, marker, force):
    """Refuse an ``--out`` that is a file, or holds ``marker`` already (unless ``force``)."""
    try:
        paths.check_out_dir(out, WHERE, taken=(marker,), force=force, wording=OUT_WORDING,
                            writable=False)
    except InputError as err:
        raise MigrateError(str(err)) from None
