"""What the harness costs, against the floor of the client library, in one run on one broker.

    python benchmarks/overhead.py [--rates 200,1000,5000] [--duration 20s] [--warmup 5s] [--workloads default,...]
    python benchmarks/overhead.py --load-only --rates 50000      # the load generator alone

Starts a fresh embedded broker on port 29192 (or uses --bootstrap-servers), then prints:

1. floors: Kafka's own producer perf test; a bare Python relay (benchmarks/relay.py) at
   full batching, whose process CPU per message is F; the same relay fed open-loop at
   the per-topic rates the patterns run at (``--relay-rates``), flushing per batch as
   the runtime does;
2. each pattern at each rate on each workload (default: workloads/default.yaml): CPU per order by process (main
   thread and library threads apart), the broker's, the total in units of F, cores busy,
   wake-ups (context switches) per second, messages per produce request and per fetch.

Compare figures as ratios within one run: absolute speed varies between machines.
``--load-only`` runs the load generator as the broker's only client (no services) and
prints its schedule slip and CPU per order.
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
PORT = 29192
RECORD = b'{"orderId":"0123456789-1","status":"created","t0_us":1764000000000000,"ts_us":1764000000000000,"amount":42,"items":2}'


def _broker_cpu(cluster) -> float:
    """The broker's CPU seconds; NaN for a cluster that is not ours (its figures print as nan)."""
    from bench.run import procstat

    nodes = cluster.alive_nodes()
    return sum(procstat.cpu_seconds(n.pid) or 0.0 for n in nodes) if nodes else float("nan")


def _topics(bootstrap: str, names: list[str]) -> None:
    from bench.kafka import clients, topics
    from bench.flow.workload import Workload

    conf = clients.admin_config(bootstrap)
    topics.recreate(topics.admin(conf), names, Workload(name="overhead", partitions=1),
                    registry=topics.registry(conf, "overhead"))


def perf_test(bootstrap: str, cluster, records: int) -> dict:
    from bench.broker import tools

    _topics(bootstrap, ["bench-overhead-perf"])
    before = _broker_cpu(cluster)
    out = subprocess.run(tools.command("kafka-producer-perf-test", [
        "--topic", "bench-overhead-perf", "--num-records", str(records), "--record-size", "150",
        "--throughput", "-1", "--producer-props", f"bootstrap.servers={bootstrap}", "acks=all"]),
        capture_output=True, text=True, check=True).stdout
    broker_s = _broker_cpu(cluster) - before
    last = [line for line in out.splitlines() if "records/sec" in line][-1]
    rate = float(last.split("records sent,")[1].split("records/sec")[0])
    return {"rate_per_s": rate, "broker_us_per_msg": broker_s / records * 1e6}


def relay(bootstrap: str, cluster, count: int, rate: float | None) -> dict:
    """Relay ``count`` messages fed as fast as possible (rate None) or open-loop at ``rate``; the
    broker's CPU counts from the first message fed."""
    from confluent_kafka import Producer

    tag = uuid.uuid4().hex[:6]
    src, dst = f"bench-overhead-in-{tag}", f"bench-overhead-out-{tag}"
    _topics(bootstrap, [src, dst])
    feeder = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    args = [sys.executable, str(ROOT / "benchmarks" / "relay.py"), bootstrap, src, dst, str(count)]
    if rate is not None:
        args.append("--flush")
    child = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "READY"
    time.sleep(2.0)  # joined its group and fetching
    before = _broker_cpu(cluster)
    if rate is None:  # as fast as the feeder can: full batching
        for _ in range(count):
            _produce(feeder, src)
        feeder.flush(60)
    else:
        _feed(feeder, src, count, rate)
    result = json.loads(child.stdout.readline())
    child.wait(30)
    broker_s = _broker_cpu(cluster) - before
    return {"rate_per_s": result["messages"] / result["seconds"], "cpu_us_per_msg": result["cpu_s"] / result["messages"] * 1e6,
            "broker_us_per_msg": broker_s / result["messages"] * 1e6}


def _produce(producer, topic: str) -> None:
    while True:
        try:
            producer.produce(topic, RECORD, b"k")
            return
        except BufferError:
            producer.poll(0.01)


