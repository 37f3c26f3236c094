"""What the model needs to know about a real broker and machine, as `bench calibrate` measured it.

A profile is a JSON file. Durations carry their unit in the key (``_us``, ``_s``).
Latency distributions are stored whole, as an empirical quantile function
(:class:`Distribution`), so the model reproduces their tails, not only their means.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench import inputs
from bench.errors import BadInput

SCHEMA_VERSION = 1
DEFAULT_PROFILE = Path(__file__).resolve().parent / "profiles" / "default.json"

# Probabilities at which a distribution's quantiles are stored: dense in the tail.
QUANTILE_PROBS = tuple(
    [i / 100 for i in range(100)] + [0.99 + i / 1000 for i in range(1, 10)] + [0.9995, 0.9999, 1.0]
)
_DRAW_BLOCK = 4096


class ProfileError(BadInput):
    """A profile file that cannot be used; the message names the file and the key."""


def endless(block: Callable[[], list[float]]) -> Iterator[float]:
    """``block()``'s values one at a time, the next block drawn when one is used up (so a shared
    generator is drawn from in the same order as by a loop over blocks). Chained in C: a Python
    generator resumed per draw cost 2% of a simulation's time."""
    return chain.from_iterable(iter(block, None))


@dataclasses.dataclass(frozen=True)
class Distribution:
    """An empirical distribution of microseconds: ``values_us[i]`` is its quantile at ``probs[i]``."""

    probs: tuple[float, ...]
    values_us: tuple[float, ...]

    @classmethod
    def of_samples(cls, samples_us: Sequence[float], probs: Sequence[float] = QUANTILE_PROBS) -> Distribution:
        if len(samples_us) == 0:
            raise ValueError("no samples to build a distribution from")
        values = np.quantile(np.asarray(samples_us, dtype=float), probs)
        return cls(tuple(float(p) for p in probs), tuple(round(float(v), 1) for v in values))

    @classmethod
    def median_of(cls, distributions: Sequence[Distribution]) -> Distribution:
        """At every probability, the median of the distributions' quantiles: measurements repeated
        in rounds, so one round spoiled by something else on the machine does not set the tail."""
        probs = distributions[0].probs
        values = np.median([[d.quantile(p) for p in probs] for d in distributions], axis=0)
        return cls(probs, tuple(round(float(v), 1) for v in values))

    @classmethod
    def excess(cls, total: Distribution, part: Distribution, offset_us: float) -> Distribution:
        """What ``total`` takes beyond ``part`` + ``offset_us``, quantile by quantile, never below
        zero and never decreasing: the share of a measured sum that its known parts do not explain."""
        values = np.maximum.accumulate(np.maximum(
            0.0, [total.quantile(p) - part.quantile(p) - offset_us for p in total.probs]))
        return cls(total.probs, tuple(round(float(v), 1) for v in values))

    @classmethod
    def constant(cls, value_us: float) -> Distribution:
        return cls((0.0, 1.0), (float(value_us), float(value_us)))

    def quantile(self, p: float) -> float:
        return float(np.interp(p, self.probs, self.values_us))

    @property
    def mean_us(self) -> float:
        # The quantile function integrated over p (trapezoids).
        return float(np.trapezoid(self.values_us, self.probs)) if hasattr(np, "trapezoid") else float(
            np.trapz(self.values_us, self.probs))

    def shifted(self, delta_us: float) -> Distribution:
        """The same shape moved by ``delta_us``, floored at zero."""
        return Distribution(self.probs, tuple(max(0.0, v + delta_us) for v in self.values_us))

    def draws_s(self, rng: np.random.Generator) -> Iterator[float]:
        """Endless independent draws, in SECONDS (the simulation's time unit)."""
        probs = np.asarray(self.probs)
        values_s = np.asarray(self.values_us) / 1e6
        return endless(lambda: np.interp(rng.random(_DRAW_BLOCK), probs, values_s).tolist())

    def to_dict(self) -> dict[str, Any]:
        return {"p": list(self.probs), "us": list(self.values_us)}

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> Distribution:
        if not isinstance(raw, Mapping) or "p" not in raw or "us" not in raw:
            raise ProfileError(f"{where}: expected {{'p': [...], 'us': [...]}}")
        for key in ("p", "us"):
            if not isinstance(raw[key], list) or len(raw[key]) > 100_000:
                raise ProfileError(f"{where}.{key}: must be a list of numbers")
        probs = tuple(_number(v, f"{where}.p[{i}]") for i, v in enumerate(raw["p"]))
        values = tuple(_number(v, f"{where}.us[{i}]") for i, v in enumerate(raw["us"]))
        if len(probs) != len(values) or len(probs) < 2 or probs[0] != 0.0 or probs[-1] != 1.0:
            raise ProfileError(f"{where}: p and us must have one length, p running from 0 to 1")
        if any(b < a for a, b in zip(probs, probs[1:])) or any(b < a for a, b in zip(values, values[1:])):
            raise ProfileError(f"{where}: p and us must not decrease")
        return cls(probs, values)


