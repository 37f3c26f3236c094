"""The saga: its steps in order, and every name derived from them.

This is the one definition of the business flow. Both patterns derive their
topology from it, the audit its rules and step latencies, the simulation its
step names, workload validation its roles; nothing else spells a step.

A saga is a sequence of *stages*. A stage is one step, or a parallel group of
steps that run at once. Steps run stage by stage; every step but the last is
compensable (undone when a later step, or a member of its own group, fails);
the last is the *pivot*, which is never undone, so it is a single step.

Each step has a vocabulary: the statuses of its facts (``ok``, ``failed``,
``undone``) and the commands an orchestrator sends it (``do``, ``undo``). The
three steps of the default saga keep the names the project has always used
(charged, declined, refunded, ...), so the seed tutorial and old results still
read; any other step gets ``<name>-done``, ``<name>-failed``, ``<name>-undone``
and the commands ``<name>``, ``undo-<name>``.

Outcomes are decided per order and step by :func:`bench.flow.events.decide`, so a
redelivered or retried step decides the same way and the audit can predict how
every order must end (:meth:`Saga.expected_outcome`).
"""
from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bench.errors import BadInput
from bench.flow import events as ev
from bench.flow.durations import parse_duration

# Roles that coordinate and are not steps, one a pattern (bench.patterns.*.Pattern.coordinator
# names which is whose): choreography's order service ends each saga, orchestration's
# orchestrator drives it. Defined here, below the patterns, because a workload names them
# (their processing and instances) and no step may take their names.
ORDER_SERVICE = "order"
ORCHESTRATOR = "orchestrator"
COORDINATORS = (ORDER_SERVICE, ORCHESTRATOR)
E2E = "e2e"  # the end-to-end latency's name beside the step latencies
OK, FAILED, UNDONE = "ok", "failed", "undone"  # what a fact says of its step
DO, UNDO = "do", "undo"  # what a command asks of its step

# The default saga's steps keep the project's original vocabulary:
# name -> (ok, failed, undone, do, undo).
_KNOWN_VOCABULARY = {
    "payment": ("charged", "declined", "refunded", "charge", "refund"),
    "inventory": ("reserved", "out-of-stock", "released", "reserve", "release"),
    "shipping": ("shipped", "refused", "returned", "ship", "return"),
}
DEFAULT_STEPS = (
    {"name": "payment", "failure": 0.02},
    {"name": "inventory", "failure": 0.02},
    {"name": "shipping", "failure": 0.01},
)
_NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
MAX_NAME = 60
MAX_STEPS = 50
STEP_KEYS = ("name", "failure", "processing")
PROCESSING_FORMS = "a duration such as '2ms', or {lognormal: {median: 1ms, sigma: 0.5}}"


class SagaError(BadInput):
    """A saga definition that cannot be used; the message names the key (``saga.steps[1].name``)."""


@dataclass(frozen=True)
class Processing:
    """Work per message: a fixed time (``sigma == 0``) or a lognormal with that median."""

    median_s: float = 0.0
    sigma: float = 0.0

    def __bool__(self) -> bool:
        return self.median_s > 0

    def sampler(self, seed: Any) -> Callable[[], float]:
        """A function drawing one message's processing time in seconds; seeded, so a run repeats."""
        if not self.sigma:
            median = self.median_s
            return lambda: median
        draw, mu, sigma = random.Random(str(seed)).lognormvariate, math.log(self.median_s), self.sigma
        return lambda: draw(mu, sigma)

    def to_source(self) -> float | dict:
        """As written in a workload (seconds), so :func:`parse_processing` reads it back."""
        if not self.sigma:
            return self.median_s
        return {"lognormal": {"median": self.median_s, "sigma": self.sigma}}


def parse_processing(value: Any, key: str) -> Processing:
    if isinstance(value, Processing):
        return value
    if isinstance(value, Mapping):
        if list(value) != ["lognormal"] or not isinstance(value["lognormal"], Mapping):
            raise SagaError(f"{key} must be {PROCESSING_FORMS}; got {value!r}")
        params = value["lognormal"]
        unknown = set(params) - {"median", "sigma"}
        if unknown or "median" not in params:
            raise SagaError(f"{key}.lognormal takes median (a duration) and sigma; got {dict(params)!r}")
        try:
            median = parse_duration(params["median"])
        except ValueError as err:
            raise SagaError(f"{key}.lognormal.median: {err}") from None
        sigma = params.get("sigma", 0.0)
        if not (isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and 0 <= sigma <= 5):
            raise SagaError(f"{key}.lognormal.sigma must be a number in [0, 5], got {sigma!r}")
        if median == 0 and sigma:
            raise SagaError(f"{key}.lognormal.median must be > 0")
        return Processing(median, float(sigma))
    try:
        return Processing(parse_duration(value))
    except ValueError as err:
        raise SagaError(f"{key} must be {PROCESSING_FORMS}: {err}") from None


