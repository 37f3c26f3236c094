"""`bench run` end to end on the real broker: both patterns, the audit, the files, bad input, Ctrl-C."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from bench import patterns
from bench.cli import cli
from bench.run.run import RunRequest, run
from bench.flow.workload import load_workload

pytestmark = pytest.mark.broker
WORKLOADS = Path(__file__).parents[2] / "workloads"


def small_workload():
    # High failure rates so every compensation path runs in a few seconds.
    return load_workload(WORKLOADS / "default.yaml").with_overrides(
        rate_per_s=150.0, duration_s=4.0, warmup_s=1.0, drain_s=20.0,
        failures={"payment": 0.1, "inventory": 0.1, "shipping": 0.1})


@pytest.mark.parametrize("pattern", ["choreography", "orchestration"])
def test_every_order_finishes_with_compensations_and_a_clean_audit(bootstrap_servers, tmp_path, pattern):
    secret_config = tmp_path / "client.properties"
    secret_config.write_text("ssl.key.password=hunter2-do-not-leak\n")
    out = tmp_path / "result"
    outcome = run(RunRequest(patterns.get(pattern), small_workload(), bootstrap_servers, secret_config, out),
                  echo=lambda line: None)
    s = outcome.summary
    assert outcome.exit_code == 0, (s["invalid_reason"], s["orders"])
    orders = s["orders"]
    assert orders["lost"] == orders["stuck"] == orders["duplicates"] == orders["inconsistent"] == 0
    assert orders["completed"] + orders["cancelled"] == orders["started"] > 500
    assert s["audit"]["compensations"]["payment"] > 0 and s["audit"]["compensations"]["inventory"] > 0
    assert s["audit"]["clean"] and s["valid"]
    assert s["messages_per_order"] > (8 if pattern == "orchestration" else 4)
    assert set(s["latency_ms"]["steps"]) >= {"payment", "inventory", "shipping", "refund", "release"}

    # What the run cost: every process's CPU per order, split by thread, and how each client batched.
    cost = s["cost"]
    assert cost["orders"] == orders["started"]
    roles = set(patterns.get(pattern).topology(small_workload().saga).roles)
    assert set(cost["cpu_us_per_order"]) == roles | {"load_generator", "auditor", "harness", "broker", "total"}
    # The audit followed the topics during the load, in its own process, and its CPU is part of the cost.
    assert cost["cpu_us_per_order"]["auditor"]["main"] > 0 and s["cpu_s"]["auditor"] > 0
    assert cost["switches_per_s"]["auditor"] > 0  # its library threads may use less than a clock tick here
    assert s["audit"]["read_to_end"] is True and s["audit"]["late_events"] == 0
    assert json.loads((out / "audit.json").read_text())["audit"]["orders_started"] == orders["started"]
    for name in roles | {"load_generator"}:
        assert cost["cpu_us_per_order"][name]["main"] > 0 and cost["cpu_us_per_order"][name]["library"] > 0, name
        assert cost["switches_per_s"][name] > 0, name
        # Its main thread's wait for a core, from the kernel (schedstat): put on a core many times.
        assert cost["wait_for_core_us"][name]["per_run"] is not None and cost["wait_for_core_us"][name]["per_run"] >= 0, name
        assert cost["batching"][name]["messages_per_produce_request"] >= 1.0, name
        assert cost["batching"][name]["messages_per_fetch"] > 0, name
    assert s["services"][next(iter(roles))]["produce_requests"] > 0

    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["schema_version"] == 1 and on_disk["pattern"] == pattern
    for path in out.rglob("*"):
        if path.is_file():
            assert "hunter2" not in path.read_text(errors="replace"), path

    # The interval log reads back with HdrHistogram's own reader and holds every measured order.
    reader = HistogramLogReader(str(out / "e2e.hlog"), HdrHistogram(1, 3_600_000_000, 3))
    intervals = []
    while (h := reader.get_next_interval_histogram()) is not None:
        intervals.append(h)
    assert len(intervals) >= 4
    assert sum(h.get_total_count() for h in intervals) == s["latency_ms"]["e2e"]["count"] > 0
    assert "#[Max" in (out / "e2e.hgrm").read_text()
    rows = (out / "timeseries.csv").read_text().splitlines()
    assert rows[0] == "t_s,offered,finished,in_flight,backlog,p99_ms" and len(rows) >= 5


def six_steps(failure: float):
    return load_workload(WORKLOADS / "saga-6-steps.yaml").with_overrides(
        rate_per_s=150.0, duration_s=4.0, warmup_s=1.0, drain_s=20.0,
        saga={"steps": [{"name": f"s{i}", "failure": failure} for i in range(1, 7)]})


@pytest.mark.parametrize("pattern", ["choreography", "orchestration"])
def test_a_six_step_saga_with_compensations_runs_with_a_clean_audit(bootstrap_servers, tmp_path, pattern):
    outcome = run(RunRequest(patterns.get(pattern), six_steps(0.05), bootstrap_servers, output=tmp_path / "r"),
                  echo=lambda line: None)
    s = outcome.summary
    assert outcome.exit_code == 0, (s["invalid_reason"], s["orders"], s["audit"]["inconsistent_by_rule"])
    assert s["clean"] and s["orders"]["cancelled"] > 0
    assert set(s["audit"]["compensations"]) == {f"s{i}" for i in range(1, 6)}  # s6 is the pivot
    assert all(s["audit"]["compensations"].values()), s["audit"]["compensations"]
    coordinator = "order" if pattern == "choreography" else "orchestrator"
    assert list(s["latency_ms"]["steps"]) == [coordinator, *(f"s{i}" for i in range(1, 7)),
                                              *(f"undo-s{i}" for i in range(1, 6))]


@pytest.mark.parametrize("pattern, per_order", [("choreography", 6 + 2), ("orchestration", 3 * 6 + 3)])
def test_messages_per_order_follow_the_step_count_on_the_happy_path(bootstrap_servers, tmp_path, pattern, per_order):
    outcome = run(RunRequest(patterns.get(pattern), six_steps(0.0), bootstrap_servers, output=tmp_path / "r"),
                  echo=lambda line: None)
    s = outcome.summary
    assert outcome.exit_code == 0 and s["orders"]["completed"] == s["orders"]["started"]
    assert s["messages_per_order"] == per_order


def test_malformed_workload_is_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nrat: 5\n")
    result = CliRunner().invoke(cli, ["run", "--pattern", "choreography", "--workload", str(bad)])
    assert result.exit_code == 2
    assert "unknown key 'rat'" in result.output and len(result.output.strip().splitlines()) == 1


def test_broker_down_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "never"
    result = CliRunner().invoke(cli, ["run", "--pattern", "orchestration", "--bootstrap-servers", "127.0.0.1:1",
                                      "--output", str(out)])
    assert result.exit_code == 1
    assert "cannot reach Kafka at 127.0.0.1:1" in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def _children_of(pid: int) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue
        if f"BENCH_PARENT_PID={pid}".encode() in environ.split(b"\0"):
            found.append(int(proc.name))
    return found


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_writes_partial_results_marked_interrupted_and_leaves_no_process(bootstrap_servers, tmp_path, sig):
    out = tmp_path / "interrupted"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--pattern", "choreography", "--rate", "100", "--duration", "60s",
         "--warmup", "1s", "--bootstrap-servers", bootstrap_servers, "--output", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not (out / "timeseries.csv").exists() or len((out / "timeseries.csv").read_text().splitlines()) < 4:
        assert time.monotonic() < deadline and proc.poll() is None, proc.stdout.read() if proc.poll() is not None else "no progress"
        time.sleep(0.2)
    children = _children_of(proc.pid)
    assert children, "the run's services were not found"
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=90)
    assert proc.returncode == 130, output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["valid"] is False
    assert summary["orders"]["started"] > 0
    time.sleep(0.5)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()
                and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]]


def test_a_paused_service_does_not_outlive_a_killed_harness(bootstrap_servers, tmp_path):
    """SIGKILL gives the harness no chance to SIGCONT a paused (SIGSTOPped) instance; the kernel
    does it for a stopped process whose process group the harness's death orphans."""
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--pattern", "choreography", "--rate", "50", "--duration", "60s",
         "--warmup", "1s", "--bootstrap-servers", bootstrap_servers, "--output", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (out / "timeseries.csv").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    children = _children_of(proc.pid)
    assert children
    import os
    os.kill(children[0], signal.SIGSTOP)
    # SIGSTOP lands asynchronously: the harness must die while the instance is stopped (state T),
    # or there is no stopped process for the kernel to wake and the test races its own signal.
    stop_deadline = time.monotonic() + 10
    while Path(f"/proc/{children[0]}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < stop_deadline, "the instance did not stop"
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    alive = children
    while alive and time.monotonic() < deadline:
        time.sleep(0.3)
        alive = [pid for pid in children if Path(f"/proc/{pid}").exists()
                 and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]]
    assert not alive, "service processes outlived the harness"