@dataclasses.dataclass(frozen=True)
class LoadPoint:
    """The transport while the broker carried ``messages_per_s`` of other traffic: its latency
    distribution, the host's CPU utilisation and the broker's CPU (cores) at that load."""

    messages_per_s: float
    transport_us: Distribution
    utilisation: float | None = None
    broker_cores: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"messages_per_s": self.messages_per_s, "utilisation": self.utilisation,
                "broker_cores": self.broker_cores, "transport_us": self.transport_us.to_dict()}

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> LoadPoint:
        if not isinstance(raw, Mapping) or "messages_per_s" not in raw or "transport_us" not in raw:
            raise ProfileError(f"{where}: expected messages_per_s and transport_us")
        return cls(_number(raw["messages_per_s"], f"{where}.messages_per_s"),
                   Distribution.from_dict(raw["transport_us"], f"{where}.transport_us"),
                   _optional(raw.get("utilisation"), f"{where}.utilisation"),
                   _optional(raw.get("broker_cores"), f"{where}.broker_cores"))


@dataclasses.dataclass(frozen=True)
class Profile:
    """Measured parameters of one broker + machine.

    - ``transport``: produce -> broker append -> fetch -> poll returns, with
      ``linger.ms=0`` (the model adds linger itself, per partition batch), measured
      while the broker carried increasing background traffic: one :class:`LoadPoint`
      per level, the first with none. The model draws each batch's transport from
      the distribution at the message rate it simulates; ``broker_cores`` of the
      levels give the broker's CPU unless ``broker_cores_line`` (fitted to real
      runs, whose many clients drive a broker harder) is set.
    - ``contention_us``: how much a hop waits for cores on a busy host, per unit of
      M/M/c slowdown above the utilisation the transport was measured at
      (:mod:`bench.sim.hosts`); fitted to real runs (``bench calibrate --reference``).
    - ``hop_us``: input produced -> output produced through a real runtime service
      with the workload's linger.
    - ``wakeup_us``: what such a hop takes beyond linger, transport and the service's
      handling, quantile by quantile (a real process's wake-up, scheduling and
      pauses: mostly nothing, now and then milliseconds); the model adds a draw per hop.
    - ``service_us``: main-thread time per consumed message (``in``), per produced
      message (``out``), the orchestrator's per-message costs relative to those
      (``orchestrator_scale``: its messages differ in size and logic) and for waking
      from a sleep of a millisecond or more (``batch``, less after shorter naps);
      this serialises an instance.
    - ``service_cpu_us``: the same in whole-process CPU (librdkafka's threads too), and
      ``request``: per Kafka request (fetch response taken, produce request sent), and
      ``idle_cores``: per second of an instance's life whatever it handles (its poll loop and
      librdkafka's timers waking), both fitted to real runs at several rates
      (:func:`bench.sim.fit.fit_cpu`; 0 when not fitted).
    - ``load_generator``: CPU per order, whatever the rate per second, and (``request_us``, fitted)
      per Kafka request of its producer and its terminal reader.
    - ``cores``: CPUs of the calibrated machine.
    """

    transport: tuple[LoadPoint, ...]
    contention_us: float = 0.0  # mean wait for cores per hop, per unit of M/M/c slowdown (bench.sim.hosts)
    hop_us: Distribution | None = None
    wakeup_us: Distribution | None = None
    linger_ms: float = 2.0
    service_us: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"in": 2.0, "out": 5.5, "orchestrator_scale": 1.0, "batch": 110.0})
    service_cpu_us: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"in": 2.5, "out": 6.5, "orchestrator_scale": 1.0, "batch": 110.0})
    cores: int = 2
    # Process CPU of the open-loop sender and its terminal reader: per order, per second whatever
    # the rate (waking up on schedule) and, when fitted, per Kafka request (``request_us``).
    load_generator: Mapping[str, float] = dataclasses.field(
        default_factory=lambda: {"order_us": 40.0, "idle_cores": 0.04})
    # Broker CPU in cores = a + b * messages/s + c * Kafka requests/s (every client's produce requests
    # and fetch responses, per broker), fitted to real runs (bench.sim.fit); None: from the load points.
    broker_cores_line: tuple[float, ...] | None = None
    sleep_overshoot_us: float = 80.0
    # Process CPU of one such sleep (going to sleep, the timer's wake-up): charged per message of a
    # role with processing time, as the runtime sleeps per message (0 in profiles measured before).
    sleep_cpu_us: float = 0.0
    rebalance_s: float = 1.1
    startup_s: float = 1.8
    session_timeout_s: float = 6.0
    failover_s: float = 9.0  # KRaft broker.session.timeout.ms: a dead leader is replaced after this
    # The live audit's CPU per record it reads (it reads every record of every topic), fitted to real
    # runs (bench.sim.fit): charged to the load generator's host, where it competes for the cores.
    auditor_us: float = 0.0
    network_rtt_us: float = 0.0  # added per hop between hosts when processes are spread out
    replication_us: float = 500.0  # followers fetching a batch before the high watermark moves (rf > 1)
    slip_us: Distribution = Distribution.constant(100.0)  # load generator: intended -> actual send
    measured: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source: Path | None = None

    def __post_init__(self) -> None:
        if not self.transport:
            raise ProfileError("transport needs at least one load point")
        object.__setattr__(self, "transport", tuple(sorted(self.transport, key=lambda p: p.messages_per_s)))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "source":
                continue
            if field.name == "transport":
                value = [point.to_dict() for point in value]
            elif isinstance(value, Distribution):
                value = value.to_dict()
            elif isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out


