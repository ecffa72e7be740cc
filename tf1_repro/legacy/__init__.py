"""Tools for legacy TF1 code and artefacts: the structural finder (``finder``), ``audit`` and
``audit_dropout`` for builder functions, ``compare`` and the other implementations
(``implementations``), checkpoint conversion (``checkpoints``), ``export``, the loader of
user code (``loader``), BN layers from checkpoint names (``naming``), the move to Keras 3
(``migrate``, ``compare_keras3``, and ``keras3_worker``, which runs the Keras 3 side in a child
process)."""
