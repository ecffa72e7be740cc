"""The article's model and its runs: ``network`` (``ArticleModel``), ``data`` (synthetic and
bundled data), ``feed`` (the checked ``feed_dict``), ``training``, ``train`` (resumable training),
``demo``.

``from tf1_repro.model import ArticleModel`` still works; TensorFlow is imported on first use.
"""

import importlib


def __getattr__(name):
    if name == "ArticleModel":
        return importlib.import_module("tf1_repro.model.network").ArticleModel
    raise AttributeError(f"module 'tf1_repro.model' has no attribute {name!r}")
