"""How each pattern's cost grows with the number of saga steps, on one real broker.

    python benchmarks/saga_length.py [--steps 1,3,6,10] [--rate 300] [--duration 20s] [--warmup 5s]
                                     [--failure 0] [--results results/saga-length] [--table-only]

For each step count n, a sequential saga of n generic steps (``step-1`` ...
``step-n``, bench.flow.saga.of_length) runs in both patterns at one rate, on one
embedded broker started on port 29692 and warmed up first. The order is
interleaved (n=1 choreography, n=1 orchestration, n=3 ...) so a drift of the
machine over the run touches both patterns alike. Each run is a real
``bench run`` (every process, audit and CPU accounting as usual).

Prints, per pattern and n: messages and bytes per order (with what the happy
path predicts: choreography n+2, orchestration 3n+3), p50 and p99 end-to-end,
and CPU per order (harness = load generator + services, broker, total), and
writes ``saga-length.png`` (messages, bytes, p50, p99 and CPU against n) and
``saga-length.json`` beside the runs. With ``--failure`` above 0, orders that
fail take fewer or more messages than the happy path, so the prediction is a
guide, not a check. Compare as ratios within one run of this script.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
PORT = 29692
PATTERNS = ("choreography", "orchestration")
PREDICTED = {"choreography": lambda n: n + 2, "orchestration": lambda n: 3 * n + 3}


def _workload(n: int, rate: float, duration: str, warmup: str, failure: float):
    from bench.flow import saga
    from bench.flow.workload import Workload, parse_duration

    return Workload(name=f"saga-{n}-steps", rate_per_s=rate, duration_s=parse_duration(duration),
                    warmup_s=parse_duration(warmup), saga=saga.of_length(n, failure))


def _measure(results: Path, steps: list[int], rate: float, duration: str, warmup: str, failure: float) -> None:
    os.environ["BENCH_BROKER_DIR"] = tempfile.mkdtemp(prefix="bench-saga-length-broker-")
    from bench import patterns
    from bench.broker import embedded
    from bench.broker.warmup import warm_up
    from bench.run.run import RunRequest, run

    with embedded.embedded(port=PORT) as cluster:
        warm_up(cluster.bootstrap_servers)
        for n in steps:
            for name in PATTERNS:
                out = results / f"{name}-{n}"
                if (out / "summary.json").exists():
                    click.echo(f"{out} exists, kept", err=True)
                    continue
                click.echo(f"--- {name}, {n} steps, {rate:g}/s", err=True)
                workload = _workload(n, rate, duration, warmup, failure)
                run(RunRequest(patterns.get(name), workload, cluster.bootstrap_servers, output=out),
                    echo=lambda line: None)


def _rows(results: Path, steps: list[int]) -> list[dict]:
    rows = []
    for n in steps:
        for name in PATTERNS:
            path = results / f"{name}-{n}" / "summary.json"
            if not path.exists():
                continue
            s = json.loads(path.read_text())
            cost = s["cost"]["cpu_us_per_order"]
            e2e = s["latency_ms"]["e2e"]
            rows.append({"pattern": name, "steps": n, "valid": s["valid"], "clean": s["clean"],
                         "messages_per_order": s["messages_per_order"], "predicted_messages": PREDICTED[name](n),
                         "bytes_per_order": s["bytes_per_order"], "p50_ms": e2e["p50"], "p99_ms": e2e["p99"],
                         "harness_us": cost["harness"], "broker_us": cost["broker"], "total_us": cost["total"],
                         "rate_achieved_per_s": s["rate_achieved_per_s"]})
    return rows


def _print(rows: list[dict], rate: float) -> None:
    header = ("pattern", "steps", "msgs/order", "happy path", "bytes/order", "p50 ms", "p99 ms",
              "CPU us/order harness", "broker", "total", "valid+clean")
    table = [header] + [
        (r["pattern"], str(r["steps"]), f"{r['messages_per_order']:.2f}", str(r["predicted_messages"]),
         f"{r['bytes_per_order']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['harness_us']:.0f}",
         f"{r['broker_us']:.0f}" if r["broker_us"] is not None else "-", f"{r['total_us']:.0f}",
         "yes" if r["valid"] and r["clean"] else "NO")
        for r in rows]
    click.echo(f"both patterns at {rate:g} orders/s, sequential sagas of n steps")
    click.echo("| " + " | ".join(header) + " |")
    click.echo("|" + "---|" * len(header))
    for row in table[1:]:
        click.echo("| " + " | ".join(row) + " |")
    for name in PATTERNS:
        mine = sorted((r for r in rows if r["pattern"] == name), key=lambda r: r["steps"])
        if len(mine) >= 2:
            a, b = mine[0], mine[-1]
            per_step = lambda key: (b[key] - a[key]) / (b["steps"] - a["steps"])
            click.echo(f"{name}: per added step {per_step('messages_per_order'):+.2f} messages, "
                       f"{per_step('bytes_per_order'):+.0f} bytes, {per_step('p50_ms'):+.2f} ms p50, "
                       f"{per_step('total_us'):+.0f} us CPU per order (from {a['steps']} to {b['steps']} steps)")


def _chart(rows: list[dict], path: Path, rate: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = (("messages_per_order", "messages per order"), ("bytes_per_order", "bytes per order"),
               ("p50_ms", "e2e p50 (ms)"), ("p99_ms", "e2e p99 (ms)"), ("total_us", "CPU per order (us, all processes)"))
    fig, axes = plt.subplots(1, len(figures), figsize=(4.0 * len(figures), 3.6))
    for ax, (key, label) in zip(axes, figures):
        for name, marker in zip(PATTERNS, ("o", "s")):
            mine = sorted((r for r in rows if r["pattern"] == name and r[key] is not None), key=lambda r: r["steps"])
            ax.plot([r["steps"] for r in mine], [r[key] for r in mine], marker=marker, label=name)
        ax.set_xlabel("saga steps")
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Cost per order against saga length, both patterns at {rate:g} orders/s (one broker, 2 cores)",
                 fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@click.command()
@click.option("--steps", default="1,3,6,10", show_default=True, help="Step counts, comma-separated.")
@click.option("--rate", type=float, default=300.0, show_default=True)
@click.option("--duration", default="20s", show_default=True)
@click.option("--warmup", default="5s", show_default=True)
@click.option("--failure", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Failure probability of every step (0: every order takes the happy path).")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results" / "saga-length",
              show_default=True)
@click.option("--table-only", is_flag=True, help="Print the table and chart of runs already under --results.")
def main(steps, rate, duration, warmup, failure, results, table_only):
    try:
        counts = [int(s) for s in steps.split(",") if s.strip()]
    except ValueError:
        raise click.BadParameter(f"expected step counts such as 1,3,6,10; got {steps!r}", param_hint="--steps")
    if not counts or min(counts) < 1:
        raise click.BadParameter("step counts must be 1 or more", param_hint="--steps")
    results.mkdir(parents=True, exist_ok=True)
    if not table_only:
        _measure(results, counts, rate, duration, warmup, failure)
    rows = _rows(results, counts)
    if not rows:
        click.echo(f"no runs under {results}", err=True)
        sys.exit(1)
    _print(rows, rate)
    _chart(rows, results / "saga-length.png", rate)
    (results / "saga-length.json").write_text(json.dumps(rows, indent=2))
    click.echo(f"chart: {results / 'saga-length.png'}")
    sys.exit(0 if all(r["valid"] and r["clean"] for r in rows) else 1)


if __name__ == "__main__":
    main()
