"""The coordinator's side of an agent (:mod:`bench.run.agent`): a host that runs some of a run's
service instances, and those instances, driven through the methods the supervisor drives its own.

A host is polled once a second from a thread of its own (alive, backlog, CPU per instance), so the
load generator's tick reads the backlog from memory, never over the network.
"""
from __future__ import annotations

import http.client
import json
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from bench import inputs
from bench.broker import embedded
from bench.errors import BadInput
from bench.kafka.errors import BrokerError
from bench.run import control, procstat

TIMEOUT_S = 90.0  # a spawn returns once the instance is ready (its consumer group joined)
POLL_S = 1.0
CLOCK_SAMPLES = 8
SPAN_RESOLUTION_MS = 1.0  # step latencies are read to the millisecond
SIGNAL_NAMES = {number: name for name, number in control.SIGNALS.items()}


class AgentError(BrokerError):
    """An agent that cannot be reached or refused a command: the run cannot go on as placed."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status  # the agent's HTTP answer; None: not reached


class Host:
    """One agent, as a run's coordinator sees it."""

    def __init__(self, name: str, address: tuple[str, int], secret: bytes, run_id: str) -> None:
        self.name, self.address, self.secret, self.run_id = name, address, secret, run_id
        # A session per calling thread (the poller, the run, the drift sampler, the fault injector):
        # the agent takes a session's counters in rising order only, and one thread's requests
        # arrive in the order it sent them.
        self.sessions = threading.local()
        self.status: dict[str, dict] = {}
        self.stopping = threading.Event()
        self.poller: threading.Thread | None = None
        self.ended = False
        self.clock_at_open: dict = {}
        self.refreshed_at = float("-inf")

    def __repr__(self) -> str:
        return f"agent {self.name} at {self.address[0]}:{self.address[1]}"

    # -- the wire ---------------------------------------------------------------------------

    def _post(self, path: str, body: bytes, headers: dict, timeout_s: float) -> dict:
        connection = http.client.HTTPConnection(*self.address, timeout=timeout_s)
        try:
            connection.request("POST", path, body, {"Content-Type": "application/json", **headers})
            response = connection.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as err:
            raise AgentError(f"{self!r}: {path[1:]}: cannot reach it ({type(err).__name__}: {err}); is `bench agent` "
                             f"running there, listening on that address?") from None
        finally:
            connection.close()
        try:
            answer = json.loads(data or b"{}")
        except ValueError:
            answer = {}
        if response.status != 200:
            raise AgentError(f"{self!r}: {path[1:]}: refused ({response.status}): {answer.get('error', '?')}",
                             response.status)
        return answer if isinstance(answer, dict) else {}

    def call(self, path: str, request: dict | None = None, timeout_s: float = 15.0) -> dict:
        body = json.dumps({"run_id": self.run_id, **(request or {})}).encode()
        mine = self.sessions
        if getattr(mine, "id", None) is None:
            mine.id, mine.counter = str(self._post("/session", b"", {}, timeout_s).get("session", "")), 0
        mine.counter += 1
        auth = control.header(self.secret, mine.id, mine.counter, "POST", path, body)
        return self._post(path, body, {control.HEADER: auth}, timeout_s)

    # -- a run's life on this host ----------------------------------------------------------

    def open(self, pattern: str, workload_text: str, bootstrap_servers: str) -> None:
        self.clock_at_open = self.clock()
        self.call("/run", {"pattern": pattern, "workload": workload_text, "bootstrap_servers": bootstrap_servers})
        self.poller = threading.Thread(target=self._poll, name=f"agent-{self.name}", daemon=True)
        self.poller.start()

    def _poll(self) -> None:
        while not self.stopping.wait(POLL_S):
            try:
                self.refresh()
            except AgentError as err:
                if err.status == 409:  # the run is gone there (ended by its lease): so are its instances
                    self.status = {}
                # not reached: a host unreachable for a moment keeps its instances' last state

    def clock(self, samples: int = CLOCK_SAMPLES) -> dict:
        """This host's clocks against the coordinator's, as NTP reads a server: of ``samples`` round
        trips, the shortest; the agent read its clocks within it, so an offset is known to +-RTT/2.
        Monotonic clocks of two machines share no origin: a step span whose events were stamped on
        hosts whose monotonic offset passes that bound is not a latency (network namespaces share
        one kernel, and so one monotonic clock)."""
        best = None
        for _ in range(samples):
            sent_mono, sent_wall = time.monotonic_ns(), time.time_ns()
            answer = self.call("/clock")
            back_mono, back_wall = time.monotonic_ns(), time.time_ns()
            rtt = back_mono - sent_mono
            if best is None or rtt < best[0]:
                best = (rtt, int(answer.get("mono_ns", 0)) - (sent_mono + back_mono) // 2,
                        int(answer.get("wall_ns", 0)) - (sent_wall + back_wall) // 2)
        rtt, mono, wall = best
        return {"rtt_ms": round(rtt / 1e6, 3), "error_ms": round(rtt / 2e6, 3),
                "monotonic_offset_ms": round(mono / 1e6, 3), "wall_offset_ms": round(wall / 1e6, 3)}

    def describe(self, instances: list[str]) -> dict:
        """summary.json's ``hosts.<name>``: where its agent was, what it ran, its clocks at the
        run's start and end, and whether step spans across it and the coordinator are latencies."""
        try:
            at_end = self.clock()
        except AgentError:
            at_end = None  # gone by the end: judged on its clock at the start alone
        readings = [self.clock_at_open] + ([at_end] if at_end else [])
        bound = max(r["error_ms"] for r in readings) + SPAN_RESOLUTION_MS
        return {"agent": f"{self.address[0]}:{self.address[1]}", "instances": sorted(instances),
                "clock_at_start": self.clock_at_open, "clock_at_end": at_end,
                "shared_monotonic_clock": max(abs(r["monotonic_offset_ms"]) for r in readings) <= bound}

    def refresh(self) -> dict[str, dict]:
        self.status = self.call("/status").get("instances", {})
        self.refreshed_at = time.monotonic()
        return self.status

    def fresh_status(self) -> dict[str, dict]:
        """The instances' state read within the last half second; the last known when unreachable."""
        if time.monotonic() - self.refreshed_at > 0.5:
            try:
                return self.refresh()
            except AgentError:
                pass
        return self.status

    def spawn(self, role: str, index: int, used_before: procstat.Usage, log_dir: Path) -> "RemoteInstance":
        self.call("/spawn", {"role": role, "index": index}, TIMEOUT_S)
        self.refresh()
        return RemoteInstance(role, index, self, log_dir / f"{role}-{index}.log", used_before)

    def signal(self, name: str, sig: int) -> None:
        self.call("/signal", {"name": name, "signal": SIGNAL_NAMES[sig]})

    def stop(self, log_dir: Path, names: list[str]) -> None:
        """Stop every instance here and bring their logs into ``log_dir`` (the run's own)."""
        self.stopping.set()
        self.call("/stop", timeout_s=30.0)
        for name in names:
            (log_dir / f"{name}.log").write_text(self.call("/log", {"name": name}).get("log", ""))

    def close(self) -> None:
        """End the run on this host (its instances stopped, its directory removed); once."""
        self.stopping.set()
        if self.poller is not None:
            self.poller.join(5.0)
        if not self.ended:
            self.ended = True
            try:
                self.call("/end", timeout_s=30.0)
            except AgentError:
                pass  # unreachable: its lease ends the run there


class RemoteInstance:
    """A service instance on another host: the methods :class:`bench.run.supervisor.Instance` has."""

    def __init__(self, role: str, index: int, host: Host, log_path: Path, used_before: procstat.Usage) -> None:
        self.role, self.index, self.host, self.log_path, self.used_before = role, index, host, log_path, used_before

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"

    def _state(self) -> dict:
        return self.host.status.get(self.name, {})

    @property
    def backlog(self) -> int | None:
        value = self._state().get("backlog")
        return value if type(value) is int else None

    def alive(self) -> bool:
        return bool(self._state().get("alive"))

    def usage(self) -> procstat.Usage | None:
        state = self.host.fresh_status().get(self.name, {})
        if not state.get("alive"):
            return None
        return procstat.Usage.from_dict(state.get("usage"))

    def send(self, sig: int) -> None:
        self.host.signal(self.name, sig)

    def wait(self, timeout_s: float | None = None) -> None:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.host.fresh_status().get(self.name, {}).get("alive"):
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.name, timeout_s)
            time.sleep(0.1)

    def terminate(self) -> None:
        if self.alive():
            self.send(signal.SIGCONT)  # a paused instance cannot handle SIGTERM
            self.send(signal.SIGTERM)

    def close(self) -> None:
        if self.alive():
            self.send(signal.SIGKILL)

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.host.call("/log", {"name": self.name}).get("log", "")
        except AgentError:
            return ""
        return "\n".join(str(text).splitlines()[-lines:])


