"""The hosts file and the agents' wire: placement of instances, checks before anything starts, the
secret read without ever being quoted, signatures that a changed or replayed request fails."""
from __future__ import annotations

import os
import re
import threading
import urllib.request

import pytest

from bench import patterns
from bench.errors import BadInput
from bench.flow.workload import load_workload
from bench.run import agent, control, remote
from bench.run.run import RunRequest, check

SECRET = b"0123456789abcdef0123456789abcdef"


def hosts_file(tmp_path, text: str):
    path = tmp_path / "hosts.yaml"
    path.write_text(text)
    return path


def test_hosts_take_each_roles_instances_in_order_and_the_rest_stay_here(tmp_path):
    placed = remote.read_placement(hosts_file(tmp_path, """
hosts:
  - {name: h1, agent: '10.0.0.2:7070', services: {payment: 1, shipping: 1}}
  - {name: h2, agent: '10.0.0.3:7070', services: {payment: 1}}
"""))
    where = placed.instances({"payment": 3, "shipping": 1, "inventory": 1})
    assert {name: host.name for name, host in where.items()} == {"payment-0": "h1", "shipping-0": "h1",
                                                                   "payment-1": "h2"}
    assert placed.hosts[1].address == ("10.0.0.3", 7070)


@pytest.mark.parametrize("text, problem", [
    ("- a\n", "a mapping with a 'hosts' list"),
    ("hosts: []\n", "hosts: a list of 1 .. 256"),
    ("hosts: [{name: h1, agent: nowhere}]\n", "hosts[0].agent: not ADDRESS:PORT"),
    ("hosts: [{name: h1, agent: '1.2.3.4:99999'}]\n", "hosts[0].agent: not ADDRESS:PORT"),
    ("hosts: [{name: 'h 1', agent: '1.2.3.4:7070'}]\n", "hosts[0].name"),
    ("hosts: [{name: h1, agent: '1.2.3.4:7070'}, {name: h1, agent: '1.2.3.5:7070'}]\n", "listed twice"),
    ("hosts: [{name: h1, agent: '1.2.3.4:7070', services: {payment: -1}}]\n", "services: role -> instances"),
    ("hosts: [{name: h1, agent: '1.2.3.4:7070', command: 'rm -rf /'}]\n", "a mapping of name, agent, services, load_workers and brokers"),
    ("hosts: [{name: h1, agent: '1.2.3.4:7070'}]\nsecret: hunter2hunter2hunter2\n", "unknown key 'secret'"),
    ("hosts: [{name: h1, agent: '1.2.3.4:7070', load_workers: 65}]\n", "hosts[0].load_workers: load worker processes"),
    ("hosts: [{name: h1, agent: '1.2.3.4:7070', load_workers: true}]\n", "hosts[0].load_workers: load worker processes"),
    ("hosts: [{name: h1, agent: '1.2.3.4:7070', brokers: 10}]\n", "hosts[0].brokers: KRaft nodes"),
    ("hosts: [{name: h1, agent: '1.2.3.4:7070', brokers: '3'}]\n", "hosts[0].brokers: KRaft nodes"),
])
def test_a_bad_hosts_file_is_one_line_naming_the_key(tmp_path, text, problem):
    with pytest.raises(remote.HostsError, match=re.escape(problem)) as caught:
        remote.read_placement(hosts_file(tmp_path, text))
    assert "\n" not in str(caught.value) and "hunter2" not in str(caught.value)


