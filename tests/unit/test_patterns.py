"""The patterns' coordination logic, driven in-process (no broker): every order ends as
the failure draw says, duplicates are absorbed, a restarted role resumes from its own output."""
from __future__ import annotations

import itertools
from collections import deque

import pytest

from bench import events as ev
from bench.audit import audit
from bench.records import Record
from bench.patterns import PATTERNS
from bench.workload import Workload

FAILURES = {"payment": 0.2, "inventory": 0.2, "shipping": 0.2}
WORKLOAD = Workload(name="unit", failures=FAILURES, step_timeout_s=1.0, step_retries=1)


class Bus:
    """Topics as in-memory logs; delivers each new message to every role subscribed to its topic."""

    def __init__(self, pattern, workload=WORKLOAD):
        self.pattern = pattern
        self.handlers = {role: pattern.handler(role, workload) for role in pattern.roles}
        self.log: list[tuple[str, dict]] = []
        self.queue: deque[tuple[str, dict]] = deque()
        self.clock = itertools.count(1_000_000, 10)
        self.dropped: set[str] = set()  # topics whose messages are lost (a silent service)

    def emit(self, topic, event):
        event.setdefault("ts_us", next(self.clock))
        self.log.append((topic, dict(event)))
        if topic not in self.dropped:
            self.queue.append((topic, dict(event)))

    def run(self, now_s=0.0):
        while self.queue:
            topic, event = self.queue.popleft()
            for role, topics in self.pattern.subscriptions.items():
                if topic in topics:
                    self.handlers[role].handle(topic, 0, dict(event), self)
        for handler in self.handlers.values():
            handler.tick(now_s, self)
        while self.queue:
            self.run(now_s)

    def start(self, n):
        ids = [f"o-{i}" for i in range(n)]
        for order_id in ids:
            self.emit(ev.ORDER_CREATED, {"orderId": order_id, "status": ev.CREATED, "t0_us": 0})
        return ids

    def records(self):
        return [Record(t, 0, i, e["orderId"], e, 0, 10) for i, (t, e) in enumerate(self.log)]

    def outcomes(self):
        return {e["orderId"]: e["status"] for t, e in self.log if t == ev.ORDER_EVENTS}


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_every_order_ends_as_its_failure_draw_says_with_a_clean_audit(name):
    bus = Bus(PATTERNS[name])
    ids = bus.start(300)
    bus.run()
    assert bus.outcomes() == {o: ev.expected_outcome(o, FAILURES) for o in ids}
    report = audit(bus.records(), {o: 0 for o in ids}, name, FAILURES, PATTERNS[name].consumed_topics())
    assert report.clean and report.compensations["refunds"] > 0 and report.compensations["releases"] > 0


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_redelivered_input_is_absorbed(name):
    bus = Bus(PATTERNS[name])
    ids = bus.start(100)
    bus.run()
    before = len(bus.log)
    for topic, event in list(bus.log):  # every message delivered a second time
        if topic != ev.ORDER_EVENTS:
            bus.queue.append((topic, dict(event)))
    bus.run()
    new = bus.log[before:]
    assert not [e for t, e in new if t == ev.ORDER_EVENTS], "a redelivery ended an order twice"
    report = audit(bus.records(), {o: 0 for o in ids}, name, FAILURES, PATTERNS[name].consumed_topics())
    assert report.duplicate_effects == 0 and report.multiple_terminal == 0


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_a_restarted_role_rebuilds_its_ledger_from_its_own_output(name):
    pattern = PATTERNS[name]
    bus = Bus(pattern)
    bus.start(100)
    bus.run()
    role = "payment"
    fresh = pattern.handler(role, WORKLOAD)
    fresh.restore([(t, e) for t, e in bus.log if t in pattern.restore_from[role]], bus)
    bus.handlers[role] = fresh
    before = len(bus.log)
    for topic, event in list(bus.log[:before]):
        if topic in pattern.subscriptions[role]:
            bus.queue.append((topic, dict(event)))
    bus.run()
    charged = [e for t, e in bus.log[before:] if e.get("status") == ev.CHARGED and not e.get("replay")]
    assert not charged, "a restarted payment service charged again"


def test_orchestrator_retries_a_silent_step_with_backoff_then_compensates():
    pattern = PATTERNS["orchestration"]
    bus = Bus(pattern, WORKLOAD.with_overrides(failures={}))
    bus.dropped.add(ev.INVENTORY_COMMANDS)  # inventory never answers
    [order] = bus.start(1)
    commands = lambda: [e["command"] for t, e in bus.log if "command" in e]
    bus.run(now_s=0.0)
    bus.run(now_s=1.5)  # first timeout (1 s): retry, now with a 2 s timeout
    bus.run(now_s=3.0)  # not yet: the retry's timeout has doubled
    assert commands() == [ev.CHARGE, ev.RESERVE, ev.RESERVE]
    bus.run(now_s=3.6)  # retries exhausted: release (the reservation may have happened), unanswered
    assert commands() == [ev.CHARGE, ev.RESERVE, ev.RESERVE, ev.RELEASE]
    bus.dropped.clear()
    bus.run(now_s=4.7)  # the release is retried until inventory answers, then payment refunds
    assert commands() == [ev.CHARGE, ev.RESERVE, ev.RESERVE, ev.RELEASE, ev.RELEASE, ev.REFUND]
    assert bus.outcomes() == {order: ev.CANCELLED}


