"""The coordination logic's own CPU per order, in-process, no broker: what the patterns' handlers
cost against the runtime and Kafka around them.

    python benchmarks/handlers.py [--steps N] [--orders 30000] [--rounds 5] [--tree PATH ...]

Every order goes through every role's handler, outputs delivered in memory to
the roles subscribed to their topics; only the ``handle`` calls are timed (not
encoding, not Kafka). Prints the best of ``--rounds`` per pattern in
microseconds per order. The saga is the default one (payment, inventory,
shipping), or with ``--steps N`` N generic steps each failing for 2% of orders.
``--tree`` runs the same against another checkout (an earlier commit's
worktree) in its own process, so the two are compared in one run; before sagas
came from the workload, only the default saga exists there.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]


def measure(pattern: str, steps: int | None, orders: int, rounds: int) -> float:
    from bench.flow import events as ev
    from bench import patterns
    from bench.flow.workload import Workload

    chosen = patterns.get(pattern)
    if hasattr(chosen, "topology"):
        from bench.flow import saga

        workload = Workload(name="handlers", saga=saga.of_length(steps, 0.02) if steps else None)
        topology = chosen.topology(workload.saga)
    elif steps:
        raise SystemExit("this checkout has only the default saga: leave out --steps")
    else:  # an earlier checkout: one fixed saga
        workload, topology = Workload(name="handlers"), chosen
    handlers = {role: topology.handler(role, workload) for role in topology.roles}
    subscribed = [(frozenset(topology.subscriptions[role]), handlers[role]) for role in topology.roles]
    queue: deque = deque()

    class Outbox:
        def emit(self, topic: str, event: dict) -> None:
            event["ts_us"] = 0
            queue.append((topic, event))

    out, clock, best = Outbox(), time.perf_counter, None
    for r in range(rounds):
        spent = 0.0
        for i in range(orders):
            queue.append((ev.ORDER_CREATED, {"orderId": f"r{r}-{i}", "status": ev.CREATED, "t0_us": 0, "ts_us": 0}))
            while queue:
                topic, event = queue.popleft()
                for topics, handler in subscribed:
                    if topic in topics:
                        start = clock()
                        handler.handle(topic, 0, dict(event), out)
                        spent += clock() - start
        best = spent if best is None else min(best, spent)
    return best / orders * 1e6


@click.command()
@click.option("--steps", type=click.IntRange(1, 50), default=None, help="N generic steps (default: the default saga).")
@click.option("--orders", type=click.IntRange(100), default=30000, show_default=True)
@click.option("--rounds", type=click.IntRange(1), default=5, show_default=True)
@click.option("--tree", "trees", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="Another checkout to measure the same way, alternating with this one.")
@click.option("--one", hidden=True, help="Measure one pattern in this process (how --tree runs).")
def main(steps, orders, rounds, trees, one):
    if one:
        click.echo(f"{measure(one, steps, orders, rounds):.2f}")
        return
    for pattern in ("choreography", "orchestration"):
        for tree in (ROOT, *map(Path, trees), ROOT, *map(Path, trees)):
            done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--one", pattern,
                                   *(["--steps", str(steps)] if steps else []),
                                   "--orders", str(orders), "--rounds", str(rounds)],
                                  env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
            figure = done.stdout.strip() or f"failed: {done.stderr.strip().splitlines()[-1:]}"
            saga = f"{steps} steps" if steps else "default saga"
            click.echo(f"{pattern:<14} {saga:<13} {str(tree):<40} handler us/order {figure}")


if __name__ == "__main__":
    main()
