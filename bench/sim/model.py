"""Wiring the model for one pattern and workload, and running it.

:func:`simulate` builds a :class:`World` (hosts, brokers, one consumer group per
role with its instances, the load generator) and runs the SimPy environment
until the load has ended and every order finished, or the drain time ran out.
Everything random is drawn from generators seeded by the workload's seed, so
the same inputs give the same numbers.
"""
from __future__ import annotations

import dataclasses
import gc

import numpy as np
import orjson

from bench.errors import BadInput
from bench.flow import events as ev
from bench.results.measurement import LoadResult, StartCounts
from bench.patterns.base import Pattern, Stateless, Topology
from bench.patterns.orchestration import ORCHESTRATION
from bench.sim import faults as faults_mod
from bench.kafka import kafkastats
from bench.sim.clock import Clock
from bench.sim.hosts import PLACEMENTS, WINDOW_S, Host, mean_utilisation, placement
from bench.sim.kafka import Cluster, Group, Producer, Transport
from bench.sim.load import LoadGenerator, Terminals
from bench.sim.profile import Profile
from bench.flow.saga import Processing
from bench.sim.service import Costs, Instance, SimOutbox, StepSamples
from bench.flow.workload import Workload

LOAD_GROUP = "load"


@dataclasses.dataclass(frozen=True)
class Scenario:
    """What to simulate. ``brokers``: cluster size (default: the replication factor).
    ``placement``: ``single`` puts every process and broker on one host with the profile's
    cores (the calibrated machine); ``spread`` gives each its own host."""

    pattern: Pattern
    workload: Workload
    profile: Profile
    placement: str = "single"
    brokers: int | None = None

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise BadInput(f"unknown placement {self.placement!r}: choose one of {', '.join(PLACEMENTS)}")
        if self.brokers is not None and self.brokers < self.workload.replication_factor:
            raise BadInput(f"{self.brokers} brokers cannot hold replication_factor {self.workload.replication_factor}")

    @property
    def broker_count(self) -> int:
        return self.brokers or self.workload.replication_factor

    @property
    def topology(self) -> Topology:
        return self.pattern.topology(self.workload.saga)


@dataclasses.dataclass
class SimResult:
    """What a simulated run measured, shaped like a real run's :class:`bench.results.measurement.LoadResult`
    plus what the real run learns from its audit and the processes' CPU."""

    load: LoadResult
    e2e: tuple[np.ndarray, np.ndarray, np.ndarray]  # end s, latency s, completed flag (measured orders)
    slip: tuple[np.ndarray, np.ndarray]  # send s, slip s
    steps: StepSamples
    messages: dict[str, int]  # topic -> messages produced
    bytes_per_message: dict[str, float]  # topic -> mean key + value bytes
    cpu_s: dict[str, float]  # owner (role, broker, load_generator) -> CPU seconds
    elapsed_s: float  # simulated time until the end of the drain
    duplicates: int
    unexpected_outcomes: int
    mean_utilisation: float | None
    processed: dict[str, int]  # role -> messages handled
    requests: dict[str, int]  # role (and load_generator) -> Kafka requests: fetch responses taken, produce requests sent
    # role ("all": every client) -> messages per produce request and per fetch, as a real run reports them
    batching: dict[str, dict[str, float | None]] = dataclasses.field(default_factory=dict)
    # The model's own per-order record (a real run keeps none: its LoadResult has counts only).
    started: dict[str, int] = dataclasses.field(default_factory=dict)  # orderId -> intended start, us
    outcomes: dict[str, str] = dataclasses.field(default_factory=dict)  # orderId -> first terminal status


def linger_s(workload: Workload) -> float:
    client = workload.client
    value = client.get("linger.ms", client.get("queue.buffering.max.ms", 5))
    return float(value) / 1000.0


