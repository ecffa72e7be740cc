"""``to_keras3``: discovery, the converted weights, the Keras 3 check of every layer (a child
process, ``keras3_worker``), the demo model's check, then the files (nothing is written before
every check has run)."""

import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow.compat.v1 as tf

from tf1_repro.comparisons import keras3_worker
from tf1_repro.graph.errors import exception_line
from tf1_repro.tools.migrate import demo as demo_model
from tf1_repro.tools.migrate.common import (
    LAYERS, MODEL, ROLES, TOLERANCE, WEIGHTS, check_out, check_settings)
from tf1_repro.tools.migrate.discover import discover, layer_weights, load
from tf1_repro.tools.migrate.verify import compare, graph_inputs, load_data, name_inputs


def _keras_inputs(layers, io, weights):
    """``(arrays, specs)`` for the worker's ``predict-layers``: every call of every layer (the
    first under the layer's name, the others as ``{name}@call{i}``) with the layer's weights."""
    arrays, specs = {}, []
    for layer in layers:
        name = layer.name
        for i, (inputs, _) in enumerate(io[name]):
            key = name if i == 0 else f"{name}@call{i}"
            arrays[f"{key}/inputs"] = inputs.astype(np.float32)
            arrays.update({f"{key}/{role}": weights[name][role] for role in ROLES})
            specs.append({"name": key, "layer": "article" if layer.keras_layer.startswith(
                "Article") else "stock", "kwargs": {"momentum": layer.momentum,
                                                    "epsilon": layer.epsilon,
                                                    "axis": layer.channel_axis}})
    return arrays, specs


def to_keras3(path, out, epsilon=None, momentum=None, data=None, force=False, seed=0,
              train_steps=20):
    """Migrate ``path`` to Keras 3 in ``out``; returns the report (see ``tools.migrate``)."""
    check_settings("keras3", epsilon, momentum, train_steps)
    art = load(path)
    check_out(out, WEIGHTS, force)
    data_arrays = load_data(data)
    layers, findings, _, source = discover(art, epsilon, momentum)
    weights = {layer.name: layer_weights(art, layer) for layer in layers}
    io, references = {}, []
    if findings is not None:
        io, reference = graph_inputs(art, layers, findings, data_arrays, seed)
        references.append(reference)
    rest = [layer for layer in layers if layer.name not in io]
    if rest:
        more, reference = name_inputs(rest, weights, data_arrays, seed)
        io.update(more)
        references.append(reference)
    arrays, specs = _keras_inputs(layers, io, weights)
    keras_out, _ = keras3_worker.run("predict-layers", arrays, {"layers": specs})
    for layer in layers:
        compare(layer, io[layer.name], keras_out)
    demo, demo_skipped = demo_model.demo_config(art, layers), None
    staging = tempfile.mkdtemp(prefix="tf1_repro_migrate_")
    try:
        demo_report = None
        if demo is not None:
            try:
                demo_report = demo_model.demo_check(art, demo, weights, train_steps,
                                                    os.path.join(staging, MODEL))
            except (tf.errors.OpError, ValueError) as err:  # model.json beside another model
                demo_skipped = (f"model.json is beside the checkpoint but the demo model cannot "
                                f"be rebuilt from it: {exception_line(err, 200)}")
        os.makedirs(out, exist_ok=True)
        np.savez(os.path.join(out, WEIGHTS), **{f"{n}/{r}": w[r] for n, w in weights.items()
                                               for r in ROLES})
        entries = [layer.to_dict() for layer in layers]
        with open(os.path.join(out, LAYERS), "w", encoding="utf-8") as f:
            json.dump(entries, f, indent=2)
        if demo_report is not None:
            shutil.move(os.path.join(staging, MODEL), os.path.join(out, MODEL))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    written = [WEIGHTS, LAYERS] + ([MODEL] if demo_report else [])
    return {"to": "keras3", "source": art.checkpoint, "format": art.format, "found_by": source,
            "graph": findings is not None, "reference": "; ".join(references), "out": out,
            "written": written, "layers": entries, "demo_model": demo_report,
            "demo_skipped": demo_skipped, "tolerance": TOLERANCE,
            "ok": all(layer.ok for layer in layers) and (demo_report is None or demo_report["ok"])}
