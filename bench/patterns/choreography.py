"""Choreography: each step reacts to the facts of the others; no one is in charge.

For the default saga:

    order-created --payment--> payment-events --inventory--> inventory-events --shipping--> shipping-events

Each step applies when every step of the stage before it succeeded (the first
stage on order-created) and publishes its fact on ``<step>-events``.
Compensation cascades backwards: a step undoes when the whole stage after it
has rolled back (each member failed or undone), or when a member of its own
parallel group failed. The order service ends the saga: completed on the
pivot's success, cancelled once the first stage has rolled back.

A step that waits for several facts (a parallel group before it, beside it or
after it) keeps them per order until its decision, and rebuilds them after a
crash from the same topics it consumes, so facts read before the crash still
count.
"""
from __future__ import annotations

from bench.flow import events as ev
from bench.flow.ledger import Ledger, StepLedger
from bench.patterns.base import (Latencies, Outbox, Pattern, SpanFinder, StepLog, Topology, earliest, first_terminal,
                                 latest, add_span)
from bench.flow.saga import E2E, ORDER_SERVICE, Saga, Step
from bench.flow.workload import Workload

_APPLY, _UNDO_AFTER, _UNDO_BESIDE = "apply", "undo-after", "undo-beside"


class _Joins:
    """Per order, which of the awaited steps have reported what is awaited."""

    def __init__(self, awaited: tuple[Step, ...]) -> None:
        self.count = len(awaited)
        self.seen = Ledger()

    def note(self, order_id: str, step: str) -> None:
        """Count ``step`` as reported without deciding (state restore: the fact that completes
        the join is consumed again, and then decides)."""
        if self.count > 1:
            seen = self.seen.get(order_id)
            if seen is None:
                seen = set()
                self.seen.put(order_id, seen)
            seen.add(step)

    def complete(self, order_id: str, step: str) -> bool:
        """Note that ``step`` reported; True once every awaited step has (then the entry is gone)."""
        if self.count == 1:
            return True
        self.note(order_id, step)
        if len(self.seen.get(order_id)) < self.count:
            return False
        self.seen.pop(order_id)
        return True


class StepHandler:
    """One step: applies when the stage before it succeeded, undoes when the saga rolls back past it."""

    def __init__(self, saga: Saga, step: Step, workload: Workload) -> None:
        self.step = step
        self.ledger = StepLedger(step)
        # status -> (what it asks of this step, the step that reported it)
        self.reacts: dict[str, tuple[str, str]] = {}
        before = saga.before(step)
        if not before:
            self.reacts[ev.CREATED] = (_APPLY, "")
        for s in before:
            self.reacts[s.ok] = (_APPLY, s.name)
        for s in saga.after(step):
            self.reacts[s.failed] = (_UNDO_AFTER, s.name)
            if s.compensable:
                self.reacts[s.undone] = (_UNDO_AFTER, s.name)
        for s in saga.siblings(step):
            self.reacts[s.failed] = (_UNDO_BESIDE, s.name)
        self.applies = _Joins(before or (step,))
        self.undoes = _Joins(saga.after(step) or (step,))
        self.undo_on_apply = Ledger()  # orders whose sibling failed before this step applied

    @property
    def absorbed(self) -> int:
        return self.ledger.absorbed

    def handle(self, topic: str, partition: int, event: dict, out: Outbox) -> None:
        react = self.reacts.get(event.get("status"))
        if react is None:
            return
        kind, reporter = react
        order_id = event["orderId"]
        if kind == _APPLY:
            # A join waits for every step before; once applied, the ledger absorbs what comes again.
            if self.applies.count > 1 and self.ledger.get(order_id) is None \
                    and not self.applies.complete(order_id, reporter):
                return
            status, fresh = self.ledger.apply(order_id)
            if fresh:
                out.emit(self.step.events_topic, ev.follow(event, status=status))
                if self.undo_on_apply and self.undo_on_apply.pop(order_id) and status == self.step.ok:
                    self._undo(event, out)
            return
        done = self.ledger.get(order_id)
        if kind == _UNDO_BESIDE:
            if done is None:
                self.undo_on_apply.put(order_id, True)  # the facts raced: undo right after applying
            elif done == self.step.ok:
                self._undo(event, out)
        elif done == self.step.undone:
            self.ledger.absorbed += 1
        elif self.undoes.complete(order_id, reporter):
            self._undo(event, out)

    def _undo(self, event: dict, out: Outbox) -> None:
        status, fresh = self.ledger.compensate(event["orderId"])
        if fresh:
            out.emit(self.step.events_topic, ev.follow(event, status=status))

    def tick(self, now_s: float, out: Outbox) -> None:
        pass

    def restore(self, records, out: Outbox) -> None:
        """Its ledger from its own facts; the facts it is waiting on from the topics it consumes."""
        own = self.step.events_topic
        replay = []
        for topic, event in records:
            if topic == own:
                self.ledger.remember(event["orderId"], event.get("status"))
            else:
                replay.append(event)
        for event in replay:
            self._note(event)

    def _note(self, event: dict) -> None:
        """Count a fact towards this step's joins without acting: its input is consumed again."""
        react = self.reacts.get(event.get("status"))
        if react is None:
            return
        kind, reporter = react
        order_id = event["orderId"]
        done = self.ledger.get(order_id)
        if kind == _APPLY and done is None:
            self.applies.note(order_id, reporter)
        elif kind == _UNDO_BESIDE and done is None:
            self.undo_on_apply.put(order_id, True)
        elif kind == _UNDO_AFTER and done == self.step.ok:
            self.undoes.note(order_id, reporter)

    def revoke(self, partitions: set[int]) -> None:
        pass


