"""The text a run's summary prints: `bench run` and `bench simulate` show it for every run,
real or simulated, from summary.json's keys (:mod:`bench.results.summary`)."""
from __future__ import annotations


def headline(s: dict) -> str:
    """What `bench run` and `bench simulate` print of a run's summary: its verdict, rates,
    end-to-end latency, the audit's counts, messages and CPU, cost and a moved clock."""
    e2e, orders = s["latency_ms"]["e2e"], s["orders"]
    verdict = "VALID" if s["valid"] else f"INVALID ({s['invalid_reason']})"
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    return (f"{s['pattern']}: {verdict}\n"
            f"  rate target {s['rate_target_per_s']:g}/s  offered {s['rate_offered_per_s']:g}/s  finished {s['rate_achieved_per_s']:g}/s\n"
            f"  e2e ms  p50 {fmt(e2e['p50'])}  p90 {fmt(e2e['p90'])}  p99 {fmt(e2e['p99'])}  p99.9 {fmt(e2e['p999'])}  max {fmt(e2e['max'])}\n"
            f"  orders  started {orders['started']}  completed {orders['completed']}  cancelled {orders['cancelled']}  "
            f"lost {orders['lost']}  stuck {orders['stuck']}  duplicates {orders['duplicates']}  inconsistent {orders['inconsistent']}"
            + _foreign(orders) + "\n"
            f"  messages/order {s['messages_per_order']}  bytes/order {s['bytes_per_order']}  harness CPU {s['cpu_s']['harness_total']}s  broker CPU {fmt(s['cpu_s']['broker'])}s"
            + _cost_line(s.get("cost")) + _clock_line(s.get("clock")) + _drift_line(s.get("drift"))
            + _hosts_line(s.get("hosts")))


def _hosts_line(hosts: dict | None) -> str:
    line = describe_hosts(hosts)
    return f"\n  hosts   {line}" if line else ""


def describe_hosts(hosts: dict | None) -> str | None:
    """Where a run's services ran (None: all on one host), and which hosts' step spans are not
    latencies (their monotonic clock is not the coordinator's: :meth:`bench.run.remote.Host.clock`)."""
    if not hosts:
        return None
    placed = "; ".join(f"{name} ({', '.join(h.get('instances', []))})" for name, h in hosts.items())
    apart = [name for name, h in hosts.items() if h.get("shared_monotonic_clock") is False]
    note = (f"; step latencies through {', '.join(apart)} are not comparable (another monotonic clock: "
            f"end-to-end latency, measured by the load generator alone, is)") if apart else ""
    return f"services on {placed}{note}"


def _clock_line(moved: dict | None) -> str:
    line = describe_clock(moved)
    return f"\n  clock   {line}" if line else ""


def _drift_line(drift: dict | None) -> str:
    line = describe_drift(drift)
    return f"\n  drift   {line}" if line else ""


def describe_drift(drift: dict | None) -> str | None:
    """One line for a run whose last tenth of the window differs from its first past the bounds
    summary.json's ``drift`` names (:mod:`bench.run.drift`); None otherwise."""
    if not drift or not drift.get("changed"):
        return None
    first, last = drift["first_tenth"], drift["last_tenth"]
    parts = [f"{name} {first[name]:g} -> {last[name]:g}" for name in drift["changed"]]
    return f"the last tenth of the window differs from the first ({drift['tenth_s']:g} s each): {', '.join(parts)}"


def _foreign(orders: dict) -> str:
    """Records no started order explains (shown only when there are some: the audit is then not clean)."""
    found = {name: orders.get(name) for name in ("multiple_terminal", "unknown_orders", "undecodable", "unconsumed")}
    return "".join(f"  {name.replace('_', ' ')} {n}" for name, n in found.items() if n)


def _cost_line(cost: dict | None) -> str:
    """CPU per order and batching (simulated runs and older result directories have no cost block)."""
    if not cost:
        return ""
    us, batching = cost["cpu_us_per_order"], cost["batching"]["all"]
    fmt = lambda v, spec: "-" if v is None else format(v, spec)
    return (f"\n  cost    CPU us/order harness {fmt(us['harness'], '.0f')}  broker {fmt(us['broker'], '.0f')}  "
            f"total {fmt(us['total'], '.0f')}  cores busy {fmt(cost['cores_busy'], '.2f')}  "
            f"messages/produce request {fmt(batching['messages_per_produce_request'], '.1f')}  "
            f"messages/fetch {fmt(batching['messages_per_fetch'], '.1f')}{_wait(cost.get('wait_for_core_us'))}")


def _wait(waits) -> str:
    """The longest wait for a core per turn on one, among the processes (older runs did not measure it)."""
    per_run = {name: w["per_run"] for name, w in (waits if isinstance(waits, dict) else {}).items()
               if isinstance(w, dict) and type(w.get("per_run")) in (int, float)}
    if not per_run:
        return ""
    name = max(per_run, key=per_run.get)
    return f"  wait for a core {per_run[name]:.0f} us per run ({name}, the longest)"


def describe_clock(clock: dict | None) -> str | None:
    """One line for a run whose wall clock moved (None when it did not): summary.json's
    ``clock``, as :class:`bench.run.clock.WallClockWatch` wrote it."""
    if not clock or not clock.get("moved"):
        return None
    step = (f", {clock['steps']} step(s), the largest {clock['largest_step_ms'] / 1000:+.3f} s at "
            f"{clock['largest_step_at_s']:g} s" if clock.get("steps") else "")
    return (f"the wall clock moved during the run ({clock['wall_rate_ppm']:+.0f} ppm against the monotonic clock"
            f"{step}): every latency and rate here is on the monotonic clock and does not depend on it; "
            f"wall-clock labels (.hlog timestamps, timeline) count from the run's start")
