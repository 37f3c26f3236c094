"""The streaming audit (bench.run.audit.Auditor) against synthetic histories: it judges as orders end,
forgets them, and reaches the batch audit's verdict; what it cannot see any longer it counts."""
from __future__ import annotations

import pytest
from hdrh.histogram import HdrHistogram

from bench.flow import events as ev
from bench.run.audit import GRACE_S, MAX_HOLD_S, Auditor, StartedOrders, _Judged, audit, step_latencies
from bench.results.measurement import StartCounts
from bench.results.recording import new_histogram, read_hlog
from bench.results.step_logs import StepLogs, write_step_logs
from bench.results.summary import Orders
from test_audit import PAY, SHP, T0, Log, topology

PATTERNS = ["choreography", "orchestration"]
RUN = "r1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def run_history(pattern: str, n: int, skip=()) -> Log:
    """n orders r1-1 .. r1-n, each a correct history, except those in ``skip`` (never sent)."""
    log = Log()
    for seq in range(1, n + 1):
        if seq not in skip:
            log.history(pattern, f"{RUN}-{seq}")
    return log


def interleaved(log: Log, orders_at_once: int = 20) -> list:
    """The records in an arrival order a live reader sees: orders overlap, a few dozen in flight."""
    by_order: dict[str, list] = {}
    for r in log.records:
        key = r.value["orderId"] if r.value and "orderId" in r.value else r.key
        by_order.setdefault(key, []).append(r)
    queues = list(by_order.values())
    out, active = [], []
    while queues or active:
        while queues and len(active) < orders_at_once:
            active.append(queues.pop(0))
        for q in list(active):
            out.append(q.pop(0))
            if not q:
                active.remove(q)
    return out


def stream(pattern: str, records: list, started: int, chunk: int = 50, spans=None, step_s: float = 5.0):
    """Feed ``records`` in chunks, ``step_s`` apart on the auditor's clock, settling after each."""
    clock = Clock()
    auditor = Auditor(topology(pattern), StartedOrders(RUN), spans=spans, clock=clock)
    auditor.started_up_to(started)
    peak = 0
    for i in range(0, len(records), chunk):
        auditor.feed(records[i:i + chunk])
        clock.now += step_s
        auditor.settle()
        peak = max(peak, len(auditor.active))
    return auditor, auditor.finish(started), peak


def without_examples(report) -> dict:
    d = report.to_dict()
    d.pop("examples")
    return d


@pytest.mark.parametrize("pattern", PATTERNS)
def test_streaming_and_batch_reach_the_same_verdict_and_spans(pattern):
    log = run_history(pattern, 400, skip={37, 211})
    stuck = f"{RUN}-401"
    log.emit(ev.ORDER_CREATED, stuck, status=ev.CREATED)
    log.emit(PAY.events_topic if pattern == "choreography" else ev.SAGA_STATE, stuck, status=PAY.ok)
    log.emit(ev.ORDER_CREATED, f"{RUN}-402", status=ev.CREATED)  # lost: nothing after order-created
    log.history(pattern, "ghost-1")  # never started
    records = interleaved(log)
    started = [f"{RUN}-{i}" for i in range(1, 404)]  # 403 was never even created
    batch = audit(records, dict.fromkeys(started, T0), topology(pattern))
    spans = {name: [] for name in topology(pattern).step_names()}
    auditor, live, peak = stream(pattern, records, 403, spans=spans)
    assert without_examples(live) == without_examples(batch)
    assert {k: sorted(v) for k, v in live.examples.items()} == {k: sorted(v) for k, v in batch.examples.items()}
    assert (live.lost, live.stuck, live.never_created, live.unknown_orders) == (4, 1, 3, 1)
    assert live.completed + live.cancelled + live.lost + live.stuck == live.orders_started == 403
    assert peak < 200, "orders were judged and forgotten as they ended"
    assert {k: sorted(v) for k, v in spans.items()} == {k: sorted(v) for k, v in step_latencies(records, topology(pattern)).items()}
    assert not auditor.active and not auditor.open_seconds


@pytest.mark.parametrize("pattern", PATTERNS)
def test_an_order_is_judged_grace_after_its_end_and_forgotten(pattern):
    log = run_history(pattern, 3)
    clock = Clock()
    auditor = Auditor(topology(pattern), StartedOrders(RUN), clock=clock)
    auditor.started_up_to(3)
    auditor.feed(log.records)
    assert auditor.settle() == 0 and len(auditor.active) == 3
    clock.now += GRACE_S - 1
    assert auditor.settle() == 0
    clock.now += 1
    assert auditor.settle() == 3 and not auditor.active
    assert 1 in auditor.judged and 3 in auditor.judged and 4 not in auditor.judged
    report = auditor.finish(3)
    assert report.clean and report.completed + report.cancelled == 3


