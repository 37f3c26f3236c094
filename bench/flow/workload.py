"""Workloads: one YAML file per scenario, loaded into a frozen, validated :class:`Workload`.

Every error is a :class:`WorkloadError` whose message is one line naming the file
and the key, so the CLI can print it as is.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any


from bench import inputs
from bench.errors import BadInput
from bench.flow import saga as saga_mod
from bench.flow.arrivals import ARRIVALS
from bench.flow.durations import parse_duration
from bench.flow.saga import Processing, Saga, SagaError

DEFAULT_WORKLOAD = Path(__file__).resolve().parents[2] / "workloads" / "default.yaml"

FAULT_TYPES = ("kill", "pause", "broker-kill", "poison", "duplicate", "slow")
ROLE_FAULTS = ("kill", "pause", "slow")  # the faults that hit a role's processes
DELIVERIES = ("at-least-once", "exactly-once")
ACKS = ("all", "-1", "0", "1")
# The client settings every process of a run shares; workloads/default.yaml says why each is so.
DEFAULT_CLIENT: Mapping[str, str | int | float | bool] = MappingProxyType({
    "linger.ms": 5,
    "compression.type": "none",
    "fetch.wait.max.ms": 100,
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1500,
})

# YAML key -> field name, where they differ (fields carry their unit in the name).
_FIELD_OF_KEY = {
    "rate": "rate_per_s",
    "duration": "duration_s",
    "warmup": "warmup_s",
    "drain": "drain_s",
    "step_timeout": "step_timeout_s",
    "latency_bound_p99": "latency_bound_p99_s",
}
_KEY_OF_FIELD = {field: key for key, field in _FIELD_OF_KEY.items()}
_DURATION_KEYS = ("duration", "warmup", "drain", "step_timeout", "latency_bound_p99")
# (field, must be > 0): the numeric fields stored as float.
_FLOAT_FIELDS = (
    ("rate_per_s", True),
    ("duration_s", True),
    ("warmup_s", False),
    ("drain_s", False),
    ("step_timeout_s", True),
    ("latency_bound_p99_s", True),
)
MAX_PAYLOAD_BYTES = 900_000  # padding, leaving room for the event's other fields under 1 MB
MAX_RATE_PER_S = 1_000_000.0  # beyond, the arrival gaps fall below the clock's resolution
FAULT_KEYS = ("type", "at", "duration", "role", "instance", "count", "topic", "delay")

class WorkloadError(BadInput):
    """A workload that cannot be used; the message is one line naming file and key."""


@dataclasses.dataclass(frozen=True)
class Fault:
    """One injected fault. ``at_s`` counts from the start of load, warm-up included;
    ``instance`` is 0-based within ``role``."""

    type: str
    at_s: float
    duration_s: float | None = None
    role: str | None = None
    instance: int | None = None
    count: int | None = None
    topic: str | None = None
    delay_s: float | None = None


@dataclasses.dataclass(frozen=True)
class Workload:
    """One benchmark scenario. Mapping fields list every role/step; when built, a
    mapping may name only what differs from the defaults, the rest is filled in."""

    name: str
    description: str = ""
    arrival: str = "poisson"
    rate_per_s: float = 1000.0
    duration_s: float = 60.0
    warmup_s: float = 10.0
    drain_s: float = 30.0  # max wait after load for in-flight orders to finish
    seed: int = 1
    # "auto": as many as the role with the most instances, so each instance owns one partition.
    # More buy nothing on one broker: they split every batch, and so every request, that many ways.
    partitions: int | str = "auto"
    replication_factor: int = 1
    min_insync_replicas: int = 1
    # Processes the load comes from, each starting its share of the one schedule
    # (bench.run.load_workers); 1: the run's own process, as always.
    load_workers: int = 1
    acks: str = "all"
    # The saga's steps (bench.flow.saga); None: the default saga, payment -> inventory -> shipping.
    saga: Saga | Mapping | None = None
    instances: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # The default saga's failure probabilities by step, as workloads wrote them before `saga:`.
    # Read into the saga; empty once built.
    failures: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # Work per message of the coordinators (order, orchestrator); a step's lives in its saga entry.
    # Without `saga:`, entries for the default saga's steps are read into it.
    processing: Mapping[str, Processing] = dataclasses.field(default_factory=dict)
    payload_bytes: int = 0  # extra padding in each order event
    step_timeout_s: float = 5.0
    step_retries: int = 2
    delivery: str = "at-least-once"
    latency_bound_p99_s: float = 0.5  # a valid sweep point's p99 must stay under this
    client: Mapping[str, str | int | float | bool] = dataclasses.field(default_factory=dict)
    faults: tuple[Fault, ...] = ()
    source: Path | None = None
    partitions_auto: bool = dataclasses.field(default=False, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _Validator(self).run()

    @property
    def roles(self) -> tuple[str, ...]:
        """Every role some pattern runs: the coordinators and one per step."""
        return (*saga_mod.COORDINATORS, *self.saga.names)

    def processing_of(self, role: str) -> Processing:
        if role in self.saga.by_name:
            return self.saga.step(role).processing
        return self.processing.get(role, Processing())

    def with_overrides(self, **changes: Any) -> Workload:
        """A copy with fields replaced (field names, e.g. ``rate_per_s=5000``), validated again.
        A mapping given here replaces the whole mapping; its missing keys take the defaults.
        Partitions left to "auto" follow changed instances. ``failures`` (and ``processing`` of
        a step) rebuild the default saga, as in a workload without ``saga:``."""
        if self.partitions_auto and "partitions" not in changes:
            changes["partitions"] = "auto"
        if "saga" in changes and "instances" not in changes:
            # The old saga's steps are not the new one's: keep the counts of the roles both have.
            new = changes["saga"]
            if not isinstance(new, Saga):
                try:
                    new = saga_mod.parse(new) if new is not None else saga_mod.DEFAULT
                except SagaError:
                    new = None  # the validator names the problem
            if new is not None:
                keep = set(saga_mod.COORDINATORS) | set(new.names)
                changes["instances"] = {r: n for r, n in self.instances.items() if r in keep}
        names = self.saga.names
        legacy = "failures" in changes or any(k in names for k in changes.get("processing", {}))
        if legacy and "saga" not in changes:
            if names != saga_mod.DEFAULT.names:
                raise WorkloadError(f"{self.name}: failures and a step's processing override the default saga; "
                                    "this workload has its own: override saga instead")
            changes.setdefault("failures", {s.name: s.failure for s in self.saga.steps})
            changes.setdefault("processing", {**{s.name: s.processing for s in self.saga.steps}, **self.processing})
            changes["saga"] = None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable fields, for summary.json."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            if not field.init:
                continue
            value = getattr(self, field.name)
            if field.name == "saga":
                value = value.to_source()
            elif field.name == "processing":
                value = {role: p.to_source() for role, p in value.items()}
            elif field.name == "failures":
                continue  # read into the saga
            elif isinstance(value, Mapping):
                value = dict(value)
            elif field.name == "faults":
                value = [dataclasses.asdict(fault) for fault in value]
            elif field.name == "source" and value is not None:
                value = str(value)
            out[field.name] = value
        return out

    def to_source(self) -> dict[str, Any]:
        """The workload as YAML keys (durations in seconds), so ``parse_workload`` rebuilds
        it exactly: how a run hands its effective workload to its service processes."""
        out = {_KEY_OF_FIELD.get(k, k): v for k, v in self.to_dict().items() if k != "source"}
        out["faults"] = [
            {k.removesuffix("_s"): v for k, v in fault.items() if v is not None} for fault in out["faults"]
        ]
        return out

    def __reduce__(self) -> tuple[Any, ...]:
        # mappingproxy cannot be pickled (multiprocessing, deepcopy); rebuild from plain dicts.
        values = {field.name: getattr(self, field.name) for field in dataclasses.fields(self) if field.init}
        if self.partitions_auto:
            values["partitions"] = "auto"
        return (type(self), tuple(dict(v) if isinstance(v, Mapping) else v for v in values.values()))


def load_workload(path: str | Path | None = None) -> Workload:
    """Load and validate a workload file; ``None`` loads :data:`DEFAULT_WORKLOAD`
    (or the built-in defaults when the package is installed without it)."""
    if path is None:
        if not DEFAULT_WORKLOAD.exists():
            return Workload(name="default")
        path = DEFAULT_WORKLOAD
    path = Path(path)
    # The one reader: a regular file or a pipe, bounded, strict UTF-8, YAML safe-loaded within
    # bounds of nesting and alias expansion; its errors never quote the line (it may be a secret).
    raw = inputs.read_yaml(path, "workload", WorkloadError)
    return parse_workload(raw, source=path)


def parse_workload(raw: Any, source: str | Path | None = None) -> Workload:
    """Build a workload from an already parsed YAML document (a mapping of YAML keys)."""
    where = str(source) if source is not None else "workload"
    if not isinstance(raw, Mapping):
        raise WorkloadError(f"{where}: expected a mapping of workload keys, got {type(raw).__name__}")
    if "name" not in raw:
        raise WorkloadError(f"{where}: name is required")
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in KNOWN_KEYS:
            raise WorkloadError(f"{where}: unknown key {key!r} (known: {', '.join(KNOWN_KEYS)})")
        if key in _DURATION_KEYS:
            value = _duration(value, where, key)
        elif key == "faults":
            value = _faults(value, where)
        fields[_FIELD_OF_KEY.get(key, key)] = value
    return Workload(**fields, source=Path(source) if source is not None else None)


KNOWN_KEYS = tuple(
    _KEY_OF_FIELD.get(field.name, field.name) for field in dataclasses.fields(Workload)
    if field.init and field.name != "source"
)


def _duration(value: Any, where: str, key: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as err:
        raise WorkloadError(f"{where}: {key}: {err}") from None


def _mapping(value: Any, where: str, key: str) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise WorkloadError(f"{where}: {key} must be a mapping, got {value!r}")
    return value


def _faults(value: Any, where: str) -> tuple[Fault, ...]:
    if not isinstance(value, (list, tuple)):
        raise WorkloadError(f"{where}: faults must be a list of mappings, got {value!r}")
    return tuple(_fault(item, where, f"faults[{i}]") for i, item in enumerate(value))


def _fault(item: Any, where: str, key: str) -> Fault:
    if isinstance(item, Fault):
        return item
    item = _mapping(item, where, key)
    for name in item:
        if name not in FAULT_KEYS:
            raise WorkloadError(f"{where}: unknown key '{key}.{name}' (known: {', '.join(FAULT_KEYS)})")
    for required in ("type", "at"):
        if required not in item:
            raise WorkloadError(f"{where}: {key}.{required} is required")
    durations = {
        name: _duration(item[name], where, f"{key}.{name}") for name in ("at", "duration", "delay") if name in item
    }
    return Fault(
        type=item["type"],
        at_s=durations["at"],
        duration_s=durations.get("duration"),
        role=item.get("role"),
        instance=item.get("instance"),
        count=item.get("count"),
        topic=item.get("topic"),
        delay_s=durations.get("delay"),
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _kind(value: Any) -> str:
    """What a value is, without the value (it may be a secret)."""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return "null" if value is None else type(value).__name__


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Validator:
    """Checks one workload and normalises its fields in place (it is frozen, hence setattr)."""

    def __init__(self, workload: Workload) -> None:
        self.w = workload
        self.where = str(workload.source) if workload.source is not None else f"workload {workload.name!r}"

    def fail(self, key: str, problem: str) -> None:
        raise WorkloadError(f"{self.where}: {key} {problem}")

    def set(self, field: str, value: Any) -> None:
        object.__setattr__(self.w, field, value)

    def run(self) -> None:
        w = self.w
        if not (isinstance(w.name, str) and w.name.strip()):
            self.fail("name", f"must be a non-empty string, got {w.name!r}")
        if not isinstance(w.description, str):
            self.fail("description", f"must be a string, got {w.description!r}")
        self.choice("arrival", w.arrival, tuple(ARRIVALS))
        for field, positive in _FLOAT_FIELDS:
            self.number(_KEY_OF_FIELD[field], getattr(w, field), positive=positive)
            self.set(field, float(getattr(w, field)))
        self.integer("seed", w.seed, minimum=0)
        inputs.check_int("seed", w.seed, self.where, WorkloadError)
        for field in ("duration_s", "warmup_s", "drain_s", "step_timeout_s", "latency_bound_p99_s"):
            if getattr(w, field) > inputs.RANGES["duration_s"][1]:
                self.fail(_KEY_OF_FIELD[field], f"must be at most {inputs.RANGES['duration_s'][1]:g}s")
        self.saga()
        self.instances()
        if w.partitions == "auto":
            self.set("partitions", max(w.instances.values()))
            self.set("partitions_auto", True)
        for field in ("partitions", "replication_factor", "min_insync_replicas", "load_workers"):
            self.integer(field, getattr(w, field), minimum=1)
            inputs.check_int(field, getattr(w, field), self.where, WorkloadError)
        if w.min_insync_replicas > w.replication_factor:
            self.fail(
                "min_insync_replicas",
                f"({w.min_insync_replicas}) must not exceed replication_factor ({w.replication_factor})",
            )
        # YAML reads `acks: 1` as an int; librdkafka takes either, we keep one spelling.
        self.set("acks", str(w.acks) if _is_int(w.acks) else w.acks)
        self.choice("acks", w.acks, ACKS)
        self.integer("payload_bytes", w.payload_bytes, minimum=0)
        if w.payload_bytes > MAX_PAYLOAD_BYTES:
            self.fail("payload_bytes", f"({w.payload_bytes}) must be at most {MAX_PAYLOAD_BYTES}: a larger order-created "
                      "event passes librdkafka's and the broker's default message.max.bytes (1 MB)")
        if w.rate_per_s > MAX_RATE_PER_S:
            self.fail("rate", f"({w.rate_per_s:g}/s) must be at most {MAX_RATE_PER_S:g}/s")
        if w.rate_per_s * w.duration_s < 1:
            self.fail("rate", f"({w.rate_per_s:g}/s) starts no order in a {w.duration_s:g}s measurement: "
                      "raise the rate or the duration")
        self.integer("step_retries", w.step_retries, minimum=0)
        inputs.check_int("step_retries", w.step_retries, self.where, WorkloadError)
        self.choice("delivery", w.delivery, DELIVERIES)
        if w.delivery == "exactly-once" and w.acks not in ("all", "-1"):
            self.fail("acks", f"must be 'all' for delivery 'exactly-once', got {w.acks!r}")
        self.client()
        self.faults()

    def choice(self, key: str, value: Any, known: tuple[str, ...]) -> None:
        if value not in known:
            self.fail(key, f"must be one of {', '.join(known)}; got {value!r}")

    def number(self, key: str, value: Any, *, positive: bool) -> None:
        if not _is_number(value) or value < 0 or (positive and value == 0):
            self.fail(key, f"must be a number {'> 0' if positive else '>= 0'}, got {value!r}")

    def integer(self, key: str, value: Any, *, minimum: int) -> None:
        if not _is_int(value) or value < minimum:
            self.fail(key, f"must be an integer >= {minimum}, got {value!r}")

    def per_key(self, field: str, known: tuple[str, ...], defaults: Mapping[str, Any]) -> dict[str, Any]:
        key = _KEY_OF_FIELD.get(field, field)
        given = getattr(self.w, field)
        if not isinstance(given, Mapping):
            self.fail(key, f"must be a mapping, got {given!r}")
        for name in given:
            if name not in known:
                self.fail(f"{key}.{name}", f"is not known (known: {', '.join(known)})")
        return {**defaults, **given}

    def saga(self) -> None:
        """The saga, from ``saga:`` or, without it, the default saga with ``failures:`` and the
        steps' ``processing:`` read in; then the coordinators' processing."""
        w = self.w
        given = w.saga
        processing = dict(self.mapping("processing", w.processing))
        if given is None:
            failures = self.mapping("failures", w.failures)
            for name, probability in failures.items():
                if name not in saga_mod.DEFAULT.names:
                    self.fail(f"failures.{name}", f"is not a step of the default saga ({', '.join(saga_mod.DEFAULT.names)}); "
                              "to define your own steps, write saga: {steps: [{name: ..., failure: ...}, ...]}")
                if not (_is_number(probability) and 0 <= probability <= 1):
                    self.fail(f"failures.{name}", f"must be a probability in [0, 1], got {probability!r}")
            steps = []
            for entry in saga_mod.DEFAULT_STEPS:
                step, name = dict(entry), entry["name"]
                step["failure"] = failures.get(name, step["failure"])
                if name in processing:
                    step["processing"] = self.processing_value(f"processing.{name}", processing.pop(name))
                steps.append(step)
            given = {"steps": steps}
        elif w.failures:
            self.fail("failures", "cannot be given with saga: give each step its probability in saga.steps, "
                      "e.g. {name: payment, failure: 0.02}")
        try:
            saga = given if isinstance(given, Saga) else saga_mod.parse(given, "saga")
        except SagaError as err:
            raise WorkloadError(f"{self.where}: {err}") from None
        self.set("saga", saga)
        self.set("failures", MappingProxyType({}))
        for role, value in processing.items():
            if role in saga.by_name:
                self.fail(f"processing.{role}", f"is a step: give its processing in saga.steps "
                          f"({{name: {role}, processing: 2ms}})")
            if role not in saga_mod.COORDINATORS:
                self.fail(f"processing.{role}", f"is not known (known: {', '.join(saga_mod.COORDINATORS)}; "
                          "a step's processing is in its saga.steps entry)")
            processing[role] = self.processing_value(f"processing.{role}", value)
        self.set("processing", MappingProxyType({**dict.fromkeys(saga_mod.COORDINATORS, Processing()), **processing}))

    def processing_value(self, key: str, value: Any) -> Processing:
        try:
            return saga_mod.parse_processing(value, key)
        except SagaError as err:
            raise WorkloadError(f"{self.where}: {err}") from None

    def mapping(self, key: str, value: Any) -> Mapping:
        if not isinstance(value, Mapping):
            self.fail(key, f"must be a mapping, got {value!r}")
        return value

    def instances(self) -> None:
        roles = self.w.roles
        merged = self.per_key("instances", roles, dict.fromkeys(roles, 1))
        for role, count in merged.items():
            self.integer(f"instances.{role}", count, minimum=1)
            inputs.check_int("instances", count, self.where, WorkloadError, key=f"instances.{role}")
        self.set("instances", MappingProxyType(merged))

    def client(self) -> None:
        # Nothing of the client section is ever quoted: it may hold a credential.
        if not isinstance(self.w.client, Mapping):
            self.fail("client", f"must be a mapping of property: value, got {_kind(self.w.client)}")
        merged = {**DEFAULT_CLIENT, **self.w.client}
        for prop, value in merged.items():
            if not isinstance(prop, str):
                self.fail("client", f"property names must be text, got {_kind(prop)}")
            if not isinstance(value, (str, int, float, bool)):
                self.fail(f"client.{prop}", f"must be a single value (text, number, true or false), got {_kind(value)}")
            if isinstance(value, float) and not math.isfinite(value):
                self.fail(f"client.{prop}", "must be a finite number")
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
                self.fail(f"client.{prop}", "is out of range")
        if "acks" in merged:
            self.fail("client.acks", "is set by the top-level 'acks' key")
        self.set("client", MappingProxyType(merged))

    def faults(self) -> None:
        faults = self.w.faults
        if not isinstance(faults, (list, tuple)):
            self.fail("faults", f"must be a list, got {faults!r}")
        faults = tuple(_fault(item, self.where, f"faults[{i}]") for i, item in enumerate(faults))
        # A fault on a process without a role hits the saga's first step.
        faults = tuple(dataclasses.replace(f, role=self.w.saga.steps[0].name)
                       if f.role is None and f.type in ROLE_FAULTS else f for f in faults)
        load_end_s = self.w.warmup_s + self.w.duration_s
        for i, fault in enumerate(faults):
            self.fault(f"faults[{i}]", fault, load_end_s)
        self.set("faults", faults)

    def fault(self, key: str, fault: Fault, load_end_s: float) -> None:
        self.choice(f"{key}.type", fault.type, FAULT_TYPES)
        self.number(f"{key}.at", fault.at_s, positive=False)
        if fault.at_s >= load_end_s:
            end = f"{load_end_s:g}s = warmup + duration"
            self.fail(f"{key}.at", f"({fault.at_s:g}s) is not before the load ends ({end})")
        for name, value in (("duration", fault.duration_s), ("delay", fault.delay_s)):
            if value is not None:
                self.number(f"{key}.{name}", value, positive=False)
        if fault.role is not None:
            self.choice(f"{key}.role", fault.role, self.w.roles)
        if fault.instance is not None:
            self.integer(f"{key}.instance", fault.instance, minimum=0)
            inputs.check_int("fault.instance", fault.instance, self.where, WorkloadError, key=f"{key}.instance")
            if fault.role is None:
                self.fail(f"{key}.instance", "needs a role")
            elif fault.instance >= (count := self.w.instances[fault.role]):
                self.fail(f"{key}.instance", f"is {fault.instance} but instances.{fault.role} is {count} (0-based)")
        if fault.count is not None:
            self.integer(f"{key}.count", fault.count, minimum=1)
            inputs.check_int("fault.count", fault.count, self.where, WorkloadError, key=f"{key}.count")
        if fault.topic is not None and not (isinstance(fault.topic, str) and fault.topic):
            self.fail(f"{key}.topic", f"must be a non-empty string, got {fault.topic!r}")
