"""The patterns' coordination logic, driven in-process (no broker): every order ends as
the failure draw says, duplicates are absorbed, a restarted role resumes from its own output."""
from __future__ import annotations

import itertools
from collections import deque

import pytest

from bench.flow import events as ev
from bench.run.audit import audit
from bench.kafka.records import Record
from bench.patterns import PATTERNS
from bench.flow.workload import Workload
from bench.flow.saga import DEFAULT as SAGA

PAY, INV, SHP = SAGA.steps

FAILURES = {"payment": 0.2, "inventory": 0.2, "shipping": 0.2}
WORKLOAD = Workload(name="unit", failures=FAILURES, step_timeout_s=1.0, step_retries=1)


def topo(name, workload=WORKLOAD):
    return PATTERNS[name].topology(workload.saga)


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
    bus = Bus(topo(name))
    ids = bus.start(300)
    bus.run()
    assert bus.outcomes() == {o: WORKLOAD.saga.expected_outcome(o) for o in ids}
    report = audit(bus.records(), {o: 0 for o in ids}, bus.pattern)
    assert report.clean and report.compensations["payment"] > 0 and report.compensations["inventory"] > 0


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_redelivered_input_is_absorbed(name):
    bus = Bus(topo(name))
    ids = bus.start(100)
    bus.run()
    before = len(bus.log)
    for topic, event in list(bus.log):  # every message delivered a second time
        if topic != ev.ORDER_EVENTS:
            bus.queue.append((topic, dict(event)))
    bus.run()
    new = bus.log[before:]
    assert not [e for t, e in new if t == ev.ORDER_EVENTS], "a redelivery ended an order twice"
    report = audit(bus.records(), {o: 0 for o in ids}, bus.pattern)
    assert report.duplicate_effects == 0 and report.multiple_terminal == 0


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_a_restarted_role_rebuilds_its_ledger_from_its_own_output(name):
    pattern = topo(name)
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
    charged = [e for t, e in bus.log[before:] if e.get("status") == PAY.ok and not e.get("replay")]
    assert not charged, "a restarted payment service charged again"


def test_orchestrator_retries_a_silent_step_with_backoff_then_compensates():
    workload = WORKLOAD.with_overrides(failures={})
    pattern = topo("orchestration", workload)
    bus = Bus(pattern, workload)
    bus.dropped.add(INV.commands_topic)  # inventory never answers
    [order] = bus.start(1)
    commands = lambda: [e["command"] for t, e in bus.log if "command" in e]
    bus.run(now_s=0.0)
    bus.run(now_s=1.5)  # first timeout (1 s): retry, now with a 2 s timeout
    bus.run(now_s=3.0)  # not yet: the retry's timeout has doubled
    assert commands() == [PAY.do, INV.do, INV.do]
    bus.run(now_s=3.6)  # retries exhausted: release (the reservation may have happened), unanswered
    assert commands() == [PAY.do, INV.do, INV.do, INV.undo]
    bus.dropped.clear()
    bus.run(now_s=4.7)  # the release is retried until inventory answers, then payment refunds
    assert commands() == [PAY.do, INV.do, INV.do, INV.undo, INV.undo, PAY.undo]
    assert bus.outcomes() == {order: ev.CANCELLED}


def test_orchestrator_never_gives_up_on_shipping_the_pivot():
    workload = WORKLOAD.with_overrides(failures={})
    pattern = topo("orchestration", workload)
    bus = Bus(pattern, workload)
    bus.dropped.add(SHP.commands_topic)  # shipping is silent for a long while
    [order] = bus.start(1)
    for now in (0.0, 1.5, 3.6, 7.7, 15.8, 23.9):
        bus.run(now_s=now)
    assert [e["command"] for t, e in bus.log if "command" in e].count(SHP.do) == 6
    assert bus.outcomes() == {}, "an order whose shipment may still happen was ended"
    bus.dropped.clear()
    bus.run(now_s=32.0)
    assert bus.outcomes() == {order: ev.COMPLETED}


