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


# --- one schedule over several load workers ---------------------------------------------------

_M64 = (1 << 64) - 1


def owner(seq: int, seed: int, workers: int) -> int:
    """Which of ``workers`` load workers starts order ``seq`` (1, 2, ... in the run's one schedule).

    A hash of the order's number (splitmix64's finaliser), not its arrival time: each order goes to
    a worker independently of when it is due, so a Poisson schedule split this way is Poisson in
    every share, and a worker tells its own orders' terminal events from its key alone."""
    z = (seq + (seed + 1) * 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return (z ^ (z >> 31)) % workers


def _owners(seqs: np.ndarray, seed: int, workers: int) -> np.ndarray:
    """:func:`owner` of each of ``seqs`` (uint64), in numpy (whose uint64 arithmetic wraps as the hash needs)."""
    z = seqs + np.uint64(((seed + 1) * 0x9E3779B97F4A7C15) & _M64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return (z ^ (z >> np.uint64(31))) % np.uint64(workers)


def share(offsets: Iterator[float], seed: int, worker: int, workers: int) -> Iterator[tuple[int, float]]:
    """``(seq, offset)`` of the orders worker ``worker`` of ``workers`` starts, numbered in the one
    schedule ``offsets`` (from 1): together the workers start exactly the one generator's orders,
    each at its own intended time and with its own number. Each worker walks the whole schedule,
    in numpy blocks, so finding its share costs well under a microsecond per order."""
    if workers == 1:
        return enumerate(offsets, 1)
    return _share(offsets, seed, worker, workers)


def _share(offsets: Iterator[float], seed: int, worker: int, workers: int) -> Iterator[tuple[int, float]]:
    first = 1
    while True:
        block = np.fromiter(itertools.islice(offsets, _BLOCK), dtype=np.float64, count=_BLOCK)
        seqs = np.arange(first, first + _BLOCK, dtype=np.uint64)
        mine = _owners(seqs, seed, workers) == worker
        yield from zip(seqs[mine].tolist(), block[mine].tolist())
        first += _BLOCK
