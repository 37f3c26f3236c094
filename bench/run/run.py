"""One benchmark run: broker, fresh topics, services, open-loop load, drain, audit, results.

The steps are small functions; :func:`run` strings them together and makes
sure that whatever happens (an error, Ctrl-C) no service process is left and
whatever was measured is written, marked for what it is.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import time
import signal
import tempfile
import uuid
from collections.abc import Callable, Iterator
import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from bench import inputs
from bench.kafka import clients, secrets, topics
from bench.run import control, procstat, remote, runtime
from bench.results import files as results
from bench.results import summary as summary_mod
from bench.run.cost import LOAD_GENERATOR, cost
from bench.broker import dist, embedded
from bench.broker.warmup import warm_up
from bench.kafka.errors import BrokerError
from bench.run.faults import FaultContext, FaultInjector
from bench.results.measurement import LoadResult, Second
from bench.run.load import LoadGenerator
from bench.run.load_workers import LoadWorkers
from bench.patterns.base import Pattern
from bench.results.recording import E2E_HLOG, hgrm_file, iter_hlog, window_summary, write_hgrm
from bench.run.drift import DriftSampler, Reading
from bench.run.live_audit import ROLE as AUDITOR, AuditFollower
from bench.run.progress import Progress, no_progress
from bench.run.recovery import fault_figures
from bench.run.supervisor import Supervisor
from bench.flow.workload import ROLE_FAULTS, Workload, WorkloadError

# What an order leaves in the broker's log, per message of the saga (record, batch and index
# overhead included; the default saga's 12 messages take ~1.7 KB, benchmarks/soak.py), and the
# share of the free space a run may plan to fill: a broker dies when its disk is full.
DISK_BYTES_PER_MESSAGE = 145
DISK_USABLE = 0.8
AUDIT_TIMEOUT_S = 300.0  # from the load's end to the verdict; past it the audit judges what it read


@dataclass(frozen=True)
class RunRequest:
    pattern: Pattern
    workload: Workload
    bootstrap_servers: str | None = None  # None: the embedded broker
    kafka_config: Path | None = None
    output: Path | None = None
    results_base: Path = Path("results")
    recreate_topics: bool = False  # delete and recreate existing topics bench did not create
    hosts: Path | None = None  # a hosts file: service instances other hosts' agents run (bench.run.remote)


@dataclass
class RunOutcome:
    directory: Path
    summary: dict
    exit_code: int


@dataclass
class _Broker:
    bootstrap_servers: str
    kafka_version: str | None
    jvm_pids: list[int]
    cluster: embedded.Cluster | None = None
    warm_up_messages: int | None = None  # set when the run started this broker and warmed it up first
    placed: remote.PlacedBrokers | None = None  # nodes the run started on its hosts (through their agents)


def _nodes_needed(workload: Workload) -> int:
    failover = any(f.type == "broker-kill" for f in workload.faults)
    return 3 if failover or workload.replication_factor > 1 else 1


@contextlib.contextmanager
def _broker(request: RunRequest, echo: Callable[[str], None], progress: Progress = no_progress,
            agents: remote.Agents | None = None) -> Iterator[_Broker]:
    """The cluster to run against: the hosts file's nodes, started on their hosts; or the one given;
    or an embedded one, started for the run when none is running."""
    placed = agents.brokers(embedded.default_port()) if agents is not None else None
    if placed is not None:
        agents.open(placed.bootstrap_servers)
        echo(f"starting {len(placed.nodes)} broker node(s) on the hosts: {placed.bootstrap_servers}")
        try:
            placed.start()
            began = time.monotonic()
            sent = warm_up(placed.bootstrap_servers, progress=progress)
            echo(f"warmed the new brokers up: {sent} messages in small requests, {time.monotonic() - began:.1f}s, "
                 "discarded")
            yield _Broker(placed.bootstrap_servers, dist.KAFKA_VERSION, [], None, warm_up_messages=sent, placed=placed)
        finally:
            placed.stop()
        return
    if request.bootstrap_servers:
        ours = embedded.running_at(request.bootstrap_servers)  # then its CPU can be measured too
        yield _Broker(request.bootstrap_servers, dist.KAFKA_VERSION if ours else None,
                      [n.pid for n in ours.alive_nodes()] if ours else [], ours)
        return
    nodes = _nodes_needed(request.workload)
    cluster = embedded.running()
    if cluster is not None:
        if len(cluster.nodes) < nodes:
            raise BrokerError(f"this workload needs {nodes} broker nodes but the running embedded broker has "
                              f"{len(cluster.nodes)}: `bench broker stop` then `bench broker start --nodes {nodes}`")
        yield _Broker(cluster.bootstrap_servers, dist.KAFKA_VERSION, [n.pid for n in cluster.alive_nodes()], cluster)
        return
    echo(f"starting the embedded Kafka ({nodes} node{'s' if nodes > 1 else ''}) for this run")
    with embedded.embedded(nodes=nodes, port=embedded.default_port()) as cluster:
        began = time.monotonic()
        sent = warm_up(cluster.bootstrap_servers, progress=progress)
        echo(f"warmed the new broker up: {sent} messages in small requests, {time.monotonic() - began:.1f}s, discarded")
        yield _Broker(cluster.bootstrap_servers, dist.KAFKA_VERSION, [n.pid for n in cluster.nodes], cluster,
                      warm_up_messages=sent)


@contextlib.contextmanager
def one_broker(request: RunRequest, echo: Callable[[str], None]) -> Iterator[None]:
    """One broker for several runs (a sweep, a series) instead of one started and warmed up
    by each: started here, as a run would start it, unless one is running or given."""
    check(request)  # bad input is one line before a broker is started for it
    placed = placement(request)
    if request.bootstrap_servers or embedded.running() is not None or (placed and placed.broker_nodes(0)):
        # (nodes a hosts file places are started by each run, on its hosts)
        yield
        return
    with _broker(request, echo):
        yield


@contextlib.contextmanager
def _claimed(broker: _Broker, workload: Workload, client_extra: dict, run_id: str):
    """The cluster, claimed for this run (one run at a time: a second would wipe its topics)."""
    conf = clients.admin_config(broker.bootstrap_servers, client_extra)
    admin = topics.admin(conf)
    topics.check_reachable(admin, broker.bootstrap_servers)
    registry = topics.Registry(admin, conf, run_id)
    with registry.claim(workload.warmup_s + workload.duration_s + workload.drain_s + AUDIT_TIMEOUT_S):
        yield admin, registry


class _Interrupts:
    """From the services' start to the written results, the first Ctrl-C (or SIGTERM) stops the
    load (before it starts: makes it end at once) and lets the run drain, audit and write results
    marked interrupted; during the audit it makes the audit judge what it read so far. A second aborts."""

    def __init__(self, echo: Callable[[str], None]) -> None:
        self.echo, self.requested, self.load = echo, False, None
        self.auditing = False
        self.audit_cut = False  # interrupted while the audit read the rest of the log

    def __enter__(self) -> "_Interrupts":
        self.previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        for sig in self.previous:
            signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _on_signal(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.auditing:
            self.audit_cut = True
            self.echo("interrupted: auditing what was read so far, writing results (Ctrl-C again to abort)")
        else:
            self.echo("interrupted: stopping load, draining briefly, writing results (Ctrl-C again to abort)")
        if self.load is not None:
            self.load.stop()

    def watch(self, load: LoadGenerator | LoadWorkers) -> None:
        self.load = load
        if self.requested:
            load.stop()


def _jvm_cpu_s(pids: list[int]) -> float | None:
    """The broker's CPU seconds, when it is our embedded one (None for an external cluster)."""
    used = [procstat.cpu_seconds(pid) for pid in pids]
    return None if not used or None in used else sum(used)


