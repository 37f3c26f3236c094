"""Service instances as OS processes: spawn, wait until ready, measure, kill, restart, stop.

Each instance is ``python -m bench serve ...`` in its own process group (a
Ctrl-C in the terminal reaches only the harness, which then stops the services
in order) and stops by itself when the harness that spawned it is gone, so no
run leaves orphans behind. An instance placed on another host is started there by
that host's agent (:mod:`bench.run.remote`, :mod:`bench.run.agent`) and is driven
through the same methods.
"""
from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.run import procstat
from bench.run.progress import Progress, no_progress
from bench.kafka.errors import BrokerError

READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
PARENT_ENV = "BENCH_PARENT_PID"


def supervised() -> bool:
    """For a service: whether a run's supervisor spawned it (and reads its stdout)."""
    return bool(os.environ.get(PARENT_ENV))


def parent_watch() -> Callable[[], bool]:
    """For a service: a check that the harness which spawned it is still alive.

    Not PR_SET_PDEATHSIG: that fires when the spawning *thread* exits, and
    restarts after a fault are spawned from the fault injector's thread.
    """
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return lambda: True
    expected = int(parent)
    return lambda: os.getppid() == expected


@dataclass
class Instance:
    role: str
    index: int
    process: subprocess.Popen
    log_path: Path
    used_before: procstat.Usage = procstat.Usage()  # CPU of earlier incarnations of this instance (after restarts)
    backlog: int | None = None  # as it last reported (each second once ready)

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 8) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def usage(self) -> procstat.Usage | None:
        return procstat.usage(self.process.pid) if self.alive() else None

    def send(self, sig: int) -> None:
        if self.alive():
            self.process.send_signal(sig)

    def wait(self, timeout_s: float | None = None) -> None:
        self.process.wait(timeout_s)

    def terminate(self) -> None:
        """SIGCONT (a paused instance cannot handle SIGTERM), then SIGTERM."""
        if self.process.returncode is None:
            try:
                os.kill(self.process.pid, signal.SIGCONT)
                self.process.terminate()
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Done with it: stopped, or killed when it would not stop."""
        if self.alive():
            self.process.kill()
            self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


def _follow(inst: Instance) -> None:
    """Keep the instance's latest backlog report, until it exits (one line a second)."""
    from bench.run.runtime import BACKLOG_PREFIX

    prefix = BACKLOG_PREFIX.encode()
    try:
        for line in inst.process.stdout:
            if line.startswith(prefix):
                value = line[len(prefix):].strip()
                inst.backlog = int(value) if value else None
    except (OSError, ValueError):
        pass  # stdout closed by stop(): the instance is gone


