"""Open-loop arrival processes: when orders *should* start, regardless of the system.

Each process is an infinite iterator of inter-arrival gaps in seconds, so it fits
both the real load generator and a SimPy process::

    for gap in poisson(rate_per_s, rng):
        yield env.timeout(gap)
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np

# Drawing one exponential at a time costs ~1 us of numpy call overhead per order;
# blocks make it negligible without changing the sequence a seed produces.
_BLOCK = 4096


def _check_rate(rate_per_s: float) -> None:
    if not rate_per_s > 0:
        raise ValueError(f"arrival rate must be > 0 orders/s, got {rate_per_s!r}")


def constant(rate_per_s: float, rng: np.random.Generator | None = None) -> Iterator[float]:
    """Evenly spaced gaps of exactly ``1 / rate_per_s`` seconds. ``rng`` is unused;
    it is accepted so every entry of :data:`ARRIVALS` has the same signature."""
    _check_rate(rate_per_s)
    return itertools.repeat(1.0 / rate_per_s)


def poisson(rate_per_s: float, rng: np.random.Generator) -> Iterator[float]:
    """Exponentially distributed gaps with mean ``1 / rate_per_s`` seconds (a Poisson process)."""
    _check_rate(rate_per_s)  # here, not in the generator, so a bad rate fails at the call
    return _exponential_gaps(1.0 / rate_per_s, rng)


def _exponential_gaps(mean_gap_s: float, rng: np.random.Generator) -> Iterator[float]:
    while True:
        yield from rng.exponential(mean_gap_s, _BLOCK).tolist()


ARRIVALS: dict[str, Callable[[float, np.random.Generator], Iterator[float]]] = {
    "constant": constant,
    "poisson": poisson,
}


def schedule(kind: str, rate_per_s: float, seed: int) -> Iterator[float]:
    """Intended start offsets in seconds from the start of load: 0.0, then cumulative gaps.

    The same ``(kind, rate_per_s, seed)`` always gives the same schedule.
    """
    try:
        gaps_of = ARRIVALS[kind]
    except KeyError:
        raise ValueError(f"unknown arrival process {kind!r} (known: {', '.join(ARRIVALS)})") from None
    gaps = gaps_of(rate_per_s, np.random.default_rng(seed))
    return itertools.accumulate(gaps, initial=0.0)
