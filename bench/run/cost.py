"""What a run cost the machine: CPU per order by process and thread, wake-ups, batching.

CPU is counted over the load (warm-up, window and drain), not process start-up,
and divided by the orders started in that time. ``main`` is a process's main
thread (Python: the loop, handlers, serialization), ``library`` its other
threads (librdkafka's network threads; for the load generator also its
terminal-event consumer). Batching comes from librdkafka's statistics:
messages per produce request and per fetch, empty fetches included; both
are what the broker's CPU follows at the rates these patterns run at.
``wait_for_core_us``: how long each process's main thread was runnable but
waiting for a core (the kernel's run-queue delay), per order and per time it was
put on a core (a wake-up, mostly): what a busy host adds to every hop, measured
rather than fitted.
"""
from __future__ import annotations

from collections.abc import Mapping

from bench.kafka import kafkastats
from bench.run import procstat

LOAD_GENERATOR = "load_generator"


def _us(seconds: float, orders: int) -> float | None:
    return round(seconds / orders * 1e6, 1) if orders else None


def _wait_for_core(used: procstat.Usage, orders: int) -> dict[str, float | None]:
    """A main thread's wait for a core per order and per time it was put on one (None: not reported)."""
    if used.waited_s is None:
        return {"per_order": None, "per_run": None}
    return {"per_order": _us(used.waited_s, orders), "per_run": _us(used.waited_s, used.runs)}


def cost(orders: int, seconds: float, processes: Mapping[str, procstat.Usage], broker_s: float | None,
         batching: Mapping[str, Mapping[str, int]]) -> dict:
    """``processes``: name (a role, or the load generator) -> its usage over the load."""
    harness_s = sum(u.cpu_s for u in processes.values())
    totals = dict.fromkeys(kafkastats.COUNTS, 0)
    for counts in batching.values():
        for key in totals:
            totals[key] += counts.get(key, 0)
    return {
        "orders": orders,
        "load_s": round(seconds, 2),
        "cpu_us_per_order": {
            **{name: {"main": _us(u.main_s, orders), "library": _us(u.other_s, orders)} for name, u in processes.items()},
            "harness": _us(harness_s, orders),
            "broker": None if broker_s is None else _us(broker_s, orders),
            "total": None if broker_s is None else _us(harness_s + broker_s, orders),
        },
        "cores_busy": None if broker_s is None or not seconds else round((harness_s + broker_s) / seconds, 2),
        "switches_per_s": {name: round(u.switches / seconds) if seconds else None for name, u in processes.items()},
        "wait_for_core_us": {name: _wait_for_core(u, orders) for name, u in processes.items()},
        "batching": {**{name: kafkastats.ratios(c) for name, c in batching.items()}, "all": kafkastats.ratios(totals)},
    }
