"""The data recalibrate runs over: ``FILE.npz``, ``FILE.npy`` or ``module.py:FUNC`` (``Data``),
in batches (``batches``)."""

import dataclasses
import os
from typing import Callable, Optional

import numpy as np

from tf1_repro.comparisons import loader
from tf1_repro.graph.errors import exception_line, one_line
from tf1_repro.tools.recalibrate.common import WHERE, RecalibrateError


@dataclasses.dataclass
class Data:
    """Batches of feed values keyed by name, from ``.npz``, ``.npy`` or ``module.py:FUNC``.

    ``arrays`` (npz/npy) are read lazily by key; ``func()`` (a generator) is called
    once per pass and must yield the same feed dicts each time (checked).
    """
    spec: str
    kind: str  # "npz" | "npy" | "generator"
    arrays: Optional[dict] = None
    func: Optional[Callable] = None

    @property
    def keys(self):
        return None if self.arrays is None else sorted(self.arrays)


def open_data(spec):
    """A ``Data`` for ``FILE.npz``, ``FILE.npy`` or ``module.py:FUNC``; RecalibrateError otherwise.

    An ``.npz`` is read lazily, array by array (only the arrays the graph needs are loaded, a
    ``.npy`` is memory-mapped), which is why it is not ``graph.feeds.load_npz`` (all at once)."""
    if not isinstance(spec, str) or not spec:
        raise RecalibrateError(f"{WHERE}: --data must be FILE.npz, FILE.npy or module.py:FUNC, got {spec!r}")
    lower = spec.lower()
    if lower.endswith(".npz"):
        if not os.path.isfile(spec):
            raise RecalibrateError(f"{WHERE}: --data must be an existing file, got {spec!r} (no such file)")
        try:
            npz = np.load(spec, allow_pickle=False)
            arrays = {key: _LazyArray(npz, key) for key in npz.files}
        except (OSError, ValueError) as err:
            raise RecalibrateError(f"{WHERE}: --data {spec!r} is not a readable .npz: {err}") from None
        if not arrays:
            raise RecalibrateError(f"{WHERE}: --data {spec!r} holds no arrays")
        return Data(spec, "npz", arrays=arrays)
    if lower.endswith(".npy"):
        if not os.path.isfile(spec):
            raise RecalibrateError(f"{WHERE}: --data must be an existing file, got {spec!r} (no such file)")
        try:
            array = np.load(spec, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise RecalibrateError(f"{WHERE}: --data {spec!r} is not a readable .npy: {err}") from None
        return Data(spec, "npy", arrays={None: array})
    path, sep, name = spec.rpartition(":")
    if sep and path.endswith(".py") and name:
        try:
            func = loader.load(spec, WHERE)
        except loader.BuilderError as err:
            raise RecalibrateError(str(err)) from None
        return Data(spec, "generator", func=func)
    raise RecalibrateError(f"{WHERE}: --data must be FILE.npz, FILE.npy or module.py:FUNC, got {spec!r}")


class _LazyArray:
    """One array of an .npz, loaded on first use (only the arrays the graph needs are read)."""

    def __init__(self, npz, key):
        self.npz, self.key, self._value = npz, key, None

    def get(self):
        if self._value is None:
            self._value = self.npz[self.key]
        return self._value


def array_of(value):
    """The array of an ``.npz`` key (read on first use) or of a ``.npy``."""
    return value.get() if isinstance(value, _LazyArray) else value


def batches(data, keys, batch_size, max_samples, optional=()):
    """Yield dicts {key: array} of at most ``batch_size`` samples (arrays) or as yielded (FUNC);
    a FUNC's keys in ``optional`` are passed on when present."""
    limit = max_samples if max_samples is not None else float("inf")
    if data.kind != "generator":
        arrays = {k: array_of(data.arrays[k]) for k in keys}
        total = min(len(next(iter(arrays.values()))), limit)
        for start in range(0, int(total), batch_size):
            stop = int(min(start + batch_size, total))
            yield {k: np.asarray(a[start:stop]) for k, a in arrays.items()}
        return
    try:
        iterator = iter(data.func())
    except Exception as err:  # pylint: disable=broad-except
        raise RecalibrateError(f"{WHERE}: --data {data.spec} raised {exception_line(err)}") from None
    seen = 0
    index = 0
    while seen < limit:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except Exception as err:  # pylint: disable=broad-except
            raise RecalibrateError(f"{WHERE}: --data {data.spec} raised {type(err).__name__} at batch "
                                   f"{index}: {one_line(err)}") from None
        if not isinstance(item, dict) or not item:
            raise RecalibrateError(f"{WHERE}: --data {data.spec} must yield non-empty dicts "
                                   f"{{placeholder name: array}}, got {type(item).__name__} at batch {index}")
        missing = [k for k in keys if k not in item]
        if missing:
            raise RecalibrateError(f"{WHERE}: --data {data.spec} batch {index} has no key {missing[0]!r} "
                                   f"(keys: {', '.join(sorted(map(str, item)))})")
        batch = {k: np.asarray(item[k]) for k in list(keys) + [k for k in optional if k in item]}
        if not batch:
            raise RecalibrateError(f"{WHERE}: --data {data.spec} must yield an input of the BN layers, got "
                                   f"keys {', '.join(sorted(map(str, item)))} at batch {index}, none of them "
                                   f"a placeholder above a BN layer")
        sizes = {k: (v.shape[0] if v.ndim else None) for k, v in batch.items()}
        if len(set(sizes.values())) != 1 or None in sizes.values():
            raise RecalibrateError(f"{WHERE}: --data {data.spec} batch {index}: every array must have "
                                   f"the same first (sample) dimension, got {sizes}")
        size = next(iter(sizes.values()))
        if seen + size > limit:
            batch = {k: v[:int(limit - seen)] for k, v in batch.items()}
            size = int(limit - seen)
        seen += size
        index += 1
        yield batch
