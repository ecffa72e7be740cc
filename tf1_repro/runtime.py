"""Process-wide TensorFlow set-up for entry points and test set-up, never for the library.

``quiet_environment()`` must run before TensorFlow is first imported (it sets
environment variables TensorFlow reads at import); ``use_tf1_behavior()`` then
imports TensorFlow without its start-up log and switches to TF1 behaviour
(``disable_v2_behavior``: graph mode, control flow v1, reference variables),
which is global and one-way.
"""

import logging
import os
import re
import sys
import tempfile

# Info lines TensorFlow's C++ side prints at import, before its log level applies.
_STARTUP_NOISE = re.compile(r"^(I\d{4} |WARNING: All log messages before absl::InitializeLog)")


def quiet_environment():
    """Hide TensorFlow's C++ log below errors and pick legacy Keras.

    ``TF_USE_LEGACY_KERAS=1`` makes ``tf.compat.v1.layers`` use the tf-keras
    package (TF >= 2.16 ships Keras 3, which has no v1 layers). Both only take
    effect if TensorFlow is not imported yet; existing settings are kept.
    Returns whether they could still take effect.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    return "tensorflow" not in sys.modules


def import_tensorflow_quietly():
    """Import TensorFlow with stderr captured; replay every line but the info noise.

    Some start-up info lines are written by C++ before ``TF_CPP_MIN_LOG_LEVEL``
    applies; errors and warnings still reach stderr, and an import failure
    shows everything.
    """
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        failed = True
        try:
            import tensorflow  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            kept = [line for line in text.splitlines() if failed or not _STARTUP_NOISE.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def use_tf1_behavior():
    """Import TensorFlow quietly, ``disable_v2_behavior()``, silence deprecation chatter."""
    quiet_environment()
    import_tensorflow_quietly()
    import tensorflow.compat.v1 as tf  # pylint: disable=import-outside-toplevel
    from tensorflow.python.util import deprecation  # pylint: disable=import-outside-toplevel

    deprecation._PRINT_DEPRECATION_WARNINGS = False  # pylint: disable=protected-access
    tf.get_logger().setLevel(logging.ERROR)
    tf.disable_v2_behavior()
    return tf
