"""Distribution-free statistics over run values: the one-sided Mann-Whitney U test, the
Hodges-Lehmann shift and its confidence interval, and the spread of identical runs."""
from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Sequence

import numpy as np


EXACT_MAX_N = 50  # exact U distribution up to this many runs per side (without ties)


def _ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks with ties averaged, and the size of each group of ties."""
    order = np.argsort(values, kind="mergesort")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    return ranks, counts


@functools.cache
def _u_distribution(n: int, m: int) -> np.ndarray:
    """How many of the C(n+m, n) orderings of two untied samples give each U = 0..n*m."""
    # f(i, j)[u] = f(i-1, j)[u-j] + f(i, j-1)[u]; floats, as the counts outgrow int64.
    row = [np.ones(1) for _ in range(m + 1)]  # i = 0: one ordering, U = 0
    for i in range(1, n + 1):
        new = [np.ones(1)]  # j = 0
        for j in range(1, m + 1):
            dist = np.zeros(i * j + 1)
            dist[j:j + len(row[j])] += row[j]
            dist[:len(new[j - 1])] += new[j - 1]
            new.append(dist)
        row = new
    return row[m]


def mann_whitney_p(worse: Sequence[float], better: Sequence[float]) -> float:
    """One-sided p-value of the Mann-Whitney U test that ``worse`` tends to be larger
    than ``better``: exact for small samples without ties, else the normal
    approximation with tie and continuity corrections."""
    x, y = np.asarray(worse, dtype=float), np.asarray(better, dtype=float)
    n, m = len(x), len(y)
    ranks, ties = _ranks(np.concatenate([x, y]))
    u = float(ranks[:n].sum() - n * (n + 1) / 2.0)  # pairs with x > y, ties counting half
    if (ties == 1).all() and max(n, m) <= EXACT_MAX_N:
        dist = _u_distribution(n, m)
        return float(dist[int(round(u)):].sum() / dist.sum())
    total = n + m
    variance = n * m / 12.0 * ((total + 1) - float((ties**3 - ties).sum()) / (total * (total - 1)))
    if variance <= 0:  # every value equal
        return 1.0
    z = (u - n * m / 2.0 - 0.5) / math.sqrt(variance)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def min_p_value(n: int, m: int) -> float:
    """The smallest one-sided p-value the exact test can give for n vs m untied runs."""
    return 1.0 / math.comb(n + m, n)


def hodges_lehmann(after: Sequence[float], before: Sequence[float]) -> float:
    """The shift from ``before`` to ``after``: the median of every difference a - b."""
    return float(np.median(np.subtract.outer(np.asarray(after, float), np.asarray(before, float))))


def shift_interval(after: Sequence[float], before: Sequence[float], alpha: float) -> tuple[float, float, float] | None:
    """The distribution-free confidence interval of the shift (Moses; it inverts the
    Mann-Whitney test): ``(low, high, confidence)`` from the sorted differences, with
    ``alpha`` or less on each side; None when the runs are too few for any."""
    n, m = len(after), len(before)
    diffs = np.sort(np.subtract.outer(np.asarray(after, float), np.asarray(before, float)).ravel())
    if max(n, m) <= EXACT_MAX_N:
        dist = _u_distribution(n, m)
        tail = np.cumsum(dist) / dist.sum()  # P(U <= u)
        below = int(np.count_nonzero(tail <= alpha))  # k: P(U <= k - 1) <= alpha
        tail_p = float(tail[below - 1]) if below else 0.0
    else:
        z = statistics.NormalDist().inv_cdf(1.0 - alpha)
        below = int(math.floor(n * m / 2.0 - z * math.sqrt(n * m * (n + m + 1) / 12.0)))
        tail_p = alpha
    if below < 1:
        return None
    return float(diffs[below - 1]), float(diffs[n * m - below]), 1.0 - 2.0 * tail_p


def spread(values: Sequence[float]) -> float | None:
    """(max - min) / median of one side's run values: how much identical runs differ."""
    middle = float(np.median(values))
    return None if len(values) < 2 or middle == 0 else (max(values) - min(values)) / abs(middle)


def relative_change(base: float, value: float) -> float:
    if base == 0:
        return 0.0 if value == 0 else math.copysign(math.inf, value)
    return (value - base) / abs(base)
