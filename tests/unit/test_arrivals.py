import itertools

import numpy as np
import pytest

from bench.flow import arrivals
from bench.flow.arrivals import ARRIVALS, constant, poisson, schedule


def take(iterator, n):
    return list(itertools.islice(iterator, n))


def test_constant_gaps_are_exact():
    assert take(constant(1000), 5) == [0.001] * 5
    assert take(constant(50), 3) == [0.02] * 3


def test_poisson_mean_and_coefficient_of_variation():
    gaps = np.array(take(poisson(1000, np.random.default_rng(42)), 100_000))
    assert gaps.mean() == pytest.approx(0.001, rel=0.02)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.02)
    assert (gaps > 0).all()


def test_same_seed_same_schedule_and_different_seed_differs():
    assert take(schedule("poisson", 500, seed=7), 1000) == take(schedule("poisson", 500, seed=7), 1000)
    assert take(schedule("poisson", 500, seed=7), 10) != take(schedule("poisson", 500, seed=8), 10)


def test_schedule_is_cumulative_from_zero():
    offsets = take(schedule("constant", 4, seed=1), 5)
    assert offsets == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    poisson_offsets = take(schedule("poisson", 100, seed=1), 1000)
    assert poisson_offsets[0] == 0.0
    assert all(b > a for a, b in zip(poisson_offsets, poisson_offsets[1:]))


def test_registry_entries_share_one_signature():
    rng = np.random.default_rng(1)
    for kind, gaps_of in ARRIVALS.items():
        assert len(take(gaps_of(10.0, rng), 3)) == 3, kind


def test_bad_kind_and_rate_fail_at_the_call():
    with pytest.raises(ValueError, match="unknown arrival process 'burst'.*constant, poisson"):
        schedule("burst", 10, seed=1)
    with pytest.raises(ValueError, match="> 0"):
        poisson(0, np.random.default_rng(1))
    with pytest.raises(ValueError, match="> 0"):
        constant(-1)


def test_fits_a_simpy_process():
    simpy = pytest.importorskip("simpy")
    env = simpy.Environment()
    starts = []

    def generator(env):
        for gap in constant(10):
            yield env.timeout(gap)
            starts.append(env.now)

    env.process(generator(env))
    env.run(until=1.05)
    assert starts == pytest.approx([0.1 * i for i in range(1, 11)])


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_split_the_one_schedule_at_random(workers):
    """Together the workers start exactly the one generator's orders, each with its number and its
    intended time; each share of a Poisson schedule is Poisson at rate / workers."""
    whole = list(itertools.islice(arrivals.schedule("poisson", 1000.0, 7), 60_000))
    shares = [list(itertools.islice(arrivals.share(arrivals.schedule("poisson", 1000.0, 7), 7, k, workers),
                                    60_000 // workers - 2_000)) for k in range(workers)]
    cut = min(share[-1][0] for share in shares)
    union = sorted(pair for share in shares for pair in share if pair[0] <= cut)
    assert union == [(seq, offset) for seq, offset in enumerate(whole, 1) if seq <= cut]
    for share in shares:
        gaps = np.diff([offset for _, offset in share])
        assert gaps.mean() == pytest.approx(workers / 1000.0, rel=0.05)
        assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.05)  # exponential gaps: a Poisson process


def test_one_worker_is_the_one_schedule():
    share = arrivals.share(arrivals.schedule("constant", 10.0, 1), 1, 0, 1)
    assert list(itertools.islice(share, 3)) == [(1, 0.0), (2, 0.1), (3, pytest.approx(0.2))]


def test_a_worker_tells_its_orders_by_number_as_the_split_did():
    """The terminal-event filter (one number at a time) and the split (numpy blocks) agree."""
    seqs = np.arange(1, 30_001, dtype=np.uint64)
    for seed, workers in ((0, 2), (7, 3), (2**63, 5)):
        assert arrivals._owners(seqs, seed, workers).tolist() == [arrivals.owner(int(q), seed, workers) for q in seqs]
