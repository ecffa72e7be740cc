"""Test set-up: TF1 behaviour for the whole session (global and one-way), quietly."""

import numpy as np
import pytest

from tf1_repro import runtime

tf = runtime.use_tf1_behavior()


@pytest.fixture
def graph():
    """A fresh graph, made the default for the test."""
    with tf.Graph().as_default() as g:
        yield g


@pytest.fixture
def sess(graph):  # pylint: disable=redefined-outer-name
    with tf.Session(graph=graph) as s:
        yield s


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _variable_values(session):
    variables = session.graph.get_collection(tf.GraphKeys.GLOBAL_VARIABLES)
    return dict(zip([v.op.name for v in variables], session.run(variables)))


@pytest.fixture
def variable_values():
    """``variable_values(sess)``: every global variable's value by name, to show a
    call changed nothing."""
    return _variable_values


def assert_same_values(before, after):
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert np.array_equal(value, after[name]), name