def _progress(echo: Callable[[str], None], warmup_s: float, timeseries: results.TimeseriesWriter) -> Callable[[Second], None]:
    def show(s: Second) -> None:
        timeseries.write_row(s.t_s, s.offered, s.finished, s.in_flight, s.backlog, s.p99_ms)
        phase = " (warm-up)" if s.t_s <= warmup_s else ""
        p99 = f"{s.p99_so_far_ms:.1f} ms" if s.p99_so_far_ms is not None else "-"
        backlog = s.backlog if s.backlog is not None else "-"
        echo(f"{s.t_s:>5.0f}s  offered {s.offered:>6}/s  finished {s.finished:>6}/s  in flight {s.in_flight:>6}"
             f"  p99 {p99:>10}  backlog {backlog} msgs{phase}")
    return show


def check_disk(cluster: embedded.Cluster | None, workload: Workload) -> None:
    """A run whose log the embedded broker's disk cannot hold fails before it starts, with one
    line, rather than when the broker dies at a full disk. (A cluster that is not ours: its
    disks are not ours to see.)"""
    if cluster is None or not cluster.nodes:
        return
    messages = 4 * len(workload.saga.steps)  # a command and a reply per step, their saga state, and more
    need = (workload.rate_per_s * (workload.warmup_s + workload.duration_s) * messages
            * (DISK_BYTES_PER_MESSAGE + workload.payload_bytes) * workload.replication_factor)
    log_dir = Path(cluster.nodes[0].dir)
    free = shutil.disk_usage(log_dir).free
    if need > DISK_USABLE * free:
        raise BrokerError(f"this run would write about {need / 1e9:.1f} GB to the broker's log in {log_dir}, which has "
                          f"{free / 1e9:.1f} GB free: shorten it, lower the rate, or set BENCH_BROKER_DIR to a larger disk")