def test_a_run_checks_its_hosts_file_against_the_pattern_before_any_broker(tmp_path, monkeypatch):
    monkeypatch.setattr(control, "_from_env", None)
    monkeypatch.setenv("BENCH_AGENT_SECRET", SECRET.decode())
    workload = load_workload()
    request = lambda text, brokers="10.0.0.1:9092": RunRequest(patterns.get("orchestration"), workload, brokers,
                                                               output=tmp_path / "out", hosts=hosts_file(tmp_path, text))
    check(request("hosts: [{name: h1, agent: '10.0.0.2:7070', services: {payment: 1}}]\n"))
    with pytest.raises(remote.HostsError, match="'reviewer' is not a role of this pattern"):
        check(request("hosts: [{name: h1, agent: '10.0.0.2:7070', services: {reviewer: 1}}]\n"))
    with pytest.raises(remote.HostsError, match="2 instances of payment placed, the workload runs 1"):
        check(request("hosts: [{name: h1, agent: '10.0.0.2:7070', services: {payment: 2}}]\n"))
    with pytest.raises(remote.HostsError, match="cannot reach a broker at localhost:9092"):
        check(request("hosts: [{name: h1, agent: '10.0.0.2:7070'}]\n", brokers="10.0.0.1:9092,localhost:9092"))
    with pytest.raises(remote.HostsError, match="another host's agent too"):
        check(request("hosts: [{name: h1, agent: '10.0.0.2:7070'}, {name: h2, agent: '10.0.0.2:7070'}]\n"))
    with pytest.raises(remote.HostsError, match="2 load workers placed, the workload runs 1"):
        check(request("hosts: [{name: h1, agent: '10.0.0.2:7070', load_workers: 2}]\n"))
    with pytest.raises(remote.HostsError, match="starts 1 broker node\\(s\\) for the run: give no --bootstrap-servers"):
        check(request("hosts: [{name: h1, agent: '10.0.0.2:7070', brokers: 1}]\n"))
    # The secret was taken out of the environment (no child process inherits it) and kept.
    assert "BENCH_AGENT_SECRET" not in os.environ
    monkeypatch.setattr(control, "_from_env", None)
    with pytest.raises(BadInput, match="no agent secret"):
        check(request("hosts: [{name: h1, agent: '10.0.0.2:7070', services: {payment: 1}}]\n"))


def test_the_secret_is_read_from_a_file_or_the_environment_and_never_quoted(tmp_path, monkeypatch):
    monkeypatch.setattr(control, "_from_env", None)
    (tmp_path / "s").write_text(SECRET.decode() + "\n")
    assert control.read_secret(tmp_path / "s") == SECRET
    monkeypatch.setenv(control.SECRET_ENV, "  " + SECRET.decode() + " ")
    assert control.read_secret(None) == SECRET
    (tmp_path / "short").write_text("hunter2\n")
    with pytest.raises(BadInput) as caught:
        control.read_secret(tmp_path / "short")
    assert "hunter2" not in str(caught.value) and "shorter than 16 bytes" in str(caught.value)


def test_a_signature_binds_the_request_and_its_counter():
    signed = control.parse_header(control.header(SECRET, "a" * 32, 7, "POST", "/spawn", b'{"role": "payment"}'))
    assert signed is not None
    session, counter, mac = signed
    assert control.valid(SECRET, session, counter, mac, "POST", "/spawn", b'{"role": "payment"}')
    assert not control.valid(SECRET, session, counter, mac, "POST", "/spawn", b'{"role": "shipping"}')
    assert not control.valid(SECRET, session, counter + 1, mac, "POST", "/spawn", b'{"role": "payment"}')
    assert not control.valid(b"x" * 32, session, counter, mac, "POST", "/spawn", b'{"role": "payment"}')
    assert control.parse_header("session=zz;counter=1;mac=00") is None


