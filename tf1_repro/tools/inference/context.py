"""The typed values between the serving passes: what a pass reads (``PassContext``), what the
passes tell the conversion besides the graph (``PassState``) and what a pass returns
(``PassResult``)."""

import dataclasses
from typing import Any


@dataclasses.dataclass
class PassState:
    """What passes report besides the graph, shared by every context of one conversion.

    ``dropped_controls``: source node names of the control inputs a pass removed (fold_constants,
    strip_control_inputs): the update ops they ran at prediction are named in the report.
    ``bn_report``: one entry per BN layer, written by fold_batch_norms. ``fixed`` /
    ``not_fixed``: what ``--fix-training-mode``'s passes changed ({layer, what}) or could not
    ({layer, why}), layer by layer."""
    dropped_controls: list = dataclasses.field(default_factory=list)
    bn_report: list = dataclasses.field(default_factory=list)
    fixed: list = dataclasses.field(default_factory=list)
    not_fixed: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class PassContext:
    """What a pass may read. Passes never change it; the conversion makes one per stage with
    ``dataclasses.replace``.

    outputs / inputs: tensor names ("y:0"); feeds: {placeholder node name: prediction value}
    (bind_placeholders); dropouts: ((output node, input tensor), ...) to make identities
    (dropouts_to_identity); keep: node names fold_constants must leave as Consts of their own
    (BN outputs); protected: node names remove_identities keeps; bn_layers: the finder's
    ``BNLayer``s (fold_batch_norms); fold: fold BN into the linear op before it (False: keep
    x*s+o); session: the ``tf.Session`` holding the variables' values (freeze_variables);
    bn_fixes / dropout_fixes: ``training_mode.BNFix`` / ``DropoutFix`` (the fix stage)."""
    outputs: tuple = ()
    inputs: tuple = ()
    feeds: dict = dataclasses.field(default_factory=dict)
    dropouts: tuple = ()
    keep: tuple = ()
    protected: tuple = ()
    bn_layers: tuple = ()
    fold: bool = True
    session: Any = None
    bn_fixes: tuple = ()
    dropout_fixes: tuple = ()
    state: PassState = dataclasses.field(default_factory=PassState)


@dataclasses.dataclass
class PassResult:
    """A pass's new GraphDef and the names of the nodes it rewrote (each pass's docstring says
    which: removed, replaced or added); empty when it changed nothing."""
    graph_def: Any
    changed: list = dataclasses.field(default_factory=list)