def check_faults(workload: Workload, pattern: Pattern) -> None:
    """Faults aimed at a role must name one of the pattern's roles, before anything starts."""
    topology = pattern.topology(workload.saga)
    for i, fault in enumerate(workload.faults):
        if fault.type in ROLE_FAULTS and fault.role not in topology.roles:
            raise WorkloadError(f"{workload.source or workload.name}: faults[{i}].role {fault.role!r} is not a role of "
                                f"{topology.name} ({', '.join(topology.roles)})")
        if fault.instance is not None and fault.type != "broker-kill" and fault.instance >= workload.instances.get(fault.role, 1):
            raise WorkloadError(f"{workload.source or workload.name}: faults[{i}].instance {fault.instance} does not exist")


def check(request: RunRequest) -> dict:
    """Every input of a run checked before anything touches a broker; returns the client
    properties of the --kafka-config file. Raises WorkloadError or ConfigError (one line)."""
    workload = request.workload
    check_faults(workload, request.pattern)
    client_extra = clients.read_properties(request.kafka_config) if request.kafka_config else {}
    # Where the results go: a new or empty directory bench can create (not a file, not under a
    # file, not a device), or the results base it creates its run directory in.
    if request.output is not None:
        inputs.check_output_dir(request.output, "--output", results.ResultsError)
    else:
        inputs.check_output_dir(request.results_base, "results directory", results.ResultsError, must_be_empty=False)
    if not request.bootstrap_servers:
        embedded.default_port()  # $BENCH_BROKER_PORT, and the cache, checked before a broker is started
        embedded.state_root()
    clients.check(workload, client_extra, str(request.kafka_config or workload.source or "the workload's client settings"))
    placement(request)
    return client_extra


