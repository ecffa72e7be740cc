"""``tf1_repro.keras``: the article's layers for Keras 3 (see ``tf1_repro.layers.keras3``).

Importing this module imports Keras 3 and TensorFlow; use it in a process that keeps
TF2 behaviour. ``import tf1_repro`` alone imports neither.
"""

from tf1_repro.layers.keras3 import (  # noqa: F401
    ArticleBatchNormalization, InvertedDropout, VanillaDropout, check_settings)

__all__ = ["ArticleBatchNormalization", "InvertedDropout", "VanillaDropout", "check_settings"]
