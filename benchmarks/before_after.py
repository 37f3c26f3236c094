"""An earlier commit against this checkout, interleaved on one broker: latency and CPU per order.

    python benchmarks/before_after.py [--rev a2daf04] [--rates 200,5000] [--duration 20s] [--warmup 5s]
    python benchmarks/before_after.py --cold ...   # each run with a cold broker of its own

Checks the earlier revision out into a temporary git worktree and runs `bench run`
from each tree in turn (A B A B ...) against one fresh embedded broker on port 29292,
each on its own default workload. CPU is measured the same way for both, from
outside: the whole command (load generator, services, start-up, audit), read from
the rusage of the finished process tree, plus the broker's CPU over the command;
divided by the orders the run started. Beside it, what each run reports itself
(``cost.cpu_us_per_order.harness``, plus the broker's): older code's excludes its audit, which
ran after the load. Compare ratios within one run of this script.

``--cold``: no shared broker; each run starts its own embedded broker, as `bench run --rate 5000`
does from a cold start, and the table shows what the run reports, ``cost.cpu_us_per_order.total``
(its processes and its broker over the load window; with older code, no audit), beside the whole
command measured from outside (which then includes the broker's start, warm-up and stop).
"""
from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
PORT = 29292


def _children_cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _run(tree: Path, pattern: str, rate: float, duration: str, warmup: str, out: Path, state: Path, cluster) -> dict:
    """One run into ``out``; ``state``: a fresh broker directory for it. ``cluster`` None (``--cold``):
    the run starts its own broker there; else it runs against ``cluster``."""
    from bench.run import procstat

    env = {**os.environ, "PYTHONPATH": str(tree)}  # services are spawned with the same interpreter and path
    if cluster is None:
        env.update(BENCH_BROKER_DIR=str(state), BENCH_BROKER_PORT=str(PORT))
        where = []
    else:
        if tree != ROOT:  # older code may refuse this code's broker state file; it is given the broker's address anyway
            env["BENCH_BROKER_DIR"] = str(state)
        # The earlier code recreates topics without recording them, so this checkout is told they are its own.
        where = ["--bootstrap-servers", cluster.bootstrap_servers] + (["--recreate-topics"] if tree == ROOT else [])
    nodes = cluster.alive_nodes() if cluster is not None else []
    broker_before = sum(procstat.cpu_seconds(n.pid) or 0.0 for n in nodes)
    own_before = _children_cpu_s()
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--pattern", pattern, "--rate", f"{rate:g}",
                           "--duration", duration, "--warmup", warmup, "--output", str(out), *where],
                          cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if not (out / "summary.json").is_file():
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise click.ClickException(f"bench run ({tree.name}, {pattern} at {rate:g}/s) wrote no summary "
                                   f"(exit {done.returncode}): {last}")
    harness_s = _children_cpu_s() - own_before
    broker_s = sum(procstat.cpu_seconds(n.pid) or 0.0 for n in nodes) - broker_before
    s = json.loads((out / "summary.json").read_text())
    orders = s["orders"]["started"]
    per_order = (s.get("cost") or {}).get("cpu_us_per_order", {})
    # What the run itself reports over its load window (older code counts no audit): the harness
    # (with the shared broker's from outside), or with its own broker the run's total.
    reported = per_order.get("harness") if cluster is not None else per_order.get("total")
    return {"valid": s["valid"], "p50": s["latency_ms"]["e2e"]["p50"], "p99": s["latency_ms"]["e2e"]["p99"],
            "orders": orders, "harness_us": harness_s / orders * 1e6, "broker_us": broker_s / orders * 1e6,
            "reported_us": reported}


@click.command()
@click.option("--rev", default="a2daf04", show_default=True, help="The earlier commit.")
@click.option("--rates", default="200,5000", show_default=True)
@click.option("--patterns", "pattern_names", default="choreography,orchestration", show_default=True)
@click.option("--duration", default="20s", show_default=True)
@click.option("--warmup", default="5s", show_default=True)
@click.option("--cold", is_flag=True, help="Each run starts its own embedded broker, as `bench run` does; "
                                           "the run's own cost.cpu_us_per_order.total is shown.")
@click.option("--keep", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the runs here (default: a temporary directory, removed at the end).")
def main(rev, rates, pattern_names, duration, warmup, cold, keep):
    try:  # this checkout's side runs the installed `bench`: without it, say so rather than fail mid-way
        from bench.broker import embedded, warmup as broker_warmup
    except ImportError:
        raise click.ClickException("bench is not installed: run `pip install -e \".[dev]\"` in this checkout first") from None

    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise click.UsageError(f"--keep {keep}: the directory is not empty; name a new one")
    with tempfile.TemporaryDirectory(prefix="bench-before-after-") as tmp:
        scratch = keep or Path(tmp)  # the runs; brokers' logs stay in tmp, removed at the end
        scratch.mkdir(parents=True, exist_ok=True)
        os.environ["BENCH_BROKER_DIR"] = str(Path(tmp) / "shared-broker")
        before = Path(tmp) / "before"
        added = subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(before), rev],
                               capture_output=True)
        if added.returncode != 0:
            raise click.BadParameter(f"{rev!r} cannot be checked out here (git worktree add failed)", param_hint="--rev")
        rows = []
        try:
            with contextlib.nullcontext() if cold else embedded.embedded(port=PORT) as cluster:
                if cluster is not None:
                    broker_warmup.warm_up(cluster.bootstrap_servers)
                for i, rate in enumerate(float(r) for r in rates.split(",")):
                    for pattern in pattern_names.split(","):
                        for label, tree in ((rev, before), ("this checkout", ROOT)):
                            click.echo(f"--- {pattern} at {rate:g}/s, {label}", err=True)
                            # A rate may be listed twice (two rounds): each run its own directory.
                            out = scratch / f"{pattern}-{rate:g}-{i}-{'before' if tree == before else 'after'}"
                            rows.append((pattern, rate, label, _run(tree, pattern, rate, duration, warmup, out,
                                                                    Path(tmp) / f"{out.name}-broker", cluster)))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(before)], capture_output=True)
    if cold:
        click.echo(f"{'pattern':<14}{'rate/s':>7}  {'code':<14}{'valid':>6}{'p50 ms':>9}{'p99 ms':>9}"
                   f"{'reported total us/order':>25}{'whole command + its broker':>28}")
    else:
        click.echo(f"{'pattern':<14}{'rate/s':>7}  {'code':<14}{'valid':>6}{'p50 ms':>9}{'p99 ms':>9}"
                   f"{'harness us/order':>18}{'broker':>8}{'total':>8}{'reported harness':>18}{'+ broker':>10}")
    for pattern, rate, label, r in rows:
        reported = r["reported_us"]
        line = f"{pattern:<14}{rate:>7g}  {label:<14}{'yes' if r['valid'] else 'NO':>6}{r['p50']:>9.1f}{r['p99']:>9.1f}"
        if cold:
            click.echo(line + (f"{reported:>25.0f}" if reported is not None else f"{'-':>25}")
                       + f"{r['harness_us']:>28.0f}")
        else:
            click.echo(line + f"{r['harness_us']:>18.0f}{r['broker_us']:>8.0f}{r['harness_us'] + r['broker_us']:>8.0f}"
                       + (f"{reported:>18.0f}{reported + r['broker_us']:>10.0f}" if reported is not None
                          else f"{'-':>18}{'-':>10}"))


if __name__ == "__main__":
    main()
