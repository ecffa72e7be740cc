"""``keras_h5``: a tf-keras (Keras 2) model saved as HDF5 (``model.save("m.h5")``): the model's
config in the root attribute ``model_config`` and its weights under ``model_weights``.

Recognised by content: the file starts with the HDF5 signature (``\\x89HDF\\r\\n\\x1a\\n``), or is
named ``*.h5``/``*.hdf5``. Read: h5py opens it read-only and the ``model_config`` attribute must
be there (a weights-only file has none: "no model_config") and parse as JSON; its classes are
checked statically as for ``.keras`` files (no ``Lambda``, nothing from outside Keras: the safe
mode tf-keras lacks), then a child process loads it with tf-keras (``TF_USE_LEGACY_KERAS=1``),
traces ``model(x, training=False)`` and freezes it (see ``keras``).
"""

import json
import os

from tf1_repro.graph.artefacts.artefact import ArtefactError, first_line
from tf1_repro.graph.artefacts.readers.keras import read_keras_model

FORMAT = "keras_h5"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def recognise(path):
    if not os.path.isfile(path):
        return False
    if path.endswith((".h5", ".hdf5")):
        return True
    with open(path, "rb") as f:
        return f.read(8) == HDF5_MAGIC


def read(path, signature=None):
    import h5py  # pylint: disable=import-outside-toplevel
    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            if raw is None:
                raise ArtefactError(f"{path}: an HDF5 file with no model_config (weights only?): "
                                    f"not a Keras model file")
            config = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
    except ArtefactError:
        raise
    except Exception as err:  # pylint: disable=broad-except
        raise ArtefactError(f"{path}: not a readable HDF5 Keras file ({first_line(err)})") from None
    return read_keras_model(FORMAT, path, config, legacy=True, signature=signature)
