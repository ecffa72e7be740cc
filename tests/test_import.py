"""Importing the package changes no global TensorFlow state."""

import subprocess
import sys

CODE = """
import tensorflow as tf
import tf1_repro
from tf1_repro import bn_layer, make_feed, ArticleModel, cli, runtime
from tf1_repro.model import demo
print(tf.executing_eagerly(), tf.compat.v1.resource_variables_enabled())
"""


def test_import_leaves_eager_mode_and_resource_variables_on():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True,
                          timeout=300)
    assert done.stdout.split() == ["True", "True"]
