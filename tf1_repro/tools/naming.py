"""BN layers found from a checkpoint's variable names and shapes alone (no graph, no TensorFlow).

``layers_from_names(variables)`` knows these namings (``P`` is any scope):

* **article** (``bn_layer`` and hand-written copies of it): ``P/gamma``, ``P/beat``
  (the article's spelling) or ``P/beta``, and the two ``tf.train.ExponentialMovingAverage``
  shadows of ``tf.nn.moments``' outputs, ``X/moments/Squeeze/E`` (moving mean) and
  ``X/moments/Squeeze_1/E`` (moving variance), where ``E`` is the EMA's name (``ema``,
  ``ExponentialMovingAverage``, any other) and ``X`` the name scope the moments were made
  in: ``P/P`` for the article's layer, ``P/P_1`` when the graph was built twice, ``P`` when
  the EMA was applied outside the variable scope, ``moments_1`` for a second ``tf.nn.moments``
  in one scope. The layer ``P`` is the longest prefix of ``X`` that holds a gamma or beta;
  without either (scale and center off) ``X`` with a doubled half removed (``a/b/a/b`` -> ``a/b``).
* **keras** (``tf.compat.v1.layers.batch_normalization``, Keras/tf-keras BN in TF1
  name-based checkpoints): ``P/gamma``, ``P/beta``, ``P/moving_mean``, ``P/moving_variance``.
* **slim** (``tf.contrib.layers.batch_norm`` / slim): the same four names under
  ``P = .../BatchNorm``; slim's defaults are ``center=True, scale=False``, so gamma is
  usually absent.

``scale=False`` or ``center=False`` layers have no gamma or beta: the role is None and a
note says it is filled with 1 or 0. Object-based (TF2) keys ending in
``/.ATTRIBUTES/VARIABLE_VALUE`` are matched without that suffix (the returned keys keep it);
optimizer slots (``.../Adam``, ``.OPTIMIZER_SLOT``) are never mistaken for layers.
"""

import re

ROLES = ("gamma", "beta", "moving_mean", "moving_variance")
OBJECT_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
_SHADOW = re.compile(r"(?P<scope>.+)/(?P<moments>moments(?:_\d+)?)/Squeeze/(?P<ema>[^/]+)")
_STANDARD = re.compile(r"(?P<scope>.+)/moving_mean")


def _plain(name):
    """The key without the object-based suffix; None for optimizer-slot keys."""
    if "/.OPTIMIZER_SLOT/" in name:
        return None
    return name[:-len(OBJECT_SUFFIX)] if name.endswith(OBJECT_SUFFIX) else name


def _undouble(scope):
    parts = scope.split("/")
    half = len(parts) // 2
    if len(parts) % 2 == 0 and parts[:half] == parts[half:]:
        return "/".join(parts[:half])
    return scope


def _shape(variables, key):
    shape = variables.get(key)
    return None if shape is None else [int(d) for d in shape]


def _layer(name, naming, keys, variables, notes):
    for role, filler in (("gamma", "1"), ("beta", "0")):
        if keys[role] is None:
            notes.append(f"no {role} in the checkpoint ({'scale' if role == 'gamma' else 'center'}"
                         f"=False?): filled with {filler}")
    return {"name": name, "naming": naming, **keys,
            "shapes": {role: _shape(variables, keys[role]) for role in ROLES if keys[role]},
            "notes": notes}


def _article_layers(plain, variables):
    layers = []
    by_name = {n: k for k, n in plain.items()}
    for key, name in plain.items():
        match = _SHADOW.fullmatch(name)
        if not match:
            continue
        scope, moments, ema = match.group("scope", "moments", "ema")
        partner = f"{scope}/{moments}/Squeeze_1/{ema}"
        variance_key = by_name.get(partner)
        if variance_key is None:
            continue
        parts = scope.split("/")
        owner, found = None, {}
        for end in range(len(parts), 0, -1):
            prefix = "/".join(parts[:end])
            found = {leaf: by_name.get(f"{prefix}/{leaf}") for leaf in ("gamma", "beat", "beta")}
            if any(found.values()):
                owner = prefix
                break
        notes = []
        if owner is None:
            owner = _undouble(scope)
            found = {"gamma": None, "beat": None, "beta": None}
        keys = {"gamma": found["gamma"], "beta": found["beat"] or found["beta"],
                "moving_mean": key, "moving_variance": variance_key}
        if found["beat"] and found["beta"]:
            notes.append(f"both {owner}/beat and {owner}/beta exist: used beat (the article's)")
        layers.append(_layer(owner, "article", keys, variables, notes))
    return layers