def _costs(profile: Profile, role: str, processing: Processing, seed=None) -> Costs:
    main, cpu = profile.service_us, profile.service_cpu_us
    # Calibration measures the orchestrator against what its messages predict (bench.sim.calibrate).
    orchestrator = role == ORCHESTRATION.coordinator
    scale, cpu_scale = (main["orchestrator_scale"], cpu["orchestrator_scale"]) if orchestrator else (1.0, 1.0)
    # Processing is a sleep, which oversleeps by the calibrated amount; a distribution is drawn
    # per message, as the runtime draws it.
    overshoot = profile.sleep_overshoot_us / 1e6 if processing else 0.0
    draws = None
    if processing.sigma:
        draw = processing.sampler(seed)
        draws = iter(draw, None)
    return Costs(in_s=main["in"] * scale / 1e6, out_s=main["out"] * scale / 1e6, batch_s=main["batch"] / 1e6,
                 # a sleep per message costs CPU too (to sleep, and to wake on the timer)
                 cpu_in_s=(cpu["in"] * cpu_scale + (profile.sleep_cpu_us if processing else 0.0)) / 1e6, cpu_out_s=cpu["out"] * cpu_scale / 1e6,
                 cpu_batch_s=cpu["batch"] / 1e6, processing_s=overshoot + (0.0 if draws else processing.median_s),
                 in_draws=draws, cpu_request_s=cpu.get("request", 0.0) / 1e6,
                 cpu_idle_cores=cpu.get("idle_cores", 0.0))


