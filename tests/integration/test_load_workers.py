"""Load from several worker processes on the real broker: one schedule split between them, one
merged measurement, and the audit of one run."""
from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time

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


def test_a_load_worker_that_dies_ends_the_run_with_one_line_and_nothing_left(bootstrap_servers, tmp_path):
    workload = tmp_path / "w.yaml"
    workload.write_text("name: lw\nrate: 200\nduration: 60s\nwarmup: 1s\nload_workers: 2\n")
    run_ = subprocess.Popen([sys.executable, "-m", "bench", "run", "--pattern", "choreography", "--workload",
                             str(workload), "--bootstrap-servers", bootstrap_servers, "--output",
                             str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-P", str(run_.pid), "-f", "bench.run.load_workers --worker 1/2"],
                               capture_output=True, text=True).stdout.split()
        if found and (tmp_path / "out" / "timeseries.csv").exists():
            time.sleep(3.0)  # well into the load
            victim = int(found[0])
        time.sleep(0.2)
    assert victim is not None, "no load worker started"
    children = subprocess.run(["pgrep", "-P", str(run_.pid)], capture_output=True, text=True).stdout.split()
    os.kill(victim, signal.SIGKILL)
    stdout, stderr = run_.communicate(timeout=120)
    assert run_.returncode == 1, (stdout[-500:], stderr)
    errors = [line for line in stderr.splitlines() if line.startswith("bench: error")]
    assert len(errors) == 1 and "load worker exited before the load ended" in errors[0], stderr
    assert stderr.rstrip().endswith(errors[0])
    assert "Traceback" not in stderr
    assert len(children) >= 6  # the services, the live audit and both workers
    for pid in map(int, children):
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


def test_an_interrupted_run_counts_exactly_the_orders_its_workers_started(bootstrap_servers, tmp_path):
    """Ctrl-C: the workers stop at one point of the schedule, so the orders started are a prefix of
    it: none lost, none unknown to the audit, the run's count the workers' sum."""
    workload = tmp_path / "w.yaml"
    workload.write_text("name: lw\nrate: 400\nduration: 60s\nwarmup: 1s\nload_workers: 2\n")
    out = tmp_path / "out"
    run_ = subprocess.Popen([sys.executable, "-m", "bench", "run", "--pattern", "choreography", "--workload",
                             str(workload), "--bootstrap-servers", bootstrap_servers, "--output", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "timeseries.csv").exists():
        time.sleep(0.2)
    time.sleep(4.0)
    run_.send_signal(signal.SIGINT)
    stdout, stderr = run_.communicate(timeout=120)
    assert "Traceback" not in stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["interrupted"] is True
    orders = s["orders"]
    assert orders["started"] == sum(w["orders"] for w in s["load_workers"]) > 400
    assert orders["lost"] == orders["unknown_orders"] == orders["stuck"] == 0 and s["audit"]["clean"]
