"""``mode-placeholder-without-default`` (info): a bool training ``Placeholder`` every caller must
feed."""

from tf1_repro.tools.doctor.base import INFO, Check, register


@register
class ModePlaceholderWithoutDefault(Check):
    """Rule: a mode input the finder found with role ``training`` is a plain ``Placeholder`` (no
    default), so every caller, prediction included, must feed it."""

    id = "mode-placeholder-without-default"
    severity = INFO
    fix = "tf.placeholder_with_default(False, [], name='training'), so callers need not feed it"

    def graph(self, ctx):
        for mode in ctx.mode_inputs:
            if mode.role == "training" and mode.op == "Placeholder":
                yield self.finding(mode.name, f"bool placeholder {mode.name} has no default: every "
                                   "caller must feed it")
