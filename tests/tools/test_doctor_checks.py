"""doctor's registered checks: every id has a suite artefact that raises it and a healthy one
that does not, and each check unit, asked alone, finds its rule and only it."""
# pylint: disable=redefined-outer-name
import importlib

import pytest

from model_suite import SUITE, suite_artefact  # noqa: F401  pylint: disable=unused-import
from tf1_repro.graph.errors import InputError
from tf1_repro.tools import doctor
from tf1_repro.tools.doctor import artefact, base, layers, report, runs


def _pairs(fid):
    """(raising case, healthy case without the finding): a broken case and its twin, or a healthy
    case with a warning or info and its contrast."""
    out = []
    for case in SUITE.values():
        other = case.twin or case.contrast
        if fid in case.expected_findings and other and fid not in SUITE[other].expected_findings:
            out.append((case.name, other))
    return sorted(out)


@pytest.fixture(scope="module")
def diagnosed(suite_artefact):
    """``diagnosed(name)``: the suite case's report, diagnosed once for this module."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = doctor.diagnose(suite_artefact(name))
        return cache[name]
    return get


@pytest.fixture(scope="module")
def context(suite_artefact):
    """``context(name)``: the checks' Context of a suite case (nothing runs)."""
    cache = {}

    def get(name):
        if name not in cache:
            doc = artefact.load(suite_artefact(name))
            cache[name] = report.context_of(doc, layers.find(doc))
        return cache[name]
    return get


def test_registry_is_findings_and_one_module_per_id():
    assert list(doctor.FINDINGS) == list(base.REGISTRY)
    for fid, check in base.REGISTRY.items():
        module = importlib.import_module(f"tf1_repro.tools.doctor.checks.{fid.replace('-', '_')}")
        assert type(check).__module__ == module.__name__, fid
        assert doctor.FINDINGS[fid] == (check.severity, check.fix)
        assert check.__doc__ and "Rule" in check.__doc__, fid  # the docstring states the rule


def test_register_refuses_a_duplicate_or_incomplete_check():
    with pytest.raises(ValueError, match="registered twice"):
        base.register(type("Again", (base.Check,), {"id": "stats-trainable", "fix": "x"}))
    with pytest.raises(ValueError, match="one-line fix"):
        base.register(type("NoFix", (base.Check,), {"id": "a-new-id", "fix": ""}))
    assert "a-new-id" not in base.REGISTRY


def test_doctor_error_is_the_input_error():
    assert issubclass(doctor.DoctorError, InputError) and doctor.DoctorError.exit_status == 2


@pytest.mark.parametrize("fid", list(base.REGISTRY))
def test_every_registered_id_is_raised_by_a_suite_case_and_not_by_its_healthy_twin(diagnosed, fid):
    pairs = _pairs(fid)
    assert pairs, f"no suite case raises {fid} with a healthy twin or contrast"
    raising, healthy = pairs[0]
    assert fid in {f["id"] for f in diagnosed(raising)["findings"]}
    assert fid not in {f["id"] for f in diagnosed(healthy)["findings"]}
    assert SUITE[healthy].healthy


def _ids(found):
    return [f.id for f in found]


def _layer_hook(context, fid, name):
    ctx = context(name)
    return [f for layer in ctx.layers for f in base.REGISTRY[fid].layer(ctx, layer)]


def test_stats_not_finite_unit(context):
    found = _layer_hook(context, "stats-not-finite", "nan_variance")
    assert _ids(found) == ["stats-not-finite"] and "holds 1 non-finite value(s)" in found[0].message
    assert not _layer_hook(context, "stats-not-finite", "tf_layers_wired")


def test_variance_not_positive_unit(context):
    found = _layer_hook(context, "variance-not-positive", "negative_variance")
    assert _ids(found) == ["variance-not-positive"] and "min -0.5" in found[0].message
    assert not _layer_hook(context, "variance-not-positive", "nan_variance")  # NaN is not <= 0


def test_stats_never_updated_unit(context):
    found = _layer_hook(context, "stats-never-updated", "unwired_no_meta")  # no graph: names only
    assert _ids(found) == ["stats-never-updated"] and "global step 20" in found[0].message
    assert not _layer_hook(context, "stats-never-updated", "wired_no_meta")


def test_stats_trainable_unit(context):
    found = _layer_hook(context, "stats-trainable", "trainable_stats")
    assert [f.message.split()[0] for f in found] == ["moving_mean", "moving_variance"]
    assert not _layer_hook(context, "stats-trainable", "zero_start_debiased")


def test_ema_zero_bias_unit(context):
    assert _ids(_layer_hook(context, "ema-zero-bias", "zero_start_few_steps")) == ["ema-zero-bias"]
    assert not _layer_hook(context, "ema-zero-bias", "zero_start_debiased")


