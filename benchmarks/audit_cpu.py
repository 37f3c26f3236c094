"""The live audit's CPU per order, without Kafka: what decoding, folding, judging and the step logs cost.

    python benchmarks/audit_cpu.py [--rate 5000] [--seconds 8] [--rounds 3]

Builds ``--seconds`` of correct orchestration histories at ``--rate`` orders a second (the audit
tests' own builder: 12 records an order, 30% of orders fail at a step and are compensated), each
record's value encoded as the services write it. Then, as the live audit process does for each
second: decodes and folds every record (:meth:`bench.run.audit.Auditor.fold`), judges and forgets the
second's orders (:meth:`~bench.run.audit.Auditor.settle`, which also hands their spans to the step
logs), and writes the step logs' closed seconds (:meth:`bench.results.step_logs.StepLogs.flush`).
Prints the process CPU of each phase per order, the best of ``--rounds`` rounds (a fresh auditor
each), then the memory an order takes while the audit holds it (every record of one second's orders
folded, none judged; Python's allocations, from tracemalloc: what the live audit's ~150,000 held
orders at 5000/s multiply). What Kafka's client costs the audit (fetching, the consumer's threads) is not in it: the
live run's ``cost.auditor`` minus this is that.
"""
from __future__ import annotations

import gc
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from test_audit import T0, Log, topology  # noqa: E402

from bench.flow import events as ev  # noqa: E402
from bench.results.step_logs import StepLogs  # noqa: E402
from bench.run import live_audit  # noqa: E402
from bench.run.audit import GRACE_S, Auditor, StartedOrders  # noqa: E402


class _Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _histories(rate: int, seconds: int) -> list[list[tuple[str, str, bytes]]]:
    """Per second: (topic, key, encoded value) of every record of that second's orders."""
    out, seq = [], 0
    for k in range(seconds):
        log = Log()
        for _ in range(rate):
            seq += 1
            log.orchestration(f"r1-{seq}")
        second = []
        for r in log.records:
            r.value["ts_us"] += k * 1_000_000
            r.value["t0_us"] += k * 1_000_000
            second.append((r.topic, r.key, ev.encode(r.value)))
        out.append(second)
    return out


def _round(seconds: list[list[tuple[str, str, bytes]]], rate: int, out: Path) -> dict[str, float]:
    clock = _Clock()
    topo = topology("orchestration")
    auditor = Auditor(topo, StartedOrders("r1"), clock=clock)
    start_s = T0 / 1e6
    steps = StepLogs(out, topo.step_names(), start_s, 1.7e9,
                     start_s, start_s + 1e7)
    auditor.spans = steps.sinks
    spent = {"decode+fold": 0.0, "judge+spans": 0.0, "step logs": 0.0}
    fold, decode, cpu = auditor.fold, ev.decode, time.process_time
    for k, records in enumerate(seconds):
        clock.now = 1000.0 + k
        t0 = cpu()
        for topic, key, raw in records:
            fold(topic, key, decode(raw), len(raw) + len(key))
        t1 = cpu()
        auditor.started_up_to(rate * (k + 1))
        # Every order of this second ended by now + 0.5 and was read past it: judged now, as
        # the live audit judges it GRACE_S later.
        auditor.settle(clock.now + GRACE_S + 0.5, clock.now + 0.5)
        t2 = cpu()
        oldest = auditor.oldest_open_s()
        bound = start_s + k + 1 - live_audit.STEP_SLACK_S
        steps.flush(bound if oldest is None else min(bound, oldest))
        t3 = cpu()
        spent["decode+fold"] += t1 - t0
        spent["judge+spans"] += t2 - t1
        spent["step logs"] += t3 - t2
    steps.close()
    report = auditor.finish()
    assert report.completed + report.cancelled == rate * len(seconds), "every order judged"
    assert not report.inconsistent_by_rule and not report.lost and not report.stuck, "a clean audit"
    orders = rate * len(seconds)
    return {phase: s / orders * 1e6 for phase, s in spent.items()}


def _held_bytes(records: list[tuple[str, str, bytes]]) -> tuple[float, int]:
    """Bytes Python allocated per order for ``records``' orders folded and held, and how many."""
    auditor = Auditor(topology("orchestration"), StartedOrders("r1"), clock=_Clock())
    fold, decode = auditor.fold, ev.decode
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for topic, key, raw in records:
        fold(topic, key, decode(raw), len(raw) + len(key))
    held = len(auditor.active)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return used / held, held


@click.command()
@click.option("--rate", default=5000, show_default=True, help="Orders per simulated second.")
@click.option("--seconds", default=8, show_default=True, help="Simulated seconds per round.")
@click.option("--rounds", default=3, show_default=True, help="Rounds; the best of each phase is printed.")
def main(rate: int, seconds: int, rounds: int) -> None:
    histories = _histories(rate, seconds)
    records = sum(map(len, histories)) / (rate * seconds)
    gc.disable()  # as the live audit process runs
    best: dict[str, float] = {}
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="bench-audit-cpu-") as out:  # the step logs it writes
            spent = _round(histories, rate, Path(out))
        for phase, us in spent.items():
            best[phase] = min(us, best.get(phase, us))
        gc.collect()
    click.echo(f"{rate * seconds} orders, {records:.1f} records an order; CPU us per order, best of {rounds}:")
    for phase, us in best.items():
        click.echo(f"  {phase:12s} {us:6.1f}")
    click.echo(f"  {'total':12s} {sum(best.values()):6.1f}")
    per_order, held = _held_bytes(histories[0])
    click.echo(f"memory of an order held by the audit: {per_order:.0f} bytes ({held} orders held)")


if __name__ == "__main__":
    main()
