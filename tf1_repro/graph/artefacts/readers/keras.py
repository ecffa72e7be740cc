"""``keras``: a Keras 3 ``.keras`` file, a zip holding ``config.json`` (the model's config) and
``model.weights.h5``.

Recognised by content: the file starts with a zip local-file header (``PK\\x03\\x04``), or is
named ``*.keras`` (so a truncated one is named as such rather than "not a checkpoint"). Read:
the zip must open and hold ``config.json`` (JSON); its classes are checked statically
(``keras_config.refusal``: no ``Lambda``, nothing from outside Keras); then a child process
loads it with Keras 3 (``safe_mode=True``), traces ``model(x, training=False)`` and freezes it
(``child``). The Artefact's ``graph_def`` is that frozen inference graph; ``variable_paths``
maps its Consts to the variables' Keras paths (``sequential/batch_normalization/moving_mean``);
``bn_configs`` lists each BN layer's name, momentum, epsilon and axis from the config.
"""

import json
import os
import zipfile

from tf1_repro.graph.artefacts.artefact import Artefact, ArtefactError, first_line, writes_note
from tf1_repro.graph.artefacts.readers import keras_config

FORMAT = "keras"
ZIP_MAGIC = b"PK\x03\x04"


def recognise(path):
    if not os.path.isfile(path):
        return False
    if path.endswith(".keras"):
        return True
    with open(path, "rb") as f:
        return f.read(4) == ZIP_MAGIC


def read(path, signature=None):
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "config.json" not in names:
                raise ArtefactError(f"{path}: a zip without config.json, not a Keras .keras file")
            config = json.loads(archive.read("config.json").decode("utf-8"))
            if "model.weights.h5" not in names:
                raise ArtefactError(f"{path}: a .keras file without model.weights.h5")
    except ArtefactError:
        raise
    except Exception as err:  # pylint: disable=broad-except
        raise ArtefactError(f"{path}: not a readable .keras zip ({first_line(err)})") from None
    return read_keras_model(FORMAT, path, config, legacy=False, signature=signature)


SIGNATURE = "inference"  # a Keras file's one function: model(x, training=False)


def read_keras_model(fmt, path, config, legacy, signature=None):
    """The Artefact of a Keras file whose ``config`` was read: refused, or frozen in a child.
    ``signature``: None, ``serving_default`` or ``inference`` (a Keras file has one function)."""
    from tf1_repro.graph.artefacts import child  # pylint: disable=import-outside-toplevel
    if signature not in (None, "serving_default", SIGNATURE):
        raise ArtefactError(f"{path}: no signature {signature!r}; a Keras file has one, "
                            f"{SIGNATURE} (model(x, training=False))")
    if not isinstance(config, dict):
        raise ArtefactError(f"{path}: the model config is not a JSON object")
    reason = keras_config.refusal(config)
    if reason:
        raise ArtefactError(f"{path}: {reason}")
    graph_def, out = child.freeze("keras_h5" if legacy else "keras",
                                  {"path": os.path.abspath(path), "config": config, "legacy": legacy},
                                  path, "the Keras model")
    art = Artefact(fmt, path, graph_def)
    art.signature = SIGNATURE
    art.inputs, art.outputs = out["inputs"], out["outputs"]
    art.variable_paths, art.checkpoint_keys = out["variable_paths"], out["checkpoint_keys"]
    art.writes = out.get("writes", [])
    if art.writes:
        art.notes.append(writes_note(art.writes))
    art.bn_configs = keras_config.bn_layers(config)
    art.keras_layers = keras_config.layer_specs(config)
    return art
