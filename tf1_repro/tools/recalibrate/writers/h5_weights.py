"""Replacing datasets of a Keras HDF5 weights file in place with h5py, and checking the result.

``replace`` opens a *copy* of the user's file read-write and writes the new values into the
existing datasets (same shape and dtype), so every other dataset and attribute stays as it was.
``compare`` walks the source and the written file: the same datasets and attributes, the
replaced datasets holding the new values and every other one the source's bytes."""

import numpy as np

from tf1_repro.tools.recalibrate.common import WHERE, RecalibrateError


def datasets(f):
    """{path: dataset} of every dataset in an open h5py file."""
    import h5py  # pylint: disable=import-outside-toplevel
    found = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found[name] = obj
    f.visititems(visit)
    return found


def same_value(dataset, value):
    """Whether an h5py dataset holds exactly ``value`` (dtype, shape and bytes)."""
    stored = np.asarray(dataset[()])
    value = np.asarray(value)
    return stored.dtype == value.dtype and stored.shape == value.shape and \
        stored.tobytes() == value.tobytes()


def replace(path, values):
    """Write ``values`` ({dataset path: array}) into the datasets of the file at ``path``."""
    import h5py  # pylint: disable=import-outside-toplevel
    with h5py.File(path, "r+") as f:
        for name, value in values.items():
            dataset = f[name]
            if dataset.shape != value.shape or dataset.dtype != value.dtype:
                raise RecalibrateError(f"{WHERE}: weights dataset {name} is {dataset.shape} {dataset.dtype}, "
                                       f"the new value {value.shape} {value.dtype}; nothing written")
            dataset[...] = value


def _attrs(obj):
    return {k: np.asarray(v) for k, v in obj.attrs.items()}


def _same_attrs(a, b):
    x, y = _attrs(a), _attrs(b)
    return x.keys() == y.keys() and all(x[k].shape == y[k].shape and np.array_equal(x[k], y[k])
                                        for k in x)


def compare(source_path, written_path, values, where):
    """Check the written file against the source; the number of datasets copied bit for bit."""
    import h5py  # pylint: disable=import-outside-toplevel
    with h5py.File(source_path, "r") as src, h5py.File(written_path, "r") as out:
        old, new = datasets(src), datasets(out)
        if set(old) != set(new):
            raise RecalibrateError(f"{WHERE}: verification failed: {where} has other datasets than the source")
        groups = []
        src.visit(groups.append)
        for name in [""] + groups:
            a, b = (src[name], out[name]) if name else (src, out)
            if not _same_attrs(a, b):
                raise RecalibrateError(f"{WHERE}: verification failed: the attributes of {name or '/'} in "
                                       f"{where} differ from the source's")
        copied = 0
        for name, dataset in old.items():
            expected = values[name] if name in values else np.asarray(dataset[()])
            if not same_value(new[name], expected):
                raise RecalibrateError(f"{WHERE}: verification failed: {name} in {where} differs")
            copied += name not in values
    return copied
