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


def outputs_of_fresh_processes(script, args=(), processes=3, timeout=900):
    """The standard outputs of ``python -c script *args`` run in ``processes`` fresh processes at
    once, with ``PYTHONHASHSEED`` 0, 1, 2, ...: set and dict-of-id orders differ between them, and
    running them concurrently makes their thread timings differ more. Each must exit 0."""
    import subprocess  # pylint: disable=import-outside-toplevel
    import sys  # pylint: disable=import-outside-toplevel
    procs = [subprocess.Popen([sys.executable, "-c", script, *args], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONHASHSEED=str(seed), PYTHONPATH=ROOT,
                                       TF_CPP_MIN_LOG_LEVEL="3"))
             for seed in range(processes)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err[-2000:]
        outputs.append(out)
    return outputs