def test_restarted_orchestrator_resumes_in_flight_sagas_from_saga_state():
    workload = WORKLOAD.with_overrides(failures={})
    pattern = topo("orchestration", workload)
    bus = Bus(pattern, workload)
    bus.dropped.add(ev.REPLIES)  # the orchestrator dies before any reply reaches it
    ids = bus.start(20)
    bus.run()
    bus.dropped.clear()
    restarted = pattern.handler("orchestrator", workload)
    restarted.restore([(t, e) for t, e in bus.log if t in pattern.restore_from["orchestrator"]], bus)
    bus.handlers["orchestrator"] = restarted
    bus.run()
    assert bus.outcomes() == {o: ev.COMPLETED for o in ids}


def _finished_then_restarted(lose: str):
    """Every order finishes, but the crash lost the last record of each order on ``lose``
    (the saga's terminal state record or its terminal event): the two go to different
    partitions, so either can be acknowledged without the other."""
    workload = WORKLOAD.with_overrides(failures={})
    pattern = topo("orchestration", workload)
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
    report = audit(bus.records(), {o: 0 for o in ids}, bus.pattern)
    assert report.clean


def test_retries_stay_within_the_budget_when_every_reply_is_late():
    workload = WORKLOAD.with_overrides(failures={})
    pattern = topo("orchestration", workload)
    bus = Bus(pattern, workload)
    bus.dropped.add(PAY.commands_topic)  # every charge is late, as in a backlogged cluster
    bus.start(2000)
    bus.run(now_s=0.0)
    bus.run(now_s=1.5)  # every in-flight charge is past its timeout
    charges = [e for t, e in bus.log if e.get("command") == PAY.do]
    retries = len(charges) - 2000
    # 10% of 2000 fresh commands plus the initial floor of 10, not 2000 re-sent commands.
    assert 0 < retries <= 2000 * 0.1 + 10 + 1


def test_an_earlier_steps_deadline_does_not_time_out_the_next_step():
    workload = WORKLOAD.with_overrides(failures={})
    pattern = topo("orchestration", workload)
    bus = Bus(pattern, workload)
    bus.dropped.add(INV.commands_topic)
    [order] = bus.start(1)
    bus.run(now_s=0.0)  # charge answered at once; reserve sent at 0.0 too
    orchestrator = bus.handlers["orchestrator"]
    orchestrator.deadlines[:] = [(1.0, order, PAY.name, 1, False), (1.9, order, INV.name, 1, False)]  # a heap
    bus.run(now_s=1.2)  # the charge's deadline passes; the reserve's has not
    assert [e["command"] for t, e in bus.log if "command" in e] == [PAY.do, INV.do]


def test_a_forward_commands_deadline_does_not_retry_the_undo_of_the_same_step():
    workload = WORKLOAD.with_overrides(failures={})
    bus = Bus(topo("orchestration", workload), workload)
    bus.dropped.add(INV.commands_topic)
    [order] = bus.start(1)
    commands = lambda: [e["command"] for t, e in bus.log if "command" in e]
    bus.run(now_s=0.0)  # charged at once (its deadline, 1.0, stays in the heap); reserve unanswered
    bus.dropped.add(PAY.commands_topic)
    bus.run(now_s=0.5)  # the orchestrator's clock reads 0.5
    bus.emit(ev.REPLIES, {"orderId": order, "status": INV.failed, "step": INV.name, "t0_us": 0})
    bus.run(now_s=0.5)  # out of stock: refund, attempt 1, due at 1.5
    bus.run(now_s=1.2)  # the charge's old deadline passes: nothing to retry
    assert commands() == [PAY.do, INV.do, PAY.undo]
    bus.run(now_s=1.6)
    assert commands() == [PAY.do, INV.do, PAY.undo, PAY.undo]