def _standard_layers(plain, variables):
    layers = []
    by_name = {n: k for k, n in plain.items()}
    for key, name in plain.items():
        match = _STANDARD.fullmatch(name)
        if not match or f"{match.group('scope')}/moving_variance" not in by_name:
            continue
        scope = match.group("scope")
        keys = {"gamma": by_name.get(f"{scope}/gamma"), "beta": by_name.get(f"{scope}/beta"),
                "moving_mean": key, "moving_variance": by_name[f"{scope}/moving_variance"]}
        naming = "slim" if scope.split("/")[-1] == "BatchNorm" else "keras"
        layers.append(_layer(scope, naming, keys, variables, []))
    return layers


def layers_from_names(variables):
    """BN layers in a checkpoint, from names (and shapes) only.

    Args:
      variables: ``{checkpoint key: shape}`` (``tf.train.load_checkpoint(p)
        .get_variable_to_shape_map()``); a shape may be None when unknown.

    Returns:
      A list, sorted by name, of dicts: ``name`` (the layer's scope, e.g. ``bn``,
      ``block1/batch_normalization``, ``conv1/BatchNorm``), ``naming`` ("article" |
      "keras" | "slim"), ``gamma``, ``beta``, ``moving_mean``, ``moving_variance`` (the
      checkpoint keys; gamma/beta None when absent), ``shapes`` ({role: list of ints or
      None} for the roles present) and ``notes`` (list of str).
    """
    if not isinstance(variables, dict):
        raise TypeError(f"layers_from_names: variables must be a dict {{name: shape}}, got "
                        f"{type(variables).__name__}")
    plain = {k: p for k, p in ((k, _plain(k)) for k in variables) if p is not None}
    layers = _article_layers(plain, variables) + _standard_layers(plain, variables)
    return sorted(layers, key=lambda layer: layer["name"])


def channels(shape):
    """C for a per-channel shape: ``(C,)`` or one that broadcasts to one axis (``(1, C)``,
    ``(1, 1, 1, C)``, ``(1, C, 1, 1)``: size C, every other dimension 1); None otherwise."""
    dims = [int(d) for d in shape]
    if not dims:
        return None
    if len(dims) == 1:
        return dims[0]
    return max(dims) if sum(d != 1 for d in dims) <= 1 else None


def channel_axis(shape):
    """The axis a per-channel shape broadcasts along as written: the index of its non-1
    dimension (``(1, C, 1, 1)`` -> 1), or -1 for ``(C,)``, a last-axis one and an all-1 one."""
    dims = [int(d) for d in shape]
    axes = [i for i, d in enumerate(dims) if d != 1]
    return -1 if len(dims) < 2 or not axes or axes[0] == len(dims) - 1 else axes[0]


def shape_problem(layer):
    """None if the layer's variables are per channel with one C, else one sentence saying which
    is not. Per channel: ``(C,)`` or a shape broadcasting to one axis (``(1, C)``,
    ``(1, 1, 1, C)``, ``(1, C, 1, 1)``), the roles' shapes alike up to those 1s."""
    shapes = layer["shapes"]
    reference_role = "gamma" if shapes.get("gamma") else "moving_mean"
    reference = shapes.get(reference_role)
    if reference is None:
        return None
    size = channels(reference)
    if size is None:
        return (f"layer {layer['name']}: {reference_role} must be per channel, (C,) or C with "
                f"every other dimension 1 such as (1, C) or (1, C, 1, 1), got shape "
                f"{tuple(reference)} ({layer[reference_role]})")
    for role in ROLES:
        shape = shapes.get(role)
        if shape is not None and (channels(shape) != size or
                                  (len(shape) == len(reference) and shape != reference)):
            return (f"layer {layer['name']}: {role} must have the shape of {reference_role} "
                    f"{tuple(reference)}, got {tuple(shape)} ({layer[role]})")
    return None
