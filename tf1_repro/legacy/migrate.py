"""``migrate``: BN weights from any TF1 checkpoint to Keras 3, verified layer by layer, and back.

``to_keras3(path, out)``:

1. Load the checkpoint (``artefacts.load``: a prefix, a directory, or a ``.meta``). With a
   graph (``PREFIX.meta``) the structural finder gives each BN layer's variables, epsilon,
   decay and moving-variance estimator; without one, ``naming.layers_from_names`` finds the
   layers from the checkpoint's names (article, tf.layers/Keras, slim; scale/center=False)
   and epsilon/momentum are *assumed* (1e-5 and 0.9, or ``--epsilon``/``--momentum``).
2. Write ``weights.npz`` (``{layer}/gamma|beta|moving_mean|moving_variance``, the
   checkpoint's values unchanged; a missing gamma/beta is 1/0, noted) and ``layers.json``.
3. Verify in Keras 3 (a child process): each layer is built with the converted weights
   (``ArticleBatchNormalization`` for the article's layers, stock ``BatchNormalization``
   otherwise; ``compare-keras3`` measures that both reproduce their TF1 layer) and fed the
   inputs the TF1 layer gets in prediction mode: from ``--data``, or random inputs pushed
   through the user's graph (restored, prediction feeds), or, without a graph, random inputs
   at the layer's moving statistics fed to the article's TF1 ``bn_layer`` restored with the
   same values. A layer fails above ``TOLERANCE`` relative (max |diff| / max |TF1 output|).
4. For the demo model (``model.json`` beside the checkpoint): ``model.keras`` with
   ``ArticleBatchNormalization``; its predictions vs the TF1 checkpoint's on held-out data;
   then ``train_steps`` more training steps in both (the same batches, dropout off,
   Adam's state from the checkpoint), comparing every BN shadow after every step.

``to_article(path, out)``: Keras 3 weights (``weights.npz`` as above, or a ``.weights.h5``)
to an article-named TF1 checkpoint ``DIR/model.ckpt`` (``P/gamma``, ``P/beat``,
``P/P/moments/Squeeze/ema``, ``P/P/moments/Squeeze_1/ema``; from a ``.weights.h5`` or
``.keras`` also Dense/Conv ``{layer}/kernel`` and ``{layer}/bias``), read back and compared
bitwise, names found again by ``naming``.

Bad input raises ``MigrateError`` (one line; exit status 2) before anything is written.
"""

import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.layers.bn import article_variable_names, bn_layer, bn_variables
from tf1_repro.legacy import artefacts, graphs, keras3_worker, naming

TARGETS = ("keras3", "article")
ROLES = naming.ROLES
TOLERANCE = 1e-5
TRAJECTORY_TOLERANCE = 1e-4
WEIGHTS, LAYERS, MODEL, REPORT = "weights.npz", "layers.json", "model.keras", "migration.json"
ARTICLE_PREFIX = "model.ckpt"
DEFAULT_EPSILON, DEFAULT_MOMENTUM = 1e-5, 0.9
RANDOM_BATCH = 64


class MigrateError(ValueError):
    """A refused input: one line, exit status 2; nothing was written."""


def _nice(value):
    """A float32 setting (9.99999975e-06) as the short decimal it was written as (1e-05)."""
    return None if value is None else float(str(np.float32(value)))


def check_settings(to, epsilon, momentum, train_steps):
    """The command's settings, checked in one place."""
    if to not in TARGETS:
        raise MigrateError(f"migrate: --to must be one of {', '.join(TARGETS)}, got {to!r}")
    if epsilon is not None and not (isinstance(epsilon, (int, float)) and 0 < epsilon < np.inf):
        raise MigrateError(f"migrate: --epsilon must be a finite number > 0, got {epsilon!r}")
    if momentum is not None and not (isinstance(momentum, (int, float)) and 0 <= momentum <= 1):
        raise MigrateError(f"migrate: --momentum must be in [0, 1] (the TF1 decay), got {momentum!r}")
    if isinstance(train_steps, bool) or not isinstance(train_steps, int) or train_steps < 0:
        raise MigrateError(f"migrate: train_steps must be an integer >= 0, got {train_steps!r}")


def _check_out(out, marker, force):
    if os.path.exists(out) and not os.path.isdir(out):
        raise MigrateError(f"migrate: --out must be a directory, got {out!r}, which is a file")
    if os.path.exists(os.path.join(out, marker)) and not force:
        raise MigrateError(f"migrate: --out must not hold {marker} already (pass --force to "
                           f"overwrite), got {out!r} with {marker}")


