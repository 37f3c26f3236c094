"""A run whose services sit on other hosts: network namespaces on a bridge are the hosts, each with
a `bench agent`; the broker listens on the bridge; `bench run --hosts` places service instances on
the agents, kills one there mid-run (restarted there), and the audit is as clean as on one host.
Traffic goes only to the namespaces' own addresses; everything made is removed, even on failure."""
from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import wallskew  # noqa: E402
from netns import Hosts  # noqa: E402

from bench.results.recording import iter_hlog, merged  # noqa: E402

pytestmark = pytest.mark.broker
AGENT_PORT = 7070


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hosts():
    with Hosts(2) as made:
        yield made


@pytest.fixture
def bridge_broker(hosts, tmp_path, monkeypatch):
    """A broker of this test's own, listening on the bridge (reachable from every namespace)."""
    from bench.broker import embedded

    monkeypatch.setenv("BENCH_BROKER_DIR", str(tmp_path / "broker"))
    monkeypatch.setenv("BENCH_BROKER_HOST", hosts.root_address)
    port = free_port()
    monkeypatch.setenv("BENCH_BROKER_PORT", str(port))
    cluster = embedded.start(port=port, tied=True)
    try:
        yield cluster
    finally:
        embedded._kill(cluster)


def start_agent(hosts: Hosts, host: str, env: dict, log: Path) -> subprocess.Popen:
    out = log.open("w")
    agent = hosts.popen(host, [sys.executable, "-m", "bench", "agent", "--listen",
                               f"{hosts.address(host)}:{AGENT_PORT}", "--work-dir", str(log.parent / f"agent-{host}")],
                        env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while "listening on" not in log.read_text():
        assert agent.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    return agent


def pids_in(hosts: Hosts, host: str) -> set[int]:
    listed = subprocess.run(["ip", "netns", "pids", hosts.namespace(host)], capture_output=True, text=True).stdout
    return {int(p) for p in listed.split()}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_services_on_two_other_hosts_with_a_kill_there_audit_clean(hosts, bridge_broker, tmp_path):
    """Host h1's wall clock is 2 s ahead (the clock shim, preloaded into its agent and services): the
    run measures the offset and nothing moves, since every latency is on one monotonic clock."""
    secret = secrets.token_hex(32)
    env = {**os.environ, "BENCH_AGENT_SECRET": secret, "PYTHONPATH": str(ROOT)}
    ahead = wallskew.environment(wallskew.build(tmp_path), rate=0.0, step_at_s=0.0, step_s=2.0, base=env)
    agents = [start_agent(hosts, "h1", ahead, tmp_path / "agent-h1.log"),
              start_agent(hosts, "h2", env, tmp_path / "agent-h2.log")]
    try:
        (tmp_path / "hosts.yaml").write_text(
            "hosts:\n"
            f"  - {{name: h1, agent: '{hosts.address('h1')}:{AGENT_PORT}', services: {{payment: 1}}}}\n"
            f"  - {{name: h2, agent: '{hosts.address('h2')}:{AGENT_PORT}', services: {{shipping: 1, inventory: 1}}}}\n")
        (tmp_path / "workload.yaml").write_text(
            "name: placed\nrate: 200\nduration: 10s\nwarmup: 3s\ndrain: 30s\n"
            "faults:\n  - {type: kill, at: 6s, duration: 1s, role: shipping}\n")
        seen: dict[str, set[str]] = {h: set() for h in hosts.names}
        pids: dict[str, set[int]] = {}  # role -> every process of it seen
        done = threading.Event()

        def watch() -> None:  # which bench roles run inside each namespace, while the run goes
            while not done.wait(0.2):
                for h in hosts.names:
                    for pid in pids_in(hosts, h):
                        line = cmdline(pid)
                        if " serve " in line and "--role" in line:
                            role = line.split("--role", 1)[1].split()[0]
                            seen[h].add(role)
                            pids.setdefault(role, set()).add(pid)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        out = tmp_path / "run"
        done_run = subprocess.run(
            [sys.executable, "-m", "bench", "run", "--pattern", "orchestration", "--workload",
             str(tmp_path / "workload.yaml"), "--bootstrap-servers", bridge_broker.bootstrap_servers,
             "--hosts", str(tmp_path / "hosts.yaml"), "--output", str(out)],
            env=env, capture_output=True, text=True, timeout=300)
        done.set()
        watcher.join()
        # 3: the rate was not held while shipping was down (restarting it rejoins its group: seconds);
        # what must hold is the audit.
        assert done_run.returncode in (0, 3), done_run.stderr[-3000:]
        summary = json.loads((out / "summary.json").read_text())
        orders = summary["orders"]
        assert summary["clean"] and orders["lost"] == 0 and orders["stuck"] == 0
        assert orders["completed"] + orders["cancelled"] == orders["started"] > 1500
        # Each role ran where the hosts file put it, and the killed payment came back there.
        assert seen == {"h1": {"payment"}, "h2": {"shipping", "inventory"}}
        assert len(pids["shipping"]) == 2 and len(pids["payment"]) == 1  # killed and started again, on h2
        assert summary["faults"] and summary["faults"][0]["type"] == "kill"
        # Their logs came home (each incarnation's STATS line: what `services` in the summary sums).
        assert "STATS" in (out / "logs" / "shipping-0.log").read_text()
        assert summary["services"]["shipping"]["processed"] > 0
        # Their CPU is measured on their host and counted.
        # The clocks: one kernel, one monotonic clock; h1's wall clock 2 s ahead, and no figure moved.
        placed = summary["hosts"]
        assert placed["h1"]["instances"] == ["payment-0"] and placed["h2"]["instances"] == ["inventory-0", "shipping-0"]
        assert all(h["shared_monotonic_clock"] for h in placed.values())
        assert placed["h1"]["clock_at_start"]["wall_offset_ms"] == pytest.approx(2000, abs=100)
        assert abs(placed["h2"]["clock_at_end"]["wall_offset_ms"]) < 100
        # A span stamped on two wall clocks would be 2 s long; payment's (through h1) stays a latency.
        # (End-to-end latency holds the seconds shipping was down.)
        assert summary["latency_ms"]["steps"]["payment"]["p50"] < 500
        assert "services on h1 (payment-0); h2 (inventory-0, shipping-0)" in done_run.stdout
        # Each host's cost: its services' CPU over the load, as the roles' figures say it.
        roles_s = summary["cpu_s"]["services"]
        assert placed["h2"]["cpu_s"] == pytest.approx(roles_s["shipping"] + roles_s["inventory"], rel=0.05, abs=0.05)
        assert placed["h1"]["cpu_s"] == pytest.approx(roles_s["payment"], rel=0.05, abs=0.05)
        # The agents report each instance's wait for a core too (Usage.to_dict / from_dict).
        assert summary["cost"]["wait_for_core_us"]["payment"]["per_run"] is not None
        per_order = summary["cost"]["cpu_us_per_order"]
        assert per_order["payment"]["main"] > 0 and per_order["shipping"]["main"] > 0
        # The run ended on every agent: no service left, their run directories removed.
        time.sleep(1.0)
        for h in hosts.names:
            assert not [p for p in pids_in(hosts, h) if " serve " in cmdline(p)]
            assert not list((tmp_path / f"agent-{h}").glob("run-*"))
    finally:
        for agent in agents:
            agent.terminate()
        for agent in agents:
            try:
                agent.wait(15)
            except subprocess.TimeoutExpired:
                agent.kill()


def test_an_agent_obeys_only_the_secret_and_starts_only_bench_roles(hosts, tmp_path):
    from bench.run import remote

    secret = secrets.token_hex(32)
    env = {**os.environ, "BENCH_AGENT_SECRET": secret, "PYTHONPATH": str(ROOT)}
    agent = start_agent(hosts, "h1", env, tmp_path / "agent.log")
    try:
        address = (hosts.address("h1"), AGENT_PORT)
        impostor = remote.Host("h1", address, b"not-the-secret-but-long-enough", "r1")
        with pytest.raises(remote.AgentError, match="refused \\(401\\)"):
            impostor.call("/status")
        host = remote.Host("h1", address, secret.encode(), "r1")
        with pytest.raises(remote.AgentError, match="not a role"):
            host.open("orchestration", "name: t\nrate: 10\n", "127.0.0.1:1")
            host.call("/spawn", {"role": "sh -c 'touch /tmp/x'", "index": 0})
        with pytest.raises(remote.AgentError, match="signal: one of"):
            host.call("/signal", {"name": "payment-0", "signal": "HUP"})
        # A captured request replayed (same session and counter) is refused.
        body = json.dumps({"run_id": "r1"}).encode()
        header = {"X-Bench-Auth": remote.control.header(secret.encode(), host.sessions.id, host.sessions.counter, "POST", "/status",
                                                         body)}
        with pytest.raises(remote.AgentError, match="401"):
            host._post("/status", body, header, 5.0)
        host.close()
    finally:
        agent.terminate()
        agent.wait(15)


@pytest.fixture(scope="module")
def three_hosts(tmp_path_factory):
    """Three namespace hosts, each with an agent; h2's wall clock (its agent's, so its brokers',
    services' and load worker's) 2 s ahead of the others'."""
    from bench.broker import dist

    dist.install()  # the namespaces reach no registry: the hosts' brokers use this machine's jars
    tmp = tmp_path_factory.mktemp("three-hosts")
    secret = secrets.token_hex(32)
    env = {**os.environ, "BENCH_AGENT_SECRET": secret, "PYTHONPATH": str(ROOT), "BENCH_BROKER_PORT": "19092"}
    ahead = wallskew.environment(wallskew.build(tmp), rate=0.0, step_at_s=0.0, step_s=2.0, base=env)
    with Hosts(3) as made:
        agents = []
        try:
            for h in made.names:
                agents.append(start_agent(made, h, ahead if h == "h2" else env, tmp / f"agent-{h}.log"))
            yield made, env, tmp
        finally:
            for agent in agents:
                agent.terminate()
            for agent in agents:
                try:
                    agent.wait(30)
                except subprocess.TimeoutExpired:
                    agent.kill()


@pytest.mark.parametrize("pattern", ["choreography", "orchestration"])
def test_brokers_services_and_load_workers_on_three_hosts_one_merged_result(three_hosts, pattern):
    """Three KRaft nodes (rf 3), the step services and two load workers, each on a namespace host of
    its own through that host's agent; shipping killed on h3 mid-run. One audit, clean; the merged
    histograms are exactly the workers' sums; h2's wall clock 2 s ahead moves no latency."""
    hosts, env, tmp = three_hosts
    run_dir = tmp / pattern
    run_dir.mkdir()
    (run_dir / "hosts.yaml").write_text(
        "hosts:\n"
        f"  - {{name: h1, agent: '{hosts.address('h1')}:{AGENT_PORT}', brokers: 1, load_workers: 1, "
        "services: {payment: 1}}\n"
        f"  - {{name: h2, agent: '{hosts.address('h2')}:{AGENT_PORT}', brokers: 1, load_workers: 1, "
        "services: {inventory: 1}}\n"
        f"  - {{name: h3, agent: '{hosts.address('h3')}:{AGENT_PORT}', brokers: 1, services: {{shipping: 1}}}}\n")
    (run_dir / "workload.yaml").write_text(
        "name: three-hosts\nrate: 200\nduration: 10s\nwarmup: 3s\ndrain: 40s\nload_workers: 2\n"
        "replication_factor: 3\nmin_insync_replicas: 2\n"
        "faults:\n  - {type: kill, at: 6s, duration: 1s, role: shipping}\n")
    seen: dict[str, set[str]] = {h: set() for h in hosts.names}
    shipping: set[int] = set()
    done = threading.Event()

    def watch() -> None:  # what runs inside each namespace while the run goes
        while not done.wait(0.2):
            for h in hosts.names:
                for pid in pids_in(hosts, h):
                    line = cmdline(pid)
                    if "kafka.Kafka" in line:
                        seen[h].add("broker")
                    elif "bench.run.load_workers" in line:
                        seen[h].add("load worker")
                    elif " serve " in line and "--role" in line:
                        role = line.split("--role", 1)[1].split()[0]
                        seen[h].add(role)
                        if role == "shipping":
                            shipping.add(pid)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out = run_dir / "run"
    began = time.monotonic()
    done_run = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--pattern", pattern, "--workload", str(run_dir / "workload.yaml"),
         "--hosts", str(run_dir / "hosts.yaml"), "--output", str(out)],
        env=env, capture_output=True, text=True, timeout=240)
    done.set()
    watcher.join()
    assert done_run.returncode in (0, 3), done_run.stdout[-2000:] + done_run.stderr[-3000:]
    assert time.monotonic() - began < 150
    summary = json.loads((out / "summary.json").read_text())
    orders = summary["orders"]
    assert summary["clean"] and orders["lost"] == orders["stuck"] == orders["duplicates"] == 0
    assert orders["completed"] + orders["cancelled"] == orders["started"] > 2000
    # Everything ran where the hosts file put it; the coordinator's namespace kept only its own role.
    assert seen == {"h1": {"broker", "load worker", "payment"}, "h2": {"broker", "load worker", "inventory"},
                    "h3": {"broker", "shipping"}}
    assert len(shipping) == 2  # killed on h3 and started again there
    assert summary["faults"][0]["type"] == "kill" and summary["faults"][0].get("error") is None
    # One merged result: each worker's orders and measured endings add up exactly.
    workers = summary["load_workers"]
    assert sorted(w["host"] for w in workers) == ["h1", "h2"]
    assert sum(w["orders"] for w in workers) == orders["started"]
    e2e = merged(iter_hlog(out / "e2e.hlog"))
    assert e2e.get_total_count() == sum(w["e2e_count"] for w in workers) == summary["latency_ms"]["e2e"]["count"] > 0
    # h2's wall clock 2 s ahead: measured, and no latency carries it (each is on one monotonic clock).
    assert summary["hosts"]["h2"]["clock_at_start"]["wall_offset_ms"] == pytest.approx(2000, abs=100)
    # The two workers' orders go through the same services: a 2 s wall clock in h2's latencies
    # would put its worker's median 2 s above h1's.
    medians = {w["host"]: w["e2e_p50_ms"] for w in workers}
    assert abs(medians["h2"] - medians["h1"]) < 0.25 * max(medians.values()) + 50, medians
    assert summary["latency_ms"]["steps"]["inventory"]["p50"] < 1000
    assert all(w["cpu_s"] > 0 for w in workers)  # each worker's CPU, as it reported it
    assert summary["cpu_s"]["broker"] > 0  # the nodes' CPU, as their agents read it
    assert "broker node(s) on the hosts" in done_run.stdout + done_run.stderr
    # Nothing left behind on the hosts: no process of the run, no run directory.
    time.sleep(1.0)
    for h in hosts.names:
        assert not [p for p in pids_in(hosts, h) if "kafka.Kafka" in cmdline(p) or "bench.run" in cmdline(p)
                    or " serve " in cmdline(p)]
        assert not list((tmp / f"agent-{h}").glob("run-*"))


