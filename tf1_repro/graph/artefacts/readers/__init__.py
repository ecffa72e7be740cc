"""The format readers, one module per artefact format, in the order ``artefacts.load`` tries.

Each reader module has ``FORMAT`` (the ``Artefact.format`` it returns), ``recognise(path)``
(cheap, reads at most the file's header or a small protobuf, never raises) and
``read(path, signature=None) -> Artefact`` (``ArtefactError`` when the file is recognised but
unreadable). The order matters where two could claim a path: a TF2 SavedModel before a TF1 one
(both have a ``saved_model.pb``; the TF2 reader takes only those with an object graph), a
directory's SavedModel before its checkpoint, a checkpoint prefix before a ``.meta`` file, and
the Keras readers (whose files have magic bytes) before the frozen-graph reader (which also
takes files by extension).
"""

from tf1_repro.graph.artefacts.readers import (
    checkpoint, frozen_graph, keras, keras_h5, meta_graph, saved_model_tf1, saved_model_tf2)

READERS = (saved_model_tf2, saved_model_tf1, checkpoint, meta_graph, keras, keras_h5, frozen_graph)
