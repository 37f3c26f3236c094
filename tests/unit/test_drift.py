"""Drift: the first against the last tenth of the window, from four readings whatever the run's length."""
from bench.results.headline import describe_drift
from bench.run.drift import DriftSampler, Reading


def _sampler(cpu_at_end: float, rss_at_end: float) -> DriftSampler:
    # 10 s warm-up, 100 s window: readings at 10, 20, 100 and 110 s; 1000 orders/s.
    cpu = {10: 0.0, 20: 2.0, 100: 10.0, 110: 10.0 + cpu_at_end}
    rss = {10: 500.0, 20: 500.0, 100: 600.0, 110: rss_at_end}
    sampler = DriftSampler(10.0, 100.0, lambda t: Reading(t, cpu[t], int(t * 1000), rss[t], 100.0 + t))
    for t in range(0, 110):
        sampler.on_second(float(t))
    sampler.finish(110.0)
    return sampler


def test_four_readings_whatever_the_length_and_a_steady_run_changed_nothing():
    sampler = _sampler(cpu_at_end=2.0, rss_at_end=600.0)
    assert [r.t_s for r in sampler.readings] == [10.0, 20.0, 100.0, 110.0]
    drift = sampler.summary({"p50": 5.0, "p99": 20.0}, {"p50": 6.0, "p99": 30.0})
    assert drift["first_tenth"]["cpu_us_per_order"] == drift["last_tenth"]["cpu_us_per_order"] == 200.0
    assert drift["first_tenth"]["started_per_s"] == 1000.0 and drift["last_tenth"]["broker_disk_mb"] == 210.0
    assert drift["changed"] == [] and describe_drift(drift) is None


def test_a_doubled_p99_and_a_dearer_order_are_named():
    drift = _sampler(cpu_at_end=3.0, rss_at_end=600.0).summary({"p50": 5.0, "p99": 20.0}, {"p50": 5.0, "p99": 45.0})
    assert drift["changed"] == ["e2e_p99_ms", "cpu_us_per_order"]
    line = describe_drift(drift)
    assert "e2e_p99_ms 20 -> 45" in line and "cpu_us_per_order 200 -> 300" in line


def test_a_run_that_ended_before_its_window_did_has_no_drift():
    sampler = DriftSampler(10.0, 100.0, lambda t: Reading(t, 0.0, 0, None, None))
    for t in range(0, 50):
        sampler.on_second(float(t))
    sampler.finish(50.0)  # interrupted
    assert sampler.summary({}, {}) is None


def test_a_reading_that_fails_leaves_the_run_without_drift_not_broken():
    def read(t: float) -> Reading:
        if t >= 100:
            raise FileNotFoundError("a segment directory Kafka deleted meanwhile")
        return Reading(t, 0.0, 0, None, None)

    sampler = DriftSampler(10.0, 100.0, read)
    for t in range(0, 110):
        sampler.on_second(float(t))
    sampler.finish(110.0)
    assert sampler.summary({}, {}) is None