def test_reading_behind_holds_judgment_until_max_hold():
    log = run_history("choreography", 1)
    clock = Clock()
    auditor = Auditor(topology("choreography"), StartedOrders(RUN), clock=clock)
    auditor.started_up_to(1)
    auditor.feed(log.records)
    ended = clock.now
    clock.now += GRACE_S + 10
    assert auditor.settle(read_to_s=ended - 1) == 0, "a partition was not read past its end yet"
    assert auditor.settle(read_to_s=ended + 1) == 1
    auditor = Auditor(topology("choreography"), StartedOrders(RUN), clock=clock)
    auditor.started_up_to(1)
    auditor.feed(log.records)
    clock.now += MAX_HOLD_S
    assert auditor.settle(read_to_s=0.0) == 1, "a reading stuck for ever does not hold memory for ever"


def test_an_order_not_known_to_be_started_waits():
    log = run_history("choreography", 2)
    clock = Clock()
    auditor = Auditor(topology("choreography"), StartedOrders(RUN), clock=clock)
    auditor.started_up_to(1)
    auditor.feed(log.records)
    clock.now += GRACE_S
    assert auditor.settle() == 1 and list(auditor.active) == [f"{RUN}-2"]
    auditor.started_up_to(2)
    assert auditor.settle() == 1 and not auditor.active


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_step_event_after_judgment_is_a_late_event_and_the_audit_is_not_clean(pattern):
    log = run_history(pattern, 2)
    oid = f"{RUN}-1"
    clock = Clock()
    auditor = Auditor(topology(pattern), StartedOrders(RUN), clock=clock)
    auditor.started_up_to(2)
    auditor.feed(log.records)
    clock.now += GRACE_S
    auditor.settle()
    late = Log()
    late.emit(ev.ORDER_EVENTS, oid, status=ev.COMPLETED)  # a second ending, read too late to judge
    late.emit(ev.SAGA_STATE, oid, status="x")  # bookkeeping: a message, not a step event
    auditor.feed(late.records)
    report = auditor.finish(2)
    assert report.late_events == 1 and report.examples["late_events"] == [oid]
    assert not report.clean and report.orders().late_events == 1
    assert report.completed + report.cancelled == 2 and report.multiple_terminal == 0


def test_a_replayed_reply_after_judgment_is_absorbed_not_late():
    log, oid = Log(), f"{RUN}-1"
    log.orchestration(oid)
    clock = Clock()
    auditor = Auditor(topology("orchestration"), StartedOrders(RUN), clock=clock)
    auditor.started_up_to(1)
    auditor.feed(log.records)
    clock.now += GRACE_S
    auditor.settle()
    late = Log()
    late.command(oid, SHP.do, SHP.ok, attempt=2, replay=True)
    auditor.feed([r for r in late.records if r.topic == ev.REPLIES])
    report = auditor.finish(1)
    assert report.clean and report.replayed_replies == 1 and report.late_events == 0


def test_stuck_orders_leave_holes_not_a_growing_set(monkeypatch):
    monkeypatch.setattr(_Judged, "SKIP_AFTER", 10)
    log = Log()
    for seq in range(1, 301):
        oid = f"{RUN}-{seq}"
        if seq % 100 == 5:
            log.emit(ev.ORDER_CREATED, oid, status=ev.CREATED)
            log.emit(PAY.events_topic, oid, status=PAY.ok)  # stuck for ever
        else:
            log.choreography(oid)
    _, report, _ = stream("choreography", log.records, 300)
    assert report.stuck == 3 and report.examples["stuck"] == [f"{RUN}-5", f"{RUN}-105", f"{RUN}-205"]
    assert report.completed + report.cancelled == 297


def test_judged_seqs_are_compact():
    judged = _Judged()
    judged.SKIP_AFTER = 5
    for seq in [2, 3, 1, 5, 6, 7, 8, 9, 10, 11, 12, 13]:
        judged.add(seq, started=100)
    assert judged.low >= 3 and 4 not in judged and all(s in judged for s in (1, 2, 3, 5, 13))
    assert len(judged.above) <= 6 and judged.holes <= {4}
    assert list(judged.unjudged(15)) == [4, 14, 15]
    judged.add(4, started=100)
    assert 4 in judged and not judged.holes


