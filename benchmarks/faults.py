"""Both patterns under each shipped fault, at one rate: the failure table of the README.

    python benchmarks/faults.py [--rate 2000] [--only kill-payment,poison] [--markdown]

The table covers every result directory under --results (so runs made in
parts add up). Each run gets a fresh embedded cluster (three nodes for broker failover) on
ports 29092+, so it never touches a broker you have running. Prints, per
pattern and fault: orders lost and stuck, whether the audit was clean, recovery time, p99 and max latency in
the fault window, duplicates absorbed, dead letters, and the result directory.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
FAULTS = {
    "choreography": ["kill-order", "kill-payment", "kill-inventory", "kill-shipping", "broker-failover", "poison",
                     "rebalance", "duplicate", "slow-inventory"],
    "orchestration": ["orchestrator-crash", "kill-payment", "kill-inventory", "kill-shipping", "broker-failover",
                      "poison", "rebalance", "duplicate", "slow-inventory"],
}


@click.command()
@click.option("--rate", type=float, default=2000.0, show_default=True)
@click.option("--only", default=None, help="Comma-separated fault names (file names without 'faults-').")
@click.option("--patterns", "pattern_names", default="choreography,orchestration", show_default=True)
@click.option("--results", type=click.Path(file_okay=False), default=str(ROOT / "results" / "faults"), show_default=True)
@click.option("--table-only", is_flag=True, help="Print the table from the result directories already there.")
def main(rate, only, pattern_names, results, table_only):
    if not table_only:
        os.environ["BENCH_BROKER_DIR"] = tempfile.mkdtemp(prefix="bench-faults-broker-")
    from bench import patterns
    from bench.broker import embedded
    from bench.run.run import RunRequest, _nodes_needed, run
    from bench.flow.workload import load_workload

    wanted = set(only.split(",")) if only else None
    failed = False
    if not table_only:
        for pattern in pattern_names.split(","):
            for fault in FAULTS[pattern]:
                if wanted and fault not in wanted:
                    continue
                workload = load_workload(ROOT / "workloads" / f"faults-{fault}.yaml").with_overrides(rate_per_s=rate)
                click.echo(f"--- {pattern} / {fault} at {rate:g}/s", err=True)
                with embedded.embedded(nodes=_nodes_needed(workload), port=29092) as cluster:
                    run(RunRequest(patterns.get(pattern), workload, cluster.bootstrap_servers,
                                   results_base=Path(results)), echo=lambda line: None)
    rows = []
    for summary_path in sorted(Path(results).glob("*/summary.json")):
        s = json.loads(summary_path.read_text())
        row, bad = _row(s, summary_path.parent)
        rows.append(row)
        failed |= bad
    header = ("pattern", "workload", "lost", "stuck", "audit", "detect s", "recovery s", "p99 in window ms", "max ms",
              "dup absorbed", "DLQ", "run", "results")
    click.echo("| " + " | ".join(header) + " |")
    click.echo("|" + "---|" * len(header))
    for row in sorted(rows):
        click.echo("| " + " | ".join(row) + " |")
    sys.exit(1 if failed else 0)


def _row(s: dict, directory: Path) -> tuple[tuple[str, ...], bool]:
    f = s["faults"][0] if s.get("faults") else {}
    fmt = lambda v, spec="": "-" if v is None else format(v, spec)
    lost = s["orders"]["lost"] + s["orders"]["stuck"]
    where = directory.relative_to(ROOT) if directory.is_relative_to(ROOT) else directory
    row = (s["pattern"], s["workload"]["name"], str(s["orders"]["lost"]), str(s["orders"]["stuck"]), _audit(s["audit"]),
           fmt(f.get("time_to_detect_s")), fmt(f.get("recovery_s")), fmt(f.get("p99_in_window_ms"), ".0f"),
           fmt(f.get("max_in_window_ms"), ".0f"), fmt(f.get("duplicates_absorbed")), fmt(f.get("dead_letters")),
           f.get("error") or ("valid" if s["valid"] else s["invalid_reason"]), str(where))
    return row, lost > 0 or not s["audit"]["clean"] or bool(f.get("error"))


def _audit(audit: dict) -> str:
    """"clean", or what made the audit fail."""
    if audit["clean"]:
        return "clean"
    problems = {"ended twice": audit["multiple_terminal"], "inconsistent": audit["inconsistent"],
                "step applied twice": audit["duplicate_effects"]}
    return ", ".join(f"{n} {what}" for what, n in problems.items() if n) or "not clean"


if __name__ == "__main__":
    main()