def _feed(producer, topic: str, count: int, rate: float) -> None:
    start, sent = time.monotonic(), 0
    while sent < count:
        due = min(count, int((time.monotonic() - start) * rate) + 1)
        while sent < due:
            _produce(producer, topic)
            sent += 1
        producer.poll(0)
        time.sleep(0.001)
    producer.flush(30)


def pattern_runs(bootstrap: str, names: list[str], workloads: list[str], rates: list[float], duration_s: float,
                 warmup_s: float, results: Path) -> list[dict]:
    """Each pattern on each workload at each rate, the workloads interleaved at every rate."""
    from bench import patterns
    from bench.run.run import RunRequest, run
    from bench.flow.workload import load_workload

    rows = []
    for rate in rates:
        for name in names:
            for workload_name in workloads:
                workload = load_workload(ROOT / "workloads" / f"{workload_name}.yaml").with_overrides(
                    rate_per_s=rate, duration_s=duration_s, warmup_s=warmup_s)
                click.echo(f"--- {name} at {rate:g}/s, {workload_name}", err=True)
                outcome = run(RunRequest(patterns.get(name), workload, bootstrap, results_base=results),
                              echo=lambda _: None)
                rows.append({"pattern": name, "workload": workload_name, "rate": rate, "summary": outcome.summary,
                             "dir": str(outcome.directory)})
    return rows


def run_load_only(bootstrap: str, cluster, rates: list[float], duration_s: float) -> None:
    from bench.kafka import clients, topics
    from bench.run import procstat
    from bench.flow import events as ev
    from bench.run.load import LoadGenerator
    from bench.results.recording import summary_ms
    from bench.flow.workload import load_workload

    click.echo("rate/s  sent/s    slip p50 ms  p99 ms  max ms  load generator us/order (main, library)  broker us/order")
    for rate in rates:
        workload = load_workload().with_overrides(rate_per_s=rate, duration_s=duration_s, warmup_s=1.0, drain_s=0.0)
        conf = clients.admin_config(bootstrap)
        topics.recreate(topics.admin(conf), [ev.ORDER_CREATED, ev.ORDER_EVENTS], workload,
                        registry=topics.registry(conf, "overhead"))
        with tempfile.TemporaryDirectory() as out:
            generator = LoadGenerator(bootstrap, workload, Path(out), uuid.uuid4().hex[:8])
            own, broker, began = procstat.usage(os.getpid()), _broker_cpu(cluster), time.monotonic()
            result = generator.run()
            used, broker_s = procstat.usage(os.getpid()) - own, _broker_cpu(cluster) - broker
            seconds = time.monotonic() - began
        n = result.started_count
        slip = summary_ms(result.histograms["slip"])
        click.echo(f"{rate:>6g}  {n / seconds:>8.0f}  {slip['p50']:>11.3f}  {slip['p99']:>6.3f}  {slip['max']:>6.2f}"
                   f"  {used.main_s / n * 1e6:>20.1f} {used.other_s / n * 1e6:>8.1f}  {broker_s / n * 1e6:>30.1f}")


def _print_floors(perf: dict, full: dict, at_rates: list[tuple[float, dict]]) -> float:
    f_us = full["cpu_us_per_msg"]
    click.echo(f"kafka-producer-perf-test (150 B, acks=all): {perf['rate_per_s']:.0f} msg/s, "
               f"broker {perf['broker_us_per_msg']:.1f} us/msg")
    click.echo(f"bare relay, full batching: {full['rate_per_s']:.0f} msg/s, process {f_us:.1f} us/msg = F, "
               f"broker {full['broker_us_per_msg']:.1f} us/msg")
    for rate, r in at_rates:
        click.echo(f"bare relay fed at {rate:g} msg/s (flush per batch): process {r['cpu_us_per_msg']:.1f} us/msg "
                   f"({r['cpu_us_per_msg'] / f_us:.1f} F), broker {r['broker_us_per_msg']:.1f} us/msg")
    return f_us


