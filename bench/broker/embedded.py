"""Start and stop a real Apache Kafka (KRaft, combined broker+controller nodes) on loopback.

Node ``i`` of a cluster started on ``port`` listens for clients on ``port + i``
and for the controller quorum on ``port + 100 + i``. Each start formats fresh
storage: a benchmark starts from an empty cluster. The cluster's pids and
ports are kept in ``state.json`` in the state directory so ``stop``,
``status`` and ``logs`` work from any later process.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from bench import inputs
from bench import ownership
from bench.broker import dist
from bench.errors import BadInput
from bench.kafka.errors import BrokerError

CONTROLLER_PORT_OFFSET = 100
START_TIMEOUT_S = 90.0

LOG4J2 = """\
Configuration:
  name: bench-broker
  Appenders:
    File:
      name: file
      fileName: "{log}"
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: file
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: INFO
      - name: state.change.logger
        level: WARN
"""


def state_root() -> Path:
    if os.environ.get("BENCH_BROKER_DIR"):
        root = Path(os.environ["BENCH_BROKER_DIR"])
        inputs.check_output_dir(root, "BENCH_BROKER_DIR", BadInput, must_be_empty=False)
        return root
    return dist.cache_root() / "broker"


def default_host() -> str:
    """Where a broker bench starts listens for clients: $BENCH_BROKER_HOST (an address of this
    host that agents on other hosts reach), else localhost. The controller stays on localhost."""
    text = os.environ.get("BENCH_BROKER_HOST", "").strip()
    if not text:
        return "localhost"
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise BadInput("BENCH_BROKER_HOST: expected an IPv4 address of this host, e.g. 10.0.0.1") from None


def default_port() -> int:
    """Node 1's client port for a broker bench starts: $BENCH_BROKER_PORT, else Kafka's 9092
    (for a machine where 9092 is taken, e.g. by a Kafka of your own)."""
    text = os.environ.get("BENCH_BROKER_PORT", "").strip()
    if not text:
        return 9092
    if not (text.isascii() and text.isdigit() and len(text) <= 5) or not 1024 <= int(text) <= 65000:
        raise BadInput("BENCH_BROKER_PORT: expected a port number from 1024 to 65000")
    return int(text)


@dataclass
class NodeInfo:
    node_id: int
    port: int
    controller_port: int
    pid: int
    dir: str
    # The process's start time (/proc/<pid>/stat), recorded at launch: with the command line naming
    # this node's server.properties, what proves a live pid is still the JVM bench started.
    start_time: int | None = None
    host: str = "localhost"  # where its client listener binds and what it advertises ($BENCH_BROKER_HOST)

    @property
    def log_path(self) -> Path:
        return Path(self.dir) / "server.log"

    def is_ours(self) -> bool:
        return _pid_is_ours(self)


@dataclass
class Cluster:
    nodes: list[NodeInfo]
    state_dir: str
    token: str | None = None  # in each node directory's marker: what bench may delete (bench.ownership)

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"{n.host}:{n.port}" for n in self.nodes)

    def node(self, node_id: int) -> NodeInfo:
        return next(n for n in self.nodes if n.node_id == node_id)

    def save(self) -> None:
        path = Path(self.state_dir) / "state.json"
        path.write_text(json.dumps({"nodes": [_saved(n) for n in self.nodes], "state_dir": self.state_dir,
                                    "token": self.token}, indent=2))

    @staticmethod
    def load(state_dir: Path | None = None) -> "Cluster | None":
        path = (state_dir or state_root()) / "state.json"
        if not path.exists():
            return None
        try:
            try:
                raw = inputs.read_json(path, "bench broker state file", BrokerError)
            except BrokerError:
                raise ValueError("not JSON") from None
            nodes = [NodeInfo(**n) for n in raw["nodes"]]
            if not all(isinstance(n.pid, int) and isinstance(n.dir, str) and isinstance(n.host, str) for n in nodes):
                raise TypeError("pid, dir")
            return Cluster(nodes, str(raw["state_dir"]), raw.get("token"))
        except (ValueError, TypeError, KeyError, OSError, AttributeError) as exc:
            raise BrokerError(f"{path}: not a bench broker state file ({type(exc).__name__}); if no bench broker "
                              "is running, delete it") from None

    def alive_nodes(self) -> list[NodeInfo]:
        return [n for n in self.nodes if _pid_is_ours(n)]

    def disk_mb(self) -> float:
        """What the nodes' directories (their logs) take on disk, in MB: blocks used, since
        Kafka preallocates its index files sparse."""
        used = 0
        for node in self.nodes:
            # os.walk, not rglob: Kafka deletes segments and whole partition directories while
            # this walks (a directory gone meanwhile is skipped, not an error).
            for parent, _, names in os.walk(node.dir):
                for name in names:
                    try:
                        used += os.lstat(os.path.join(parent, name)).st_blocks * 512
                    except OSError:
                        pass  # a segment deleted meanwhile
        return used / 2**20


def _saved(node: NodeInfo) -> dict:
    """A node as state.json keeps it; ``host`` only when it is not localhost, so that an earlier
    bench (which knows no ``host``) still reads the state of a broker on localhost."""
    saved = asdict(node)
    if node.host == "localhost":
        del saved["host"]
    return saved


def _pid_is_ours(node: NodeInfo | int) -> bool:
    """True when the node's pid is still the kafka.Kafka JVM bench started: alive, started when
    bench recorded, its command line naming the node's server.properties (bench.ownership). A bare
    pid only says whether some live kafka.Kafka JVM has it."""
    if isinstance(node, NodeInfo):
        return (ownership.same_process(node.pid, node.start_time, str(Path(node.dir) / "server.properties"))
                and ownership.same_process(node.pid, node.start_time, "kafka.Kafka"))
    return ownership.same_process(node, None, "kafka.Kafka")


def port_owner(port: int) -> str | None:
    """Name the process listening on ``port`` when the OS lets us see it."""
    try:
        out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    if 'users:((' in out:
        name, pid = out.split('users:(("', 1)[1].split('"', 1)[0], out.split("pid=", 1)[1].split(",", 1)[0]
        return f"{name} (pid {pid})"
    return None


def check_port_free(port: int, host: str = "127.0.0.1") -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1" if host == "localhost" else host, port))
        except OSError:
            owner = port_owner(port)
            held = f" by {owner}" if owner else ""
            raise BrokerError(f"port {port} is already in use{held}: stop that process or choose another with --port") from None


def server_properties(node_id: int, nodes: int, port: int, data_dir: Path, host: str = "localhost") -> str:
    """Node ``node_id`` of ``nodes`` on this host: clients on ``port + i``, the quorum on localhost."""
    voters = ",".join(f"{i + 1}@localhost:{port + CONTROLLER_PORT_OFFSET + i}" for i in range(nodes))
    me = node_id - 1
    return node_properties(node_id, nodes, voters, host, port + me, "localhost", port + CONTROLLER_PORT_OFFSET + me,
                           data_dir)


def node_properties(node_id: int, nodes: int, voters: str, host: str, port: int, controller_host: str,
                    controller_port: int, data_dir: Path) -> str:
    """A KRaft node's server.properties: clients on ``host:port``, the quorum (``voters``, as
    ``id@host:port,...``) on ``controller_host:controller_port``; one node of a cluster on this
    host (:func:`server_properties`) or on a host of a placed run (:mod:`bench.run.agent`)."""
    replication = min(3, nodes)
    props = {
        "process.roles": "broker,controller",
        "node.id": node_id,
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{controller_host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir / "data"),
        # Sized for a 2-core machine: few threads, few internal-topic partitions.
        "num.network.threads": 2,
        "num.io.threads": 4,
        # Topics are created explicitly (as in the tutorial); a typo must fail, not make a new topic.
        "auto.create.topics.enable": "false",
        "num.partitions": 1,
        "default.replication.factor": 1,
        "offsets.topic.num.partitions": 6,
        "offsets.topic.replication.factor": replication,
        "transaction.state.log.num.partitions": 6,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": min(2, replication),
        "share.coordinator.state.topic.replication.factor": replication,
        "share.coordinator.state.topic.min.isr": min(2, replication),
        "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
        "log.cleaner.threads": 1,
        # Benchmarks start consumers right away; the default 3 s delay would sit in every number.
        "group.initial.rebalance.delay.ms": 0,
        "log.segment.bytes": 256 * 1024 * 1024,
        "log.retention.hours": 24,
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def new_cluster_id() -> str:
    """URL-safe base64 of a random UUID, never starting with "-" (a command line would read that
    as an option; Kafka's own Uuid.randomUuid() draws again for the same reason)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _java_command(heap_mb: int, log_config: Path, main: str, *args: str) -> list[str]:
    return [
        dist.java_executable(), f"-Xms{heap_mb}m", f"-Xmx{heap_mb}m",
        "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log_config}",
        "-cp", dist.classpath(), main, *args,
    ]


def _format(node_dir: Path, cluster_id: str, heap_log: Path) -> None:
    proc = subprocess.run(
        _java_command(256, heap_log, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                      "-c", str(node_dir / "server.properties"), "--ignore-formatted"),
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise BrokerError(f"formatting storage in {node_dir} failed: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")


def _last_lines(path: Path, n: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log written)"


def serving(bootstrap: str, expected_brokers: int) -> bool:
    from confluent_kafka.admin import AdminClient

    from bench.kafka.clients import silent_logger

    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, "log_level": 0,
                         "logger": silent_logger("probe")})
    try:
        md = admin.list_topics(timeout=2)
    except Exception:  # noqa: BLE001 - any failure here just means "not serving yet"
        return False
    return len(md.brokers) >= expected_brokers


