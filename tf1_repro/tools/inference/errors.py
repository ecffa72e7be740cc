"""The to-inference error: bad input, one line (the command line exits 2 with it)."""

from tf1_repro.graph.errors import InputError


class InferenceError(InputError):
    """Bad input to ``to_inference`` (one line; the CLI exits 2 with it)."""
