"""compare-keras3: which stock Keras 3 BatchNormalization settings reproduce the article's layer.

Measured against the TF1 bn_layer (this process) with Keras 3 in a child process.
"""

import pytest

from tf1_repro.comparisons import compare_keras3


@pytest.fixture(scope="module")
def rows():
    measured = [row for row in compare_keras3.ROWS if row[3] != "xla" and "synchronized" not in row[2]]
    result = compare_keras3.compare(seed=1, train_steps=5, predict_steps=2, rows=measured)
    return {row["label"]: row for row in result["rows"]}


@pytest.mark.slow
def test_stock_defaults_and_matched_momentum_epsilon_do_not_reproduce(rows):
    defaults = rows["stock BatchNormalization(), defaults"]
    assert defaults["initial_moving_variance"] == 1.0
    assert not defaults["reproduces_article"]
    assert {"first_prediction", "training_output", "moving_mean", "moving_variance",
            "prediction_output"} == set(defaults["differs_in"])  # eps 1e-3, momentum 0.99
    matched = rows["stock, momentum=0.9, epsilon=1e-5"]
    # only the variance initialiser (1, not 0) is left: the first prediction and the shadow
    assert matched["differs_in"] == ["first_prediction", "moving_variance", "prediction_output"]
    assert matched["max_abs_diff"]["training_output"] <= 1e-6


@pytest.mark.slow
def test_zeros_initializer_reproduces_it_and_the_variance_is_biased(rows):
    for label in ("stock, + moving_variance_initializer='zeros'", "stock, zeros, under tf.function",
                  "ArticleBatchNormalization()", "ArticleBatchNormalization(), under tf.function"):
        row = rows[label]
        assert row["reproduces_article"], (label, row["differs_in"])
        assert row["max_abs_diff"]["moving_variance"] <= 1e-5 * 10  # shadows are O(10) here
    for row in rows.values():
        assert row["variance_estimator"] == ["biased"]  # Keras 3 has no Bessel-corrected path
    article = rows["ArticleBatchNormalization()"]["max_abs_diff"]
    assert max(article[c] for c in ("training_output", "moving_mean", "moving_variance")) <= 1e-6