def running() -> Cluster | None:
    cluster = Cluster.load()
    if cluster and cluster.alive_nodes():
        return cluster
    return None


def running_at(bootstrap_servers: str) -> Cluster | None:
    """The embedded cluster serving ``bootstrap_servers``, if it is ours (so faults can reach its nodes)."""
    cluster = running()
    if cluster and set(bootstrap_servers.split(",")) & set(cluster.bootstrap_servers.split(",")):
        return cluster
    return None


def start(nodes: int = 1, port: int = 9092, heap_mb: int | None = None, timeout_s: float = START_TIMEOUT_S,
          tied: bool = False) -> Cluster:
    """Format and start a fresh cluster; returns once every node serves requests. ``tied``: the
    nodes get SIGTERM when this thread's process dies, however it dies (a cluster started for one
    run must not outlive it; one from `bench broker start` must)."""
    if nodes not in (1, 3):
        raise BrokerError(f"--nodes must be 1 or 3, got {nodes}")
    existing = running()
    if existing:
        raise BrokerError(f"a bench broker is already running at {existing.bootstrap_servers}: `bench broker stop` first")
    root = state_root()
    host = default_host()
    _remove_old_nodes(root)  # refuses before anything starts when a node-* directory is not bench's
    for i in range(nodes):
        check_port_free(port + i, host)
        check_port_free(port + CONTROLLER_PORT_OFFSET + i)
    dist.install()
    heap_mb = heap_mb or (768 if nodes == 1 else 512)
    root.mkdir(parents=True, exist_ok=True)
    cluster_id = new_cluster_id()
    cluster = Cluster([], str(root), ownership.new_token())
    cluster.save()  # the token first: a start that fails half-way leaves directories bench can prove it made
    try:
        for i in range(nodes):
            node_dir = root / f"node-{i + 1}"
            node_dir.mkdir(parents=True)
            ownership.mark_dir(node_dir, cluster.token)
            prepare_node(node_dir, server_properties(i + 1, nodes, port, node_dir, host), cluster_id)
        launched = []
        for i in range(nodes):
            node, proc = _launch(root / f"node-{i + 1}", i + 1, port + i, port + CONTROLLER_PORT_OFFSET + i, heap_mb,
                                 tied, host)
            cluster.nodes.append(node)
            launched.append(proc)
            cluster.save()
        _wait_serving(cluster, launched, timeout_s)
    except BaseException:
        _kill(cluster)
        raise
    return cluster