class World:
    """The model of one run: every process, broker and partition of the scenario."""

    def __init__(self, scenario: Scenario, run_id: str) -> None:
        w, profile, pattern = scenario.workload, scenario.profile, scenario.topology
        self.scenario = scenario
        self.env = env = Clock()
        rng = np.random.default_rng([w.seed, 6])
        self.samples: dict[str, list] = {}
        self.steps = StepSamples()
        self.roles = pattern.roles
        counts = {role: w.instances.get(role, 1) for role in pattern.roles}
        names = ([f"broker-{b}" for b in range(scenario.broker_count)] + ["load_generator"]
                 + [f"{role}-{i}" for role, n in counts.items() for i in range(n)])
        self.hosts: dict[str, Host] = placement(names, scenario.placement, env, profile.cores, profile.contention_us,
                                                profile.transport[0].utilisation or 0.0)
        spread = scenario.placement == "spread"
        hop_extra_s = profile.network_rtt_us / 1e6 if spread else 0.0
        replication_s = ((profile.replication_us + profile.network_rtt_us * spread) / 1e6
                         if w.replication_factor > 1 else 0.0)
        transport = Transport(env, profile.transport, scenario.broker_count, rng, profile.wakeup_us,
                              profile.broker_cores_line)
        self.cluster = Cluster(env, w.partitions, [self.hosts[f"broker-{b}"] for b in range(scenario.broker_count)],
                               transport, replication_s)
        self.linger_s = linger_s(w)
        # A fetch round trip: the quickest transport calibration saw (request, response, no waiting).
        self.fetch_rtt_s = profile.transport[0].transport_us.quantile(0.1) / 1e6
        self.groups: dict[str, Group] = {}
        self.instances: dict[str, list[Instance]] = {}
        self.retired: dict[str, list[Instance]] = {}  # role -> instances a kill fault replaced
        self.producers: dict[str, list[Producer]] = {}  # role -> every producer its instances had
        replays = any(f.type in ("kill", "pause") for f in w.faults)
        if replays:
            self.cluster.logged = frozenset(pattern.restored_topics())
        for role, n in counts.items():
            group = self.groups[role] = Group(env, role, pattern.subscriptions[role], w.partitions)
            self.cluster.subscribe(group)
            self.instances[role] = []
            for i in range(n):
                instance = self.new_instance(role, i, replays)
                group.members.append(instance)
                self.instances[role].append(instance)
            group.assign()
        self._build_load(w, profile, rng, run_id, hop_extra_s)
        self.faults = faults_mod.schedule(self, w.faults)
        if profile.service_cpu_us.get("idle_cores") or profile.auditor_us:
            env.process(self._background(profile.service_cpu_us.get("idle_cores", 0.0), profile.auditor_us / 1e6))

    def new_instance(self, role: str, index: int, replays: bool = False) -> Instance:
        """A fresh process of ``role`` (empty memory: a restarted instance starts here too)."""
        w, profile, pattern = self.scenario.workload, self.scenario.profile, self.scenario.topology
        host = self.hosts[f"{role}-{index}"]
        extra_s = profile.network_rtt_us / 1e6 if self.scenario.placement == "spread" else 0.0
        costs = _costs(profile, role, w.processing_of(role), (w.seed, role, index))
        producer = Producer(self.env, self.cluster, host, self.linger_s, extra_s, owner=role,
                            request_cpu_s=costs.cpu_request_s, flushed=True)  # flushed after each batch
        self.producers.setdefault(role, []).append(producer)
        outbox = SimOutbox(pattern.span_finder(), self.cluster, producer, self.steps, self.samples)
        handler = pattern.handler(role, w)
        ticks = type(handler).tick is not Stateless.tick
        return Instance(self.env, role, index, handler, outbox, host, costs,
                        ticks=ticks, replays=replays, restore_from=pattern.restore_from.get(role, ()),
                        fetch_rtt_s=self.fetch_rtt_s)

    def _build_load(self, w: Workload, profile: Profile, rng: np.random.Generator, run_id: str,
                    extra_s: float) -> None:
        host = self.hosts["load_generator"]
        producer = Producer(self.env, self.cluster, host, self.linger_s, extra_s)
        self.terminals = Terminals(w.warmup_s, w.warmup_s + w.duration_s)
        group = Group(self.env, LOAD_GROUP, (ev.ORDER_EVENTS,), w.partitions)
        self.cluster.subscribe(group)
        # Its CPU is charged per order below; the reader's costs only set its pace.
        costs = dataclasses.replace(_costs(profile, LOAD_GROUP, Processing()), cpu_in_s=0.0, cpu_out_s=0.0, cpu_batch_s=0.0,
                                    cpu_request_s=0.0, cpu_idle_cores=0.0)
        reader = Instance(self.env, "load_generator", 0, self.terminals,
                          SimOutbox(None, self.cluster, producer, self.steps), host, costs, fetch_rtt_s=self.fetch_rtt_s)
        group.members.append(reader)
        group.assign()
        self.reader = reader
        per_order_s = profile.load_generator["order_us"] / 1e6
        idle_s = profile.load_generator["idle_cores"]  # per second of load
        per_request_s = profile.load_generator.get("request_us", 0.0) / 1e6
        charged = 0  # its requests (produce requests, the reader's fetch responses) charged so far

        def charge(orders: int, seconds: float) -> None:
            nonlocal charged
            requests = producer.requests + reader.fetches
            host.charge("load_generator", orders * per_order_s + idle_s * seconds + (requests - charged) * per_request_s)
            charged = requests

        self.load = LoadGenerator(self.env, w, producer, self.terminals, profile.slip_us.draws_s(rng), run_id,
                                  backlog=self.backlog, on_cpu=charge)

    def _background(self, idle_cores: float, auditor_s: float):
        """What no message handling charges, a load window of the hosts at a time (so it counts toward
        the wait for cores as the handling does): every live service instance's CPU at rest, and the
        live audit's CPU for the records produced in the window, on the load generator's host."""
        idle_s = idle_cores * WINDOW_S
        audit_host, audited = self.hosts["load_generator"], 0
        while True:
            yield self.env.timeout(WINDOW_S)
            if idle_s:
                for role, insts in self.instances.items():
                    for inst in insts:
                        if inst.alive:
                            inst.host.charge(role, idle_s)
            if auditor_s:
                produced = sum(self.cluster.messages.values())
                audit_host.charge("auditor", (produced - audited) * auditor_s)
                audited = produced

    def backlog(self) -> int:
        """Messages waiting to be handled by the services (the model's consumer lag)."""
        return sum(group.backlog() for group in self.groups.values())

    def run(self) -> None:
        self.env.run_until(self.env.process(self.load.run()))


def simulate(scenario: Scenario, run_id: str | None = None) -> SimResult:
    """Run the model; ``run_id`` names the orders (and so decides which fail, as in a real run)."""
    w = scenario.workload
    world = World(scenario, run_id or f"sim{w.seed}")
    # The model allocates containers by the million (events, messages, batches) and makes almost no
    # reference cycles (some 600 objects in 75,000 orders): the cyclic collector's passes over the
    # short-lived ones were 5% of a run's CPU. Paused for the run; what it left is collected as usual after.
    collecting = gc.isenabled()
    gc.disable()
    try:
        world.run()
    finally:
        if collecting:
            gc.enable()
    return _result(world)