class OrderHandler:
    """Ends the saga: completed on the pivot's success, cancelled once the first stage rolled back.
    Each ending has one last fact, so it only remembers what it ended."""

    def __init__(self, saga: Saga, workload: Workload) -> None:
        self.ended = Ledger()
        self._absorbed = 0
        first = saga.stages[0]
        self.endings: dict[str, tuple[str, str]] = {}  # status -> (ending, the step that reported it)
        for s in first:
            self.endings[s.failed] = (ev.CANCELLED, s.name)
            if s.compensable:
                self.endings[s.undone] = (ev.CANCELLED, s.name)
        self.endings[saga.pivot.ok] = (ev.COMPLETED, "")
        self.rollbacks = _Joins(first)

    @property
    def absorbed(self) -> int:
        return self._absorbed

    def handle(self, topic: str, partition: int, event: dict, out: Outbox) -> None:
        ending = self.endings.get(event.get("status"))
        if ending is None:
            return
        order_id = event["orderId"]
        if self.ended.get(order_id) is not None:
            self._absorbed += 1
            return
        status, reporter = ending
        if status == ev.CANCELLED and not self.rollbacks.complete(order_id, reporter):
            return
        self.ended.put(order_id, status)
        out.emit(ev.ORDER_EVENTS, ev.follow(event, status=status))

    def tick(self, now_s: float, out: Outbox) -> None:
        pass

    def restore(self, records, out: Outbox) -> None:
        replay = []
        for topic, event in records:
            if topic == ev.ORDER_EVENTS:
                self.ended.put(event["orderId"], event.get("status"))
            else:
                replay.append(event)
        for event in replay:  # rollbacks of a parallel first stage, counted again
            ending = self.endings.get(event.get("status"))
            if ending and ending[0] == ev.CANCELLED and self.ended.get(event["orderId"]) is None:
                self.rollbacks.note(event["orderId"], ending[1])

    def revoke(self, partitions: set[int]) -> None:
        pass


def _subscriptions(saga: Saga, step: Step) -> tuple[str, ...]:
    before = [s.events_topic for s in saga.before(step)] or [ev.ORDER_CREATED]
    around = [s.events_topic for s in (*saga.siblings(step), *saga.after(step))]
    return tuple(dict.fromkeys([*before, *around]))


