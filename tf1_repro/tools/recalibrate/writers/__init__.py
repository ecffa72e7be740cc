"""Where a recalibrated TF2 SavedModel or Keras file goes: one writer per format, registered here.

Each writer module has ``FORMAT`` (the ``Artefact.format`` it writes), ``target(source, out)`` (the
path it writes: the SavedModel directory ``out``, or ``out/<the file's name>``),
``check_out(source, out, force)`` (``source``: the SavedModel directory or the file) (refuses, before anything runs, an ``out`` that is the source's
folder or inside it, or that already holds what would be written unless ``force``) and
``write(art, out, new_values, force) -> dict`` (``new_values``: {frozen Const name: new value};
writes into a temporary folder beside ``out``, moves the result in, and verifies it against the
source: every replaced value holds the new one, everything else is the source's, bit for bit).
"""

from tf1_repro.tools.recalibrate.writers import keras, keras_h5, saved_model_tf2

WRITERS = {module.FORMAT: module for module in (saved_model_tf2, keras, keras_h5)}


def writer_for(fmt):
    """The writer module of an ``Artefact.format``."""
    return WRITERS[fmt]
