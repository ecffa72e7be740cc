"""What every stage of ``recalibrate`` shares: its constants, its error, tensor look-ups."""

from tf1_repro.graph.errors import InputError

WHERE = "recalibrate"
UNIT_ROUNDOFF = 2.0 ** -24
CHECK_ULPS = 64
DEFAULT_BATCH = 256
SCOPE = "tf1_repro_recalibrate"


class RecalibrateError(InputError):
    """Refused input or an impossible recalibration: one line (exit status 2); nothing written."""


def has_op(graph, name):
    """Whether ``graph`` holds an op named ``name``."""
    try:
        graph.get_operation_by_name(name)
        return True
    except (KeyError, ValueError):
        return False


def tensor_named(graph, name, what):
    """The tensor ``name`` (``:0`` when no output is given); RecalibrateError naming ``what``."""
    name = name if ":" in name else name + ":0"
    try:
        return graph.get_tensor_by_name(name)
    except (KeyError, ValueError):
        raise RecalibrateError(f"{WHERE}: {what} must name a tensor in the graph, got {name!r}") from None
