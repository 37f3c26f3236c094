"""Audit over synthetic event logs: correct histories of both patterns, then broken variants."""
from __future__ import annotations

import itertools

import orjson
import pytest
from confluent_kafka import KafkaError

from bench.flow import events as ev
from bench.run.audit import AuditReport, audit, step_latencies
from bench.kafka.records import Record, _read_assigned
from bench import patterns
from bench.flow.saga import DEFAULT as SAGA
from bench.flow.workload import Workload

PAY, INV, SHP = SAGA.steps

FAILURES = {"payment": 0.3, "inventory": 0.3, "shipping": 0.3}
UNIT_SAGA = Workload(name="audit", failures=FAILURES).saga
STEP_US = 1_000
T0 = 1_700_000_000_000_000


def failing_step(order_id: str) -> str | None:
    return next((s for s in SAGA.names if not ev.decide(order_id, s, FAILURES[s])), None)


def order_failing_at(step: str | None, skip: int = 0) -> str:
    """An orderId whose decided history fails at ``step`` (None: completes)."""
    ids = (f"order-{i}" for i in itertools.count())
    return [oid for oid in itertools.islice(ids, 1000) if failing_step(oid) == step][skip]


class Log:
    """Builds a record log; each message is stamped STEP_US after the previous one of its order."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.offsets: dict[str, int] = {}
        self.clock: dict[str, int] = {}

    def emit(self, topic: str, order_id: str, ts_us: int | None = None, **fields) -> int:
        if ts_us is None:
            ts_us = self.clock.get(order_id, T0) + STEP_US
        self.clock[order_id] = max(ts_us, self.clock.get(order_id, T0))
        value = {"orderId": order_id, "t0_us": T0, "ts_us": ts_us, **fields}
        self.append(topic, order_id, value, len(ev.encode(value)))
        return ts_us

    def append(self, topic: str, key: str | None, value: dict | None, value_size: int) -> None:
        offset = self.offsets.get(topic, 0)
        self.offsets[topic] = offset + 1
        size = value_size + len(key or "")
        self.records.append(Record(topic, 0, offset, key, value, 0, size))

    def choreography(self, order_id: str, fail: str | None = "decide") -> None:
        """The correct choreography history of one order, failing where ``decide`` says."""
        fail = failing_step(order_id) if fail == "decide" else fail
        self.emit(ev.ORDER_CREATED, order_id, status=ev.CREATED)
        if fail == "payment":
            self.emit(PAY.events_topic, order_id, status=PAY.failed)
            self.emit(ev.ORDER_EVENTS, order_id, status=ev.CANCELLED)
            return
        self.emit(PAY.events_topic, order_id, status=PAY.ok)
        if fail == "inventory":
            self.emit(INV.events_topic, order_id, status=INV.failed)
        else:
            self.emit(INV.events_topic, order_id, status=INV.ok)
            if fail is None:
                self.emit(SHP.events_topic, order_id, status=SHP.ok)
                self.emit(ev.ORDER_EVENTS, order_id, status=ev.COMPLETED)
                return
            self.emit(SHP.events_topic, order_id, status=SHP.failed)
            self.emit(INV.events_topic, order_id, status=INV.undone)
        self.emit(PAY.events_topic, order_id, status=PAY.undone)
        self.emit(ev.ORDER_EVENTS, order_id, status=ev.CANCELLED)

    def command(self, order_id: str, command: str, status: str, attempt: int = 1, replay: bool = False) -> None:
        topic = {PAY.do: PAY.commands_topic, PAY.undo: PAY.commands_topic, INV.do: INV.commands_topic,
                 INV.undo: INV.commands_topic, SHP.do: SHP.commands_topic}[command]
        self.emit(topic, order_id, command=command, attempt=attempt)
        extra = {"replay": True} if replay else {}  # as a service answers a repeat from its ledger
        self.emit(ev.REPLIES, order_id, status=status, service=topic.rsplit("-", 1)[1], **extra)
        self.emit(ev.SAGA_STATE, order_id, status=status)

    def orchestration(self, order_id: str, fail: str | None = "decide") -> None:
        """The correct orchestration history of one order, failing where ``decide`` says."""
        fail = failing_step(order_id) if fail == "decide" else fail
        self.emit(ev.ORDER_CREATED, order_id, status=ev.CREATED)
        self.emit(ev.SAGA_STATE, order_id, status=ev.CREATED)
        if fail == "payment":
            self.command(order_id, PAY.do, PAY.failed)
        else:
            self.command(order_id, PAY.do, PAY.ok)
            if fail == "inventory":
                self.command(order_id, INV.do, INV.failed)
            else:
                self.command(order_id, INV.do, INV.ok)
                if fail is None:
                    self.command(order_id, SHP.do, SHP.ok)
                else:
                    self.command(order_id, SHP.do, SHP.failed)
                    self.command(order_id, INV.undo, INV.undone)
            if fail is not None:
                self.command(order_id, PAY.undo, PAY.undone)
        self.emit(ev.ORDER_EVENTS, order_id, status=ev.COMPLETED if fail is None else ev.CANCELLED)

    def history(self, pattern: str, order_id: str, fail: str | None = "decide") -> None:
        getattr(self, pattern)(order_id, fail)


def topology(pattern: str):
    return patterns.get(pattern).topology(UNIT_SAGA)


def run_audit(log: Log, pattern: str, started: list[str]) -> AuditReport:
    report = audit(log.records, {oid: T0 for oid in started}, topology(pattern))
    assert report.completed + report.cancelled + report.lost + report.stuck == report.orders_started
    return report


PATTERNS = ["choreography", "orchestration"]


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("fail, refunds, releases", [
    (None, 0, 0), ("payment", 0, 0), ("inventory", 1, 0), ("shipping", 1, 1),
])
def test_correct_history_is_clean(pattern, fail, refunds, releases):
    log, oid = Log(), order_failing_at(fail)
    log.history(pattern, oid)
    report = run_audit(log, pattern, [oid])
    assert report.clean
    assert (report.completed, report.cancelled) == ((1, 0) if fail is None else (0, 1))
    assert report.compensations == {"payment": refunds, "inventory": releases}
    assert report.inconsistent == report.duplicate_events == report.unknown_orders == 0
    assert report.undecodable == {} and report.unconsumed_topics == {} and report.examples == {}
    assert report.messages_per_order == len(log.records)
    assert report.bytes_per_order == sum(r.size for r in log.records)


@pytest.mark.parametrize("pattern", PATTERNS)
def test_many_orders_count_each_once(pattern):
    log = Log()
    ids = [f"order-{i}" for i in range(200)]
    for oid in ids[:150]:
        log.history(pattern, oid)
    log.emit(ev.ORDER_CREATED, ids[150], status=ev.CREATED)
    report = run_audit(log, pattern, ids)
    expected = [UNIT_SAGA.expected_outcome(oid) for oid in ids[:150]]
    assert report.completed == expected.count(ev.COMPLETED)
    assert report.cancelled == expected.count(ev.CANCELLED)
    assert (report.lost, report.stuck, report.never_created) == (50, 0, 49)
    assert report.examples["lost"] == ids[150:155]
    assert report.messages_per_order == pytest.approx(len(log.records) / 150)
    assert not report.clean


def test_lost_order_has_no_progress_past_order_created():
    log = Log()
    log.emit(ev.ORDER_CREATED, "a", status=ev.CREATED)
    report = run_audit(log, "choreography", ["a", "b"])
    assert (report.lost, report.stuck, report.never_created) == (2, 0, 1)
    assert report.examples["lost"] == ["a", "b"] and report.examples["never_created"] == ["b"]
    assert report.messages_per_order is None and not report.clean


@pytest.mark.parametrize("pattern", PATTERNS)
def test_stuck_order_has_partial_progress(pattern):
    log, oid = Log(), order_failing_at(None)
    log.history(pattern, oid)
    log.records = [r for r in log.records if r.topic != ev.ORDER_EVENTS]
    report = run_audit(log, pattern, [oid])
    assert (report.stuck, report.lost, report.completed) == (1, 0, 0)
    assert report.examples["stuck"] == [oid] and not report.clean


def test_orchestration_saga_state_alone_is_progress():
    log = Log()
    log.emit(ev.ORDER_CREATED, "a", status=ev.CREATED)
    log.emit(ev.SAGA_STATE, "a", state="started")
    assert run_audit(log, "orchestration", ["a"]).stuck == 1


def test_double_charge_is_a_duplicate_effect():
    log, oid = Log(), order_failing_at(None)
    log.choreography(oid)
    log.emit(PAY.events_topic, oid, status=PAY.ok)
    report = run_audit(log, "choreography", [oid])
    assert (report.duplicate_events, report.duplicate_effects) == (1, 1)
    assert report.duplicate_effects_by_fact == {PAY.ok: 1}
    assert report.examples["duplicate_effects"] == [oid] and not report.clean


def test_redelivered_fact_is_a_duplicate_event_only():
    log, oid = Log(), order_failing_at(None)
    log.choreography(oid)
    log.records.append(next(r for r in log.records if r.value["status"] == INV.ok))
    report = run_audit(log, "choreography", [oid])
    assert (report.duplicate_events, report.duplicate_effects) == (1, 0)
    assert report.clean


def test_retried_command_answered_from_the_ledger_is_no_effect():
    log, oid = Log(), order_failing_at(None)
    log.orchestration(oid)
    log.command(oid, SHP.do, SHP.ok, attempt=2, replay=True)
    report = run_audit(log, "orchestration", [oid])
    assert report.duplicate_effects == 0 and report.replayed_replies == 1
    assert report.clean


def test_a_second_fresh_effect_after_a_retried_command_is_a_duplicate_effect():
    # A retry explains a second command, not a second shipment: the service must answer it from its ledger.
    log, oid = Log(), order_failing_at(None)
    log.orchestration(oid)
    log.command(oid, SHP.do, SHP.ok, attempt=2)
    report = run_audit(log, "orchestration", [oid])
    assert report.duplicate_effects_by_fact == {SHP.ok: 1} and not report.clean


def test_two_replies_to_one_command_are_a_duplicate_effect():
    log, oid = Log(), order_failing_at(None)
    log.orchestration(oid)
    log.emit(ev.REPLIES, oid, status=INV.ok, step="inventory")
    report = run_audit(log, "orchestration", [oid])
    assert report.duplicate_effects_by_fact == {INV.ok: 1} and not report.clean


@pytest.mark.parametrize("second", [ev.COMPLETED, ev.CANCELLED])
def test_more_than_one_terminal_event(second):
    log, oid = Log(), order_failing_at(None)
    log.choreography(oid)
    log.emit(ev.ORDER_EVENTS, oid, status=second)
    report = run_audit(log, "choreography", [oid])
    assert (report.multiple_terminal, report.completed, report.duplicate_effects) == (1, 1, 0)
    assert report.examples["multiple_terminal"] == [oid] and not report.clean
    conflicting = second == ev.CANCELLED
    assert report.inconsistent_by_rule == ({"conflicting_terminal": 1} if conflicting else {})


def test_charged_then_cancelled_without_refund_is_inconsistent():
    log, oid = Log(), order_failing_at("inventory")
    log.choreography(oid)
    log.records = [r for r in log.records if r.value["status"] != PAY.undone]
    report = run_audit(log, "choreography", [oid])
    assert (report.inconsistent, report.cancelled, report.unexpected_outcome) == (1, 1, 0)
    assert report.inconsistent_by_rule == {"payment_not_undone": 1}
    assert report.examples["inconsistent"] == [oid] and not report.clean


def test_completed_against_the_decision_is_an_unexpected_outcome():
    log, oid = Log(), order_failing_at("shipping")
    log.orchestration(oid, fail=None)
    report = run_audit(log, "orchestration", [oid])
    assert (report.unexpected_outcome, report.inconsistent, report.completed) == (1, 1, 1)
    assert report.inconsistent_by_rule == {"unexpected_outcome": 1}
    assert report.examples["unexpected_outcome"] == [oid]


def test_completed_with_compensation_is_inconsistent():
    log, oid = Log(), order_failing_at(None)
    log.choreography(oid)
    log.emit(PAY.events_topic, oid, status=PAY.undone)
    rules = run_audit(log, "choreography", [oid]).inconsistent_by_rule
    assert rules == {"completed_but_compensated": 1}


def test_undecodable_records_are_counted_per_topic_and_attributed_by_key():
    log, oid = Log(), order_failing_at(None)
    log.choreography(oid)
    log.append(PAY.events_topic, oid, None, 7)
    log.append(PAY.events_topic, None, None, 3)
    log.append(SHP.events_topic, oid, {"orderId": oid, "status": SHP.ok}, 30)  # no ts_us
    report = run_audit(log, "choreography", [oid])
    assert report.undecodable == {PAY.events_topic: 2, SHP.events_topic: 1}
    assert report.messages_per_order == len(log.records) - 1
    assert report.duplicate_events == 0
    assert not report.clean and report.orders().undecodable == 3  # the log holds what no order explains


def test_topic_nobody_consumes_is_reported():
    log, oid = Log(), order_failing_at(None)
    log.choreography(oid)
    log.emit(ev.SAGA_STATE, oid, status="x")  # no choreography role reads saga state
    report = run_audit(log, "choreography", [oid])
    assert report.unconsumed_topics == {ev.SAGA_STATE: 1}
    assert not report.clean and report.orders().unconsumed == 1


def test_events_of_orders_never_started_are_unknown():
    log, oid = Log(), order_failing_at(None)
    log.choreography(oid)
    log.choreography("ghost-1")
    log.emit(ev.ORDER_EVENTS, "ghost-2", status=ev.COMPLETED)
    report = run_audit(log, "choreography", [oid])
    assert (report.unknown_orders, report.completed) == (2, 1)
    assert report.examples["unknown_orders"] == ["ghost-1", "ghost-2"]
    assert report.messages_per_order == 5  # created, charged, reserved, shipped, completed
    assert not report.clean and report.orders().unknown_orders == 2


def test_poison_a_fault_injected_and_its_dead_letters_are_set_apart():
    log, oid = Log(), order_failing_at(None)
    log.choreography(oid)
    for i in range(3):
        log.append(ev.ORDER_CREATED, f"{ev.POISON_KEY_PREFIX}{i}", None, 20)
        log.append(ev.DEAD_LETTER, f"{ev.POISON_KEY_PREFIX}{i}", None, 20)  # parked by the service, key kept
    report = run_audit(log, "choreography", [oid])
    assert report.clean and report.injected == {ev.ORDER_CREATED: 3, ev.DEAD_LETTER: 3}
    assert report.dead_letters == 3 and report.undecodable == {} and report.unknown_orders == 0
    log.append(ev.DEAD_LETTER, oid, None, 20)  # but a real order parked as a dead letter is a fault
    assert not run_audit(log, "choreography", [oid]).clean


def test_report_serialises_for_summary_json():
    log, oid = Log(), order_failing_at("shipping")
    log.orchestration(oid)
    summary = orjson.loads(orjson.dumps(run_audit(log, "orchestration", [oid, "lost"]).to_dict()))
    assert summary["clean"] is False and summary["lost"] == 1 and summary["finished"] == 1
    assert summary["unfinished"] == 1 and summary["compensations"] == {"payment": 1, "inventory": 1}


def test_choreography_step_latencies():
    log = Log()
    log.emit(ev.ORDER_CREATED, "a", ts_us=T0 + 100, status=ev.CREATED)
    log.emit(PAY.events_topic, "a", ts_us=T0 + 300, status=PAY.ok)
    log.emit(INV.events_topic, "a", ts_us=T0 + 600, status=INV.ok)
    log.emit(SHP.events_topic, "a", ts_us=T0 + 1_000, status=SHP.failed)
    log.emit(INV.events_topic, "a", ts_us=T0 + 1_500, status=INV.undone)
    log.emit(PAY.events_topic, "a", ts_us=T0 + 2_100, status=PAY.undone)
    log.emit(ev.ORDER_EVENTS, "a", ts_us=T0 + 2_800, status=ev.CANCELLED)
    log.emit(ev.ORDER_EVENTS, "a", ts_us=T0 + 9_999, status=ev.CANCELLED)  # a duplicate counts once
    log.emit(ev.ORDER_CREATED, "b", ts_us=T0 + 50, status=ev.CREATED)
    log.emit(PAY.events_topic, "b", ts_us=T0 + 250, status=PAY.failed)
    log.emit(ev.ORDER_EVENTS, "b", ts_us=T0 + 270, status=ev.CANCELLED)
    got = step_latencies(log.records, topology("choreography"))
    assert {step: sorted(lat for _, lat in spans) for step, spans in got.items()} == {
        "payment": [200, 200], "inventory": [300], "shipping": [400], "release": [500], "refund": [600],
        "order": [20, 700], "e2e": [270, 2_800],
    }
    assert (T0 + 2_800) / 1e6 in [ts for ts, _ in got["e2e"]]


def test_orchestration_step_latencies_use_latest_attempt():
    log = Log()
    log.emit(ev.ORDER_CREATED, "a", ts_us=T0 + 100, status=ev.CREATED)
    log.emit(ev.SAGA_STATE, "a", ts_us=T0 + 110, status=ev.CREATED)
    log.emit(PAY.commands_topic, "a", ts_us=T0 + 130, command=PAY.do, attempt=1)
    log.emit(PAY.commands_topic, "a", ts_us=T0 + 5_130, command=PAY.do, attempt=2)  # retry on timeout
    log.emit(ev.REPLIES, "a", ts_us=T0 + 5_200, status=PAY.ok, step="payment")
    log.emit(INV.commands_topic, "a", ts_us=T0 + 5_250, command=INV.do, attempt=1)
    log.emit(ev.REPLIES, "a", ts_us=T0 + 5_400, status=INV.ok, step="inventory")
    log.emit(SHP.commands_topic, "a", ts_us=T0 + 5_410, command=SHP.do, attempt=1)
    log.emit(ev.REPLIES, "a", ts_us=T0 + 5_800, status=SHP.ok, step="shipping")
    log.emit(ev.ORDER_EVENTS, "a", ts_us=T0 + 5_900, status=ev.COMPLETED)
    got = step_latencies(log.records, topology("orchestration"))
    assert {step: [lat for _, lat in spans] for step, spans in got.items()} == {
        "payment": [70], "inventory": [150], "shipping": [390], "release": [], "refund": [],
        "orchestrator": [30, 50, 10, 100], "e2e": [5_900],
    }
    assert got["shipping"] == [((T0 + 5_800) / 1e6, 390)]


class FakeMessage:
    def __init__(self, topic, partition, offset, value=b"", key=None, error=None):
        self._fields = topic, partition, offset, value, key, error

    def topic(self): return self._fields[0]
    def partition(self): return self._fields[1]
    def offset(self): return self._fields[2]
    def value(self): return self._fields[3]
    def key(self): return self._fields[4]
    def error(self): return self._fields[5]
    def timestamp(self): return (1, 1234)


class FakeConsumer:
    def __init__(self, batches):
        self.batches = list(batches)

    def consume(self, num_messages, timeout):
        return self.batches.pop(0) if self.batches else []


def test_reader_stops_each_partition_at_its_end():
    good = ev.encode({"orderId": "a", "status": ev.CREATED, "ts_us": 1})
    eof = FakeMessage("t", 1, 2, error=KafkaError(KafkaError._PARTITION_EOF))
    consumer = FakeConsumer([
        [FakeMessage("t", 0, 0, good, b"a"), FakeMessage("t", 0, 1, b"{not json", b"a"),
         FakeMessage("t", 1, 0, None, b"a")],  # a tombstone
        [eof, FakeMessage("t", 0, 2, good), FakeMessage("t", 0, 3, good)],  # offset 3: produced after the call
    ])
    records = list(_read_assigned(consumer, {("t", 0): 3, ("t", 1): 2}, deadline=float("inf")))
    assert [(r.partition, r.offset, r.key, r.value is None) for r in records] == [
        (0, 0, "a", False), (0, 1, "a", True), (0, 2, None, False)]
    assert records[0].size == len(good) + 1 and records[0].timestamp_ms == 1234


def test_reader_times_out_rather_than_hanging():
    with pytest.raises(TimeoutError):
        list(_read_assigned(FakeConsumer([]), {("t", 0): 5}, deadline=0.0))
