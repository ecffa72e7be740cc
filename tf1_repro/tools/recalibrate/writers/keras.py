"""``keras``: the recalibrated Keras 3 ``.keras`` is ``--out/<the file's name>``: the zip with
every entry (``config.json``, ``metadata.json``, assets) copied byte for byte, in the same order
and with the same compression, and ``model.weights.h5`` rewritten with h5py: only the BN layers'
moving mean and variance datasets replaced.

Keras 3 stores a layer's variables as ``.../<group>/vars/<i>`` where the ``vars`` group's ``name``
attribute is the layer's name and ``i`` counts its trainable then non-trainable variables; for
BatchNormalization that is gamma (if ``scale``), beta (if ``center``), moving_mean,
moving_variance. A statistic is located by its layer's name (the variable path's last folder)
and that index from the layer's config, and must hold the value the model serves. The model is
never loaded through Keras here."""

import os
import shutil
import zipfile

from tf1_repro.tools.recalibrate.common import WHERE, RecalibrateError
from tf1_repro.tools.recalibrate.writers import h5_weights
from tf1_repro.tools.recalibrate.writers.common import check_out as check_out_dir
from tf1_repro.tools.recalibrate.writers.common import move_in, staging

FORMAT = "keras"
WEIGHTS = "model.weights.h5"
STATISTICS = ("moving_mean", "moving_variance")


def target(source, out):
    return os.path.join(out, os.path.basename(source))


def check_out(source, out, force):
    check_out_dir(source, out, force, [os.path.basename(source)])


def locate(f, art, const):
    """The dataset path of the frozen Const ``const``'s variable (see the module docstring)."""
    import h5py  # pylint: disable=import-outside-toplevel
    *_, layer, variable = ["", *art.variable_paths[const].split("/")]
    config = [c for c in art.bn_configs if c.get("name") == layer]
    if variable not in STATISTICS or len(config) != 1:
        raise RecalibrateError(f"{WHERE}: {art.source}: {art.variable_paths[const]} is not the moving "
                               f"statistic of one BatchNormalization layer of the config; nothing written")
    leading = int(config[0].get("scale") is not False) + int(config[0].get("center") is not False)
    groups = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and name.split("/")[-1] == "vars" and \
                _text(obj.attrs.get("name")) == layer:
            groups.append(name)
    f.visititems(visit)
    if len(groups) != 1:
        raise RecalibrateError(f"{WHERE}: {art.source}: layer {layer!r} has {len(groups)} weight groups in "
                               f"{WEIGHTS}, not exactly one; nothing written")
    group = f[groups[0]]
    if len(group) != leading + 2:
        raise RecalibrateError(f"{WHERE}: {art.source}: layer {layer!r} has {len(group)} weights in "
                               f"{WEIGHTS}, its config says {leading + 2}; nothing written")
    path = f"{groups[0]}/{leading + STATISTICS.index(variable)}"
    if not h5_weights.same_value(f[path], art.read(const)):
        raise RecalibrateError(f"{WHERE}: {art.source}: {WEIGHTS} dataset {path} does not hold the value "
                               f"the model serves for {art.variable_paths[const]}; nothing written")
    return path


def _text(value):
    return value.decode("utf-8") if isinstance(value, bytes) else (None if value is None else str(value))


def write(art, out, new_values, force=False):
    check_out(art.source, out, force)
    tmp = staging(out)
    try:
        source_weights = os.path.join(tmp, "source.weights.h5")
        weights = os.path.join(tmp, WEIGHTS)
        with zipfile.ZipFile(art.source) as archive:
            with open(source_weights, "wb") as f:
                f.write(archive.read(WEIGHTS))
        import h5py  # pylint: disable=import-outside-toplevel
        with h5py.File(source_weights, "r") as f:
            values = {locate(f, art, const): value for const, value in new_values.items()}
        shutil.copyfile(source_weights, weights)
        h5_weights.replace(weights, values)
        staged = os.path.join(tmp, "out")
        os.makedirs(staged)
        name = os.path.basename(art.source)
        with zipfile.ZipFile(art.source) as archive, zipfile.ZipFile(os.path.join(staged, name), "w") as new:
            for info in archive.infolist():
                if info.filename == WEIGHTS:
                    with open(weights, "rb") as f:
                        new.writestr(info, f.read())
                else:
                    new.writestr(info, archive.read(info))
        move_in(staged, out, force)
        written = target(art.source, out)
        copied, entries = _verify(art.source, written, source_weights, values, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"path": written, "format": FORMAT, "replaced": [f"{WEIGHTS}:{p}" for p in sorted(values)],
            "copied_bit_for_bit": copied, "zip_entries_copied": entries}


def _verify(source, written, source_weights, values, tmp):
    """The written zip: the same entries, each but the weights byte-equal, the weights compared."""
    with zipfile.ZipFile(source) as a, zipfile.ZipFile(written) as b:
        if [i.filename for i in a.infolist()] != [i.filename for i in b.infolist()]:
            raise RecalibrateError(f"{WHERE}: verification failed: {written} has other entries than the source")
        entries = 0
        for info in a.infolist():
            if info.filename == WEIGHTS:
                with open(os.path.join(tmp, "written.weights.h5"), "wb") as f:
                    f.write(b.read(WEIGHTS))
            elif a.read(info) != b.read(info.filename):
                raise RecalibrateError(f"{WHERE}: verification failed: {info.filename} in {written} differs")
            else:
                entries += 1
    copied = h5_weights.compare(source_weights, os.path.join(tmp, "written.weights.h5"), values,
                                f"{written}:{WEIGHTS}")
    return copied, entries
