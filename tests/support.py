"""What the tests share: the repository root, the test-support files beside this one, and a
switch to TF2 control flow for building the graphs TF 2.x scripts build."""

import contextlib
import os

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)


@contextlib.contextmanager
def tf2_control_flow():
    """Build with TF2 control flow (If ops) and resource variables, as a TF 2.x script that only
    calls ``disable_eager_execution()`` does; the test process's TF1 behaviour is restored after."""
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    was = tf.control_flow_v2_enabled(), tf.resource_variables_enabled()
    tf.enable_control_flow_v2()
    tf.enable_resource_variables()
    try:
        yield
    finally:
        if not was[0]:
            tf.disable_control_flow_v2()
        if not was[1]:
            tf.disable_resource_variables()