_NUMBERS = ("linger_ms", "sleep_overshoot_us", "sleep_cpu_us", "rebalance_s", "startup_s", "session_timeout_s", "failover_s",
            "network_rtt_us", "replication_us", "contention_us", "auditor_us")
_COSTS = ("in", "out", "orchestrator_scale", "batch")


def _number(value: Any, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ProfileError(f"{where}: must be a finite number >= 0")
    return float(value)


def _optional(value: Any, where: str) -> float | None:
    return None if value is None else _number(value, where)


def parse_profile(raw: Any, source: Path | None = None) -> Profile:
    where = str(source) if source is not None else "profile"
    if not isinstance(raw, Mapping):
        raise ProfileError(f"{where}: expected a JSON object")
    version = raw.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ProfileError(f"{where}: schema_version must be {SCHEMA_VERSION}")
    known = {f.name for f in dataclasses.fields(Profile)} - {"source"}
    unknown = set(raw) - known - {"schema_version"}
    if unknown:
        raise ProfileError(f"{where}: unknown key {sorted(unknown)[0]!r}")
    if not isinstance(raw.get("transport"), list) or not raw["transport"]:
        raise ProfileError(f"{where}: transport must be a non-empty list of load points")
    fields: dict[str, Any] = {"source": source}
    fields["transport"] = tuple(LoadPoint.from_dict(p, f"{where}: transport[{i}]") for i, p in enumerate(raw["transport"]))
    for key in ("hop_us", "wakeup_us", "slip_us"):
        if raw.get(key) is not None:
            fields[key] = Distribution.from_dict(raw[key], f"{where}: {key}")
    for key in _NUMBERS:
        if key in raw:
            fields[key] = _number(raw[key], f"{where}: {key}")
    for key, names in (("service_us", _COSTS), ("service_cpu_us", _COSTS), ("load_generator", ("order_us", "idle_cores"))):
        if key in raw:
            if not isinstance(raw[key], Mapping):
                raise ProfileError(f"{where}: {key} must be a mapping of {', '.join(names)}")
            fields[key] = {name: _number(raw[key].get(name), f"{where}: {key}.{name}") for name in names}
            # fitted to real runs by validate (bench.sim.fit)
            fitted = {"service_cpu_us": ("request", "idle_cores"), "load_generator": ("request_us",)}.get(key, ())
            for name in fitted:
                if raw[key].get(name) is not None:
                    fields[key][name] = _number(raw[key][name], f"{where}: {key}.{name}")
    if raw.get("broker_cores_line") is not None:
        line = raw["broker_cores_line"]
        if not isinstance(line, list) or len(line) not in (2, 3):
            raise ProfileError(f"{where}: broker_cores_line must be [cores at rest, cores per message/s, "
                               "cores per request/s]")
        fields["broker_cores_line"] = tuple(_number(v, f"{where}: broker_cores_line[{i}]") for i, v in enumerate(line))
    if "cores" in raw:
        fields["cores"] = inputs.check_int("cores", raw["cores"], where, ProfileError)
    if "measured" in raw:
        if not isinstance(raw["measured"], Mapping):
            raise ProfileError(f"{where}: measured must be an object")
        fields["measured"] = dict(raw["measured"])
    return Profile(**fields)


def load_profile(path: str | Path | None = None) -> Profile:
    """Load a profile; ``None`` loads the one measured on the project's machine."""
    path = Path(path) if path is not None else DEFAULT_PROFILE
    if not path.exists() and not path.is_symlink():
        raise ProfileError(f"{path}: no such profile (make one with `bench calibrate`)")
    raw = inputs.read_json(path, "profile", ProfileError)
    try:
        return parse_profile(raw, path)
    except (TypeError, ValueError, KeyError, AttributeError, IndexError) as err:
        if isinstance(err, ProfileError):
            raise
        raise ProfileError(f"{path}: not a bench profile ({type(err).__name__} in its fields)") from None


def save_profile(profile: Profile, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(profile.to_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    return path
