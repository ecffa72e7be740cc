"""Run bn_layer through a fixed schedule and save outputs and shadows (.npz).

Used as a subprocess by test_tf2_behavior.py: ``python schedule_script.py OUT.npz [--tf1]``.
Without --tf1, TensorFlow keeps its TF2 behaviour (resource variables, control
flow v2) and the layer is built inside a ``tf.Graph``.
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCHEDULE = [True, True, False, True, False, True, True, False]


def run(out_path):
    import tensorflow as tf2  # pylint: disable=import-outside-toplevel
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel

    from tf1_repro.layers.bn import bn_layer, bn_variables  # pylint: disable=import-outside-toplevel

    rng = np.random.default_rng(7)
    batches = [(2.0 + 3.0 * rng.standard_normal((6, 3, 3, 4))).astype(np.float32) for _ in SCHEDULE]
    with tf.Graph().as_default() as g:
        x = tf.placeholder(tf.float32, [None, 3, 3, 4])
        training = tf.placeholder(tf.bool, name="training")
        y = bn_layer(x, training)
        variables = bn_variables()
        kinds = sorted({type(v).__name__ for v in variables.values()})
        with tf.Session(graph=g) as s:
            s.run(tf.global_variables_initializer())
            outputs, means, variances = [], [], []
            for batch, mode in zip(batches, SCHEDULE):
                outputs.append(s.run(y, {x: batch, training: mode}))
                mean, var = s.run([variables["moving_mean"], variables["moving_variance"]])
                means.append(mean)
                variances.append(var)
    np.savez(out_path, outputs=np.array(outputs), means=np.array(means),
             variances=np.array(variances), kinds=np.array(kinds),
             names=np.array([v.op.name for v in variables.values()]),
             control_flow_v2=np.array(tf2.compat.v1.control_flow_v2_enabled()),
             op_types=np.array(sorted({op.type for op in g.get_operations()})))


if __name__ == "__main__":
    from tf1_repro import runtime  # pylint: disable=wrong-import-position
    if "--tf1" in sys.argv:
        runtime.use_tf1_behavior()
    else:
        runtime.quiet_environment()
        runtime.import_tensorflow_quietly()
    run(sys.argv[1])
