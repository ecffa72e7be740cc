"""The graph plumbing the tools share: ``artefacts`` (open a checkpoint, ``.meta``, SavedModel or
frozen graph read-only), ``ops`` (the op-type sets), ``walk`` (graph walks), ``control_flow``
(TF2 ``If`` ops around BN), ``safety`` (file/IO/Python ops a tool will not run), ``feeds``
(``--feed`` and ``--data``), ``paths`` (``--out`` checks) and ``errors`` (the one bad-input error
and its one-line messages)."""
