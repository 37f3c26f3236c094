"""Both patterns at one rate on the embedded broker, side by side.

    python benchmarks/patterns.py [--rate 5000] [--duration 60s] [--warmup 10s]

Prints achieved rate, p50, p99, messages per order and the CPU seconds of the
harness (load generator + services) and of the broker for each pattern. Runs
one after the other on the same broker, so compare them as ratios.
"""
from __future__ import annotations

import sys
from pathlib import Path

import click

from bench import patterns
from bench.run.run import RunRequest, run
from bench.flow.workload import load_workload, parse_duration

ROOT = Path(__file__).resolve().parents[1]


@click.command()
@click.option("--rate", type=float, default=5000.0, show_default=True)
@click.option("--duration", default="60s", show_default=True)
@click.option("--warmup", default="10s", show_default=True)
@click.option("--workload", type=click.Path(exists=True, dir_okay=False), default=str(ROOT / "workloads" / "5000-orders.yaml"), show_default=True)
@click.option("--bootstrap-servers", default=None)
def main(rate, duration, warmup, workload, bootstrap_servers):
    base = load_workload(workload).with_overrides(rate_per_s=rate, duration_s=parse_duration(duration),
                                                  warmup_s=parse_duration(warmup))
    rows = []
    for name in ("choreography", "orchestration"):
        click.echo(f"--- {name} at {rate:g}/s", err=True)
        outcome = run(RunRequest(patterns.get(name), base, bootstrap_servers), echo=lambda line: None)
        s = outcome.summary
        e2e, cpu = s["latency_ms"]["e2e"], s["cpu_s"]
        rows.append((name, "yes" if s["valid"] else f"NO: {s['invalid_reason']}", f"{s['rate_achieved_per_s']:.0f}",
                     f"{e2e['p50']:.1f}", f"{e2e['p99']:.1f}", f"{s['messages_per_order']:.2f}",
                     str(s["orders"]["lost"] + s["orders"]["stuck"]), f"{cpu['harness_total']:.1f}", "-" if cpu["broker"] is None else f"{cpu['broker']:.1f}",
                     str(outcome.directory)))
    header = ("pattern", "valid", "finished/s", "p50 ms", "p99 ms", "msgs/order", "lost", "harness CPU s", "broker CPU s", "results")
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    sys.exit(0 if all(r[1] == "yes" and r[6] == "0" for r in rows) else 1)


if __name__ == "__main__":
    main()