def test_an_agent_listens_where_told_and_refuses_unsigned_and_replayed_requests(tmp_path):
    hosted = agent.Agent(SECRET, tmp_path / "work")
    stop, bound = threading.Event(), []
    thread = threading.Thread(target=agent.serve, args=(("127.0.0.1", 0), hosted, bound.append, stop), daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if bound:
                break
            threading.Event().wait(0.05)
        address = bound[0]
        assert address[0] == "127.0.0.1"
        request = urllib.request.Request(f"http://{address[0]}:{address[1]}/status", data=b"{}", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401
        host = remote.Host("here", address, SECRET, "r1")
        with pytest.raises(remote.AgentError, match="no such run"):
            host.call("/status")
        with pytest.raises(remote.AgentError, match="pattern: one of"):
            host.call("/run", {"pattern": "sh", "workload": "rate: 1\n", "bootstrap_servers": "x:1"})
        with pytest.raises(remote.AgentError, match="run_id"):
            remote.Host("here", address, SECRET, "../../etc").call("/run", {"pattern": "orchestration"})
        host.call("/run", {"pattern": "orchestration", "workload": "name: t\nrate: 10\n", "bootstrap_servers": "127.0.0.1:1"})
        runs = list((tmp_path / "work").glob("run-r1-*"))
        assert len(runs) == 1 and (runs[0] / ".bench-owned").exists()
        with pytest.raises(remote.AgentError, match="counter used before"):
            host.sessions.counter -= 1
            host.call("/status")
        host.close()
        assert not list((tmp_path / "work").glob("run-r1-*"))  # ended: its directory, and only it, removed
    finally:
        stop.set()
        thread.join(10)


def test_an_agent_ends_a_run_whose_coordinator_went_silent(tmp_path):
    hosted = agent.Agent(SECRET, tmp_path / "work", lease_s=0.0)
    hosted.open_run({"run_id": "r2", "pattern": "orchestration", "workload": "name: t\nrate: 10\n",
                     "bootstrap_servers": "127.0.0.1:1"})
    assert list((tmp_path / "work").glob("run-r2-*"))
    assert hosted.expire() and hosted.run is None
    assert not list((tmp_path / "work").glob("run-r2-*"))


def test_listen_is_address_and_port():
    assert agent.parse_listen("10.0.0.2:7070") == ("10.0.0.2", 7070)
    for bad in ("7070", ":7070", "10.0.0.2:", "10.0.0.2:0", "host:http"):
        with pytest.raises(BadInput, match="--listen"):
            agent.parse_listen(bad)


def _serving(tmp_path, **kwargs):
    hosted = agent.Agent(SECRET, tmp_path / "work", **kwargs)
    stop, bound = threading.Event(), []
    thread = threading.Thread(target=agent.serve, args=(("127.0.0.1", 0), hosted, bound.append, stop), daemon=True)
    thread.start()
    for _ in range(200):
        if bound:
            break
        threading.Event().wait(0.05)
    return hosted, bound[0], stop, thread


def test_asking_for_sessions_cannot_lock_a_coordinator_out_and_threads_may_call_at_once(tmp_path):
    hosted, address, stop, thread = _serving(tmp_path)
    try:
        host = remote.Host("here", address, SECRET, "r3")
        host.call("/run", {"pattern": "orchestration", "workload": "name: t\nrate: 10\n",
                           "bootstrap_servers": "127.0.0.1:1"})
        for _ in range(3 * agent.MAX_PENDING_SESSIONS):  # anyone may ask for a session
            urllib.request.urlopen(urllib.request.Request(f"http://{address[0]}:{address[1]}/session", data=b"",
                                                          method="POST"), timeout=5).read()
        host.call("/status")  # the coordinator's used session was not pushed out
        failures = []

        def poll() -> None:  # the run, the poller, the drift sampler, a fault: calls cross on the wire
            try:
                for _ in range(20):
                    host.call("/status")
            except remote.AgentError as err:
                failures.append(err)

        callers = [threading.Thread(target=poll) for _ in range(4)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        assert not failures
        # Another coordinator cannot take a live run over.
        with pytest.raises(remote.AgentError, match="another run \\(r3\\) is open"):
            remote.Host("here", address, SECRET, "r4").call("/run", {"pattern": "orchestration",
                                                                     "workload": "name: t\nrate: 10\n",
                                                                     "bootstrap_servers": "127.0.0.1:1"})
        host.close()
    finally:
        stop.set()
        thread.join(10)


def test_a_request_the_agent_trips_on_is_one_line_back_not_a_dropped_connection(tmp_path, monkeypatch):
    hosted, address, stop, thread = _serving(tmp_path)
    try:
        def boom(directory, token):
            raise PermissionError("no")

        monkeypatch.setattr(agent.ownership, "mark_dir", boom)
        with pytest.raises(remote.AgentError, match="refused \\(500\\): the agent failed: PermissionError"):
            remote.Host("here", address, SECRET, "r5").call("/run", {"pattern": "orchestration",
                                                                     "workload": "name: t\nrate: 10\n",
                                                                     "bootstrap_servers": "127.0.0.1:1"})
        assert not list((tmp_path / "work").glob("run-r5-*"))  # what it made for the run, removed
    finally:
        stop.set()
        thread.join(10)
