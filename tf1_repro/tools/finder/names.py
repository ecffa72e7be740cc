"""Name rules of the finder: which ops are backprop's, and a layer's scope from its node names."""


def is_gradient(name):
    """An op ``tf.gradients`` made (scope ``gradients``, ``gradients_1``, ... at any depth)."""
    return any(part == "gradients" or (part.startswith("gradients_") and part[10:].isdigit())
               for part in name.split("/")[:-1])


def scope(name):
    """The scope of a node name (``a/b/c`` -> ``a/b``; ``""`` when unscoped)."""
    return name.rsplit("/", 1)[0] if "/" in name else ""


def common_scope(names):
    """The longest scope every name lies under (``""`` when none)."""
    parts = [n.split("/")[:-1] for n in names]
    if not parts:
        return ""
    prefix = []
    for items in zip(*parts):
        if all(i == items[0] for i in items):
            prefix.append(items[0])
        else:
            break
    return "/".join(prefix)
