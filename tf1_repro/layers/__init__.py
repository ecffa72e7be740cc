"""The layers: the article's verbatim code (``article``), its ``bn_layer`` with checks beside it
(``bn``), the fused drop-in (``fast_bn``), dropout in both conventions (``dropout``), the NumPy
reference (``reference``), the argument checks they share (``checks``), and the article's layer
and dropouts for Keras 3 (``keras3``, imported only on request, re-exported as ``tf1_repro.keras``)."""
