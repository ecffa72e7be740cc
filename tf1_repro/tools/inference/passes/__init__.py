"""The serving passes, one per file, each registered by name (``registry.REGISTRY``).

Importing this package registers them all. To add one: copy ``defaults_to_identity.py`` (the
smallest), give it a new name and targets, list it in ``PASS_MODULES`` and name it in a stage of
``tf1_repro.tools.inference.convert``; add its test in ``tests/tools/test_inference_passes.py``.
"""

import importlib

from tf1_repro.tools.inference.passes.registry import REGISTRY, Pass, get, register

PASS_MODULES = ("prune", "bind_placeholders", "dropouts_to_identity", "fold_constants",
                "resolve_switches", "defaults_to_identity", "strip_control_inputs",
                "freeze_variables", "remove_identities", "fold_batch_norms",
                "bn_training_to_inference", "remove_dropout")

for _module in PASS_MODULES:
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["REGISTRY", "Pass", "get", "register", "PASS_MODULES"]
