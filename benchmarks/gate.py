"""Does the regression gate cry wolf, and what does it catch? A/A and A/B gates, as CI runs them.

    python benchmarks/gate.py [--gates 5] [--runs 4] [--processing 0.25ms,0.5ms,1ms] [--table-only]

Each gate is what `.ci/run` and perf.yml do: one discarded run, then interleaved rounds of
every side (A A' B P... A A' B P... ; ``--runs`` rounds), each run `bench run --pattern
orchestration --rate 300 --duration 10s --warmup 3s` as a subprocess, then `bench compare`
of each side against A with the rules ``p50:+10%,p99:+25%``:

- A' is identical code and settings: any failed gate is a false alarm.
- B runs workloads/processing-2ms.yaml (2 ms of work per message in each saga step): it should fail.
- P<x> runs the same with x of work per message: the smallest x failing 4 gates of 5 is the
  smallest change this gate detects.

Starts its own embedded broker on port 29392 (warmed up first), so it never touches yours.
Results go to results/gate/gate-<k>/<side>/<run>; the table is printed from them.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import click
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import Side, interleave  # noqa: E402

PORT = 29392
RULES = "p50:+10%,p99:+25%"
RUN_ARGS = ["--pattern", "orchestration", "--rate", "300", "--duration", "10s", "--warmup", "3s"]


def _processing_workload(directory: Path, text: str) -> Path:
    """processing-2ms.yaml with another processing time per message."""
    source = yaml.safe_load((ROOT / "workloads" / "processing-2ms.yaml").read_text())
    source["name"] = f"processing-{text}"
    source["description"] = f"{text} of processing per message in payment, inventory and shipping."
    for step in source["saga"]["steps"]:
        step["processing"] = text
    path = directory / f"processing-{text}.yaml"
    path.write_text(yaml.safe_dump(source, sort_keys=False))
    return path


def _sides(results: Path, processing: list[str], processing_only: bool) -> list[Side]:
    bench = str(Path(sys.executable).with_name("bench"))
    workloads = results / "workloads"
    workloads.mkdir(parents=True, exist_ok=True)
    sides = [Side("A", (bench,))]
    if not processing_only:
        sides += [Side("A2", (bench,)), Side("B", (bench, "--workload", str(ROOT / "workloads" / "processing-2ms.yaml")))]
    sides += [Side(f"P{x}", (bench, "--workload", str(_processing_workload(workloads, x)))) for x in processing]
    return sides


def _measure(results: Path, gates: int, runs: int, processing: list[str], processing_only: bool) -> None:
    os.environ["BENCH_BROKER_DIR"] = tempfile.mkdtemp(prefix="bench-gate-broker-")  # the children find it there
    from bench.broker import embedded
    from bench.broker.warmup import warm_up

    sides = _sides(results, processing, processing_only)
    with embedded.embedded(port=PORT) as cluster:
        warm_up(cluster.bootstrap_servers)
        for g in range(1, gates + 1):
            out = results / f"gate-{g}"
            if out.exists():
                click.echo(f"gate {g}: {out} exists, kept", err=True)
                continue
            click.echo(f"--- gate {g}/{gates}", err=True)
            interleave(sides, out, runs, RUN_ARGS, echo=lambda line: click.echo(line, err=True))


def _table(results: Path) -> bool:
    from bench.compare.comparison import compare
    from bench.compare.rules import parse_rules
    from bench.compare.stats import spread

    rules = parse_rules(RULES)
    gates = sorted((p for p in results.glob("gate-*") if p.is_dir()), key=lambda p: int(p.name.split("-")[1]))
    if not gates:
        click.echo(f"no gates under {results}", err=True)
        return False
    names = [p.name for p in sorted(gates[0].iterdir()) if p.is_dir() and p.name not in ("A", "warm-up")]
    names.sort(key=lambda n: (n != "A2", n != "B", _ms(n)))
    failed = {name: 0 for name in names}
    click.echo(f"rules {RULES}; each gate {len(list((gates[0] / 'A').iterdir()))} + "
               f"{len(list((gates[0] / 'A').iterdir()))} interleaved runs; {' '.join(RUN_ARGS)}")
    header = ["gate", *(f"{n} {stat}" for n in names for stat in ("p50", "p99", "verdict"))]
    rows = [header]
    for gate in gates:
        row = [gate.name]
        for name in names:
            c = compare([gate / "A", gate / name], rules)
            p50, p99 = c.verdicts
            cell = lambda v: f"{v.change * 100:+.0f}% p={v.p_value:.3f}" if v.p_value is not None else f"{v.change * 100:+.0f}%"
            row += [cell(p50), cell(p99), "FAIL" if c.failed else "pass"]
            failed[name] += c.failed
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        click.echo("  ".join(cell.rjust(w) for cell, w in zip(r, widths)))
    n = len(gates)
    click.echo("")
    spreads = {"p50": [], "p99": []}
    for gate in gates:
        for side in ("A", "A2") if (gate / "A2").exists() else ("A",):
            c = compare([gate / "A", gate / side], rules)
            for stat, v in zip(("p50", "p99"), c.verdicts):
                spreads[stat].append(spread(v.values))
    for stat, values in spreads.items():
        values = sorted(x for x in values if x is not None)
        if values:
            click.echo(f"spread of {stat} between identical runs of one gate ((max - min) / median of 4): median "
                       f"{values[len(values) // 2] * 100:.0f}%, range {values[0] * 100:.0f}-{values[-1] * 100:.0f}%")
    if "A2" in failed:
        click.echo(f"A/A (identical code): {failed['A2']} false alarms in {n} gates")
    if "B" in failed:
        click.echo(f"A/B (processing-2ms): detected {failed['B']} of {n}")
    detected = [name for name in names if name.startswith("P") and failed[name] * 5 >= 4 * n]
    for name in (x for x in names if x.startswith("P")):
        click.echo(f"processing {name[1:]} per message: detected {failed[name]} of {n}")
    smallest = min(detected, key=_ms) if detected else None
    click.echo(f"smallest processing time detected 4 times of 5: {smallest[1:] if smallest else 'none tried'}")
    for name in (x for x in names if x.startswith("P")):  # the runtime's processing is a time.sleep
        click.echo(f"time.sleep({name[1:]}) on this machine takes {_sleep_us(_ms(name) / 1000):.0f} us")
    return True


def _sleep_us(seconds: float, n: int = 2000) -> float:
    began = time.perf_counter()
    for _ in range(n):
        time.sleep(seconds)
    return (time.perf_counter() - began) / n * 1e6


def _ms(name: str) -> float:
    text = name.removeprefix("P")
    try:
        return float(text.removesuffix("ms")) if text.endswith("ms") else float(text.removesuffix("us")) / 1000
    except ValueError:
        return 0.0


@click.command()
@click.option("--gates", type=click.IntRange(1), default=5, show_default=True)
@click.option("--runs", type=click.IntRange(1), default=4, show_default=True, help="runs per side in each gate")
@click.option("--processing", default="0.25ms,0.5ms,1ms", show_default=True,
              help="comma-separated processing times per message to try for the smallest detected change")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path), default=ROOT / "results" / "gate",
              show_default=True)
@click.option("--processing-only", is_flag=True, help="only A and the P<x> sides (no A' or B)")
@click.option("--table-only", is_flag=True, help="print the table from the gates already measured")
def main(gates, runs, processing, results, processing_only, table_only):
    if not table_only:
        _measure(results, gates, runs, [x.strip() for x in processing.split(",") if x.strip()], processing_only)
    sys.exit(0 if _table(results) else 1)


if __name__ == "__main__":
    main()
