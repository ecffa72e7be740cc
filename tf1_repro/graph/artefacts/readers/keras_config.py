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
