"""--set data=digits: the trained-model experiments on real handwritten digits; their claims hold
and their accuracies are measured on the 539 held-out digits (closed forms stay synthetic)."""

import pytest

from tf1_repro import experiments

DIGITS = {
    "train-vs-inference": {"steps": "150", "data": "digits"},
    "variance-shift": {"data": "digits"},
    "precise-bn": {"steps": "100", "data": "digits"},
    "mc-dropout": {"passes": "32", "data": "digits"},
}


@pytest.fixture(scope="module")
def payloads():
    return {name: experiments.run_experiment(name, overrides, seed=1) for name, overrides in DIGITS.items()}


@pytest.mark.parametrize("name", list(DIGITS))
def test_claims_hold_on_digits(payloads, name):
    payload = payloads[name]
    assert payload["params"]["data"] == "digits"
    failed = [c["id"] for c in payload["claims"] if not c["holds"]]
    assert not failed, failed


def test_train_vs_inference_accuracy_table_on_held_out_digits(payloads):
    rows = payloads["train-vs-inference"]["table"]["rows"]
    chunks = [r[0] for r in rows]
    assert chunks == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    infer_accuracy = {r[2] for r in rows}
    assert len(infer_accuracy) == 1 and infer_accuracy.pop() > 0.85  # same in every chunk size
    one, full = rows[0][4], rows[-1][4]
    assert one < 0.2 < 0.85 < full  # training=True: one sample per run is at chance, 256 is not
    claim = {c["id"]: c for c in payloads["train-vs-inference"]["claims"]}
    assert "512 digits samples" in claim["single-sample-training-mode-one-class"]["statement"]


def test_variance_shift_closed_form_stays_synthetic_and_accuracy_is_on_digits(payloads):
    payload = payloads["variance-shift"]
    claims = {c["id"]: c for c in payload["claims"]}
    # the closed form uses the synthetic N(1, 1) input: (n-1)/n * ((1 + 1)/0.5 - 1) = 255/256 * 3
    assert claims["moving-var-matches-train-variance"]["expected"] == pytest.approx(255 / 256 * 3)
    assert payload["table"]["headers"][0] == "dense model on digits, keep_prob 0.5"
    assert all(0.5 < row[1] <= 1.0 for row in payload["table"]["rows"])


def test_unknown_data_is_refused():
    with pytest.raises(ValueError) as err:
        experiments.get("mc-dropout").resolve({"data": "mnist"})
    assert str(err.value) == "--set data: must be one of blobs, digits, got 'mnist'"
