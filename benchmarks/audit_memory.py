"""The audit's own memory, without Kafka: does its fold and step logs' state follow the orders in flight?

    python benchmarks/audit_memory.py [--rate 5000] [--seconds 600]

Feeds a :class:`bench.run.audit.Auditor` with :class:`bench.results.step_logs.StepLogs` correct
orchestration histories (the audit tests' own builder) at ``--rate`` orders per simulated second,
on a fake clock, with the cyclic collector off and the live audit's own collection every 5
simulated minutes, as the live audit process runs; settles and flushes each second as the
follower does. Prints this process's resident memory and the size of every structure that could
grow, once a simulated minute. Flat lines: the audit's state is bounded by what is in flight, and
whatever the live process holds beyond it is elsewhere (the Kafka client, the allocator).
"""
from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit"))
from test_audit import T0, Log, topology  # noqa: E402

from bench.results.step_logs import StepLogs  # noqa: E402
from bench.run import live_audit  # noqa: E402
from bench.run.audit import Auditor, StartedOrders  # noqa: E402


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class _Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


@click.command()
@click.option("--rate", default=5000, show_default=True, help="Orders per simulated second.")
@click.option("--seconds", default=600, show_default=True, help="Simulated seconds.")
def main(rate: int, seconds: int) -> None:
    gc.disable()  # as the live audit process runs
    clock = _Clock()
    topo = topology("orchestration")
    auditor = Auditor(topo, StartedOrders("r1"), clock=clock)
    start_s = T0 / 1e6
    steps = StepLogs(Path(tempfile.mkdtemp(prefix="bench-audit-memory-")), topo.step_names(), start_s, 1.7e9,
                     start_s, start_s + 1e7)
    auditor.spans = steps.sinks
    garbage = live_audit.Garbage()
    seq, began = 0, time.monotonic()
    for k in range(seconds):
        log = Log()
        for _ in range(rate):
            seq += 1
            log.orchestration(f"r1-{seq}")
        for record in log.records:  # this second's orders, k s after the first
            if record.value is not None:
                record.value["ts_us"] += k * 1_000_000
                record.value["t0_us"] += k * 1_000_000
        auditor.feed(log.records)
        auditor.started_up_to(seq)
        clock.now += 1.0
        auditor.settle(clock.now, clock.now - 1.0)
        oldest = auditor.oldest_open_s()
        steps.flush(start_s + k - live_audit.STEP_SLACK_S if oldest is None
                    else min(start_s + k - live_audit.STEP_SLACK_S, oldest))
        if (k + 1) % int(live_audit.COLLECT_EVERY_S) == 0:
            garbage.collect()
        if (k + 1) % 60 == 0:
            judged = auditor.judged
            click.echo(f"t={k + 1:5d}s rss={_rss_mb():7.1f} MB open orders={len(auditor.active)} "
                       f"ended={len(auditor.ended)} judged above low={len(judged.above)} holes={len(judged.holes)} "
                       f"open step seconds={steps.open_seconds()} gc freed={garbage.freed} "
                       f"({time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    main()