def prepare_node(node_dir: Path, properties: str, cluster_id: str) -> None:
    """A node's configuration written and its storage formatted, in ``node_dir`` (made and marked
    by the caller)."""
    dist.install()  # once per host: an agent's host may not have Kafka's jars yet
    (node_dir / "server.properties").write_text(properties)
    (node_dir / "log4j2.yaml").write_text(LOG4J2.format(log=node_dir / "server.log"))
    _format(node_dir, cluster_id, node_dir / "log4j2.yaml")


def launch(node_dir: Path, node_id: int, port: int, controller_port: int, heap_mb: int,
           host: str) -> tuple[NodeInfo, subprocess.Popen]:
    """A prepared node started (not tied to the calling thread: an agent's request threads end)."""
    return _launch(node_dir, node_id, port, controller_port, heap_mb, False, host)


def _remove_old_nodes(root: Path) -> None:
    """Delete the node directories of bench's last start: only those holding the marker with the
    token its state file recorded (bench.ownership). Anything else named node-* is the user's."""
    if not root.is_dir():
        return
    try:
        previous = Cluster.load(root)
    except BrokerError:
        previous = None
    token = previous.token if previous else None
    for old in sorted(root.glob("node-*")):
        if not ownership.remove_owned_dir(old, token):
            raise BrokerError(f"{old} exists and bench cannot prove it created it: move it away, or set "
                              "BENCH_BROKER_DIR to a directory of bench's own")


