"""``Norm``: one normalisation op as a BN pattern read it (the typed value the analyses take)."""

import dataclasses


@dataclasses.dataclass(frozen=True, eq=False)
class Norm:
    """One normalisation op.

    ``op`` is the op the pattern matched (the fused op, or the ``rsqrt``/``sqrt`` root); ``kind``
    the BNLayer kind it gives (``fused``, ``global_normalization``, ``batch_normalization``);
    ``x``/``y`` the tensor normalised and the result; ``eps`` the epsilon. ``scale``, ``offset``,
    ``mean``, ``var`` are the ``trace.Source`` tuples of gamma, beta and the statistics the op
    reads; ``batch`` whether it normalises with the batch's statistics; ``mean_batch`` /
    ``var_batch`` those batch sources (what EMA updates read). A fused op in training carries its
    ignored mean/variance inputs in ``mean_ignored``/``var_ignored`` and its
    ``exponential_avg_factor`` in ``fused_factor``; ``rescaled`` counts batch renormalisation's
    per-channel corrections; ``pattern`` is the registered pattern that matched."""

    op: object
    kind: str
    x: object
    y: object
    eps: float
    scale: tuple
    offset: tuple
    mean: tuple
    var: tuple
    batch: bool
    pattern: str
    mean_batch: tuple = ()
    var_batch: tuple = ()
    mean_ignored: tuple = ()
    var_ignored: tuple = ()
    fused_factor: float = 1.0
    rescaled: int = 0

    def batch_sources(self, key):
        """The batch sources of statistic ``key`` (``"mean"`` or ``"var"``)."""
        return self.mean_batch if key == "mean" else self.var_batch

    def sources(self, key):
        """The traced sources of ``key``: ``scale``, ``offset``, ``mean`` or ``var``."""
        return getattr(self, key)