def placement(request: RunRequest) -> remote.Placement | None:
    """The hosts file read and checked against the pattern's roles, and its secret read (None: one host)."""
    if request.hosts is None:
        return None
    placed = remote.read_placement(request.hosts)
    topology = request.pattern.topology(request.workload.saga)
    placed.check(topology.roles, {r: request.workload.instances.get(r, 1) for r in topology.roles}, str(request.hosts),
                 request.workload.load_workers)
    control.read_secret(placed.secret_file)
    nodes = len(placed.broker_nodes(embedded.default_port()))
    if nodes:
        if request.bootstrap_servers:
            raise remote.HostsError(f"{request.hosts}: the hosts file starts {nodes} broker node(s) for the run: give "
                                    "no --bootstrap-servers (or remove brokers: from the hosts file)")
        if nodes < _nodes_needed(request.workload):
            raise remote.HostsError(f"{request.hosts}: this workload needs {_nodes_needed(request.workload)} broker "
                                    f"nodes and the hosts file starts {nodes}")
        return placed
    brokers = (request.bootstrap_servers or embedded.default_host()).split(",")
    loopback = [b for b in brokers if _loopback((b.rpartition(":")[0] or b).strip("[]"))]
    if loopback:
        raise remote.HostsError(f"{request.hosts}: services on other hosts cannot reach a broker at {loopback[0]}: give "
                                "--bootstrap-servers an address they reach, or start the embedded broker with "
                                "BENCH_BROKER_HOST=<an address of this host>")
    return placed


def run(request: RunRequest, echo: Callable[[str], None] = print, progress: Progress = no_progress) -> RunOutcome:
    """One run; ``echo`` prints its lines, ``progress`` hears its long phases (bench.run.progress)."""
    workload = request.workload
    topology = request.pattern.topology(workload.saga)
    client_extra = check(request)
    run_id = uuid.uuid4().hex[:8]
    with _agents(request, topology.name, run_id, echo) as agents, _broker(request, echo, progress, agents) as broker, \
            tempfile.TemporaryDirectory(prefix="bench-run-") as scratch, \
            _claimed(broker, workload, client_extra, run_id) as (admin, registry):
        check_disk(broker.cluster, workload)
        topics.recreate(admin, topology.topics, workload, compacted=topology.compacted, registry=registry,
                        force=request.recreate_topics)
        out = request.output or results.result_dir(topology.name, workload.rate_per_s, base=request.results_base)
        out.mkdir(parents=True, exist_ok=True)
        results.mark_incomplete(out)  # removed once summary.json is written: a late failure leaves it marked
        (out / "logs").mkdir(exist_ok=True)
        # The services read the effective workload from a scratch file, not from the results:
        # its client section may hold credentials.
        workload_file = Path(scratch) / "workload.yaml"
        workload_file.write_text(yaml.safe_dump(workload.to_source(), sort_keys=False))
        serve_args = ["--pattern", topology.name, "--workload", str(workload_file),
                      "--bootstrap-servers", broker.bootstrap_servers, "--group-prefix", f"bench-{run_id}"]
        if request.kafka_config:
            serve_args += ["--kafka-config", str(request.kafka_config)]
        counts = {role: workload.instances.get(role, 1) for role in topology.roles}
        if agents is not None:
            agents.open(broker.bootstrap_servers)
        supervisor = Supervisor(serve_args, out / "logs", progress, agents.instances(counts) if agents else {})
        with _Interrupts(echo) as interrupts:
            return _measure(request, broker, supervisor, counts, run_id, client_extra, out, interrupts, echo,
                            workload_file, progress, agents.workers() if agents else {})


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


@contextlib.contextmanager
def _agents(request: RunRequest, pattern: str, run_id: str, echo: Callable[[str], None]) -> Iterator[remote.Agents | None]:
    """The hosts of the hosts file, to be opened on the run's broker; ended with the run (None: one host)."""
    placed = placement(request)
    if placed is None:
        yield None
        return
    # The agents get the workload without credentials: each host's services read its own --kafka-config.
    source = request.workload.to_source()
    source["client"] = {k: v for k, v in (source.get("client") or {}).items() if secrets.harmless(k)}
    agents = remote.Agents(placed, control.read_secret(placed.secret_file), run_id, pattern,
                           yaml.safe_dump(source, sort_keys=False), echo)
    try:
        yield agents
    finally:
        agents.close()


