"""tf1_repro: the article's BN layer and keep_prob dropout in TF1 graph mode, measured.

Importing the package changes no global TensorFlow state and does not even
import TensorFlow: names are loaded on first use. Entry points (the command
line, the test setup) call ``tf1_repro.runtime.use_tf1_behavior()``.
"""

import importlib

_EXPORTS = {
    "bn_layer": "tf1_repro.layers.bn",
    "bn_variables": "tf1_repro.layers.bn",
    "article_variable_names": "tf1_repro.layers.bn",
    "fast_bn_layer": "tf1_repro.layers.fast_bn",
    "inverted_dropout": "tf1_repro.layers.dropout",
    "source_formula_dropout": "tf1_repro.layers.dropout",
    "vanilla_dropout": "tf1_repro.layers.dropout",
    "vanilla_dropout_train": "tf1_repro.layers.dropout",
    "vanilla_dropout_predict": "tf1_repro.layers.dropout",
    "keep_prob_placeholder": "tf1_repro.layers.dropout",
    "make_feed": "tf1_repro.model.feed",
    "ArticleModel": "tf1_repro.model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tf1_repro' has no attribute {name!r}")
