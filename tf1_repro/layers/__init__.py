"""The layers: the article's verbatim code (``article``), its ``bn_layer`` with checks beside it
(``bn``), the fused drop-in (``fast_bn``), dropout in both conventions (``dropout``), the NumPy
reference (``reference``) and the argument checks they share (``checks``)."""