def _measure(request: RunRequest, broker: _Broker, supervisor: Supervisor, counts: dict[str, int], run_id: str,
             client_extra: dict, out: Path, interrupts: _Interrupts, echo: Callable[[str], None],
             workload_file: Path, progress: Progress, workers_placed: dict[int, remote.Host]) -> RunOutcome:
    """Services, the live audit, load, drain, the audit's verdict and results: everything a first
    Ctrl-C lets finish."""
    workload = request.workload
    topology = request.pattern.topology(workload.saga)
    # The audit follows every topic from before the first order to the end, in its own process.
    follower = AuditFollower(out, topology.name, workload_file, broker.bootstrap_servers, run_id,
                             request.kafka_config, out / "logs", progress)
    try:
        return _measure_with(request, broker, supervisor, counts, run_id, client_extra, out, interrupts, echo,
                             follower, workload_file, workers_placed)
    finally:
        follower.close()


def _measure_with(request: RunRequest, broker: _Broker, supervisor: Supervisor, counts: dict[str, int], run_id: str,
                  client_extra: dict, out: Path, interrupts: _Interrupts, echo: Callable[[str], None],
                  follower: AuditFollower, workload_file: Path, workers_placed: dict[int, remote.Host]) -> RunOutcome:
    workload = request.workload
    topology = request.pattern.topology(workload.saga)
    try:
        echo(f"starting {sum(counts.values())} service processes for {topology.name}")
        supervisor.start(counts)
        follower.wait_ready()
        timeseries = results.TimeseriesWriter(out / results.TIMESERIES)
        show = _progress(echo, workload.warmup_s, timeseries)

        drift = DriftSampler(workload.warmup_s, workload.duration_s, _reading(supervisor, broker, follower, lambda: load))

        def on_second(second: Second) -> None:
            if follower.exited() and not load.stop_requested.is_set():
                # Without its audit a run cannot judge an order: stop now, not at the end of a soak.
                echo(f"the live audit exited during the load (log {follower.log_path}): stopping the run")
                load.stop()
            follower.started(load.started_count)
            show(second)
            drift.on_second(second.t_s)

        if workload.load_workers > 1 or workers_placed:
            worker_args = ["--workload", str(workload_file)]
            if request.kafka_config:
                worker_args += ["--kafka-config", str(request.kafka_config)]
            load = LoadWorkers(broker.bootstrap_servers, workload, out, run_id, workload.load_workers, worker_args,
                               workload_file.parent, out / "logs", backlog=supervisor.backlog, on_second=on_second,
                               placed=workers_placed)
        else:
            load = LoadGenerator(broker.bootstrap_servers, workload, out, run_id, client_extra,
                                 backlog=supervisor.backlog, on_second=on_second)
        echo(f"load: {workload.arrival} {workload.rate_per_s:g} orders/s for {workload.duration_s:g}s "
             f"after {workload.warmup_s:g}s warm-up -> {out}")
        injector = FaultInjector(workload.faults, FaultContext(
            supervisor, broker.bootstrap_servers, client_extra, broker.cluster, topology.roles, broker.placed), 0.0,
            echo)

        def on_start(start_mono: float) -> None:
            follower.start(start_mono, load.start_wall_s, load.measure_start_s, load.measure_end_s)
            _start_injector(injector, start_mono)

        load.on_start = on_start
        before = _Usage.now(supervisor, broker, follower, load)
        try:
            interrupts.watch(load)
            load_result = load.run()
            drift.finish(time.monotonic() - load_result.start_s)
        finally:
            injector.finish()
            load.close()
        timeseries.close()
        used = _Usage.now(supervisor, broker, follower, load) - before
    finally:
        supervisor.stop()
    service_stats = supervisor.service_stats()
    echo("audit: reading the rest of every topic")
    follower.end(load_result.started_count)
    interrupts.auditing = True
    report, steps = follower.result(AUDIT_TIMEOUT_S, lambda: interrupts.audit_cut)
    if not report.read_to_end:
        echo("audit: the log was not read to its end (interrupted or too slow): orders judged as far as it went")
    if interrupts.audit_cut:
        load_result.interrupted = True  # interrupted during the audit: results, marked for what they are
    summary = _summary(request, broker, load_result, report, steps, used.cpu_s(), client_extra)
    summary["cost"] = cost(load_result.started_count, used.seconds, used.processes, used.broker_s,
                           {LOAD_GENERATOR: load.batching.counts(), **service_stats})
    summary["services"] = service_stats
    summary["faults"] = _fault_summaries(injector, load_result, report, service_stats, out)
    summary["drift"] = _drift(drift, load_result, out)
    summary["load_workers"] = load.describe()
    summary["hosts"] = remote.describe(supervisor.placed, {name: u.cpu_s for name, u in used.hosts.items()},
                                       load_result.started_count)
    for name, hist in load_result.histograms.items():
        write_hgrm(hist, out / hgrm_file(name))
    results.write_summary(out, summary)
    results.mark_complete(out)
    return RunOutcome(out, summary, summary_mod.exit_code(summary))