def test_a_broker_node_on_another_host_is_killed_and_restarted_there(three_hosts):
    """broker-kill on nodes the run started on its hosts: the leader of order-created/0 is killed
    through its host's agent and started again there on its storage; nothing acknowledged is lost."""
    hosts, env, tmp = three_hosts
    run_dir = tmp / "broker-kill"
    run_dir.mkdir()
    (run_dir / "hosts.yaml").write_text("hosts:\n" + "".join(
        f"  - {{name: {h}, agent: '{hosts.address(h)}:{AGENT_PORT}', brokers: 1}}\n" for h in hosts.names))
    (run_dir / "workload.yaml").write_text(
        "name: placed-failover\nrate: 200\nduration: 14s\nwarmup: 3s\ndrain: 60s\n"
        "replication_factor: 3\nmin_insync_replicas: 2\nacks: all\n"
        "faults:\n  - {type: broker-kill, at: 5s, duration: 3s}\n")
    brokers: dict[str, set[int]] = {h: set() for h in hosts.names}
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.2):
            for h in hosts.names:
                brokers[h] |= {pid for pid in pids_in(hosts, h) if "kafka.Kafka" in cmdline(pid)}

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    out = run_dir / "run"
    done_run = subprocess.run(
        [sys.executable, "-m", "bench", "run", "--pattern", "orchestration", "--workload",
         str(run_dir / "workload.yaml"), "--hosts", str(run_dir / "hosts.yaml"), "--output", str(out)],
        env=env, capture_output=True, text=True, timeout=240)
    done.set()
    watcher.join()
    assert done_run.returncode in (0, 3), done_run.stdout[-2000:] + done_run.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    orders = summary["orders"]
    assert summary["clean"] and orders["lost"] == orders["stuck"] == 0
    assert orders["completed"] + orders["cancelled"] == orders["started"] > 2000
    fault = summary["faults"][0]
    assert fault["type"] == "broker-kill" and fault.get("error") is None, fault
    killed = int(fault["target"].split()[-1])  # "broker <node id>": node n is on host h<n>
    # Killed and started again on its own host (a second JVM there); the others ran once.
    assert {h: len(pids) for h, pids in brokers.items()} == {h: 2 if h == f"h{killed}" else 1 for h in hosts.names}
