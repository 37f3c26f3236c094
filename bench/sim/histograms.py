"""HdrHistograms filled from numpy arrays at once.

A simulation records millions of latencies; recording them one at a time with
hdrh costs microseconds each. Here the counts index of every value is computed
as hdrh's ``_counts_index_for`` does, vectorised, and the counts are added in one
``bincount``. The histograms are :func:`bench.results.recording.new_histogram`'s, so
they encode, merge and summarise like the real run's.
"""
from __future__ import annotations

import numpy as np
from hdrh.histogram import HdrHistogram

from bench.results.recording import HIGHEST_US, new_histogram


def counts_index(histogram: HdrHistogram, values_us: np.ndarray) -> np.ndarray:
    """hdrh's counts index of each (integer, in-range) value."""
    values = values_us.astype(np.int64)
    # bit length of (value | sub_bucket_mask); exact in float64 for values below 2**53.
    bit_length = np.frexp((values | histogram.sub_bucket_mask).astype(np.float64))[1].astype(np.int64)
    bucket = bit_length - histogram.unit_magnitude - (histogram.sub_bucket_half_count_magnitude + 1)
    sub_bucket = values >> (bucket + histogram.unit_magnitude)
    return ((bucket + 1) << histogram.sub_bucket_half_count_magnitude) + sub_bucket - histogram.sub_bucket_half_count


def histogram_of(values_us: np.ndarray) -> HdrHistogram:
    """A histogram of ``values_us`` (microseconds, rounded; out-of-range values at the nearest bound,
    as :class:`bench.results.recording.IntervalRecorder` keeps them)."""
    histogram = new_histogram()
    if len(values_us) == 0:
        return histogram
    values = np.clip(np.rint(values_us), 0, HIGHEST_US).astype(np.int64)
    index = counts_index(histogram, values)
    counts = np.ctypeslib.as_array(histogram.counts)
    counts += np.bincount(index, minlength=histogram.counts_len)[: histogram.counts_len].astype(counts.dtype)
    histogram.total_count = int(len(values))
    histogram.min_value = int(values.min())
    histogram.max_value = int(values.max())
    return histogram


def per_second(ends_s: np.ndarray, values_us: np.ndarray, seconds: int | None = None) -> list[HdrHistogram]:
    """One histogram per second ``[k, k+1)`` of ``ends_s``, k = 0 .. ``seconds`` - 1
    (default: up to the last value)."""
    if seconds is None:
        seconds = int(ends_s.max()) + 1 if len(ends_s) else 0
    which = np.floor(ends_s).astype(np.int64)
    order = np.argsort(which, kind="stable")
    which, values_us = which[order], values_us[order]
    bounds = np.searchsorted(which, np.arange(seconds + 1))
    return [histogram_of(values_us[bounds[k]:bounds[k + 1]]) for k in range(seconds)]