def test_orchestrator_never_gives_up_on_shipping_the_pivot():
    pattern = PATTERNS["orchestration"]
    bus = Bus(pattern, WORKLOAD.with_overrides(failures={}))
    bus.dropped.add(ev.SHIPPING_COMMANDS)  # shipping is silent for a long while
    [order] = bus.start(1)
    for now in (0.0, 1.5, 3.6, 7.7, 15.8, 23.9):
        bus.run(now_s=now)
    assert [e["command"] for t, e in bus.log if "command" in e].count(ev.SHIP) == 6
    assert bus.outcomes() == {}, "an order whose shipment may still happen was ended"
    bus.dropped.clear()
    bus.run(now_s=32.0)
    assert bus.outcomes() == {order: ev.COMPLETED}


def test_restarted_orchestrator_resumes_in_flight_sagas_from_saga_state():
    pattern = PATTERNS["orchestration"]
    bus = Bus(pattern, WORKLOAD.with_overrides(failures={}))
    bus.dropped.add(ev.REPLIES)  # the orchestrator dies before any reply reaches it
    ids = bus.start(20)
    bus.run()
    bus.dropped.clear()
    restarted = pattern.handler("orchestrator", WORKLOAD.with_overrides(failures={}))
    restarted.restore([(t, e) for t, e in bus.log if t in pattern.restore_from["orchestrator"]], bus)
    bus.handlers["orchestrator"] = restarted
    bus.run()
    assert bus.outcomes() == {o: ev.COMPLETED for o in ids}


def _finished_then_restarted(lose: str):
    """Every order finishes, but the crash lost the last record of each order on ``lose``
    (the saga's terminal state record or its terminal event): the two go to different
    partitions, so either can be acknowledged without the other."""
    pattern = PATTERNS["orchestration"]
    workload = WORKLOAD.with_overrides(failures={})
    bus = Bus(pattern, workload)
    ids = bus.start(10)
    bus.run()
    last = {}
    for i, (t, e) in enumerate(bus.log):
        if t == lose:
            last[e["orderId"]] = i
    bus.log = [r for i, r in enumerate(bus.log) if i not in set(last.values())]
    restarted = pattern.handler("orchestrator", workload)
    before = len(bus.log)
    restarted.restore([(t, e) for t, e in bus.log if t in pattern.restore_from["orchestrator"]], bus)
    bus.handlers["orchestrator"] = restarted
    for topic, event in list(bus.log[:before]):  # every input replayed, as after a crash before a commit
        if topic in pattern.subscriptions["orchestrator"]:
            bus.queue.append((topic, dict(event)))
    bus.run()
    return ids, bus


def test_restarted_orchestrator_sends_a_terminal_event_the_crash_lost():
    ids, bus = _finished_then_restarted(lose=ev.ORDER_EVENTS)
    assert sorted(e["orderId"] for t, e in bus.log if t == ev.ORDER_EVENTS) == sorted(ids)


def test_restarted_orchestrator_does_not_end_an_order_twice_when_its_state_record_was_lost():
    ids, bus = _finished_then_restarted(lose=ev.SAGA_STATE)
    assert sorted(e["orderId"] for t, e in bus.log if t == ev.ORDER_EVENTS) == sorted(ids)
    report = audit(bus.records(), {o: 0 for o in ids}, "orchestration", {}, PATTERNS["orchestration"].consumed_topics())
    assert report.clean


def test_retries_stay_within_the_budget_when_every_reply_is_late():
    pattern = PATTERNS["orchestration"]
    bus = Bus(pattern, WORKLOAD.with_overrides(failures={}))
    bus.dropped.add(ev.PAYMENT_COMMANDS)  # every charge is late, as in a backlogged cluster
    bus.start(2000)
    bus.run(now_s=0.0)
    bus.run(now_s=1.5)  # every in-flight charge is past its timeout
    charges = [e for t, e in bus.log if e.get("command") == ev.CHARGE]
    retries = len(charges) - 2000
    # 10% of 2000 fresh commands plus the initial floor of 10, not 2000 re-sent commands.
    assert 0 < retries <= 2000 * 0.1 + 10 + 1


def test_an_earlier_steps_deadline_does_not_time_out_the_next_step():
    pattern = PATTERNS["orchestration"]
    bus = Bus(pattern, WORKLOAD.with_overrides(failures={}))
    bus.dropped.add(ev.INVENTORY_COMMANDS)
    [order] = bus.start(1)
    bus.run(now_s=0.0)  # charge answered at once; reserve sent at 0.0 too
    orchestrator = bus.handlers["orchestrator"]
    orchestrator.deadlines[:] = [(1.0, order, ev.CHARGE, 1), (1.9, order, ev.RESERVE, 1)]  # a heap
    bus.run(now_s=1.2)  # the charge's deadline passes; the reserve's has not
    assert [e["command"] for t, e in bus.log if "command" in e] == [ev.CHARGE, ev.RESERVE]