def test_ids_of_a_run_are_numbered_and_others_are_foreign():
    started = StartedOrders("ab12")
    assert started.seq("ab12-7") == 7 and started.id(7) == "ab12-7"
    assert started.seq("ab12-07") is None and started.seq("ab12-0") is None and started.seq("cd34-7") is None
    assert started.seq("ab12-x") is None
    numbered = StartedOrders.of(["x", "y"])
    assert numbered.seq("y") == 2 and numbered.id(1) == "x" and numbered.seq("z") is None


def test_late_events_make_a_summary_unclean():
    orders = Orders(10, 10, 0, 0, 0, 0, 0, 0, 0, late_events=1)
    assert not orders.clean and "late_events" in Orders.PROBLEMS


def test_start_counts_count_starts_in_a_window():
    counts = StartCounts(1_000_000)
    for i in range(1000):  # one every 1 ms for a second
        counts.add(1_000_000 + i * 1000)
    assert counts.total == 1000
    assert counts.between(1_000_000, 2_000_000) == 1000
    assert counts.between(1_100_000, 1_200_000) == pytest.approx(100, abs=1)
    assert counts.between(1_105_000, 1_105_000 + 10_000) == pytest.approx(10, abs=1)
    assert counts.between(0, 10_000_000) == 1000 and counts.between(5_000_000, 6_000_000) == 0


def _reference(spans, start_s, lo, hi) -> dict[int, HdrHistogram]:
    seconds: dict[int, HdrHistogram] = {}
    for end_s, latency in spans:
        if lo <= end_s < hi:
            seconds.setdefault(int(end_s - start_s), new_histogram()).record_value(max(latency, 0))
    return seconds


def test_step_logs_write_each_second_once_and_as_the_batch_writer_does(tmp_path):
    start = T0 / 1e6
    spans = [(start + i * 0.01, 100 + (i * 37) % 5000) for i in range(1000)]  # 10 s of spans
    load = type("L", (), {"start_s": start, "start_wall_s": 1.7e9, "measure_start_s": start + 1,
                          "measure_end_s": start + 9})()
    (tmp_path / "batch").mkdir()
    summaries = write_step_logs(tmp_path / "batch", {"payment": spans, "e2e": spans}, load)
    expected = _reference(spans, start, start + 1, start + 9)
    got = read_hlog(tmp_path / "batch" / "step-payment.hlog")
    assert [h.get_total_count() for h in got] == [expected[k].get_total_count() for k in sorted(expected)]
    assert [h.get_value_at_percentile(99) for h in got] == [expected[k].get_value_at_percentile(99) for k in sorted(expected)]
    assert summaries["payment"]["count"] == sum(h.get_total_count() for h in expected.values()) and "e2e" not in summaries

    (tmp_path / "live").mkdir()
    logs = StepLogs(tmp_path / "live", ["payment", "e2e"], start, 1.7e9, start + 1, start + 9)
    for i, span in enumerate(spans):
        logs.sinks["payment"].append(span)
        if i % 100 == 99:
            logs.flush(span[0] - 2)  # seconds that ended 2 s ago are complete
    assert logs.open_seconds() <= 3
    logs.sinks["payment"].append((start + 1.5, 42))  # a straggler for a second written already
    live = logs.close()
    assert logs.reopened == 1 and live["payment"]["count"] == summaries["payment"]["count"] + 1
    intervals = read_hlog(tmp_path / "live" / "step-payment.hlog")
    assert sum(h.get_total_count() for h in intervals) == live["payment"]["count"]


def test_step_logs_make_no_cyclic_garbage_so_the_auditor_stays_flat_with_its_collector_off(tmp_path):
    """The auditor runs with the automatic collector off. hdrh's histograms refer to themselves:
    a new one per step for every second written would be garbage only a collection frees (it
    was: 2.4 GB after 30 minutes at 5000/s). The step logs refill one per step instead."""
    import gc
    import tracemalloc

    start = T0 / 1e6
    steps = ["payment", "inventory", "shipping"]
    logs = StepLogs(tmp_path, steps, start, 1.7e9, start, start + 10_000)

    def second(k: int) -> None:  # what one second of a run leaves: spans of every step, written
        for step in steps:
            for i in range(50):
                logs.sinks[step].append((start + k + i / 50, 1000 + i))
        logs.flush(start + k + 1)

    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    tracemalloc.start()
    try:
        for k in range(20):
            second(k)
        early = tracemalloc.get_traced_memory()[0]
        for k in range(20, 140):
            second(k)
        late = tracemalloc.get_traced_memory()[0]
        unreachable = gc.collect()
    finally:
        tracemalloc.stop()
        if was_enabled:
            gc.enable()
    summaries = logs.close()
    # A new histogram per step and second: 68 MB more over these 120 s, and ~2,000 unreachable objects.
    assert late - early < 2e6, f"grew {(late - early) / 1e6:.1f} MB over 120 s of step logs"
    assert unreachable < 100
    assert summaries["payment"]["count"] == 140 * 50
    intervals = read_hlog(tmp_path / "step-payment.hlog")
    assert len(intervals) == 140 and all(h.get_total_count() == 50 for h in intervals)
    assert {h.get_min_value() for h in intervals} == {1000}  # each second's refill starts empty