def test_repeat_writes_a_series_that_compare_judges_and_the_summary_is_the_simulations(bootstrap_servers, tmp_path):
    from bench.sim import simulation
    from bench.sim.profile import load_profile

    out = tmp_path / "series"
    result = CliRunner().invoke(cli, ["run", "--pattern", "choreography", "--rate", "150", "--duration", "3s",
                                      "--warmup", "1s", "--repeat", "2", "--bootstrap-servers", bootstrap_servers,
                                      "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["1", "2"]
    assert "series of 2: e2e ms p50 " in result.output and "every run valid and clean" in result.output
    judged = CliRunner().invoke(cli, ["compare", str(out), str(out), "--fail-on", "p50:+10%", "--format", "json"])
    assert judged.exit_code == 0, judged.output
    document = json.loads(judged.output)
    assert [len(side["runs"]) for side in document["sides"]] == [2, 2]
    assert document["rules"][0]["threshold_only"] and "2 vs 2 runs cannot reach" in document["rules"][0]["method"]

    # One summary type: the simulation of the same workload writes the same keys.
    real = json.loads((out / "1" / "summary.json").read_text())
    workload = load_workload(WORKLOADS / "default.yaml").with_overrides(rate_per_s=150.0, duration_s=3.0, warmup_s=1.0)
    simulation.run(simulation.SimRequest(patterns.get("choreography"), workload, load_profile(), output=tmp_path / "sim"),
                   echo=lambda line: None)
    sim = json.loads((tmp_path / "sim" / "summary.json").read_text())
    only_real, only_sim = {"cost", "services", "faults"}, {"simulation"}
    assert set(real) - only_real == set(sim) - only_sim
    for key in ("orders", "latency_ms", "cpu_s", "timeline"):
        assert set(real[key]) == set(sim[key]), key
    assert real["clean"] is sim["clean"] is True


def _alive(pids):
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()
            and "Z" not in Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]]