# ---- discovery ----------------------------------------------------------------------------

def _load(path):
    try:
        art = artefacts.load(path)
    except artefacts.ArtefactError as err:
        raise MigrateError(f"migrate: PATH must be a TF1 checkpoint (prefix, directory or .meta), "
                           f"got {err}") from None
    if art.checkpoint is None:
        raise MigrateError(f"migrate: PATH must be a TF1 checkpoint (prefix, directory or .meta), "
                           f"got {path!r} ({art.format} without checkpoint values)")
    return art


def _graph_layers(art, variables):
    """Layers from the structural finder whose statistics are checkpoint variables."""
    found = art.find()
    layers = []
    for b in found.bn_layers:
        keys = {role: getattr(b, role) for role in ROLES}
        if keys["moving_mean"] not in variables or keys["moving_variance"] not in variables:
            continue
        notes = list(b.notes)
        for role, filler in (("gamma", "1"), ("beta", "0")):
            if keys[role] is not None and keys[role] not in variables:
                notes.append(f"{role} {keys[role]} is not a checkpoint variable: filled with {filler}")
                keys[role] = None
            elif keys[role] is None:
                notes.append(f"no {role} ({'scale' if role == 'gamma' else 'center'}=False?): "
                             f"filled with {filler}")
        if b.updates_at_prediction:
            notes.append("the TF1 graph updates this layer's moving statistics at prediction time "
                         "too (its EMA runs outside the tf.cond), so its prediction outputs move "
                         "with each batch; Keras 3 predicts from the stored values")
        if b.statistics_used_at_prediction is False:
            notes.append("the TF1 layer normalises with batch statistics at prediction time; Keras "
                         "3 prediction uses the moving statistics")
        layers.append({"name": b.name, "naming": b.kind, **keys,
                       "shapes": {r: list(variables[k]) for r, k in keys.items() if k},
                       "notes": notes, "epsilon": b.epsilon, "decay": b.decay,
                       "variance_estimator": b.variance_estimator,
                       "input": b.input, "output": b.output})
    return layers, found


def discover(art, epsilon=None, momentum=None):
    """``(layers, findings or None, source)``: each layer a dict as ``naming.layers_from_names``
    gives, plus the settings it will have in Keras 3 and where they come from."""
    variables = {k: list(v) for k, v in art.variables().items()}
    findings, source = None, "names"
    layers = []
    if art.meta_graph is not None or art.graph_def is not None:
        layers, findings = _graph_layers(art, variables)
        source = "graph"
    if not layers:
        layers = naming.layers_from_names(variables)
        if findings is not None and layers:
            for layer in layers:
                layer["notes"].append("the structural finder found no BN layer in the graph "
                                      "with these variables: found by names")
        source = "names"
    if not layers:
        raise MigrateError(f"migrate: PATH must hold BN layers (article gamma/beat/…/ema, "
                           f"gamma/beta/moving_mean/moving_variance or slim BatchNorm/…), got "
                           f"none among the {len(variables)} variables of {art.checkpoint}")
    for layer in layers:
        problem = naming.shape_problem(layer)
        if problem:
            raise MigrateError(f"migrate: {problem}")
        _settings(layer, epsilon, momentum)
    return layers, findings, source


def _settings(layer, epsilon, momentum):
    assumed = []
    for key, given, read, default, flag in (
            ("epsilon", epsilon, layer.get("epsilon"), DEFAULT_EPSILON, "--epsilon"),
            ("momentum", momentum, layer.get("decay"), DEFAULT_MOMENTUM, "--momentum")):
        if given is not None:
            layer[key] = float(given)
            if read is not None and _nice(read) != float(given):
                layer["notes"].append(f"{key} {float(given):g} set by {flag}; the graph says "
                                      f"{_nice(read):g}")
        elif read is not None:
            layer[key] = _nice(read)
        else:
            layer[key] = default
            assumed.append(key)
            layer["notes"].append(f"{key} {default:g} assumed (no graph says it); {flag} sets it")
    estimator = layer.get("variance_estimator")
    if estimator is None:
        estimator = "biased" if layer["naming"] == "article" else None
        if estimator:
            assumed.append("moving_variance_estimator")
    layer["moving_variance_estimator"] = estimator
    layer["assumed"] = assumed
    article = layer["naming"] == "article"
    layer["keras_layer"] = "ArticleBatchNormalization" if article else "BatchNormalization"
    if estimator == "unbiased":
        layer["notes"].append("the TF1 layer averages Bessel-corrected (n/(n-1)) batch variances "
                              "(a fused kernel); Keras 3 BatchNormalization averages biased ones, "
                              "so continued training moves the moving variance by (n-1)/n; "
                              "the stored value is copied unchanged, so predictions carry over")


