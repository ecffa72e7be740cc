"""Streaming per-channel moments: count, mean and M2 merged by Chan et al.'s parallel rule."""

import numpy as np


class ChannelMoments:
    """Exact per-channel count, mean and M2 (sum of squared deviations) merged by Chan's rule.

    Memory is O(channels) whatever the number of values merged.
    """

    def __init__(self, channels):
        self.count = 0
        self.mean = np.zeros(channels, np.float64)
        self.m2 = np.zeros(channels, np.float64)
        self.absmax = np.zeros(channels, np.float64)

    def merge(self, count, mean, m2, absmax=None):
        """Merge a batch summarised by ``count`` values per channel, its mean and its M2."""
        count = int(count)
        if count == 0:
            return
        total = self.count + count
        delta = np.asarray(mean, np.float64) - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + np.asarray(m2, np.float64) + delta ** 2 * (self.count * count / total)
        self.count = total
        if absmax is not None:
            self.absmax = np.maximum(self.absmax, absmax)

    def add(self, values, axis=-1):
        """Merge a NumPy batch whose channel axis is ``axis`` (two-pass moments in float64)."""
        values = np.moveaxis(np.asarray(values, np.float64), axis, -1)
        flat = values.reshape(-1, values.shape[-1])
        mean = flat.mean(0)
        self.merge(flat.shape[0], mean, ((flat - mean) ** 2).sum(0), np.abs(flat).max(0))

    @classmethod
    def pooled(cls, parts):
        """The moments of the union of the populations ``parts`` summarise (Chan's rule again)."""
        result = cls(len(parts[0].mean))
        for part in parts:
            result.merge(part.count, part.mean, part.m2, part.absmax)
        return result

    def variance(self, ddof=0):
        """``M2 / (count - ddof)``: ddof 0 the population (biased) variance, 1 Bessel-corrected."""
        if self.count - ddof <= 0:
            raise ValueError(f"ChannelMoments: need more than {ddof} values per channel, got {self.count}")
        return self.m2 / (self.count - ddof)
