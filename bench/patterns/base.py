"""The one interface a coordination pattern implements.

A pattern derives, from the workload's saga, a :class:`Topology`: its roles,
the topics each role consumes, and a :class:`Handler` for each role. Everything else (clients, batching, serialization, commits,
processing time) is the shared runtime's, so the patterns differ only in
topology and coordination logic. What the runtime and the simulation need to know of a
pattern they ask its topology (a subclass of :class:`Topology` in the pattern's module,
e.g. :meth:`Topology.span_finder`), never its name: a new pattern is one new module here
and its entry in the registry (:mod:`bench.patterns`).
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from bench.flow import events as ev
from bench.flow.saga import E2E, Saga
from bench.flow.workload import Workload


class Outbox(Protocol):
    def emit(self, topic: str, event: dict) -> None:
        """Queue ``event`` for ``topic``, keyed by its orderId; the runtime stamps ``ts_us``."""


class Handler(Protocol):
    def handle(self, topic: str, partition: int, event: dict, out: Outbox) -> None:
        """React to one decoded message."""

    def tick(self, now_s: float, out: Outbox) -> None:
        """Called between batches (timeouts live here); ``now_s`` is time.monotonic()."""

    def restore(self, records: Iterable[tuple[str, dict]], out: Outbox) -> None:
        """Rebuild state from this role's own past output (``Pattern.restore_from``): (topic, event)
        pairs, each topic in log order, for the partitions just assigned to this instance,
        before any new input."""

    def revoke(self, partitions: set[int]) -> None:
        """Forget work on partitions another instance now owns."""

    @property
    def absorbed(self) -> int:
        """Input recognised as repeated or stale and ignored so far (a redelivery answered from
        the ledger, a late reply): each service reports it."""


# Which step latency a handler's output ends, if any: (topic, event produced, event it reacted to) -> name.
SpanFinder = Callable[[str, dict, dict], "str | None"]


@dataclass(frozen=True)
class Topology:
    """One pattern laid out for one saga: its roles, the topics each consumes, its handlers.
    Each pattern derives its own subclass, which answers what depends on how it coordinates."""

    pattern: str  # the pattern's name (:attr:`Pattern.name`)
    saga: Saga
    coordinator: str  # the pattern's role that is not a step (:attr:`Pattern.coordinator`)
    # role -> topics it consumes; the load generator consumes order-events.
    subscriptions: Mapping[str, tuple[str, ...]]
    # Every topic the pattern writes, each created fresh before a run.
    topics: tuple[str, ...]
    # role -> builds its handler from the workload
    handlers: Mapping[str, Callable[[Workload], Handler]] = field(default_factory=dict)
    # role -> the topics its state is rebuilt from after a crash or rebalance (state lives in Kafka).
    restore_from: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Topics created with cleanup.policy=compact (latest value per orderId is what matters).
    compacted: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.pattern

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.subscriptions)

    def handler(self, role: str, workload: Workload) -> Handler:
        if workload.saga != self.saga:
            raise ValueError(f"{workload.name}: its saga is not the one this {self.pattern} topology was laid out for")
        return self.handlers[role](workload)

    def consumed_topics(self) -> set[str]:
        consumed = {t for topics in self.subscriptions.values() for t in topics}
        # Restored-from topics are read back by their writers; the dead-letter topic is for people.
        return consumed | {ev.ORDER_EVENTS, ev.DEAD_LETTER} | self.restored_topics()

    def restored_topics(self) -> set[str]:
        return {t for topics in self.restore_from.values() for t in topics}

    def step_names(self) -> tuple[str, ...]:
        """The step latency names of a run of this topology, in display order, e2e last."""
        return (*self.saga.spans(self.coordinator), E2E)

    def step_topics(self) -> dict[str, tuple[str, frozenset[str]]]:
        """topic -> (the field naming the step, the values that are steps): how the audit reads
        this pattern's log. order-created and order-events are every pattern's."""
        return {ev.ORDER_CREATED: ("status", frozenset((ev.CREATED,))), ev.ORDER_EVENTS: ("status", frozenset(ev.TERMINAL))}

    def order_spans(self, steps: "StepLog", t0_us: int | None, out: "Latencies") -> None:
        """Append to ``out`` the step latencies one order's log shows (``steps``: its step events'
        ``ts_us`` by status or command; ``t0_us``: its intended start)."""
        raise NotImplementedError(f"{self.pattern}: its topology does not say how its log gives step latencies")

    def span_finder(self) -> SpanFinder:
        """Which step latency producing ``event`` on ``topic`` in reaction to ``source`` ends, if
        any: the names the audit derives from ``ts_us`` stamps (bench.run.audit.step_latencies),
        each the time from the message a handler reacted to until the message it produced."""
        raise NotImplementedError(f"{self.pattern}: its topology does not say which step its output ends")


@dataclass(frozen=True)
class Pattern:
    """A coordination pattern: derives its :class:`Topology` from a saga. ``name`` and
    ``coordinator`` are defined here once; every topology of the pattern carries them."""

    name: str
    coordinator: str  # the role that is not a step (one of bench.flow.saga.COORDINATORS)
    derive: Callable[[Pattern, Saga], Topology] = field(repr=False, compare=False)

    def topology(self, saga: Saga) -> Topology:
        return _topology(self, saga)


@functools.lru_cache(maxsize=64)
def _topology(pattern: Pattern, saga: Saga) -> Topology:
    return pattern.derive(pattern, saga)


class Stateless:
    """Mixin for handlers with nothing to do between batches or on restore."""

    def tick(self, now_s: float, out: Outbox) -> None:
        pass

    def restore(self, records: Iterable[tuple[str, dict]], out: Outbox) -> None:
        pass

    def revoke(self, partitions: set[int]) -> None:
        pass


# --- reading one order's log: what the audit and a topology's order_spans share ---------

StepLog = dict[str, list[int]]  # step key (a status or a command) -> ts_us of each message, in read order
Latencies = dict[str, list[tuple[float, int]]]  # step name -> (end_s, latency_us) per order that took it


def first_terminal(steps: StepLog) -> tuple[str, int] | None:
    """The order's first terminal event, (status, ts_us), or None when it has none."""
    completed, cancelled = steps.get(ev.COMPLETED), steps.get(ev.CANCELLED)
    if completed and (not cancelled or min(completed) <= min(cancelled)):
        return ev.COMPLETED, min(completed)
    return (ev.CANCELLED, min(cancelled)) if cancelled else None


def earliest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None or a <= b else b


def add_span(out: Latencies, step: str, start: int | None, end: int | None) -> None:
    if start is not None and end is not None:
        out[step].append((end / 1e6, end - start))


def latest(times) -> int | None:
    """When the last of ``times`` happened; None unless all did."""
    latest = None
    for t in times:
        if t is None:
            return None
        latest = t if latest is None or t > latest else latest
    return latest