def _reading(supervisor: Supervisor, broker: _Broker, follower: AuditFollower,
             load: Callable[[], LoadGenerator]) -> Callable[[float], Reading]:
    """One reading of what drift compares: CPU of every process of the run, orders started, the broker's memory and disk."""
    def read(t_s: float) -> Reading:
        usage = _Usage.now(supervisor, broker, follower, load())
        cpu_s = sum(u.cpu_s for u in usage.processes.values()) + (usage.broker_s or 0.0)
        ours = broker.cluster is not None and broker.jvm_pids
        rss = sum(procstat.rss_mb(pid) or 0.0 for pid in broker.jvm_pids) if ours else None
        return Reading(t_s, cpu_s, load().started_count, rss, broker.cluster.disk_mb() if ours else None)
    return read


def _drift(drift: DriftSampler, load: LoadResult, out: Path) -> dict | None:
    """The first and the last tenth of the window: latency from e2e.hlog, the rest from the readings."""
    if len(drift.readings) < len(drift.marks):
        return None
    start, end, tenth = load.wall_s(load.measure_start_s), load.wall_s(load.measure_end_s), drift.tenth_s
    return drift.summary(window_summary(iter_hlog(out / E2E_HLOG), start, start + tenth),
                         window_summary(iter_hlog(out / E2E_HLOG), end - tenth, end))


def _start_injector(injector: FaultInjector, start_mono: float) -> None:
    injector.start_mono = start_mono
    if injector.plan:
        injector.start()


def _fault_summaries(injector: FaultInjector, load: LoadResult, report, service_stats: dict, out: Path) -> list[dict]:
    if not injector.records:
        return []
    # Interval timestamps are wall-clock labels counted from the run's start on the monotonic clock.
    def intervals():
        return ((h.get_start_time_stamp() / 1000 - load.start_wall_s, h.get_end_time_stamp() / 1000 - load.start_wall_s, h)
                for h in iter_hlog(out / E2E_HLOG))

    absorbed = sum(s["absorbed"] for s in service_stats.values()) + report.replayed_replies
    counts = {"orders_lost": report.lost, "orders_stuck": report.stuck, "duplicates_absorbed": absorbed,
              "duplicate_effects": report.duplicate_effects, "compensations": dict(report.compensations),
              "dead_letters": report.dead_letters}
    return [{**asdict(r), **fault_figures(r.at_s, r.end_s, load.seconds, intervals), **counts} for r in injector.records]