def _waits_on_several(saga: Saga, step: Step) -> bool:
    return len(saga.before(step)) > 1 or bool(saga.siblings(step)) or len(saga.after(step)) > 1


class ChoreographyTopology(Topology):
    """Choreography laid out for a saga: each step's fact on its own topic ends its span."""

    def span_finder(self) -> SpanFinder:
        # A step's span ends with its fact, the order service's with the terminal event; which
        # message a fact reacted to does not matter (it is the fact's own step's).
        spans = {ev.COMPLETED: self.coordinator, ev.CANCELLED: self.coordinator}
        for s in self.saga.steps:
            spans[s.ok] = spans[s.failed] = s.name
            if s.compensable:
                spans[s.undone] = s.undo_span
        return lambda topic, event, source: spans.get(event.get("status"))

    def step_topics(self) -> dict[str, tuple[str, frozenset[str]]]:
        # Each step's facts on its own events topic.
        return {**super().step_topics(), **{s.events_topic: ("status", frozenset(s.facts)) for s in self.saga.steps}}

    def order_spans(self, steps: StepLog, t0_us: int | None, out: Latencies) -> None:
        saga, coordinator = self.saga, self.coordinator
        first = {key: min(seen) for key, seen in steps.items()}
        get = first.get

        def rolled_back(stage) -> int | None:  # when the last member of a stage failed or was undone
            return latest(earliest(get(s.failed), get(s.undone) if s.compensable else None) for s in stage)

        for step in saga.steps:
            before = saga.before(step)
            start = latest(get(s.ok) for s in before) if before else get(ev.CREATED)
            add_span(out, step.name, start, earliest(get(step.ok), get(step.failed)))
            if step.compensable and step.undone in first:
                trigger = None
                for s in saga.siblings(step):
                    trigger = earliest(trigger, get(s.failed))
                after = saga.after(step)
                trigger = earliest(trigger, rolled_back(after) if after else None)
                if trigger is not None:
                    ok = get(step.ok)
                    add_span(out, step.undo_span, trigger if ok is None or ok <= trigger else ok, first[step.undone])
        terminal = first_terminal(steps)
        if terminal is not None:
            outcome, end = terminal
            ender = get(saga.pivot.ok) if outcome == ev.COMPLETED else rolled_back(saga.stages[0])
            add_span(out, coordinator, ender, end)
            add_span(out, E2E, t0_us, end)


def derive(pattern: Pattern, saga: Saga) -> Topology:
    coordinator = pattern.coordinator
    subscriptions = {coordinator: tuple(dict.fromkeys([*(s.events_topic for s in saga.stages[0]),
                                                        saga.pivot.events_topic]))}
    restore_from = {coordinator: (ev.ORDER_EVENTS,) + (subscriptions[coordinator] if len(saga.stages[0]) > 1 else ())}
    handlers = {coordinator: lambda w: OrderHandler(saga, w)}
    for step in saga.steps:
        subscriptions[step.name] = _subscriptions(saga, step)
        # Facts it waits on are read back with its own; order-created is never waited on with others.
        waited = tuple(t for t in subscriptions[step.name] if t != ev.ORDER_CREATED)
        restore_from[step.name] = (step.events_topic, *waited) if _waits_on_several(saga, step) else (step.events_topic,)
        handlers[step.name] = lambda w, s=step: StepHandler(saga, s, w)
    return ChoreographyTopology(
        pattern=pattern.name, saga=saga, coordinator=coordinator, subscriptions=subscriptions,
        topics=(ev.ORDER_CREATED, *(s.events_topic for s in saga.steps), ev.ORDER_EVENTS, ev.DEAD_LETTER),
        handlers=handlers, restore_from=restore_from,
    )


CHOREOGRAPHY = Pattern(name="choreography", coordinator=ORDER_SERVICE, derive=derive)