def test_inference_batch_dependent_unit(context):
    assert _ids(_layer_hook(context, "inference-batch-dependent", "fused_frozen_training_true")) == \
        ["inference-batch-dependent"]
    assert not _layer_hook(context, "inference-batch-dependent", "fused_frozen_training_false")
    check = base.REGISTRY["inference-batch-dependent"]
    ctx = context("saved_model_training_defaults")
    found = [f for d in _serving(ctx) for f in check.serving_default(ctx, d)]
    assert [(f.layer, f.message.split()[0]) for f in found] == [("block1/batch_normalization",
                                                                 "training")]
    run = runs.Run("how", (), (), ("logits:0",))
    assert [f.message for f in check.dynamic(ctx, run)] == [
        "sample 0's logits:0 changes when the rest of its batch changes, how"]
    assert not list(check.dynamic(ctx, runs.Run("how", (), (), None)))


def _serving(ctx):
    from tf1_repro.tools.doctor.context import serving_defaults  # pylint: disable=import-outside-toplevel
    return serving_defaults(ctx)


def test_dropout_at_inference_unit(context):
    check = base.REGISTRY["dropout-at-inference"]
    ctx = context("saved_model_keep_prob_const")
    assert [f.message for f in check.graph(ctx)] == [
        "keep_prob is a Const 0.5 (keep_prob) in an artefact meant for serving"]
    assert not list(check.graph(context("saved_model_keep_prob_default")))
    ctx = context("saved_model_training_defaults")
    found = [f for d in _serving(ctx) for f in check.serving_default(ctx, d)]
    assert [f.layer for f in found] == ["dropout"] and "keep_prob 0.5" in found[0].message
    healthy = context("saved_model_keep_prob_in_signature")
    assert not [f for d in _serving(healthy) for f in check.serving_default(healthy, d)]
    assert _ids(check.dynamic(ctx, runs.Run("how", (), ("logits:0",), None))) == [check.id]
    assert not list(check.dynamic(ctx, runs.Run("how", (), (), ())))


def test_updates_on_inference_unit(context):
    check = base.REGISTRY["updates-on-inference"]
    ctx = context("ema_outside_cond")
    statistic = ctx.layers[0].moving_mean
    found = list(check.dynamic(ctx, runs.Run("how", (statistic, "global_step"), (), ())))
    assert [(f.layer, f.message) for f in found] == [
        (ctx.layers[0].name, f"a prediction run changed {statistic}")]
    assert not list(check.dynamic(ctx, runs.Run("how", ("global_step",), (), ())))


def test_update_ops_not_in_train_op_unit(context):
    check = base.REGISTRY["update-ops-not-in-train-op"]
    found = list(check.graph(context("tf_layers_unwired")))
    assert [f.layer for f in found] == ["block1/batch_normalization"]
    assert not list(check.graph(context("tf_layers_wired")))


def test_mode_placeholder_without_default_unit(context):
    check = base.REGISTRY["mode-placeholder-without-default"]
    assert [f.layer for f in check.graph(context("tf_layers_wired"))] == ["training"]
    assert not list(check.graph(context("saved_model_keep_prob_in_signature")))


def test_dead_channel_unit(context):
    found = _layer_hook(context, "dead-channel", "dead_channel")
    assert _ids(found) == ["dead-channel"] and found[0].severity == base.WARNING
    assert "exactly 0 on 1 of 8 channel(s) [0]" in found[0].message
    assert "its moving mean there: 0" in found[0].message
    for healthy in ("tf_layers_wired", "negative_variance", "nan_variance"):  # errors say those
        assert not _layer_hook(context, "dead-channel", healthy), healthy
    # a dead channel is not an error: variance-not-positive keeps < 0 (and all 0)
    assert not _layer_hook(context, "variance-not-positive", "dead_channel")


def test_dead_channel_report_names_the_channel_and_stays_healthy(diagnosed):
    report = diagnosed("dead_channel")
    assert report["healthy"] is True
    (dead,) = [f for f in report["findings"] if f["id"] == "dead-channel"]
    assert dead["layer"] == "block1/batch_normalization" and "[0]" in dead["message"]
    assert "recalibrate" not in dead["fix"]
    (layer,) = report["bn_layers"]
    assert layer["moving_variance_range"][0] == 0.0 < layer["moving_variance_range"][1]


def test_variance_zero_on_every_channel_stays_an_error(tmp_path):
    """0 on every channel is no dead unit (no channel saw varying data): variance-not-positive."""
    import model_suite  # pylint: disable=import-outside-toplevel

    def zero(sess, variables):
        var = variables["block1/batch_normalization/moving_variance"]
        var.load(sess.run(var) * 0.0, sess)
    prefix = model_suite._train(str(tmp_path), (model_suite.FEATURES,),  # pylint: disable=protected-access
                                model_suite._tf_layers(False), edit=zero)  # pylint: disable=protected-access
    report = doctor.diagnose(prefix, run=False)
    found = {f["id"]: f for f in report["findings"]}
    assert "dead-channel" not in found and report["healthy"] is False
    assert "is 0 on all 8 channel(s)" in found["variance-not-positive"]["message"]