@dataclass(frozen=True)
class Step:
    """One business step and every name derived from it."""

    name: str
    failure: float = 0.0
    processing: Processing = Processing()
    stage: int = 0
    compensable: bool = True
    # Vocabulary: the statuses of its facts and the commands that ask for them.
    ok: str = ""
    failed: str = ""
    undone: str = ""
    do: str = ""
    undo: str = ""
    # Choreography: where this step publishes its facts. Orchestration: where the orchestrator
    # sends it commands. Derived from the name (kept as fields: handlers read them per message).
    events_topic: str = field(init=False, repr=False, compare=False)
    commands_topic: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "events_topic", f"{self.name}-events")
        object.__setattr__(self, "commands_topic", f"{ev.COMMAND_TOPIC_PREFIX}-{self.name}")

    @property
    def undo_span(self) -> str:
        """The name of this step's compensation among the step latencies: its undo command's
        (refund, release, ``undo-<name>``), so the default saga keeps the names results have."""
        return self.undo

    @property
    def facts(self) -> tuple[str, ...]:
        return (self.ok, self.failed, self.undone) if self.compensable else (self.ok, self.failed)

    @property
    def commands(self) -> tuple[str, ...]:
        return (self.do, self.undo) if self.compensable else (self.do,)

    def succeeds(self, order_id: str) -> bool:
        return ev.decide(order_id, self.name, self.failure)

    def to_source(self) -> dict:
        out: dict[str, Any] = {"name": self.name, "failure": self.failure}
        if self.processing:
            out["processing"] = self.processing.to_source()
        return out


@dataclass(frozen=True)
class Saga:
    """The stages of a saga, each a tuple of steps (one, or a parallel group)."""

    stages: tuple[tuple[Step, ...], ...]
    steps: tuple[Step, ...] = field(init=False, repr=False, compare=False)
    # status of a fact -> (its step, OK | FAILED | UNDONE)
    fact: Mapping[str, tuple[Step, str]] = field(init=False, repr=False, compare=False)
    # command -> (its step, "do" | "undo")
    command: Mapping[str, tuple[Step, str]] = field(init=False, repr=False, compare=False)
    by_name: Mapping[str, Step] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        steps = tuple(s for stage in self.stages for s in stage)
        fact: dict[str, tuple[Step, str]] = {}
        command: dict[str, tuple[Step, str]] = {}
        for s in steps:
            fact[s.ok], fact[s.failed], command[s.do] = (s, OK), (s, FAILED), (s, DO)
            if s.compensable:
                fact[s.undone], command[s.undo] = (s, UNDONE), (s, UNDO)
        for name, value in (("steps", steps), ("fact", fact), ("command", command),
                            ("by_name", {s.name: s for s in steps})):
            object.__setattr__(self, name, value)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps)

    @property
    def pivot(self) -> Step:
        return self.stages[-1][0]

    def step(self, name: str) -> Step:
        return self.by_name[name]

    def before(self, step: Step) -> tuple[Step, ...]:
        """The stage a step waits for (empty for the first stage: it reacts to order-created)."""
        return self.stages[step.stage - 1] if step.stage else ()

    def siblings(self, step: Step) -> tuple[Step, ...]:
        return tuple(s for s in self.stages[step.stage] if s is not step)

    def after(self, step: Step) -> tuple[Step, ...]:
        """The stage whose full rollback makes this step compensate (empty for the pivot)."""
        return self.stages[step.stage + 1] if step.stage + 1 < len(self.stages) else ()

    def facts(self) -> frozenset[str]:
        return frozenset(f for s in self.steps for f in s.facts)

    def effects(self) -> tuple[str, ...]:
        """Facts that change the world: each step's ok, and each compensation."""
        return tuple(f for s in self.steps for f in ((s.ok, s.undone) if s.compensable else (s.ok,)))

    def spans(self, coordinator: str) -> tuple[str, ...]:
        """Step latency names in display order: the coordinator, each step, each compensation."""
        return (coordinator, *self.names, *(s.undo_span for s in self.steps if s.compensable))

    def expected_outcome(self, order_id: str) -> str:
        """How the saga must end for this order: cancelled as soon as any step fails."""
        return ev.COMPLETED if all(s.succeeds(order_id) for s in self.steps) else ev.CANCELLED

    def to_source(self) -> dict:
        return {"steps": [stage[0].to_source() if len(stage) == 1 else {"parallel": [s.to_source() for s in stage]}
                          for stage in self.stages]}

    def describe(self) -> str:
        return " -> ".join(stage[0].name if len(stage) == 1 else "(" + " | ".join(s.name for s in stage) + ")"
                           for stage in self.stages)


def _vocabulary(name: str) -> dict[str, str]:
    ok, failed, undone, do, undo = _KNOWN_VOCABULARY.get(
        name, (f"{name}-done", f"{name}-failed", f"{name}-undone", name, f"undo-{name}"))
    return {"ok": ok, "failed": failed, "undone": undone, "do": do, "undo": undo}


