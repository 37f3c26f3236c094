"""How far several load workers take the load generator past one Python process (load only, no services).

    python benchmarks/load_workers.py [--rates 10000,20000,30000,40000,50000] [--workers 2] \
        [--duration 15s] [--bootstrap-servers HOST:PORT]

Starts a fresh embedded broker on port 29292 (or uses --bootstrap-servers). At each rate, interleaved,
it runs the load as one worker process, then as ``--workers`` processes that split the one
schedule, through the run's own bench.run.load_workers.LoadWorkers (worker k starts the orders
whose number hashes to k, so the workers together start the single generator's orders, each at its
own intended time; their histograms are added exactly, interval by interval).

A rate is held on schedule when the orders sent in the window are at least 99% of those scheduled
there and the merged schedule slip's p99 is at most 1 ms. Prints a row per rate and layout, then
each layout's highest rate held and their ratio (the issue's target: 2 workers >= 1.8x one).
Compare within one invocation: absolute speed differs between machines and hours.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
import uuid
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
PORT = 29292
HELD_SENT = 0.99
HELD_SLIP_P99_MS = 1.0


def _workload(rate: float, duration_s: float):
    from bench.flow.workload import load_workload

    return load_workload().with_overrides(rate_per_s=rate, duration_s=duration_s, warmup_s=1.0, drain_s=0.0)


def layout_run(bootstrap: str, rate: float, duration_s: float, workers: int, scratch: Path) -> dict:
    """``workers`` worker processes at ``rate`` in all, through the run's own LoadWorkers (which
    starts them together and merges their histograms exactly)."""
    import yaml

    from bench.flow import events as ev
    from bench.kafka import clients, topics
    from bench.results.recording import SLIP, summary_ms
    from bench.run.load_workers import LoadWorkers

    workload = _workload(rate, duration_s)
    conf = clients.admin_config(bootstrap)
    topics.recreate(topics.admin(conf), [ev.ORDER_CREATED, ev.ORDER_EVENTS], workload,
                    registry=topics.registry(conf, "load-workers"))
    run_dir = Path(tempfile.mkdtemp(prefix=f"{workers}w-", dir=scratch))
    workload_file = run_dir / "workload.yaml"
    workload_file.write_text(yaml.safe_dump(workload.to_source(), sort_keys=False))
    load = LoadWorkers(bootstrap, workload, run_dir, uuid.uuid4().hex[:8], workers, ["--workload", str(workload_file)],
                       run_dir, run_dir)
    try:
        result = load.run()
    finally:
        load.close()
    slip = summary_ms(result.histograms[SLIP])
    scheduled, offered = result.scheduled_in_window, result.offered_in_window
    held = offered >= HELD_SENT * scheduled and slip["p99"] is not None and slip["p99"] <= HELD_SLIP_P99_MS
    return {"sent_per_s": offered / (result.measure_end_s - result.measure_start_s), "slip": slip, "held": held,
            "cpu_us_per_order": load.usage().cpu_s / max(result.started_count, 1) * 1e6}


@click.command()
@click.option("--rates", default="10000,20000,30000,40000,50000", show_default=True, help="Orders/s in all.")
@click.option("--workers", default=2, show_default=True, help="Workers of the split layout.")
@click.option("--duration", default="15s", show_default=True)
@click.option("--bootstrap-servers", default=None)
def main(rates, workers, duration, bootstrap_servers) -> None:
    from bench.flow.workload import parse_duration

    duration_s = parse_duration(duration)
    if not bootstrap_servers:
        os.environ["BENCH_BROKER_DIR"] = tempfile.mkdtemp(prefix="bench-load-workers-broker-")
    from bench.broker import embedded

    rate_list = [float(r) for r in rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-load-workers-") as scratch, \
            (embedded.embedded(port=PORT) if not bootstrap_servers else contextlib.nullcontext()) as cluster:
        bootstrap = bootstrap_servers or cluster.bootstrap_servers
        click.echo(f"load only, {duration}: one process against {workers} that split the schedule "
                   f"(held: sent >= {HELD_SENT:.0%} of scheduled, slip p99 <= {HELD_SLIP_P99_MS:g} ms)")
        click.echo("workers  rate/s   sent/s  slip p50 ms  p99 ms  max ms  held  cpu us/order")
        best = {1: 0.0, workers: 0.0}
        for rate in rate_list:
            for n in (1, workers):
                row = layout_run(bootstrap, rate, duration_s, n, Path(scratch))
                s = row["slip"]
                click.echo(f"{n:>7}  {rate:>6g}  {row['sent_per_s']:>7.0f}  {s['p50']:>11.3f}  {s['p99']:>6.3f}  "
                           f"{s['max']:>6.2f}  {'yes' if row['held'] else 'NO':>4}  {row['cpu_us_per_order']:>12.1f}")
                if row["held"]:
                    best[n] = max(best[n], rate)
                time.sleep(1.0)
        ratio = best[workers] / best[1] if best[1] else float("nan")
        click.echo(f"highest rate held: 1 worker {best[1]:g}/s, {workers} workers {best[workers]:g}/s "
                   f"({ratio:.2f}x)")


if __name__ == "__main__":
    main()
