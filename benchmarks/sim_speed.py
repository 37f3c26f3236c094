"""How fast the model runs, and what it computed, for both patterns.

    python benchmarks/sim_speed.py [--workload workloads/5000-orders.yaml] [--profile FILE]
    python benchmarks/sim_speed.py --workload workloads/beyond-one-machine-50000-orders.yaml \\
        --placement spread --network-rtt-us 200

Prints, per pattern: orders started, simulated seconds (warm-up, load and drain),
wall and CPU seconds of the model run, simulated orders per wall second and per
CPU second (CPU is what other work on the machine does not inflate), wall /
simulated load (below 1: faster than real time), then the time to write the
result directory. With ``--figures`` it also prints what the model computed
(e2e p50/p99, CPU per order, messages per order, and a digest of every e2e
latency), so a change meant only to speed the model up can show, for the same
seed, that the figures did not move.

Issue 24's target: 50,000 simulated orders per wall second for the 50,000/s
placement (the second command).

With ``--handlers-alone`` it also prints the ceiling the model's speed cannot pass while
it runs the real pattern handlers (the same code a real service runs): every
``handle`` call the model made, replayed in the same order into fresh handlers with
an outbox that does nothing, timed on their own, in orders per wall second. Only
``handle`` is replayed (not ``tick``, ``restore`` or ``revoke``), so the figure is an
upper bound on the handlers' speed, as a ceiling should be.
"""
from __future__ import annotations

import dataclasses
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import patterns  # noqa: E402
from bench.sim import model, output  # noqa: E402
from bench.sim.histograms import histogram_of  # noqa: E402
from bench.sim.hosts import PLACEMENTS  # noqa: E402
from bench.sim.model import Scenario, SimResult, simulate  # noqa: E402
from bench.sim.profile import load_profile  # noqa: E402
from bench.flow.workload import load_workload  # noqa: E402


class _NullOutbox:
    def emit(self, topic: str, event: dict) -> None:
        pass


def handlers_alone(scenario: Scenario) -> float:
    """Simulate ``scenario`` recording every handle call of every service instance, then replay
    them into fresh handlers: the wall seconds the handlers alone took."""
    calls: list[tuple[int, str, int, dict]] = []  # (instance key, topic, partition, event)
    instances: list[str] = []
    new_instance = model.World.new_instance

    def recording(world, role, index, replays=False):
        instance = new_instance(world, role, index, replays)
        key, handle = len(instances), instance.handler.handle
        instances.append(role)

        def record(topic, partition, event, out):
            calls.append((key, topic, partition, event))
            handle(topic, partition, event, out)
        instance.handler.handle = record  # the instance's own attribute: _run looks it up per batch
        return instance

    model.World.new_instance = recording
    try:
        simulate(scenario)
    finally:
        model.World.new_instance = new_instance
    handles = [scenario.topology.handler(role, scenario.workload).handle for role in instances]
    out = _NullOutbox()
    began = time.perf_counter()
    for key, topic, partition, event in calls:
        handles[key](topic, partition, event, out)
    return time.perf_counter() - began


def figures(result: SimResult) -> str:
    """The model's answer in one line: e2e p50/p99 (hdr, ms), CPU us per order, messages per order,
    and a digest of the e2e latencies (equal digests: the same latency for every order)."""
    started = result.load.started_count
    e2e_us = result.e2e[1] * 1e6
    histogram = histogram_of(e2e_us)
    p50, p99 = (histogram.get_value_at_percentile(p) / 1000 for p in (50, 99))
    cpu_us = sum(result.cpu_s.values()) / started * 1e6
    messages = sum(result.messages.values()) / started
    digest = hashlib.sha1(result.e2e[1].tobytes()).hexdigest()[:12]
    return (f"p50 {p50:.3f} ms  p99 {p99:.3f} ms  CPU/order {cpu_us:.3f} us  messages/order {messages:.4f}  "
            f"finished {result.load.finished_count}  e2e digest {digest}")


@click.command()
@click.option("--workload", "workload_path", default=str(ROOT / "workloads" / "5000-orders.yaml"), show_default=True)
@click.option("--profile", "profile_path", default=None, help="Default: the committed profile.")
@click.option("--placement", type=click.Choice(PLACEMENTS), default="single", show_default=True)
@click.option("--network-rtt-us", type=float, default=None, help="With --placement spread (default: the profile's).")
@click.option("--pattern", "pattern_names", multiple=True, type=click.Choice(sorted(patterns.PATTERNS)),
              help="Repeatable (default: both).")
@click.option("--duration-s", type=float, default=None, help="Measured load (overrides the workload).")
@click.option("--figures/--no-figures", "show_figures", default=False, help="Print what the model computed.")
@click.option("--no-write", is_flag=True, help="Skip writing the result directory.")
@click.option("--handlers-alone", "handlers_alone_too", is_flag=True, help="Also time the real handlers' calls on their own (a ceiling).")
def main(workload_path: str, profile_path: str | None, placement: str, network_rtt_us: float | None,
         pattern_names: tuple[str, ...], duration_s: float | None, show_figures: bool, no_write: bool,
         handlers_alone_too: bool) -> None:
    workload, profile = load_workload(workload_path), load_profile(profile_path)
    if duration_s is not None:
        workload = dataclasses.replace(workload, duration_s=duration_s)
    if network_rtt_us is not None:
        profile = dataclasses.replace(profile, network_rtt_us=network_rtt_us)
    load_s = workload.warmup_s + workload.duration_s
    click.echo(f"{workload.name}: {workload.rate_per_s:g} orders/s, {workload.duration_s:g}s measured "
               f"+ {workload.warmup_s:g}s warm-up, placement {placement}")
    click.echo(f"{'pattern':<14} {'orders':>8} {'simulated s':>12} {'wall s':>8} {'CPU s':>7} "
               f"{'orders/wall s':>14} {'orders/CPU s':>13} {'wall/load':>10} {'write s':>8}")
    for pattern in pattern_names or ("choreography", "orchestration"):
        scenario = Scenario(patterns.get(pattern), workload, profile, placement)
        began, cpu_began = time.perf_counter(), time.process_time()
        result = simulate(scenario)
        wall_s, cpu_s = time.perf_counter() - began, time.process_time() - cpu_began
        write_s = float("nan")
        if not no_write:
            with tempfile.TemporaryDirectory() as scratch:
                began = time.perf_counter()
                output.write(Path(scratch) / "out", scenario, result, time.time(), wall_s)
                write_s = time.perf_counter() - began
        orders = result.load.started_count
        click.echo(f"{pattern:<14} {orders:>8} {result.elapsed_s:>12.1f} {wall_s:>8.1f} {cpu_s:>7.1f} "
                   f"{orders / wall_s:>14.0f} {orders / cpu_s:>13.0f} {wall_s / load_s:>10.2f} {write_s:>8.1f}")
        if show_figures:
            click.echo(f"{'':<14} {figures(result)}")
        if handlers_alone_too:
            # A second model run of its own (recording slows it): only its replay is timed.
            handlers_s = handlers_alone(scenario)
            click.echo(f"{'':<14} the real handlers alone: {orders / handlers_s:.0f} orders per wall s "
                       f"({handlers_s:.1f} s of the model's {wall_s:.1f})")


if __name__ == "__main__":
    main()