def test_ctrl_c_while_the_services_start_still_writes_results_marked_interrupted(bootstrap_servers, tmp_path):
    out = tmp_path / "early"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--pattern", "orchestration", "--rate", "100", "--duration", "60s",
         "--warmup", "1s", "--bootstrap-servers", bootstrap_servers, "--output", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not (out / "logs").exists() or not list((out / "logs").iterdir()):  # services starting, no load yet
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    children = _children_of(proc.pid)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=90)
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["valid"] is False
    time.sleep(0.5)
    assert not _alive(children)


def test_a_killed_harness_takes_the_broker_it_started_with_it(tmp_path):
    """No broker running: the run starts one (on a port of its own here), and SIGKILL of the
    harness ends that JVM too (it dies with its parent), and the services."""
    env = {**os.environ, "BENCH_BROKER_DIR": str(tmp_path / "broker"), "BENCH_BROKER_PORT": "29592"}
    env.pop("BENCH_BOOTSTRAP_SERVERS", None)
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "bench", "run", "--pattern", "choreography", "--rate", "50",
                             "--duration", "60s", "--warmup", "1s", "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while not (out / "timeseries.csv").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.2)
    state = json.loads(next((tmp_path / "broker").rglob("state.json")).read_text())
    jvms = [node["pid"] for node in state["nodes"]]
    children = _children_of(proc.pid)
    assert jvms and _alive(jvms) and children
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 20
    while (_alive(jvms) or _alive(children)) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert not _alive(jvms), "the broker outlived the harness that started it"
    assert not _alive(children), "service processes outlived the harness"


def test_ctrl_c_during_the_audit_writes_results_audited_as_far_as_they_go(bootstrap_servers, tmp_path):
    """The live audit is paused (SIGSTOP) so the run is still waiting for its verdict when Ctrl-C
    comes: the audit judges what it read, and summary.json is written, marked interrupted."""
    out = tmp_path / "cut"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "run", "--pattern", "orchestration", "--rate", "100", "--duration", "4s",
         "--warmup", "1s", "--bootstrap-servers", bootstrap_servers, "--output", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not (out / "timeseries.csv").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "no load"
        time.sleep(0.1)
    auditor = next(pid for pid in _children_of(proc.pid)
                   if b"live_audit" in Path(f"/proc/{pid}/cmdline").read_bytes())
    os.kill(auditor, signal.SIGSTOP)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("audit: reading the rest"):
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    os.kill(auditor, signal.SIGCONT)
    output, _ = proc.communicate(timeout=90)
    output = "".join(lines) + output
    assert proc.returncode == 130, output
    assert "Traceback" not in output and "not read to its end" in output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["audit"]["read_to_end"] is False
    orders = summary["orders"]
    assert orders["completed"] + orders["cancelled"] + orders["lost"] + orders["stuck"] == orders["started"] > 0
    time.sleep(0.5)
    assert not _alive([auditor])
