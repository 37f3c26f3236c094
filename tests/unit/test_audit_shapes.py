"""The audit remembers verdicts by the shape of an order's log (bench.run.audit._Judge): on any
history, correct or mangled, its report must be the one judging every order in full gives, and the
orchestration spans the ones the rules define (hypothesis over dropped, repeated and re-stamped records)."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.run import audit as audit_module
from bench.run.audit import step_latencies
from bench.patterns.base import first_terminal
from bench.flow import events as ev
from test_audit import PATTERNS, Log, T0, run_audit, topology

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def mangled(pattern: str, seed: int, orders: int) -> tuple[Log, list[str]]:
    """Correct histories of ``orders`` orders, then records dropped, repeated and moved in time at random."""
    rng, log = random.Random(seed), Log()
    ids = [f"order-{seed}-{i}" for i in range(orders)]
    for oid in ids:
        # Some run the whole saga although a step must fail for them: the shape of a correct
        # completed order, judged otherwise.
        log.history(pattern, oid, None if rng.random() < 0.15 else "decide")
    out = []
    for record in log.records:
        roll = rng.random()
        if roll < 0.08:
            continue  # lost
        if roll < 0.12 and record.topic == ev.ORDER_EVENTS:  # ended the other way than its steps say
            flipped = ev.CANCELLED if record.value["status"] == ev.COMPLETED else ev.COMPLETED
            record = type(record)(record.topic, record.partition, record.offset, record.key,
                                  {**record.value, "status": flipped}, record.timestamp_ms, record.size)
        out.append(record)
        if roll > 0.92:
            out.append(record)  # redelivered
        elif roll > 0.86 and record.value is not None:
            value = {**record.value, "ts_us": record.value["ts_us"] + rng.randint(-3_000, 3_000)}
            out.append(type(record)(record.topic, record.partition, record.offset, record.key, value,
                                    record.timestamp_ms, record.size))  # produced again, later or earlier
    log.records = out
    return log, ids


@pytest.mark.parametrize("pattern", PATTERNS)
@SETTINGS
@given(seed=st.integers(0, 10**6), orders=st.integers(1, 60))
def test_remembered_verdicts_give_the_full_judgment(pattern, seed, orders, monkeypatch):
    log, ids = mangled(pattern, seed, orders)
    remembered = run_audit(log, pattern, ids).to_dict()
    with monkeypatch.context() as m:
        m.setattr(audit_module._Judge, "SHAPES", 0)  # nothing remembered: every order judged in full
        full = run_audit(log, pattern, ids).to_dict()
    assert remembered == full


def reference_orchestration_spans(steps, t0_us, saga, coordinator):
    """The orchestration spans as the rules state them, one at a time."""
    out = {name: [] for name in (*saga.spans(coordinator), "e2e")}

    def add(step, start, end):
        if start is not None and end is not None:
            out[step].append((end / 1e6, end - start))

    for step in saga.steps:
        for command, span, answers in ((step.do, step.name, (step.ok, step.failed)),
                                       (step.undo, step.undo_span, (step.undone,))):
            if command in steps and (step.compensable or command == step.do):
                sent = max(steps[command])
                add(span, sent, min([ts for s in answers for ts in steps.get(s, ()) if ts >= sent], default=None))
    inputs = sorted(ts for key in (ev.CREATED, *saga.fact) for ts in steps.get(key, ()))
    outputs = sorted(ts for key in (*saga.command, *ev.TERMINAL) for ts in steps.get(key, ()))
    i, pending = 0, None
    for sent in outputs:
        while i < len(inputs) and inputs[i] <= sent:
            pending, i = inputs[i], i + 1
        add(coordinator, pending, sent)
        pending = None
    terminal = first_terminal(steps)
    if terminal is not None:
        add("e2e", t0_us, terminal[1])
    return out


@SETTINGS
@given(seed=st.integers(0, 10**6), orders=st.integers(1, 30))
def test_orchestration_spans_are_the_rules(seed, orders):
    topo = topology("orchestration")
    log, _ = mangled("orchestration", seed, orders)
    got = step_latencies(log.records, topo)
    want = {name: [] for name in got}
    by_order: dict[str, dict[str, list[int]]] = {}
    kinds = topo.step_topics()
    for r in log.records:  # each order's step events, as the audit folds them (no replays in these logs)
        kind = kinds.get(r.topic)
        if kind is not None and r.value.get(kind[0]) in kind[1]:
            by_order.setdefault(r.value["orderId"], {}).setdefault(r.value[kind[0]], []).append(r.value["ts_us"])
    for steps in by_order.values():
        for name, spans in reference_orchestration_spans(steps, T0, topo.saga, topo.coordinator).items():
            want[name] += spans
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in want.items()}