def _print_patterns(rows: list[dict], f_us: float | None) -> None:
    header = ("pattern", "workload", "rate/s", "valid", "p50 ms", "p99 ms", "harness us/order", "broker", "total", "total F",
              "cores", "switches/s", "msgs/produce", "msgs/fetch")
    table = []
    for row in rows:
        s = row["summary"]
        c = s["cost"]
        u = c["cpu_us_per_order"]
        e2e = s["latency_ms"]["e2e"]
        fmt = lambda v, spec=".1f": "-" if v is None else format(v, spec)
        table.append((row["pattern"], row["workload"], f"{row['rate']:g}", "yes" if s["valid"] else "NO", fmt(e2e["p50"]), fmt(e2e["p99"]),
                      fmt(u["harness"], ".0f"), fmt(u["broker"], ".0f"), fmt(u["total"], ".0f"),
                      fmt(u["total"] / f_us if u["total"] is not None and f_us else None),
                      fmt(c["cores_busy"], ".2f"), str(sum(v for v in c["switches_per_s"].values() if v)),
                      fmt(c["batching"]["all"]["messages_per_produce_request"]),
                      fmt(c["batching"]["all"]["messages_per_fetch"])))
    widths = [max(len(r[i]) for r in (header, *table)) for i in range(len(header))]
    for line in (header, *table):
        click.echo("  ".join(cell.rjust(w) for cell, w in zip(line, widths)))
    click.echo("\nCPU us per order by process (main thread + library threads):")
    for row in rows:
        u = row["summary"]["cost"]["cpu_us_per_order"]
        parts = [f"{name} {v['main']:.0f}+{v['library']:.0f}" for name, v in u.items() if isinstance(v, dict)]
        click.echo(f"  {row['pattern']:<13} {row['workload']:<22} {row['rate']:>6g}/s  " + ", ".join(parts)
                   + f"   ({row['dir']})")


@click.command()
@click.option("--rates", default="200,1000,5000", show_default=True, help="Orders/s, comma-separated.")
@click.option("--patterns", "pattern_names", default="choreography,orchestration", show_default=True)
@click.option("--workloads", "workload_names", default="default", show_default=True,
              help="Workload files in workloads/ (names without .yaml), comma-separated, interleaved.")
@click.option("--duration", default="20s", show_default=True)
@click.option("--warmup", default="5s", show_default=True)
@click.option("--relay-rates", default="1000,5000", show_default=True, help="Msg/s the open-loop relay floor is fed at.")
@click.option("--relay-messages", type=int, default=200_000, show_default=True)
@click.option("--skip-floors", is_flag=True, help="Only the pattern runs (no F: totals are not given in F).")
@click.option("--load-only", is_flag=True, help="Run the load generator alone (no services) at --rates.")
@click.option("--bootstrap-servers", default=None, help="Use this cluster instead of a fresh embedded broker "
              "(broker CPU is only measured for an embedded one).")
@click.option("--results", type=click.Path(file_okay=False), default=str(ROOT / "results" / "overhead"), show_default=True)
def main(rates, pattern_names, workload_names, duration, warmup, relay_rates, relay_messages, skip_floors, load_only, bootstrap_servers,
         results):
    if not bootstrap_servers:
        os.environ["BENCH_BROKER_DIR"] = tempfile.mkdtemp(prefix="bench-overhead-broker-")
    from bench.broker import embedded
    from bench.flow.workload import parse_duration

    rate_list = [float(r) for r in rates.split(",")]
    with embedded.embedded(port=PORT) if not bootstrap_servers else _external(bootstrap_servers) as cluster:
        bootstrap = bootstrap_servers or cluster.bootstrap_servers
        if load_only:
            run_load_only(bootstrap, cluster, rate_list, parse_duration(duration))
            return
        f_us = None
        if not skip_floors:
            click.echo("--- floors", err=True)
            perf = perf_test(bootstrap, cluster, 1_000_000)
            full = relay(bootstrap, cluster, relay_messages, None)
            at_rates = [(float(r), relay(bootstrap, cluster, int(float(r) * 10), float(r))) for r in relay_rates.split(",")]
        rows = pattern_runs(bootstrap, pattern_names.split(","), workload_names.split(","), rate_list,
                            parse_duration(duration), parse_duration(warmup), Path(results))
        if not skip_floors:
            f_us = _print_floors(perf, full, at_rates)
        _print_patterns(rows, f_us)


class _external:
    """No cluster of ours: broker CPU cannot be read."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap_servers = bootstrap

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass

    def alive_nodes(self) -> list:
        return []


if __name__ == "__main__":
    main()
