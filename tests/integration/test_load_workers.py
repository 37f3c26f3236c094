"""Load from several worker processes on the real broker: one schedule split between them, one
merged measurement, and the audit of one run."""
from __future__ import annotations

import itertools
import subprocess

import pytest

from bench import patterns
from bench.flow import arrivals
from bench.flow.workload import load_workload
from bench.results.recording import iter_hlog, merged
from bench.run.run import RunRequest, run

pytestmark = pytest.mark.broker


@pytest.mark.parametrize("pattern", ["choreography", "orchestration"])
def test_two_workers_start_the_one_schedule_and_their_histograms_add_up(bootstrap_servers, tmp_path, pattern):
    workload = load_workload().with_overrides(rate_per_s=300.0, duration_s=4.0, warmup_s=1.0, drain_s=20.0,
                                              load_workers=2)
    out = tmp_path / "result"
    outcome = run(RunRequest(patterns.get(pattern), workload, bootstrap_servers, None, out), echo=lambda line: None)
    s = outcome.summary
    assert outcome.exit_code == 0, (s["invalid_reason"], s["orders"])
    orders = s["orders"]
    # Exactly the orders one generator would start: the schedule's, up to the end of the load.
    load_s = workload.warmup_s + workload.duration_s
    scheduled = sum(1 for _ in itertools.takewhile(lambda t: t < load_s, arrivals.schedule(
        workload.arrival, workload.rate_per_s, workload.seed)))
    assert orders["started"] == scheduled
    assert orders["lost"] == orders["stuck"] == orders["duplicates"] == orders["inconsistent"] == 0
    assert s["audit"]["clean"] and s["valid"]
    # Each worker started its share and timed only its own orders; the run's histograms are their sums.
    workers = s["load_workers"]
    assert len(workers) == 2 and all(w["orders"] > scheduled / 4 for w in workers)
    assert sum(w["orders"] for w in workers) == scheduled
    assert all(w["others_ignored"] > 0 for w in workers)  # the other's terminal events, never decoded
    e2e = merged(iter_hlog(out / "e2e.hlog"))
    assert e2e.get_total_count() == sum(w["e2e_count"] for w in workers) == s["latency_ms"]["e2e"]["count"] > 0
    assert s["cost"]["cpu_us_per_order"]["load_generator"]["main"] > 0  # the workers' CPU is the load's
    assert (out / "logs" / "load-worker-0.log").exists() and (out / "logs" / "load-worker-1.log").exists()
    left = subprocess.run(["pgrep", "-f", "bench.run.load_workers"], capture_output=True, text=True).stdout
    assert not left.strip()