# --- placement: which host runs which service instances ----------------------------------------


class HostsError(BadInput):
    pass


@dataclass(frozen=True)
class HostSpec:
    name: str
    address: tuple[str, int]
    services: dict[str, int]  # role -> instances of it on this host
    load_workers: int = 0  # load worker processes on this host (bench.run.load_workers)
    brokers: int = 0  # KRaft nodes of the cluster the run starts on its hosts


@dataclass(frozen=True)
class Placement:
    """A hosts file (``bench run --hosts``)::

        secret_file: agent-secret    # optional: else $BENCH_AGENT_SECRET
        hosts:
          - name: h1
            agent: 10.0.0.2:7070
            services: {payment: 1, shipping: 2}
            load_workers: 1          # optional: load worker processes here
            brokers: 1               # optional: KRaft nodes the run starts here (then no --bootstrap-servers)

    A role's instances are numbered 0 .. n-1 (the workload's ``instances``), and load workers
    0 .. n-1 (its ``load_workers``); the hosts take them in the order they are listed, and whatever
    no host takes runs where `bench run` runs."""

    hosts: tuple[HostSpec, ...]
    secret_file: Path | None

    def instances(self, counts: dict[str, int]) -> dict[str, HostSpec]:
        """Instance name -> the host that runs it, for a run with ``counts`` instances per role."""
        placed, next_index = {}, dict.fromkeys(counts, 0)
        for host in self.hosts:
            for role, n in host.services.items():
                for _ in range(n):
                    placed[f"{role}-{next_index[role]}"] = host
                    next_index[role] += 1
        return placed

    def workers(self) -> dict[int, HostSpec]:
        """Load worker number -> the host that runs it (the rest run where `bench run` runs)."""
        placed, k = {}, 0
        for host in self.hosts:
            for _ in range(host.load_workers):
                placed[k] = host
                k += 1
        return placed

    def broker_nodes(self, port: int) -> list[tuple[int, HostSpec, int, int]]:
        """(node id, host, client port, controller port) of each KRaft node placed: ids from 1 in
        the order listed; a host's nodes on ``port``, ``port + 1``, ... (quorum 100 higher)."""
        nodes = []
        for host in self.hosts:
            for j in range(host.brokers):
                nodes.append((len(nodes) + 1, host, port + j, port + embedded.CONTROLLER_PORT_OFFSET + j))
        return nodes

    def check(self, roles: tuple[str, ...] | list[str], counts: dict[str, int], where: str,
              load_workers: int = 1) -> None:
        """Before anything starts: every role placed is the pattern's, and no more than it has;
        no more load workers placed than the workload has."""
        placed_workers = sum(h.load_workers for h in self.hosts)
        if placed_workers > load_workers:
            raise HostsError(f"{where}: {placed_workers} load workers placed, the workload runs {load_workers} "
                             f"(raise load_workers in the workload, or place fewer)")
        taken: dict[str, int] = {}
        for host in self.hosts:
            for role, n in host.services.items():
                if role not in roles:
                    raise HostsError(f"{where}: hosts[{host.name}].services: {role!r} is not a role of this pattern "
                                     f"({', '.join(roles)})")
                taken[role] = taken.get(role, 0) + n
        for role, n in taken.items():
            if n > counts.get(role, 1):
                raise HostsError(f"{where}: {n} instances of {role} placed, the workload runs {counts.get(role, 1)} "
                                 f"(raise instances.{role}, or place fewer)")