@dataclass
class _Usage:
    """CPU of every process of a run at one moment; the difference of two is what the load cost."""

    seconds: float
    processes: dict[str, procstat.Usage]  # the load generator (this process) and each role
    broker_s: float | None  # None for a cluster that is not ours
    hosts: dict[str, procstat.Usage] = dataclasses.field(default_factory=dict)  # services per other host

    @staticmethod
    def now(supervisor: Supervisor, broker: _Broker, follower: AuditFollower,
            load: LoadGenerator | LoadWorkers) -> "_Usage":
        own = (procstat.usage(os.getpid()) or procstat.Usage()) + load.usage()
        auditor = follower.usage() or procstat.Usage()
        broker_s = broker.placed.cpu_s() if broker.placed is not None else _jvm_cpu_s(broker.jvm_pids)
        return _Usage(time.monotonic(), {LOAD_GENERATOR: own, **supervisor.usage(), AUDITOR: auditor}, broker_s,
                      supervisor.usage_by_host())

    def __sub__(self, before: "_Usage") -> "_Usage":
        zero = procstat.Usage()
        broker_s = None if self.broker_s is None or before.broker_s is None else self.broker_s - before.broker_s
        return _Usage(self.seconds - before.seconds,
                      {name: u - before.processes.get(name, zero) for name, u in self.processes.items()}, broker_s,
                      {name: u - before.hosts.get(name, zero) for name, u in self.hosts.items()})

    def cpu_s(self) -> dict:
        services = {role: u.cpu_s for role, u in self.processes.items() if role not in (LOAD_GENERATOR, AUDITOR)}
        auditor = self.processes[AUDITOR].cpu_s if AUDITOR in self.processes else None
        return summary_mod.cpu_s(self.processes[LOAD_GENERATOR].cpu_s, services, self.broker_s, auditor)


def _summary(request: RunRequest, broker: _Broker, load: LoadResult, report, steps: dict, cpu: dict,
             client_extra: dict) -> dict:
    audit = report.to_dict()
    return summary_mod.build(
        mode="real", pattern=request.pattern.name, workload=request.workload, load=load, orders=report.orders(),
        latency_ms=summary_mod.latency_ms(load.histograms, steps),
        messages_per_order=audit.get("messages_per_order"), bytes_per_order=audit.get("bytes_per_order"),
        audit=audit, cpu_s=cpu,
        timeline={"start_wall_s": load.start_wall_s, "measure_start_s": load.wall_s(load.measure_start_s),
                  "measure_end_s": load.wall_s(load.measure_end_s)},
        environment={**results.environment(broker.kafka_version), "bootstrap_servers": broker.bootstrap_servers,
                     # A broker started by the run gets a discarded pre-load first; one already
                     # running is used as it is (warm, or not, as earlier runs left it).
                     "broker_started_by_run": broker.warm_up_messages is not None,
                     "broker_warm_up_messages": broker.warm_up_messages},
        config=_effective_config(request, broker, client_extra),
    )


def _effective_config(request: RunRequest, broker: _Broker, client_extra: dict) -> dict:
    """What every client and the broker actually ran with (redacted when written)."""
    w, servers = request.workload, broker.bootstrap_servers
    strip = lambda conf: {k: v for k, v in conf.items() if k != "logger"}
    group = "bench-<run>-<pattern>-<role>"
    config = {
        "producer": strip(clients.producer_config(servers, w, client_extra)),
        "consumer": strip(clients.consumer_config(servers, w, group, client_extra,
                                                  store_acknowledged=w.delivery != "exactly-once")),
        "kafka_config_file": str(request.kafka_config) if request.kafka_config else None,
        "runtime": {"batch_max": runtime.BATCH_MAX, "commit_interval_ms": runtime.COMMIT_INTERVAL_MS,
                    "transaction_interval_s": runtime.TX_INTERVAL_S, "delivery": w.delivery},
    }
    if broker.cluster is not None:
        props = Path(broker.cluster.nodes[0].dir, "server.properties").read_text().splitlines()
        config["broker"] = dict(line.split("=", 1) for line in props if "=" in line)
    return config