# --- sagas defined in the workload ------------------------------------------

SIX = Workload(name="six", saga={"steps": [{"name": f"s{i}", "failure": 0.08} for i in range(1, 7)]})
PARALLEL = Workload(name="par", saga={"steps": [
    {"name": "first", "failure": 0.1},
    {"parallel": [{"name": "left", "failure": 0.2}, {"name": "right", "failure": 0.2}]},
    {"name": "last", "failure": 0.1},
]})


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_both_topologies_are_derived_from_the_saga(name):
    topology = topo(name, SIX)
    steps = SIX.saga.steps
    assert topology.roles == (topology.coordinator, *(s.name for s in steps))
    if name == "choreography":
        assert topology.subscriptions["s1"] == (ev.ORDER_CREATED, "s2-events")  # input, then the next step's facts
        assert topology.subscriptions["s3"] == ("s2-events", "s4-events")
        assert topology.subscriptions["s6"] == ("s5-events",)  # the pivot is never undone
        assert topology.subscriptions["order"] == ("s1-events", "s6-events")
        assert [t for t in topology.topics if t.endswith("-events")] == [f"s{i}-events" for i in range(1, 7)] + [ev.ORDER_EVENTS]
    else:
        assert {topology.subscriptions[s.name] for s in steps} == {(f"order-processor-s{i}",) for i in range(1, 7)}
        assert topology.subscriptions["orchestrator"] == (ev.ORDER_CREATED, ev.REPLIES)
        assert topology.compacted == (ev.SAGA_STATE,)


@pytest.mark.parametrize("name, per_order", [("choreography", lambda n: n + 2), ("orchestration", lambda n: 3 * n + 3)])
@pytest.mark.parametrize("n", [1, 3, 6, 10])
def test_messages_per_order_follow_the_step_count(name, per_order, n):
    workload = Workload(name=f"n{n}", saga={"steps": [{"name": f"step-{i}"} for i in range(n)]})
    bus = Bus(topo(name, workload), workload)
    ids = bus.start(20)
    bus.run()
    assert bus.outcomes() == dict.fromkeys(ids, ev.COMPLETED)
    assert len(bus.log) == 20 * per_order(n)


@pytest.mark.parametrize("workload", [SIX, PARALLEL], ids=["six-steps", "parallel"])
@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_a_defined_saga_ends_every_order_as_decided_with_a_clean_audit(name, workload):
    bus = Bus(topo(name, workload), workload)
    ids = bus.start(400)
    bus.run()
    assert bus.outcomes() == {o: workload.saga.expected_outcome(o) for o in ids}
    report = audit(bus.records(), dict.fromkeys(ids, 0), bus.pattern)
    assert report.clean and report.inconsistent == 0, report.inconsistent_by_rule
    compensable = [s.name for s in workload.saga.steps if s.compensable]
    assert sorted(report.compensations) == sorted(compensable) and all(report.compensations.values())


def _failing(saga, fails: set[str], succeeds: set[str]) -> str:
    return next(o for o in (f"o-{i}" for i in range(100_000))
                if all(not saga.step(s).succeeds(o) for s in fails) and all(saga.step(s).succeeds(o) for s in succeeds))


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_a_failing_member_of_a_parallel_group_undoes_its_sibling_and_every_step_before(name):
    saga = PARALLEL.saga
    order = _failing(saga, fails={"left"}, succeeds={"first", "right"})
    bus = Bus(topo(name, PARALLEL), PARALLEL)
    bus.emit(ev.ORDER_CREATED, {"orderId": order, "status": ev.CREATED, "t0_us": 0})
    bus.run()
    statuses = [e.get("status") for t, e in bus.log if "status" in e and not e.get("replay")
                and t != ev.SAGA_STATE]
    first, left, right, last = saga.steps
    assert first.ok in statuses and left.failed in statuses and right.ok in statuses
    assert right.undone in statuses and first.undone in statuses  # the sibling, then the stage before
    assert statuses.index(right.undone) < statuses.index(first.undone)
    assert last.ok not in statuses and last.failed not in statuses
    assert bus.outcomes() == {order: ev.CANCELLED}
    assert audit(bus.records(), {order: 0}, bus.pattern).clean