def _launch(node_dir: Path, node_id: int, port: int, controller_port: int,
            heap_mb: int, tied: bool = False, host: str = "localhost") -> tuple[NodeInfo, subprocess.Popen]:
    out = open(node_dir / "kafka.out", "ab")
    cmd = _java_command(heap_mb, node_dir / "log4j2.yaml", "kafka.Kafka", str(node_dir / "server.properties"))
    # Own session: Ctrl-C in the terminal must not reach the JVM directly; we stop it ourselves.
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_die_with_parent if tied else None)
    out.close()
    return NodeInfo(node_id, port, controller_port, proc.pid, str(node_dir), ownership.start_time(proc.pid), host), proc


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the parent thread ends (PR_SET_PDEATHSIG)."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def restart_node(cluster: Cluster, node_id: int, heap_mb: int = 512) -> NodeInfo:
    """Start a stopped node again on its existing storage (used by failure tests)."""
    old = cluster.node(node_id)
    node, _ = _launch(Path(old.dir), node_id, old.port, old.controller_port, heap_mb, host=old.host)
    cluster.nodes[cluster.nodes.index(old)] = node
    cluster.save()
    return node


def _wait_serving(cluster: Cluster, launched: list[subprocess.Popen], timeout_s: float) -> None:
    # Whether a JVM we launched has exited is asked of its Popen, not of /proc: reading /proc while
    # the Java launcher starts up once found no `kafka.Kafka` on a running JVM's command line, and
    # the start then killed a healthy broker.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for node, proc in zip(cluster.nodes, launched):
            if proc.poll() is not None:
                raise BrokerError(
                    f"Kafka node {node.node_id} exited during start (status {proc.returncode}); "
                    f"last lines of {node.log_path}:\n{_last_lines(node.log_path)}"
                    f"\n{_last_lines(Path(node.dir) / 'kafka.out', 5)}"
                )
        if serving(cluster.bootstrap_servers, len(cluster.nodes)):
            return
        time.sleep(0.3)
    node = cluster.nodes[0]
    raise BrokerError(f"Kafka did not serve requests within {timeout_s:.0f}s; last lines of {node.log_path}:\n{_last_lines(node.log_path)}")


def kill_node(node: NodeInfo, sig: int = signal.SIGKILL) -> None:
    """Signal the node's JVM, only when it is still the process bench started."""
    if not _pid_is_ours(node):
        return
    try:
        os.kill(node.pid, sig)
    except ProcessLookupError:
        pass


def _kill(cluster: Cluster, grace_s: float = 15.0) -> None:
    live = cluster.alive_nodes()
    for node in live:
        kill_node(node, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_pid_is_ours(n) for n in live):
        time.sleep(0.1)
    for node in live:
        if _pid_is_ours(node):
            kill_node(node, signal.SIGKILL)
    for node in live:
        _reap(node.pid)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop() -> Cluster | None:
    """Stop the running cluster; returns it, or None when nothing was running."""
    cluster = Cluster.load()
    if not cluster or not cluster.alive_nodes():
        return None
    _kill(cluster)
    return cluster


def rss_mb(cluster: Cluster) -> dict[int, float]:
    out = {}
    for node in cluster.alive_nodes():
        for line in Path(f"/proc/{node.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out[node.node_id] = int(line.split()[1]) / 1024
    return out


@contextmanager
def embedded(nodes: int = 1, port: int = 9092) -> Iterator[Cluster]:
    """A fresh cluster for the duration of the block (and not a moment past this process)."""
    cluster = start(nodes=nodes, port=port, tied=True)
    try:
        yield cluster
    finally:
        # A node restarted during the block (a failover test) has a new pid in state.json.
        _kill(Cluster.load(Path(cluster.state_dir)) or cluster)