def test_the_auditors_own_collection_frees_cycles_and_says_what_it_cost():
    import gc

    from bench.run import live_audit

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    was_enabled = gc.isenabled()
    gc.disable()
    try:
        garbage = live_audit.Garbage()
        for _ in range(10):
            Cycle()
        garbage.collect()
    finally:
        if was_enabled:
            gc.enable()
    figures = garbage.to_dict()
    assert figures["collections"] == 1 and figures["freed"] >= 10 and figures["longest_pause_ms"] >= 0


def test_finish_tells_how_far_its_judging_went():
    """What is left at the end (the last ~30 s of a run: ~150,000 orders at 5000/s) is judged in
    finish(), which says how far it got, so the run can show it."""
    import bench.run.audit as audit_module

    log = run_history("orchestration", 50)
    auditor = Auditor(topology("orchestration"), StartedOrders(RUN), clock=Clock())
    auditor.feed(log.records)
    heard = []
    every, audit_module.FINISH_PROGRESS_EVERY = audit_module.FINISH_PROGRESS_EVERY, 20
    try:
        report = auditor.finish(started_count=50, progress=lambda done, total: heard.append((done, total)))
    finally:
        audit_module.FINISH_PROGRESS_EVERY = every
    assert heard == [(0, 50), (20, 50), (40, 50), (50, 50)]
    assert report.completed + report.cancelled == 50 and report.clean


def test_an_audit_reading_behind_the_log_holds_an_order_grace_past_what_it_read_not_its_lag():
    """Ends dated by when they were in the log (written_by): with the reading 200 s behind (a
    starved audit on a saturated machine), an order is judged once the log was read GRACE_S past
    its end, GRACE_S after it was read. Dated by reading, it is held the whole lag (at 5000/s and
    minutes of lag, gigabytes)."""
    lag = 200.0
    for dated_by_log in (True, False):
        log = run_history("orchestration", 1)
        clock = Clock()
        auditor = Auditor(topology("orchestration"), StartedOrders(RUN), clock=clock)
        auditor.started_up_to(1)
        if dated_by_log:
            auditor.written_by = clock.now - lag  # the records read now were in the log by then
        auditor.feed(log.records)
        read_at = clock.now
        clock.now = read_at + GRACE_S - 1
        assert auditor.settle(read_to_s=clock.now - lag) == 0
        clock.now = read_at + GRACE_S + 3
        assert auditor.settle(read_to_s=clock.now - lag) == (1 if dated_by_log else 0)
        if not dated_by_log:
            clock.now = read_at + lag + 3
            assert auditor.settle(read_to_s=clock.now - lag) == 1


def test_with_log_dates_an_order_waits_until_the_log_was_read_grace_past_its_end():
    log = run_history("choreography", 1)
    clock = Clock()
    auditor = Auditor(topology("choreography"), StartedOrders(RUN), clock=clock)
    auditor.started_up_to(1)
    auditor.written_by = in_log = clock.now - 5
    auditor.feed(log.records)
    clock.now += GRACE_S + 60
    assert auditor.settle(read_to_s=in_log + GRACE_S - 1) == 0, "what was written in its grace was not all read"
    assert auditor.settle(read_to_s=in_log + GRACE_S) == 1


def test_the_follower_dates_what_it_read_by_the_first_end_offsets_that_reach_it():
    import threading

    from bench.run.live_audit import _Follower

    follower = object.__new__(_Follower)
    a, b = ("order-events", 0), ("order-created", 0)
    follower.ends = type("Ends", (), {"lock": threading.Lock(), "recent": [
        (10.0, {a: 100, b: 50}, 10.5), (12.0, {a: 200, b: 90}, 12.5), (14.0, {a: 300, b: 120}, 14.5)]})()
    follower.written_by = 0.0
    follower.positions = {a: 150, b: 80}
    assert follower.date() == 12.5  # the first answer at or past every position
    follower.positions = {a: 150, b: 40}
    assert follower.date() == 12.5, "a date never goes back"
    follower.positions = {a: 301, b: 120}  # read past every answer: written by now at the latest
    assert 14.5 < follower.date() <= __import__("time").monotonic()
