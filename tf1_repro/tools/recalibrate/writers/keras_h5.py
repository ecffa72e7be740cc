"""``keras_h5``: the recalibrated tf-keras ``.h5`` is ``--out/<the file's name>``: a copy of the
file whose BN moving statistics' datasets (``model_weights/<layer>/<layer>/moving_mean:0``,
found by the variable's name in each layer group's ``weight_names``) hold the new values, written
with h5py; every other dataset (optimizer weights included) and attribute is the source's.
The model is never loaded through Keras here."""

import os
import shutil

from tf1_repro.tools.recalibrate.common import WHERE, RecalibrateError
from tf1_repro.tools.recalibrate.writers import h5_weights
from tf1_repro.tools.recalibrate.writers.common import check_out as check_out_dir
from tf1_repro.tools.recalibrate.writers.common import move_in, staging

FORMAT = "keras_h5"
WEIGHTS = "model_weights"


def target(source, out):
    return os.path.join(out, os.path.basename(source))


def check_out(source, out, force):
    check_out_dir(source, out, force, [os.path.basename(source)])


def _names(values):
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def locate(f, art, const):
    """The dataset path of the frozen Const ``const``'s variable: its name (``bn/moving_mean:0``)
    in exactly one layer group's ``weight_names``, holding the Const's value."""
    import h5py  # pylint: disable=import-outside-toplevel
    wanted = art.variable_paths[const] + ":0"
    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and "weight_names" in obj.attrs:
            if wanted in _names(obj.attrs["weight_names"]):
                found.append(f"{name}/{wanted}")
    if WEIGHTS not in f:
        raise RecalibrateError(f"{WHERE}: {art.source}: no {WEIGHTS} group; nothing written")
    f[WEIGHTS].visititems(visit)
    if len(found) != 1:
        raise RecalibrateError(f"{WHERE}: {art.source}: weight {wanted} is in {len(found)} layer groups, "
                               f"not exactly one; nothing written")
    path = f"{WEIGHTS}/{found[0]}"
    if path not in f or not h5_weights.same_value(f[path], art.read(const)):
        raise RecalibrateError(f"{WHERE}: {art.source}: dataset {path} does not hold the value the model "
                               f"serves for {art.variable_paths[const]}; nothing written")
    return path


def dataset_values(path, art, new_values):
    import h5py  # pylint: disable=import-outside-toplevel
    with h5py.File(path, "r") as f:
        return {locate(f, art, const): value for const, value in new_values.items()}


def write(art, out, new_values, force=False):
    check_out(art.source, out, force)
    values = dataset_values(art.source, art, new_values)
    tmp = staging(out)
    try:
        staged = os.path.join(tmp, os.path.basename(art.source))
        shutil.copyfile(art.source, staged)
        h5_weights.replace(staged, values)
        move_in(tmp, out, force)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    written = target(art.source, out)
    copied = h5_weights.compare(art.source, written, values, written)
    return {"path": written, "format": FORMAT, "replaced": sorted(values), "copied_bit_for_bit": copied}
