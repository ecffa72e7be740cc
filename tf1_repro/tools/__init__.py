"""The tools for users' saved models (checkpoints, ``.meta`` graphs, SavedModels, frozen graphs):
``finder`` (every BN layer and dropout, by structure: ``find``), ``doctor`` (diagnosis),
``inference`` (``to-inference``: a verified serving graph) with ``formats`` (its writers and
runners), ``recalibrate`` (exact BN statistics over data), ``migrate`` (BN weights to Keras 3) and
``naming`` (BN layers from checkpoint variable names, when there is no graph)."""