def read_placement(path: Path) -> Placement:
    """A hosts file, through the one validated reader; one line naming the key on a problem."""
    raw = inputs.read_yaml(path, "hosts file", HostsError)
    where = str(path)
    if not isinstance(raw, dict):
        raise HostsError(f"{where}: a hosts file is a mapping with a 'hosts' list")
    unknown = sorted(set(map(str, raw)) - {"hosts", "secret_file"})
    if unknown:
        raise HostsError(f"{where}: unknown key {unknown[0]!r} (known: hosts, secret_file)")
    secret_file = raw.get("secret_file")
    if secret_file is not None and (type(secret_file) is not str or not secret_file):
        raise HostsError(f"{where}: secret_file: a path")
    entries = raw.get("hosts")
    if not isinstance(entries, list) or not entries or len(entries) > 256:
        raise HostsError(f"{where}: hosts: a list of 1 .. 256 hosts")
    hosts, names, addresses = [], set(), set()
    for i, entry in enumerate(entries):
        key = f"hosts[{i}]"
        if not isinstance(entry, dict) or set(map(str, entry)) - {"name", "agent", "services", "load_workers", "brokers"}:
            raise HostsError(f"{where}: {key}: a mapping of name, agent, services, load_workers and brokers")
        name = entry.get("name")
        if type(name) is not str or not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
            raise HostsError(f"{where}: {key}.name: 1-64 letters, digits, - and _")
        if name in names:
            raise HostsError(f"{where}: {key}.name: {name} is listed twice")
        names.add(name)
        address = control.parse_address(entry.get("agent"), f"{where}: {key}.agent", HostsError)
        if address in addresses:
            raise HostsError(f"{where}: {key}.agent: {address[0]}:{address[1]} is another host's agent too "
                             "(an agent hosts one run's instances for one host)")
        addresses.add(address)
        services = entry.get("services", {})
        if not isinstance(services, dict) or not all(type(r) is str and type(n) is int and not isinstance(n, bool)
                                                     and 0 <= n <= 1000 for r, n in services.items()):
            raise HostsError(f"{where}: {key}.services: role -> instances on this host (0 .. 1000)")
        workers = entry.get("load_workers", 0)
        if type(workers) is not int or not 0 <= workers <= 64:
            raise HostsError(f"{where}: {key}.load_workers: load worker processes on this host (0 .. 64)")
        brokers = entry.get("brokers", 0)
        if type(brokers) is not int or not 0 <= brokers <= 9:
            raise HostsError(f"{where}: {key}.brokers: KRaft nodes the run starts on this host (0 .. 9)")
        hosts.append(HostSpec(name, address, dict(services), workers, brokers))
    return Placement(tuple(hosts), None if secret_file is None else (path.parent / secret_file))


