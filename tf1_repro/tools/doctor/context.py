"""What the checks read: ``Context`` (the artefact, its layers and dropouts, the finder's result,
the global step, the trainable variables) and ``ServingDefault`` (a mode input a serving client
leaves at its default)."""

import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass
class Context:
    """The artefact as the checks see it; built once by the report."""

    doc: object  # artefact.Artefact
    layers: list  # layers.Layer
    dropouts: list  # layers.Dropout
    result: Optional[object]  # the finder's Findings; None without a graph
    global_step: Optional[int]
    trainable: frozenset  # names in the trainable_variables collection

    @property
    def format(self):
        return self.doc.format

    @property
    def has_graph(self):
        """A graph the finder read (not a checkpoint's names, nor a TF2 signature not loaded)."""
        return self.doc.graph_def is not None and self.result is not None

    @property
    def mode_inputs(self):
        """The finder's mode inputs ([] without a graph)."""
        return list(self.result.mode_inputs) if self.result else []


@dataclasses.dataclass(frozen=True)
class ServingDefault:
    """A mode ``PlaceholderWithDefault`` a serving client leaves at its default (a SavedModel's
    outside its signature's inputs, any in a frozen graph) whose prediction value the finder
    knows: ``mode`` (the finder's ModeInput), ``where`` (the message's opening), ``dropouts`` (the
    names of the dropouts it drives) and ``bn_layers`` (those of the BN layers it switches)."""

    mode: object
    where: str
    dropouts: Tuple[str, ...]
    bn_layers: Tuple[str, ...]


def serving_defaults(ctx):
    """The ``ServingDefault``s of the artefact, in the finder's order of mode inputs. A keep_prob
    whose prediction value the finder cannot tell (a vanilla dropout's) and inputs in the
    signature are left out."""
    left = ctx.doc.serving_defaults()
    out = []
    for m in ctx.mode_inputs:
        if m.op != "PlaceholderWithDefault" or m.name not in left or m.default is None or \
                m.prediction_value is None:
            continue
        where = (f"{m.name} is placeholder_with_default({m.default!r}), "
                 + ("not among the signature's inputs" if ctx.format == "saved_model" else
                    "in a frozen graph") + ": every serving client that feeds only the inputs gets")
        users = tuple(d.name for d in ctx.dropouts if m.name in (
            (d.keep_prob or {}).get("name"), (d.mode or {}).get("name")))
        bn = tuple(layer.name for layer in ctx.layers if (layer.mode or {}).get("name") == m.name)
        out.append(ServingDefault(m, where, users, bn))
    return out