def _result(world: World) -> SimResult:
    w, load, terminals = world.scenario.workload, world.load, world.terminals
    counts = _client_counts(world)
    messages = dict(world.cluster.messages)
    cpu: dict[str, float] = {}
    for host in {id(h): h for h in world.hosts.values()}.values():
        for owner, seconds in host.cpu_s.items():
            cpu[owner] = cpu.get(owner, 0.0) + seconds
    # The handlers are the real ones, so without faults every outcome is decide()'s by construction;
    # with faults (replays, restores) the model checks it, as the audit does for a real run.
    unexpected = sum(1 for order_id, status in terminals.outcomes.items()
                     if status != w.saga.expected_outcome(order_id)) if w.faults else 0
    start_counts = StartCounts(0)
    for t0_us in load.started.values():
        start_counts.add(t0_us)
    load_result = LoadResult(
        started_count=len(load.started), finished_count=len(terminals.outcomes), start_counts=start_counts,
        start_s=0.0, start_wall_s=0.0,
        measure_start_s=w.warmup_s, measure_end_s=w.warmup_s + w.duration_s,
        offered_in_window=load.offered_in_window, scheduled_in_window=load.scheduled_in_window,
        finished_in_window=terminals.finished_in_window, send_failures=0, seconds=load.seconds,
    )
    return SimResult(
        load=load_result,
        e2e=(np.frombuffer(terminals.e2e_end_s), np.frombuffer(terminals.e2e_s),
             np.frombuffer(terminals.e2e_completed, dtype=np.int8).astype(bool)),
        slip=(np.frombuffer(load.slip_end_s), np.frombuffer(load.slip_s)),
        steps=world.steps,
        messages=messages,
        bytes_per_message=_sizes(world.samples, load.padding),
        cpu_s=cpu,
        elapsed_s=world.env.now,
        duplicates=terminals.duplicates,
        unexpected_outcomes=unexpected,
        started=load.started,
        outcomes=terminals.outcomes,
        mean_utilisation=mean_utilisation(world.hosts, world.env.now),
        processed={role: c["fetched"] for role, c in counts.items() if role != "load_generator"},
        batching={**{role: kafkastats.ratios(c) for role, c in counts.items()},
                  "all": kafkastats.ratios({key: sum(c[key] for c in counts.values()) for key in kafkastats.COUNTS})},
        requests={role: c["produce_requests"] + c["fetch_requests"] for role, c in counts.items()},
    )


def _client_counts(world: World) -> dict[str, dict[str, int]]:
    """Per role (and the load generator's producer and terminal reader), every instance it had
    included (the live ones and those a kill fault replaced): messages produced and fetched, and the
    produce requests and fetch responses that carried them, as a real run counts them from
    librdkafka's statistics (``kafkastats.COUNTS``). The model counts only fetch responses that
    brought messages: a real consumer's empty ones, one per fetch.wait.max.ms when nothing comes, are
    few at any rate that matters here."""
    counts = {}
    for role, live in world.instances.items():
        insts = live + world.retired.get(role, [])
        counts[role] = {"produced": sum(i.outbox.emitted for i in insts),
                        "produce_requests": sum(p.requests for p in world.producers.get(role, ())),
                        "fetched": sum(i.processed for i in insts), "fetch_requests": sum(i.fetches for i in insts)}
    counts["load_generator"] = {"produced": len(world.load.started), "produce_requests": world.load.producer.requests,
                              "fetched": world.reader.processed, "fetch_requests": world.reader.fetches}
    return counts


def _sizes(samples: dict[str, list], padding: str) -> dict[str, float]:
    """Mean bytes on the wire (key + JSON value with its ``ts_us`` stamp) per topic."""
    stamp = 1_700_000_000_000_000
    sizes = {}
    for topic, events in samples.items():
        sizes[topic] = float(np.mean([len(orjson.dumps({**e, "ts_us": stamp})) + len(e["orderId"]) for e in events]))
    created = {"orderId": "sim1-100000", "status": ev.CREATED, "t0_us": stamp, "ts_us": stamp, "amount": 10, "items": 1}
    if padding:
        created["padding"] = padding
    sizes[ev.ORDER_CREATED] = float(len(orjson.dumps(created)) + len(created["orderId"]))
    return sizes