def describe(placed: dict[str, Host], cpu_s: dict[str, float], orders: int) -> dict | None:
    """summary.json's ``hosts`` of a run placed over ``placed`` (instance -> host), with the CPU
    seconds its services used on each over the load; None: one host."""
    by_host: dict[str, tuple[Host, list[str]]] = {}
    for name, host in placed.items():
        by_host.setdefault(host.name, (host, []))[1].append(name)
    if not by_host:
        return None
    out = {}
    for name, (host, instances) in by_host.items():
        used = cpu_s.get(name)
        out[name] = {**host.describe(instances), "cpu_s": None if used is None else round(used, 2),
                     "cpu_us_per_order": None if used is None or not orders else round(used / orders * 1e6, 1)}
    return out


# --- a run's hosts, opened once ------------------------------------------------------------------


class Agents:
    """The hosts of a run's hosts file: opened on the run's broker once it is known (before the
    broker, when the broker's nodes are theirs to start), closed with the run."""

    def __init__(self, placement: Placement, secret: bytes, run_id: str, pattern: str, workload_text: str,
                 echo=print) -> None:
        self.placement, self.pattern, self.workload_text, self.echo = placement, pattern, workload_text, echo
        self.hosts = {spec.name: Host(spec.name, spec.address, secret, run_id) for spec in placement.hosts}
        self.opened: list[Host] = []
        self.bootstrap_servers: str | None = None

    def open(self, bootstrap_servers: str) -> None:
        if self.bootstrap_servers is not None:
            return  # opened already (on the nodes they run)
        self.bootstrap_servers = bootstrap_servers
        for host in self.hosts.values():
            host.open(self.pattern, self.workload_text, bootstrap_servers)
            self.opened.append(host)
            self.echo(f"host {host.name}: agent at {host.address[0]}:{host.address[1]} ready")

    def instances(self, counts: dict[str, int]) -> dict[str, Host]:
        return {name: self.hosts[spec.name] for name, spec in self.placement.instances(counts).items()}

    def workers(self) -> dict[int, Host]:
        return {k: self.hosts[spec.name] for k, spec in self.placement.workers().items()}

    def brokers(self, port: int) -> "PlacedBrokers | None":
        nodes = self.placement.broker_nodes(port)
        if not nodes:
            return None
        return PlacedBrokers([(node_id, self.hosts[spec.name], p, c) for node_id, spec, p, c in nodes])

    def close(self) -> None:
        for host in self.opened:
            host.close()


