"""Machines: which host each simulated process runs on, the CPU it spends, and the wait for a core.

The model charges every process's CPU to its host (services per message and
batch, the broker per second at the message rate it carries, the load
generator per order), so a simulated run reports CPU seconds per role as a real
run does. From that the host knows its utilisation ``rho`` (per 100 ms window,
smoothed), and every hop that crosses it waits for cores: each of the threads
a message wakes on its way (producer, broker, fetcher, the service's poll) may
find every core busy. The mean wait per hop follows the M/M/c mean slowdown
``S(rho) = 1 + C(c, c rho) / (c (1 - rho))`` (``C``: Erlang's C formula) above
the utilisation the transport was calibrated at:
``wait = contention_us * (S(rho) - S(rho_cal))``, drawn exponential.

When the processes ask for more CPU than the host has, the excess piles up as a
backlog of CPU work (seconds of it, per core) that every hop then waits behind:
a machine that stays short of cores falls further behind every second, as a
real one does, and the run's backlog of orders grows.
"""
from __future__ import annotations

from collections import defaultdict

import simpy

from bench.errors import BadInput

WINDOW_S = 0.1
SMOOTHING = 0.3  # weight of the newest window in the utilisation
# Linux's scheduler bounds how long a runnable thread waits by its scheduling period, so the wait
# for cores stops growing near saturation; past this, want of CPU shows as overload instead.
MAX_RHO = 0.85


def erlang_c(servers: int, offered: float) -> float:
    """Probability that a job waits in an M/M/c queue with offered load ``offered`` (= c rho)."""
    if offered <= 0:
        return 0.0
    if offered >= servers:
        return 1.0
    term, total = 1.0, 1.0
    for k in range(1, servers):
        term *= offered / k
        total += term
    term *= offered / servers
    last = term * servers / (servers - offered)
    return last / (total + last)


def slowdown(cores: int, rho: float) -> float:
    """Mean slowdown of a job on an M/M/c processor-sharing server at utilisation ``rho``."""
    rho = min(max(rho, 0.0), MAX_RHO)
    return 1.0 + erlang_c(cores, cores * rho) / (cores * (1.0 - rho))


class Host:
    """One machine; ``cores=None``: as many as its processes need (nothing waits)."""

    def __init__(self, env: simpy.Environment | None, name: str, cores: int | None,
                 contention_us: float = 0.0, calibrated_rho: float = 0.0) -> None:
        self.name = name
        self.cores = cores
        self.cpu_s: dict[str, float] = defaultdict(float)  # owner -> CPU seconds used
        self.rho = calibrated_rho
        self.demand = calibrated_rho  # CPU asked for / CPU there is (may exceed 1)
        self.backlog_s = 0.0  # CPU work asked for beyond the cores, in seconds of the whole host
        self.wait_s = 0.0  # mean wait for cores per hop, now
        self._window_s = 0.0
        if env is not None and cores:
            self._contention_s = contention_us / 1e6
            self._reference = slowdown(cores, calibrated_rho)
            env.process(self._update(env))

    def charge(self, owner: str, cpu_s: float) -> None:
        self.cpu_s[owner] += cpu_s
        self._window_s += cpu_s

    def _update(self, env: simpy.Environment):
        while True:
            yield env.timeout(WINDOW_S)
            current = self._window_s / (self.cores * WINDOW_S)
            self._window_s = 0.0
            self.demand = SMOOTHING * current + (1 - SMOOTHING) * self.demand
            self.backlog_s = max(0.0, self.backlog_s + (self.demand - 1.0) * WINDOW_S)
            self.rho = min(self.demand, MAX_RHO)
            self.wait_s = self._contention_s * max(0.0, slowdown(self.cores, self.rho) - self._reference)


PLACEMENTS = ("single", "spread")


def placement(names: list[str], mode: str, env: simpy.Environment, cores: int, contention_us: float = 0.0,
              calibrated_rho: float = 0.0) -> dict[str, Host]:
    """Process name -> host. ``single``: every process on one host with ``cores`` (the calibrated
    machine). ``spread``: each process on a host of its own, with cores to spare."""
    if mode == "single":
        host = Host(env, "host-0", cores, contention_us, calibrated_rho)
        return {name: host for name in names}
    if mode == "spread":
        return {name: Host(None, f"host-{i}", None) for i, name in enumerate(names)}
    raise BadInput(f"unknown placement {mode!r}: choose one of {', '.join(PLACEMENTS)}")


def mean_utilisation(hosts: dict[str, Host], elapsed_s: float) -> float | None:
    """Mean CPU utilisation over ``elapsed_s`` of the hosts with a core count."""
    counted = {id(h): h for h in hosts.values() if h.cores}
    if not counted or elapsed_s <= 0:
        return None
    used = sum(sum(h.cpu_s.values()) for h in counted.values())
    return used / (sum(h.cores for h in counted.values()) * elapsed_s)