class Supervisor:
    def __init__(self, serve_args: list[str], log_dir: Path, progress: Progress = no_progress,
                 placed: Mapping[str, Any] | None = None) -> None:
        """``serve_args``: the `bench serve` options every instance shares (pattern, workload, broker);
        ``progress`` hears how many of the instances being started are ready; ``placed``: instance
        name (``<role>-<n>``) -> the host that runs it (:class:`bench.run.remote.Host`; the rest
        run here)."""
        self.serve_args = serve_args
        self.log_dir = log_dir
        self.progress = progress
        self.placed = dict(placed or {})
        self.instances: dict[str, Any] = {}  # Instance, or remote.RemoteInstance: the same methods

    def spawn(self, role: str, index: int) -> Any:
        """Start one instance: here (ready once wait_ready says so), or on its host (ready on return)."""
        host = self.placed.get(f"{role}-{index}")
        if host is not None:
            previous = self.instances.get(f"{role}-{index}")
            instance = host.spawn(role, index, previous.used_before if previous else procstat.Usage(), self.log_dir)
            self.instances[instance.name] = instance
            return instance
        return self._spawn_here(role, index)

    def _spawn_here(self, role: str, index: int) -> Instance:
        log_path = self.log_dir / f"{role}-{index}.log"
        cmd = [sys.executable, "-m", "bench", "serve", *self.serve_args, "--role", role, "--instance", str(index)]
        env = {**os.environ, PARENT_ENV: str(os.getpid())}
        with open(log_path, "ab") as log:
            # Its own process group, in the harness's session: a Ctrl-C in the terminal reaches only the
            # harness, and if the harness dies the group is orphaned, so the kernel sends a stopped
            # (paused) instance SIGHUP and SIGCONT instead of leaving it stopped for ever.
            process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
                                       env=env, process_group=0)
        previous = self.instances.get(f"{role}-{index}")
        instance = Instance(role, index, process, log_path, previous.used_before if previous else procstat.Usage())
        self.instances[instance.name] = instance
        return instance

    def start(self, counts: dict[str, int], timeout_s: float = READY_TIMEOUT_S) -> None:
        spawned = [self.spawn(role, i) for role, n in counts.items() for i in range(n)]
        self.wait_ready([i for i in spawned if isinstance(i, Instance)], timeout_s, self.progress)

    def wait_ready(self, instances: list[Instance], timeout_s: float = READY_TIMEOUT_S,
                   progress: Progress = no_progress) -> None:
        """Block until every instance printed READY (it joined its consumer group). Restarts
        during the load say no progress: the live lines are on screen then."""
        selector = selectors.DefaultSelector()
        for inst in instances:
            selector.register(inst.process.stdout, selectors.EVENT_READ, inst)
        waiting = {inst.name for inst in instances}
        deadline = time.monotonic() + timeout_s
        try:
            while waiting:
                progress("starting services", len(instances) - len(waiting), len(instances))
                left = deadline - time.monotonic()
                if left <= 0:
                    name = sorted(waiting)[0]
                    raise BrokerError(f"service {name} not ready after {timeout_s:.0f}s; log {self.instances[name].log_path}:\n"
                                      f"{self.instances[name].log_tail()}")
                for key, _ in selector.select(min(left, 0.5)):
                    inst: Instance = key.data
                    line = inst.process.stdout.readline()
                    if line.strip() == b"READY":
                        waiting.discard(inst.name)
                        selector.unregister(inst.process.stdout)
                        threading.Thread(target=_follow, args=(inst,), name=f"reports-{inst.name}", daemon=True).start()
                    elif not line:
                        raise BrokerError(f"service {inst.name} exited during start (code {inst.process.wait()}); "
                                          f"log {inst.log_path}:\n{inst.log_tail()}")
            progress("starting services", len(instances), len(instances))
        finally:
            selector.close()

    def signal(self, name: str, sig: int) -> None:
        self.instances[name].send(sig)

    def kill(self, name: str) -> None:
        """SIGKILL an instance (a crash), remembering the CPU it used."""
        inst = self.instances[name]
        used = inst.usage() or procstat.Usage()
        inst.send(signal.SIGKILL)
        inst.wait()
        inst.used_before += used  # once it is dead: a kill that failed leaves it counted once, alive

    def restart(self, name: str) -> Any:
        inst = self.instances[name]
        new = self.spawn(inst.role, inst.index)
        if isinstance(new, Instance):
            self.wait_ready([new])
        return new

    def backlog(self) -> int | None:
        """Messages the live instances have not handled yet, as each last reported (None before any did)."""
        reported = [inst.backlog for inst in self.instances.values() if inst.alive() and inst.backlog is not None]
        return sum(reported) if reported else None

    def usage(self) -> dict[str, procstat.Usage]:
        """CPU and context switches per role, summed over instances and their incarnations."""
        return self._summed(lambda name, inst: inst.role)

    def usage_by_host(self) -> dict[str, procstat.Usage]:
        """CPU of the instances on each other host (by host name), their incarnations summed."""
        return self._summed(lambda name, inst: self.placed[name].name if name in self.placed else None)

    def _summed(self, key: Callable[[str, Any], str | None]) -> dict[str, procstat.Usage]:
        out: dict[str, procstat.Usage] = {}
        for name, inst in self.instances.items():
            group = key(name, inst)
            if group is not None:
                out[group] = out.get(group, procstat.Usage()) + inst.used_before + (inst.usage() or procstat.Usage())
        return out

    def service_stats(self) -> dict[str, dict]:
        """Per role: messages processed, dead letters, duplicates absorbed, summed over the
        STATS lines of every incarnation that exited cleanly (a SIGKILLed one writes none)."""
        import json

        from bench.run.runtime import STATS_KEYS, STATS_PREFIX

        totals: dict[str, dict] = {}
        for inst in self.instances.values():
            try:
                lines = inst.log_path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                if line.startswith(STATS_PREFIX):
                    stats = json.loads(line[len(STATS_PREFIX):])
                    role = totals.setdefault(inst.role, dict.fromkeys(STATS_KEYS, 0))
                    for key in role:
                        role[key] += stats.get(key, 0)
        return totals

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM everyone (they commit and leave their groups), SIGKILL stragglers; the logs of
        instances on other hosts are fetched into the run's log directory."""
        live = [i for i in self.instances.values() if i.alive()]
        unreachable: list[str] = []  # an instance whose host's agent did not answer: its lease stops it
        for inst in live:
            try:
                inst.terminate()
            except BrokerError as err:
                unreachable.append(str(err))
        deadline = time.monotonic() + grace_s
        for inst in live:
            try:
                inst.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass  # close() kills it
            except BrokerError as err:
                unreachable.append(str(err))
        for inst in self.instances.values():
            try:
                inst.close()
            except BrokerError as err:
                unreachable.append(str(err))
        for host in {id(h): h for h in self.placed.values()}.values():
            try:
                host.stop(self.log_dir, [name for name, placed_on in self.placed.items()
                                         if placed_on is host and name in self.instances])
            except BrokerError as err:  # its instances' logs stay there; the run's results do not wait on them
                unreachable.append(str(err))
        if unreachable:
            (self.log_dir / "agents.log").write_text("\n".join(unreachable) + "\n")