def test_choreography_a_sibling_failure_seen_before_its_own_input_still_undoes():
    """Facts on different topics may arrive in any order: right hears that left failed before
    it hears that first succeeded; it must still apply, then undo at once."""
    saga = PARALLEL.saga
    order = _failing(saga, fails={"left"}, succeeds={"first", "right"})
    topology = topo("choreography", PARALLEL)
    right = topology.handler("right", PARALLEL)
    bus = Bus(topology, PARALLEL)
    first, left, _, _ = saga.steps
    right.handle(left.events_topic, 0, {"orderId": order, "status": left.failed, "t0_us": 0}, bus)
    assert not bus.log
    right.handle(first.events_topic, 0, {"orderId": order, "status": first.ok, "t0_us": 0}, bus)
    assert [e["status"] for _, e in bus.log] == ["right-done", "right-undone"]


def test_choreography_a_restarted_step_rebuilds_its_join_from_the_facts_it_consumes():
    saga = PARALLEL.saga
    order = _failing(saga, fails=set(), succeeds={"first", "left", "right", "last"})
    topology = topo("choreography", PARALLEL)
    first, left, right, last = saga.steps
    assert topology.restore_from["last"] == ("last-events", "left-events", "right-events")
    before = [(left.events_topic, {"orderId": order, "status": left.ok, "t0_us": 0, "ts_us": 1})]
    restarted = topology.handler("last", PARALLEL)
    bus = Bus(topology, PARALLEL)
    restarted.restore(before, bus)  # left's success was consumed (and committed) before the crash
    restarted.handle(right.events_topic, 0, {"orderId": order, "status": right.ok, "t0_us": 0}, bus)
    assert [e["status"] for _, e in bus.log] == [last.ok]


def test_choreography_a_join_completed_by_uncommitted_facts_still_decides_when_they_come_again():
    """Restore reads to the end of the log, past the committed offset: the facts it reads that
    complete a join are consumed again, and that second reading must decide."""
    saga = PARALLEL.saga
    first, left, right, last = saga.steps
    order = _failing(saga, fails={"left"}, succeeds={"first", "right"})
    topology = topo("choreography", PARALLEL)
    bus = Bus(topology, PARALLEL)
    facts = [(first.events_topic, {"orderId": order, "status": first.ok, "t0_us": 0, "ts_us": 1}),
             (left.events_topic, {"orderId": order, "status": left.ok, "t0_us": 0, "ts_us": 2}),
             (right.events_topic, {"orderId": order, "status": right.ok, "t0_us": 0, "ts_us": 3})]
    restarted = topology.handler("last", PARALLEL)
    restarted.restore(facts, bus)
    restarted.handle(right.events_topic, 0, dict(facts[2][1]), bus)  # consumed again after the restore
    assert [e["status"] for _, e in bus.log] == [last.ok]

    rollback = [(left.events_topic, {"orderId": order, "status": left.failed, "t0_us": 0, "ts_us": 4}),
                (right.events_topic, {"orderId": order, "status": right.undone, "t0_us": 0, "ts_us": 5})]
    cancelling = Workload(name="par0", saga={"steps": [
        {"parallel": [{"name": "left"}, {"name": "right"}]}, {"name": "last"}]})
    order_role = topo("choreography", cancelling).handler("order", cancelling)
    ends = Bus(topo("choreography", cancelling), cancelling)
    order_role.restore(rollback, ends)
    order_role.handle(right.events_topic, 0, dict(rollback[1][1]), ends)
    assert [(t, e["status"]) for t, e in ends.log] == [(ev.ORDER_EVENTS, ev.CANCELLED)]
