"""Reading a Keras model config (JSON) without Keras: the objects it names, the safe-mode rule,
and the BatchNormalization layers' settings.

The rule (Keras 3's ``safe_mode``, applied to tf-keras ``.h5`` files too, where tf-keras has
none): a ``Lambda`` layer (or a ``__lambda__`` function) holds Python code that loading would
run, and a class from outside Keras needs the user's Python code: either is refused before
anything is loaded, in one line naming the layer and its class. Keras 3 configs say where each
class lives (``module``: built-ins are ``keras`` or ``keras.*`` with no ``registered_name`` of
another package); tf-keras configs give class names only, so the child process also checks
each name against the Keras it loads with before loading (``child._check_classes``).
"""

LAMBDAS = ("Lambda", "__lambda__")
BN_CLASSES = ("BatchNormalization", "SyncBatchNormalization")
DROPOUT_CLASSES = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
                   "AlphaDropout")
METADATA = "keras_metadata.pb"  # what tf-keras writes beside a SavedModel's saved_model.pb
HINT = ("load it with your own code and save weights (model.save_weights), then rebuild the "
        "model in code and load them")


def object_specs(config):
    """Every ``{"class_name": ..., ...}`` object spec in ``config``, depth first, outermost first."""
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("class_name"), str):
                yield item
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list):
            stack.extend(reversed(item))


def spec_name(spec):
    config = spec.get("config")
    return (config.get("name") if isinstance(config, dict) else None) or spec.get("name") or "?"


def is_data(class_name):
    """Keras 3's containers for plain data (``__tuple__``, ``__numpy__``...), not classes."""
    return class_name.startswith("__") and class_name.endswith("__") and class_name not in LAMBDAS


def lambda_message(name, cls):
    return (f"layer {name!r} is a {cls}, whose Python code loading would run: refusing to load "
            f"it ({HINT})")


def custom_message(name, cls, module=None):
    where = f" from {module}" if module else ""
    return (f"layer {name!r} has class {cls}{where}, not one of Keras's built-in classes: loading "
            f"it would need its Python code; refusing ({HINT})")


def refusal(config):
    """The one-line reason to refuse ``config`` (without the file name), else None."""
    for spec in object_specs(config):
        cls, module = spec["class_name"], spec.get("module")
        if cls in LAMBDAS:
            return lambda_message(spec_name(spec), cls)
        if is_data(cls):
            continue
        registered = spec.get("registered_name")
        builtin_module = module is None or module == "keras" or module.startswith("keras.")
        if not builtin_module or ">" in cls or (registered and ">" in registered):
            return custom_message(spec_name(spec), cls, module)
    return None


def bn_layers(config):
    """``[{name, class_name, momentum, epsilon, axis, center, scale}]`` of the BN layers."""
    out = []
    for spec in object_specs(config):
        if spec["class_name"] in BN_CLASSES and isinstance(spec.get("config"), dict):
            c = spec["config"]
            out.append({"name": c.get("name"), "class_name": spec["class_name"],
                        "momentum": c.get("momentum"), "epsilon": c.get("epsilon"),
                        "axis": c.get("axis"), "center": c.get("center"), "scale": c.get("scale")})
    return out


def layer_specs(config):
    """``[{name, class_name, config}]`` of the BatchNormalization and Dropout layers in a config
    (or a list of configs), each name once, in the config's order."""
    out, seen = [], set()
    for spec in object_specs(config):
        c = spec.get("config")
        if spec["class_name"] in BN_CLASSES + DROPOUT_CLASSES and isinstance(c, dict):
            name = spec_name(spec)
            if name not in seen:
                seen.add(name)
                out.append({"name": name, "class_name": spec["class_name"], "config": c})
    return out


def saved_model_layer_specs(directory):
    """``layer_specs`` of a tf-keras SavedModel's ``keras_metadata.pb`` (each object's metadata
    JSON, read from the protobuf's wire format: no Keras), or None when there is none or it
    cannot be read."""
    import json  # pylint: disable=import-outside-toplevel
    import os  # pylint: disable=import-outside-toplevel
    path = os.path.join(directory, METADATA)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
        configs = []
        for field, node in _fields(data):  # SavedMetadata.nodes = 1
            if field != 1:
                continue
            for inner, value in _fields(node):  # SavedObject.metadata = 5 (JSON)
                if inner == 5:
                    meta = json.loads(value.decode("utf-8"))
                    if isinstance(meta, dict) and isinstance(meta.get("class_name"), str):
                        configs.append({"class_name": meta["class_name"],
                                        "config": meta.get("config")})
    except (ValueError, UnicodeDecodeError, IndexError):
        return None
    return layer_specs(configs)


def _varint(data, i):
    value, shift = 0, 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data):
    """``(field number, bytes)`` of a protobuf message's length-delimited fields (others
    skipped); ValueError on a malformed message."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(data, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        elif wire == 2:
            n, i = _varint(data, i)
            if i + n > len(data):
                raise ValueError("truncated field")
            yield key >> 3, data[i:i + n]
            i += n
        else:
            raise ValueError(f"wire type {wire}")
