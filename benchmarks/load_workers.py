"""How far several load workers take the load generator past one Python process (load only, no services).

    python benchmarks/load_workers.py [--rates 10000,20000,30000,40000,50000] [--workers 2] \
        [--duration 15s] [--bootstrap-servers HOST:PORT]

Starts a fresh embedded broker on port 29292 (or uses --bootstrap-servers). At each rate, interleaved,
it runs the load generator as one process, then as ``--workers`` processes that split the one
schedule (bench.flow.arrivals.share: worker k starts the orders whose number hashes to k, so the
workers together start the single generator's orders, each at its own intended time). Each worker
writes its slip.hlog; the rows merge them exactly (counts added interval by interval).

A rate is held on schedule when the orders sent in the window are at least 99% of those scheduled
there and the merged schedule slip's p99 is at most 1 ms. Prints a row per rate and layout, then
each layout's highest rate held and their ratio (the issue's target: 2 workers >= 1.8x one).
Compare within one invocation: absolute speed differs between machines and hours.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
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


def worker_main(bootstrap: str, rate: float, duration_s: float, run_id: str, worker: int, workers: int,
                out: Path) -> None:
    """One worker's run; one JSON line on stdout."""
    from bench.run import procstat
    from bench.run.load import LoadGenerator

    generator = LoadGenerator(bootstrap, _workload(rate, duration_s), out, run_id, worker=worker, workers=workers)
    own = procstat.usage(os.getpid())
    result = generator.run()
    used = procstat.usage(os.getpid()) - own
    print(json.dumps({"started": result.start_counts.total, "scheduled": result.scheduled_in_window,
                      "offered": result.offered_in_window, "cpu_s": used.main_s + used.other_s,
                      "window_s": result.measure_end_s - result.measure_start_s}), flush=True)


def layout_run(bootstrap: str, rate: float, duration_s: float, workers: int, scratch: Path) -> dict:
    """``workers`` processes at ``rate`` in all, started together; their figures merged."""
    from bench.flow import events as ev
    from bench.kafka import clients, topics
    from bench.results.recording import SLIP, hlog_file, iter_hlog, merged, summary_ms

    conf = clients.admin_config(bootstrap)
    topics.recreate(topics.admin(conf), [ev.ORDER_CREATED, ev.ORDER_EVENTS], _workload(rate, duration_s),
                    registry=topics.registry(conf, "load-workers"))
    run_id = uuid.uuid4().hex[:8]
    outs = [Path(tempfile.mkdtemp(prefix=f"w{k}-", dir=scratch)) for k in range(workers)]
    procs = [subprocess.Popen([sys.executable, __file__, "--as-worker", f"{k}/{workers}", "--rates", str(rate),
                               "--duration", f"{duration_s}s", "--bootstrap-servers", bootstrap, "--run-id", run_id,
                               "--out", str(outs[k])], stdout=subprocess.PIPE, text=True)
             for k in range(workers)]
    reports = []
    for proc in procs:
        stdout, _ = proc.communicate()
        if proc.returncode != 0:
            sys.exit(f"a load worker exited {proc.returncode}")
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    slip = summary_ms(merged(h for out in outs for h in iter_hlog(out / hlog_file(SLIP))))
    scheduled = sum(r["scheduled"] for r in reports)
    offered = sum(r["offered"] for r in reports)
    started = sum(r["started"] for r in reports)
    held = offered >= HELD_SENT * scheduled and slip["p99"] is not None and slip["p99"] <= HELD_SLIP_P99_MS
    return {"workers": workers, "rate": rate, "sent_per_s": offered / reports[0]["window_s"], "scheduled": scheduled,
            "offered": offered, "started": started, "slip": slip, "held": held,
            "cpu_us_per_order": sum(r["cpu_s"] for r in reports) / max(started, 1) * 1e6}


@click.command()
@click.option("--rates", default="10000,20000,30000,40000,50000", show_default=True, help="Orders/s in all.")
@click.option("--workers", default=2, show_default=True, help="Workers of the split layout.")
@click.option("--duration", default="15s", show_default=True)
@click.option("--bootstrap-servers", default=None)
@click.option("--as-worker", default=None, hidden=True)
@click.option("--run-id", default=None, hidden=True)
@click.option("--out", default=None, hidden=True)
def main(rates, workers, duration, bootstrap_servers, as_worker, run_id, out) -> None:
    from bench.flow.workload import parse_duration

    duration_s = parse_duration(duration)
    if as_worker:
        k, n = (int(x) for x in as_worker.split("/"))
        worker_main(bootstrap_servers, float(rates), duration_s, run_id, k, n, Path(out))
        return
    if not bootstrap_servers:
        os.environ["BENCH_BROKER_DIR"] = tempfile.mkdtemp(prefix="bench-load-workers-broker-")
    from bench.broker import embedded

    rate_list = [float(r) for r in rates.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-load-workers-") as scratch, \
            (embedded.embedded(port=PORT) if not bootstrap_servers else _nothing()) as cluster:
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


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


if __name__ == "__main__":
    main()