class PlacedBrokers:
    """The KRaft nodes a run starts on its hosts, each through its host's agent; killed and
    restarted there by a broker fault."""

    HEAP_MB = 512

    def __init__(self, nodes: list[tuple[int, Host, int, int]]) -> None:
        self.nodes = nodes  # (node id, host, client port, controller port)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{host.address[0]}:{port}" for _, host, port, _ in self.nodes)

    def _host(self, node_id: int) -> Host:
        found = [host for n, host, _, _ in self.nodes if n == node_id]
        if not found:
            raise BrokerError(f"broker {node_id}: no such node (the hosts file starts {len(self.nodes)})")
        return found[0]

    def start(self, timeout_s: float = embedded.START_TIMEOUT_S) -> None:
        cluster_id = embedded.new_cluster_id()
        voters = ",".join(f"{n}@{host.address[0]}:{c}" for n, host, _, c in self.nodes)
        for node_id, host, port, controller_port in self.nodes:
            host.call("/broker", {"node_id": node_id, "nodes": len(self.nodes), "host": host.address[0], "port": port,
                                  "controller_port": controller_port, "voters": voters, "cluster_id": cluster_id,
                                  "heap_mb": self.HEAP_MB}, TIMEOUT_S)
        deadline = time.monotonic() + timeout_s
        while not embedded.serving(self.bootstrap_servers, len(self.nodes)):
            if time.monotonic() > deadline:
                raise BrokerError(f"the brokers placed on the hosts ({self.bootstrap_servers}) did not serve within "
                                  f"{timeout_s:.0f}s (their logs are in the agents' run directories)")
            time.sleep(0.3)

    def cpu_s(self) -> float | None:
        """CPU seconds the nodes used so far, as their agents read them (None: a host unreachable)."""
        total = 0.0
        for host in {id(h): h for _, h, _, _ in self.nodes}.values():
            try:
                brokers = host.call("/status").get("brokers", {})
            except AgentError:
                return None
            total += sum(float(b.get("cpu_s", 0.0)) for b in brokers.values())
        return total

    def kill(self, node_id: int) -> None:
        self._host(node_id).call("/signal", {"name": f"broker-{node_id}", "signal": "KILL"}, 30.0)

    def restart(self, node_id: int) -> None:
        self._host(node_id).call("/broker", {"node_id": node_id, "restart": True}, TIMEOUT_S)

    def stop(self) -> None:
        for host in {id(h): h for _, h, _, _ in self.nodes}.values():
            try:
                host.call("/stop-brokers", timeout_s=30.0)
            except AgentError:
                pass  # unreachable: its lease ends the run there, brokers included