# ---- reading values ---------------------------------------------------------------------

def layer_weights(art, layer):
    """``{role: array}``: the checkpoint's values unchanged (statistics squeezed to (C,))."""
    values = {}
    for role in ("moving_mean", "moving_variance", "gamma", "beta"):
        if layer[role] is not None:
            values[role] = art.read(layer[role])
    channels = int(np.prod(values["moving_mean"].shape))
    for role, value in list(values.items()):
        if value.shape != (channels,):
            layer["notes"].append(f"{role} stored as {list(value.shape)}: written as ({channels},)")
            values[role] = value.reshape(channels)
    variance = values["moving_variance"]
    if not np.isfinite(variance).all() or (variance < 0).any():
        layer["notes"].append(f"moving_variance has {int((~np.isfinite(variance)).sum())} NaN/inf "
                              f"and {int((variance < 0).sum())} negative values: copied as they are")
    dtype = values["moving_mean"].dtype
    if "gamma" not in values:
        values["gamma"] = np.ones(channels, dtype)
    if "beta" not in values:
        values["beta"] = np.zeros(channels, dtype)
    return {role: values[role] for role in ROLES}


def _load_data(path):
    if path is None:
        return None
    try:
        with np.load(path) as loaded:
            arrays = {k: np.asarray(v) for k, v in loaded.items()}
    except (OSError, ValueError) as err:
        raise MigrateError(f"migrate: --data must be a .npz file of input arrays, got {path!r} "
                           f"({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None
    if not arrays:
        raise MigrateError(f"migrate: --data must hold at least one array, got {path!r} (empty)")
    return arrays


# ---- TF1 side of the verification ------------------------------------------------------

def _graph_inputs(art, layers, findings, data, seed):
    """Each layer's (input, TF1 output) in prediction mode, pushed through the user's graph."""
    graph, sess = art.open()
    try:
        feeds = dict(findings.prediction_feeds())
        mode_names = {m.name for m in findings.mode_inputs}
        rng = np.random.default_rng(seed)
        placeholders = [op for op in graph.get_operations()
                        if op.type == "Placeholder" and op.name not in mode_names]
        for op in placeholders:
            tensor = op.outputs[0]
            if data is not None:
                value = data.get(op.name, data.get(tensor.name))
                if value is None and len(data) == 1 and len(placeholders) == 1:
                    value = next(iter(data.values()))
                if value is not None:
                    feeds[tensor.name] = value
                    continue
            if tensor.dtype.is_floating and tensor.shape.rank is not None:
                shape = [RANDOM_BATCH if d is None else d for d in tensor.shape.as_list()]
                feeds[tensor.name] = rng.standard_normal(shape).astype(tensor.dtype.as_numpy_dtype)
        fetches = {layer["name"]: (layer["input"], layer["output"]) for layer in layers}
        unsafe = graphs.unsafe_to_run(graph, [t for pair in fetches.values() for t in pair])
        if unsafe:
            raise MigrateError(f"migrate: {graphs.refusal(unsafe, 'the BN layers')}")
        try:
            values = sess.run(fetches, feeds)
        except (tf.errors.OpError, ValueError, KeyError) as err:
            raise MigrateError(f"migrate: --data must feed the graph's inputs for the BN layers "
                               f"(random float inputs were fed to {[p.name for p in placeholders]}), "
                               f"got {type(err).__name__}: {str(err).splitlines()[0][:160]}") from None
        return {name: (np.asarray(i), np.asarray(o)) for name, (i, o) in values.items()}, \
            "the user's graph in prediction mode (" + ("--data" if data else "random inputs") + ")"
    finally:
        sess.close()


def _article_outputs(weights, inputs, epsilon):
    """The article's TF1 ``bn_layer`` in prediction mode with the given values."""
    with tf.Graph().as_default() as graph:
        x = tf.placeholder(tf.float32, (None,) + inputs.shape[1:])
        out = bn_layer(x, False, name="verify", eps=epsilon)
        variables = bn_variables("verify")
        with tf.Session(graph=graph) as sess:
            for role in ROLES:
                variables[role].load(weights[role].astype(np.float32), sess)
            return np.asarray(sess.run(out, {x: inputs}))


def _name_inputs(layers, weights, data, seed):
    """Without a graph: inputs from ``--data[layer]`` or at the layer's moving statistics."""
    rng = np.random.default_rng(seed)
    result = {}
    for layer in layers:
        w = weights[layer["name"]]
        if data is not None and layer["name"] in data:
            inputs = data[layer["name"]].astype(np.float32)
            if inputs.ndim < 2 or inputs.shape[-1] != w["gamma"].shape[0]:
                raise MigrateError(f"migrate: --data[{layer['name']!r}] must have shape [N, ..., "
                                   f"{w['gamma'].shape[0]}], got {list(inputs.shape)}")
        else:
            mean, var = w["moving_mean"].astype(np.float64), w["moving_variance"].astype(np.float64)
            inputs = (mean + np.sqrt(np.maximum(var, 1e-6))
                      * rng.standard_normal((RANDOM_BATCH, mean.size))).astype(np.float32)
        result[layer["name"]] = (inputs, _article_outputs(w, inputs, layer["epsilon"]))
    how = "--data" if data is not None else "random inputs at each layer's moving statistics"
    return result, f"the article's TF1 bn_layer restored with the checkpoint values ({how})"


def _demo_config(art, layers):
    """The ArticleModel config when the checkpoint is the demo's (model.json beside it)."""
    folder = os.path.dirname(os.path.abspath(art.checkpoint))
    path = os.path.join(folder, "model.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    names = ["bn_conv"] if config.get("kind") == "conv" else ["bn_input", "bn_hidden"]
    if sorted(names) != sorted(layer["name"] for layer in layers):
        return None
    train_file = os.path.join(folder, "train.json")
    batch_size = 64
    if os.path.isfile(train_file):
        with open(train_file, encoding="utf-8") as f:
            batch_size = json.load(f).get("batch_size", 64)
    return {"config": config, "batch_size": batch_size}


def _demo_dataset(config):
    """The demo's data for a model.json config: Blobs (dense) or Stripes (conv), sized to it."""
    from tf1_repro.model import data  # pylint: disable=import-outside-toplevel
    shape = config["input_shape"]
    if config["kind"] == "dense":
        return data.Blobs(features=shape[0], classes=config["num_classes"], seed=config["seed"])
    if shape[0] == shape[1] and shape[2] == 1 and config["num_classes"] == 2:
        return data.Stripes(size=shape[0])
    raise MigrateError(f"migrate: model.json beside PATH must describe the demo's data (dense, or "
                       f"conv on [S, S, 1] with 2 classes), got input_shape {shape}")


GRADIENT_FREE = 1e-6  # a parameter whose gradient is below this fraction of the largest one


def _demo_tf1(art, demo, train_steps):
    """The TF1 demo model: held-out logits, the gradient-free parameters, and ``train_steps``
    steps (dropout off) twice: all parameters trained, then the gradient-free ones held at
    their checkpoint values after every step."""
    from tf1_repro.model import data, network  # pylint: disable=import-outside-toplevel
    config = demo["config"]
    dataset = _demo_dataset(config)
    x_pred, _ = data.held_out(dataset, 256, config["seed"])
    arrays = {"x_pred": x_pred}
    with tf.Graph().as_default() as graph:
        model = network.ArticleModel(**config)
        shadows = {name: bn_variables(name) for name in model.bn_outputs}
        trainable = tf.trainable_variables()
        gradients = tf.gradients(model.loss, trainable)
        with tf.Session(graph=graph) as sess:
            model.saver.restore(sess, art.checkpoint)
            step = int(sess.run(model.global_step))
            logits = model.logits_for(sess, x_pred, training=False, keep_prob=1.0)
            batches = [data.train_batch(dataset, demo["batch_size"], config["seed"], step + i)
                       for i in range(train_steps)]
            for i, (x, y) in enumerate(batches):
                arrays[f"x_{i}"], arrays[f"y_{i}"] = x, y
            sizes = {}
            if batches:
                values = sess.run(gradients, model.feed(batches[0][0], training=True,
                                                        keep_prob=1.0, y=batches[0][1]))
                sizes = {v.op.name: float(np.abs(g).max()) for v, g in zip(trainable, values)}
            largest = max(sizes.values(), default=0.0)
            pinned = sorted(k for k, g in sizes.items() if g <= GRADIENT_FREE * largest)
            start = {v.op.name: sess.run(v) for v in trainable}
            by_name = {v.op.name: v for v in trainable}
            trajectories = {}
            for run, pins in (("all", []), ("pinned", pinned)):
                if run == "pinned" and not pinned:
                    break
                model.saver.restore(sess, art.checkpoint)
                trajectory = []
                for x, y in batches:
                    sess.run(model.train_op, model.feed(x, training=True, keep_prob=1.0, y=y))
                    for key in pins:
                        by_name[key].load(start[key], sess)
                    trajectory.append(sess.run({n: {"moving_mean": s["moving_mean"],
                                                    "moving_variance": s["moving_variance"]}
                                                for n, s in shadows.items()}))
                trajectories[run] = trajectory
    return arrays, logits, trajectories, step, {k: sizes[k] for k in pinned}, largest


def _trajectory_diff(reference, out, run):
    steps = []
    for i, stats in enumerate(reference):
        worst = 0.0
        for name, values in stats.items():
            for role, value in values.items():
                diff = np.abs(out[f"{run}/step_{i}/{name}/{role}"] - value).max()
                worst = max(worst, float(diff / max(np.abs(value).max(), 1e-12)))
        steps.append(worst)
    return steps


def _demo_check(art, demo, weights, train_steps, model_path):
    arrays, logits, trajectories, step, pinned, largest = _demo_tf1(art, demo, train_steps)
    reader = tf.train.load_checkpoint(art.checkpoint)
    for key in reader.get_variable_to_shape_map():
        arrays[f"tf1:{key}"] = reader.get_tensor(key)
    for name, w in weights.items():
        for role in ROLES:
            arrays[f"bn:{name}/{role}"] = w[role]
    runs = [{"name": run, "pinned": sorted(pinned) if run == "pinned" else []}
            for run in trajectories]
    out, info = keras3_worker.run("demo-model", arrays, {
        "config": demo["config"], "step": step, "train_steps": train_steps, "save": model_path,
        "keep_prob": 0.8, "runs": runs})
    scale = float(np.abs(logits).max())
    prediction = float(np.abs(out["logits_pred"] - logits).max())
    diffs = {run: _trajectory_diff(reference, out, run) for run, reference in trajectories.items()}
    checked = "pinned" if "pinned" in diffs else "all"
    worst = max(diffs[checked], default=0.0)
    reloaded = bool(np.array_equal(out["logits_reloaded"], out["logits_pred"]))
    return {"step": step, "prediction_samples": int(arrays["x_pred"].shape[0]),
            "prediction_max_abs_diff": prediction, "prediction_relative": prediction / scale,
            "reloaded_identical": reloaded, "train_steps": train_steps,
            "gradient_free": pinned, "largest_gradient": largest,
            "trajectory_relative_diff_per_step": diffs,
            "trajectory_checked": checked,
            "trajectory_max_relative_diff": {run: max(d, default=0.0) for run, d in diffs.items()},
            "ok": bool(prediction / scale <= TOLERANCE and reloaded
                       and worst <= TRAJECTORY_TOLERANCE),
            "keras": info.get("keras_version")}


def to_keras3(path, out, epsilon=None, momentum=None, data=None, force=False, seed=0,
              train_steps=20):
    """Migrate ``path`` to Keras 3 in ``out``; returns the report (see the module docstring)."""
    check_settings("keras3", epsilon, momentum, train_steps)
    art = _load(path)
    _check_out(out, WEIGHTS, force)
    data_arrays = _load_data(data)
    layers, findings, source = discover(art, epsilon, momentum)
    weights = {layer["name"]: layer_weights(art, layer) for layer in layers}
    if source == "graph":
        io, reference = _graph_inputs(art, layers, findings, data_arrays, seed)
    else:
        io, reference = _name_inputs(layers, weights, data_arrays, seed)
    arrays, specs = {}, []
    for layer in layers:
        name = layer["name"]
        arrays[f"{name}/inputs"] = io[name][0].astype(np.float32)
        arrays.update({f"{name}/{role}": weights[name][role] for role in ROLES})
        specs.append({"name": name, "layer": "article" if layer["keras_layer"].startswith("Article")
                      else "stock", "kwargs": {"momentum": layer["momentum"],
                                               "epsilon": layer["epsilon"]}})
    keras_out, _ = keras3_worker.run("predict-layers", arrays, {"layers": specs})
    for layer in layers:
        tf1_out = io[layer["name"]][1].astype(np.float64)
        diff, scale = _max_diff(keras_out[f"{layer['name']}/outputs"], tf1_out)
        layer["max_abs_diff"] = diff
        layer["relative_diff"] = diff / max(scale, 1e-12)
        layer["ok"] = layer["relative_diff"] <= TOLERANCE
        bad = ~np.isfinite(tf1_out)
        if bad.any():
            layer["notes"].append(f"the TF1 layer itself outputs NaN/inf at {int(bad.sum())} of "
                                  f"{bad.size} values (statistics as stored); compared where finite, "
                                  f"NaN/inf required at the same places")
    demo, demo_skipped = _demo_config(art, layers), None
    staging = tempfile.mkdtemp(prefix="tf1_repro_migrate_")
    try:
        demo_report = None
        if demo is not None:
            try:
                demo_report = _demo_check(art, demo, weights, train_steps,
                                          os.path.join(staging, MODEL))
            except (tf.errors.OpError, ValueError) as err:  # model.json beside another model
                demo_skipped = (f"model.json is beside the checkpoint but the demo model cannot "
                                f"be rebuilt from it: {type(err).__name__}: "
                                f"{str(err).strip().splitlines()[0][:160]}")
        os.makedirs(out, exist_ok=True)
        np.savez(os.path.join(out, WEIGHTS), **{f"{n}/{r}": w[r] for n, w in weights.items()
                                               for r in ROLES})
        entries = [_entry(layer) for layer in layers]
        with open(os.path.join(out, LAYERS), "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=2)
        if demo_report is not None:
            shutil.move(os.path.join(staging, MODEL), os.path.join(out, MODEL))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    written = [WEIGHTS, LAYERS] + ([MODEL] if demo_report else [])
    return {"to": "keras3", "source": art.checkpoint, "format": art.format, "found_by": source,
            "reference": reference, "out": out, "written": written, "layers": entries,
            "demo_model": demo_report, "demo_skipped": demo_skipped, "tolerance": TOLERANCE,
            "ok": all(layer["ok"] for layer in layers) and (demo_report is None or demo_report["ok"])}


def _max_diff(keras_out, tf1_out):
    """(max |diff| where both are finite, max |TF1 output| there); inf if the NaN/inf places differ."""
    keras_out = np.asarray(keras_out, np.float64)
    bad = ~np.isfinite(tf1_out)
    if not np.array_equal(bad, ~np.isfinite(keras_out)):
        return float("inf"), 1.0
    if bad.all():
        return 0.0, 1.0
    good = ~bad
    return (float(np.abs(keras_out[good] - tf1_out[good]).max()),
            float(np.abs(tf1_out[good]).max()))


def _entry(layer):
    return {"name": layer["name"], "naming": layer["naming"],
            "source": {role: layer[role] for role in ROLES},
            "momentum": layer["momentum"], "epsilon": layer["epsilon"],
            "moving_variance_estimator": layer["moving_variance_estimator"],
            "assumed": layer["assumed"], "keras_layer": layer["keras_layer"],
            "max_abs_diff": layer["max_abs_diff"], "relative_diff": layer["relative_diff"],
            "ok": layer["ok"], "notes": layer["notes"]}


# ---- the other direction ----------------------------------------------------------------

def read_keras_weights(path):
    """``({layer: {role: array}}, {key: array} of other weights)`` from a migrate ``weights.npz`` or a Keras 3 ``.weights.h5``.

    In a ``.weights.h5`` (also the one inside a ``.keras``) a BN layer is a ``vars`` group
    holding exactly four vectors of one length (gamma, beta, moving_mean, moving_variance:
    the order of both stock ``BatchNormalization`` and ``ArticleBatchNormalization``),
    named by the group's ``name`` attribute (the Keras layer's name).
    """
    if path.endswith(".npz"):
        try:
            with np.load(path) as loaded:
                flat = dict(loaded)
        except (OSError, ValueError) as err:
            raise MigrateError(f"migrate: PATH must be a weights.npz or .weights.h5, got {path!r} "
                               f"({type(err).__name__})") from None
        layers = {}
        for key, value in flat.items():
            name, _, role = key.rpartition("/")
            if role not in ROLES or not name:
                raise MigrateError(f"migrate: PATH keys must be {{layer}}/gamma|beta|moving_mean|"
                                   f"moving_variance, got {key!r} in {path}")
            layers.setdefault(name, {})[role] = value
        return layers, {}
    if path.endswith((".h5", ".keras")):
        return _read_h5(path)
    raise MigrateError(f"migrate: PATH must be a weights.npz, a Keras .weights.h5 or a .keras "
                       f"file for --to article, got {path!r}")


def _read_h5(path):
    """``(BN layers, other weights)`` of a Keras 3 weights file (``.weights.h5``, or the one
    inside a ``.keras``). Other weights are Dense/Conv layers' ``{layer}/kernel`` and
    ``{layer}/bias`` (the names ``tf.get_variable`` gives in TF1 code such as ArticleModel).

    Keras 3 names the groups after the layer classes (``layers/batch_normalization_1/vars``)
    and keeps the layer's own name in the group's ``name`` attribute, which is used.
    """
    import io  # pylint: disable=import-outside-toplevel
    import zipfile  # pylint: disable=import-outside-toplevel
    import h5py  # pylint: disable=import-outside-toplevel
    layers, others = {}, {}
    try:
        source = path
        if path.endswith(".keras"):
            with zipfile.ZipFile(path) as archive:
                source = io.BytesIO(archive.read("model.weights.h5"))
        with h5py.File(source, "r") as f:
            def visit(name, obj):
                if not (isinstance(obj, h5py.Group) and name.endswith("vars")) or \
                        name.startswith("optimizer"):
                    return
                values = [np.asarray(obj[k]) for k in sorted(obj.keys(), key=int)]
                layer = str(obj.attrs.get("name") or "/".join(
                    p for p in name.split("/")[:-1] if p != "layers"))
                if len(values) == 4 and all(v.ndim == 1 and v.shape == values[0].shape
                                            for v in values):
                    layers[layer] = dict(zip(ROLES, values))
                elif 1 <= len(values) <= 2 and values[0].ndim >= 2 and \
                        (len(values) == 1 or values[1].ndim == 1):
                    others.update(zip((f"{layer}/kernel", f"{layer}/bias"), values))
            f.visititems(visit)
    except (OSError, KeyError, zipfile.BadZipFile) as err:
        raise MigrateError(f"migrate: PATH must be a readable Keras .weights.h5 or .keras, got "
                           f"{path!r} ({str(err).splitlines()[0][:120]})") from None
    return layers, others


def _save_checkpoint(arrays, prefix):
    with tf.Graph().as_default() as graph:
        var_list = {key: tf.Variable(value, name="v") for key, value in arrays.items()}
        saver = tf.train.Saver(var_list=var_list)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            return saver.save(sess, prefix, write_meta_graph=False)


def to_article(path, out, force=False):
    """Keras 3 BN weights to an article-named TF1 checkpoint ``out/model.ckpt``, checked bitwise."""
    if not os.path.exists(path):
        raise MigrateError(f"migrate: PATH must be a weights.npz or .weights.h5, got {path!r} "
                           f"(no such file)")
    layers, others = read_keras_weights(path)
    if not layers:
        raise MigrateError(f"migrate: PATH must hold BN weights (four vectors per layer), got "
                           f"none in {path}")
    arrays = {}
    for name, values in sorted(layers.items()):
        missing = [r for r in ROLES if r not in values]
        if missing:
            raise MigrateError(f"migrate: layer {name} must have {', '.join(ROLES)}, got no "
                               f"{missing[0]} in {path}")
        channels = values["gamma"].shape
        for role in ROLES:
            if values[role].shape != channels or len(channels) != 1:
                raise MigrateError(f"migrate: layer {name}: {role} must have the shape of gamma "
                                   f"{tuple(channels)}, got {tuple(values[role].shape)}")
        keys = article_variable_names(name)
        arrays.update({keys[role]: values[role] for role in ROLES})
    clash = sorted(set(others) & set(arrays))
    if clash:
        raise MigrateError(f"migrate: PATH must not hold a weight named like a BN variable, got "
                           f"{clash[0]}")
    arrays.update(others)
    _check_out(out, ARTICLE_PREFIX + ".index", force)
    os.makedirs(out, exist_ok=True)
    prefix = _save_checkpoint(arrays, os.path.join(out, ARTICLE_PREFIX))
    reader = tf.train.load_checkpoint(prefix)
    back = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}
    bitwise = back.keys() == arrays.keys() and all(
        back[k].dtype == v.dtype and back[k].tobytes() == v.tobytes() for k, v in arrays.items())
    found = naming.layers_from_names({k: list(v.shape) for k, v in back.items()})
    refound = sorted(layer["name"] for layer in found) == sorted(layers)
    return {"to": "article", "source": path, "checkpoint": prefix, "layers": sorted(layers),
            "variables": sorted(arrays), "other_weights": sorted(others), "bitwise": bool(bitwise), "names_found_again": refound,
            "ok": bool(bitwise and refound)}


def migrate(path, to="keras3", out=None, epsilon=None, momentum=None, data=None, force=False,
            seed=0, train_steps=20):
    """``to_keras3`` or ``to_article``; see the module docstring."""
    check_settings(to, epsilon, momentum, train_steps)
    if not out:
        raise MigrateError("migrate: --out must be a directory, got none")
    if to == "article":
        return to_article(path, out, force=force)
    return to_keras3(path, out, epsilon, momentum, data, force, seed, train_steps)


def format_report(report):
    """The report as the command prints it."""
    if report["to"] == "article":
        return "\n".join([
            f"migrated {report['source']} -> {report['checkpoint']} (article names)",
            f"  {len(report['layers'])} BN layer(s): {', '.join(report['layers'])}",
            f"  other weights: {', '.join(report['other_weights']) or 'none'}",
            f"  read back bitwise equal: {report['bitwise']}; layers found again by name: "
            f"{report['names_found_again']}",
            f"  {'OK' if report['ok'] else 'FAILED'}"])
    width = max([20] + [len(e["name"]) for e in report["layers"]])
    lines = [f"migrated {report['source']} -> {report['out']}/ ({', '.join(report['written'])})",
             f"  BN layers found by {'the structural finder (.meta graph)' if report['found_by'] == 'graph' else 'checkpoint names (no graph)'}; "
             f"reference: {report['reference']}",
             f"  {'layer':<{width}} keras layer                momentum  epsilon   estimator  "
             "max |diff|  relative"]
    for e in report["layers"]:
        assumed = "*" if e["assumed"] else " "
        lines.append(f"  {e['name']:<{width}} {e['keras_layer']:<26} {e['momentum']:<8g}{assumed} "
                     f"{e['epsilon']:<8g}  {str(e['moving_variance_estimator']):<10} "
                     f"{e['max_abs_diff']:<10.3g}  {e['relative_diff']:.3g}"
                     f"{'' if e['ok'] else '  FAILED'}")
        for note in e["notes"]:
            lines.append(f"      note: {note}")
    if any(e["assumed"] for e in report["layers"]):
        lines.append("  * assumed: no graph says it; set with --epsilon / --momentum")
    demo = report["demo_model"]
    if demo:
        lines.append(f"  demo model (model.keras, ArticleBatchNormalization): predictions on "
                     f"{demo['prediction_samples']} held-out samples vs the TF1 checkpoint: max "
                     f"|diff| {demo['prediction_max_abs_diff']:.3g} (relative "
                     f"{demo['prediction_relative']:.3g}); reloaded model.keras identical: "
                     f"{demo['reloaded_identical']}")
        worst = demo["trajectory_max_relative_diff"]
        lines.append(f"  continued training from step {demo['step']}, {demo['train_steps']} steps "
                     f"(same batches, dropout off, Adam state from the checkpoint), moving "
                     f"statistics vs TF1's at every step:")
        lines.append(f"    every parameter trained: max relative diff {worst['all']:.3g}")
        if "pinned" in worst:
            names = ", ".join(f"{k} (|gradient| {g:.2g} vs {demo['largest_gradient']:.2g})"
                              for k, g in demo["gradient_free"].items())
            lines.append(f"    gradient-free parameters held in both ({names}; Adam divides "
                         f"their rounding noise by its own size): max relative diff "
                         f"{worst['pinned']:.3g}")
        lines.append(f"    checked: {demo['trajectory_checked']} (limit {TRAJECTORY_TOLERANCE:g})")
    if report.get("demo_skipped"):
        lines.append(f"  demo model not checked: {report['demo_skipped']}")
    lines.append(f"  {'OK' if report['ok'] else 'FAILED'} (limit {report['tolerance']:g} relative "
                 f"per layer)")
    return "\n".join(lines)
