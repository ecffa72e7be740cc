"""The doctor's checks: one module per finding id, registered in ``base.REGISTRY`` on import.

The import order below is the registry's order, which is the order findings appear in the report
at each moment (see ``doctor/report.py``): per BN layer the value checks, then the graph checks;
then the graph-wide checks; then each mode input a serving client leaves at its default (batch
statistics before dropout); then each set of runs. To add a check, copy
``mode_placeholder_without_default.py`` (a one-hook rule), change its id, severity, fix and hook,
import it here, and give it a raising suite case and a healthy one (``tests/model_suite.py``).
"""

from tf1_repro.tools.doctor.checks import (  # noqa: F401  pylint: disable=unused-import
    stats_not_finite, variance_not_positive, dead_channel, stats_never_updated, stats_trainable,
    ema_zero_bias, updates_on_inference, inference_batch_dependent, update_ops_not_in_train_op,
    mode_placeholder_without_default, dropout_at_inference)
