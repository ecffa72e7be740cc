"""Tools for legacy TF1 code and artefacts: the structural finder (``finder``), ``audit`` and
``audit_dropout`` for builder functions, ``compare`` and the other implementations
(``implementations``), checkpoint conversion (``checkpoints``), ``export``, and the loader of
user code (``loader``)."""
