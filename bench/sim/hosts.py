"""Machines: the cores a host's processes share, and what sharing them costs.

Every process charges the CPU it uses to its host. Once per window the host
turns that into a utilisation and a *stretch*: the factor by which CPU work
takes longer than it would on an idle machine. The stretch is the mean
slowdown of a job on an M/M/c processor-sharing server,
``1 + C(c, a) / (c (1 - rho))`` with ``C`` Erlang's C formula and ``a = c rho``
the offered load: 1 on an idle host, growing without bound towards saturation.
"""
from __future__ import annotations

from collections import defaultdict

import simpy

WINDOW_S = 0.1
SMOOTHING = 0.5  # weight of the newest window in the utilisation
MAX_RHO = 0.98


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


def stretch(cores: int, rho: float) -> float:
    rho = min(max(rho, 0.0), MAX_RHO)
    return 1.0 + erlang_c(cores, cores * rho) / (cores * (1.0 - rho))


class Host:
    """One machine. ``cores=None``: as many as its processes need (no contention)."""

    def __init__(self, env: simpy.Environment, name: str, cores: int | None) -> None:
        self.env = env
        self.name = name
        self.cores = cores
        self.stretch = 1.0
        self.rho = 0.0
        self.cpu_s: dict[str, float] = defaultdict(float)  # owner -> CPU seconds used
        self._window_s = 0.0
        if cores is not None:
            env.process(self._update())

    def charge(self, owner: str, cpu_s: float) -> None:
        self.cpu_s[owner] += cpu_s
        self._window_s += cpu_s

    def _update(self):
        while True:
            yield self.env.timeout(WINDOW_S)
            current = self._window_s / (self.cores * WINDOW_S)
            self._window_s = 0.0
            self.rho = SMOOTHING * current + (1 - SMOOTHING) * self.rho
            self.stretch = stretch(self.cores, self.rho)


def placement(names: list[str], mode: str, cores: int, env: simpy.Environment) -> dict[str, Host]:
    """Process name -> host. ``single``: every process on one host with ``cores`` cores (the
    calibrated machine). ``spread``: each process on its own host, with no CPU contention."""
    if mode == "single":
        host = Host(env, "host-0", cores)
        return {name: host for name in names}
    if mode == "spread":
        return {name: Host(env, f"host-{i}", None) for i, name in enumerate(names)}
    raise ValueError(f"unknown placement {mode!r}: choose single or spread")


def mean_utilisation(hosts: dict[str, Host], elapsed_s: float) -> float | None:
    """Mean CPU utilisation over ``elapsed_s`` of the hosts with a core count."""
    counted = {id(h): h for h in hosts.values() if h.cores}
    if not counted or elapsed_s <= 0:
        return None
    used = sum(sum(h.cpu_s.values()) for h in counted.values())
    return used / (sum(h.cores for h in counted.values()) * elapsed_s)