def parse(raw: Any, where: str = "saga") -> Saga:
    """A saga from its workload form, ``{steps: [{name, failure, processing} | {parallel: [...]}, ...]}``."""
    if not isinstance(raw, Mapping) or set(raw) != {"steps"}:
        raise SagaError(f"{where} must be a mapping with one key, steps: a list of steps; got {raw!r}")
    entries = raw["steps"]
    if not isinstance(entries, (list, tuple)) or not entries:
        raise SagaError(f"{where}.steps must be a non-empty list of steps; got {entries!r}")
    given: list[list[tuple[str, Mapping]]] = []
    for i, entry in enumerate(entries):
        key = f"{where}.steps[{i}]"
        if isinstance(entry, Mapping) and "parallel" in entry:
            if set(entry) != {"parallel"}:
                raise SagaError(f"{key}: a parallel group has one key, parallel: a list of steps")
            members = entry["parallel"]
            if not isinstance(members, (list, tuple)) or len(members) < 2:
                raise SagaError(f"{key}.parallel must list two or more steps; got {members!r}")
            given.append([(f"{key}.parallel[{j}]", m) for j, m in enumerate(members)])
        else:
            given.append([(key, entry)])
    if len(given[-1]) > 1:
        raise SagaError(f"{where}.steps[{len(given) - 1}]: the last step is the pivot, which is never undone, "
                        "so it cannot be a parallel group: add a single step after the group")
    stages = []
    for index, stage in enumerate(given):
        last = index == len(given) - 1
        stages.append(tuple(_step(key, entry, index, not last) for key, entry in stage))
    saga = Saga(tuple(stages))
    _check_names(saga, [key for stage in given for key, _ in stage], where)
    return saga


def _step(key: str, entry: Any, stage: int, compensable: bool) -> Step:
    if not isinstance(entry, Mapping):
        raise SagaError(f"{key} must be a mapping such as {{name: payment, failure: 0.02}}; got {entry!r}")
    for name in entry:
        if name not in STEP_KEYS:
            raise SagaError(f"{key}: unknown key {name!r} (known: {', '.join(STEP_KEYS)}, or parallel: [...])")
    name = entry.get("name")
    if not (isinstance(name, str) and _NAME.fullmatch(name) and len(name) <= MAX_NAME):
        raise SagaError(f"{key}.name must be lower-case letters, digits, '-' or '_', starting with a letter "
                        f"(at most {MAX_NAME} characters); got {name!r}")
    failure = entry.get("failure", 0.0)
    if not (isinstance(failure, (int, float)) and not isinstance(failure, bool) and 0 <= failure <= 1):
        raise SagaError(f"{key}.failure must be a probability in [0, 1], got {failure!r}")
    processing = parse_processing(entry.get("processing", 0.0), f"{key}.processing")
    return Step(name, float(failure), processing, stage, compensable, **_vocabulary(name))


def _check_names(saga: Saga, keys: list[str], where: str) -> None:
    """Every role, topic, status, command and latency name derived from the steps is distinct,
    and none is one bench already uses."""
    if len(saga.steps) > MAX_STEPS:
        raise SagaError(f"{where}.steps: at most {MAX_STEPS} steps, got {len(saga.steps)}")
    fixed_topics = {ev.ORDER_CREATED, ev.ORDER_EVENTS, ev.REPLIES, ev.SAGA_STATE, ev.DEAD_LETTER}
    taken: dict[str, str] = {name: "a bench role" for name in COORDINATORS}
    taken[E2E] = "the end-to-end latency"
    # Names the cost accounting gives its own processes and totals (summary.json's cost).
    taken.update(dict.fromkeys(("load_generator", "harness", "broker", "total", "all"), "a name bench reports under"))
    taken.update({status: "an order status" for status in (ev.CREATED, *ev.TERMINAL)})
    taken.update({topic: "a bench topic" for topic in fixed_topics})
    names: set[str] = set()
    for key, step in zip(keys, saga.steps):
        derived = [step.name, step.events_topic, step.commands_topic, *step.facts, *step.commands]
        if step.name in names:
            raise SagaError(f"{key}.name: two steps are named {step.name!r}; give each step its own name")
        names.add(step.name)
        for word in dict.fromkeys(derived):
            if word in taken:
                raise SagaError(f"{key}.name {step.name!r}: {word!r} is already {taken[word]}; rename the step")
            taken[word] = f"used by step {step.name!r}"


DEFAULT = parse({"steps": list(DEFAULT_STEPS)})


def of_length(n: int, failure: float = 0.0) -> Saga:
    """A sequential saga of ``n`` generic steps (``step-1`` ... ``step-n``), for scaling studies."""
    return parse({"steps": [{"name": f"step-{i + 1}", "failure": failure} for i in range(n)]})
