"""Soak: does a run's memory, verdict time, disk or latency grow with its length?

    python benchmarks/soak.py [--minutes 5,15,30] [--rate 5000] [--pattern orchestration]

Starts a fresh embedded broker of its own (port 29892, a temporary BENCH_BROKER_DIR), then
runs `bench run` once per length, one after the other, on the default workload. While a run
goes it reads, once a second, the peak resident memory (VmHWM) of the harness process and of
every process below it (services, load generator, audit), keeping each process's last reading
by role. Prints one row per length:

- peak RSS of the harness and of its largest child (MB), and of each role;
- the verdict's delay: from the load's end (the live line of its last second) to the run's
  exit, on this script's monotonic clock;
- the broker's disk after the run, less what it held before the first run (each run
  recreates the saga topics, so this is the run's topics);
- drift, as the run's summary.json says it: e2e p50 and p99, CPU per order and the broker's
  memory in the first and the last tenth of the measurement window; and the run's verdict.

Compare rows of one invocation: absolute figures move between machines and hours.

``--starve-audit SHARE`` lets the run's audit process run only SHARE of the time during the load
(SIGSTOP and SIGCONT every 200 ms; released when the load ends): an audit that reads behind the
log, as one on a saturated machine does, and what it holds meanwhile.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
PORT = 29892
WARMUP_S = 10
LIVE_LINE = re.compile(r"^\s*(\d+)s\s+offered")


def _children(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc: children of each thread)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                kids = Path(f"/proc/{parent}/task/{task}/children").read_text().split()
            except OSError:
                continue
            for kid in map(int, kids):
                found.append(kid)
                todo.append(kid)
    return found


def _peak_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) / 1024 if match else None


def _role(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    args = [a.decode(errors="replace") for a in cmd]
    if "--role" in args:
        return args[args.index("--role") + 1]
    if "bench.run.live_audit" in args:
        return "auditor"
    return " ".join(args[1:4]) if len(args) > 1 else args[0]


class _Watch(threading.Thread):
    """Peak memory per process of a run, read once a second until it ends."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peaks, self.roles, self.done = pid, {}, {}, threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            for pid in [self.pid, *_children(self.pid)]:
                peak = _peak_mb(pid)
                if peak is not None:
                    self.peaks[pid] = max(peak, self.peaks.get(pid, 0.0))
                    self.roles.setdefault(pid, "harness" if pid == self.pid else _role(pid))
            self.done.wait(1.0)

    def by_role(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, peak in self.peaks.items():
            role = self.roles[pid]
            out[role] = max(out.get(role, 0.0), peak)
        return out


class _Starve(threading.Thread):
    """The run's audit process (a child of the run we started) runs ``share`` of each 200 ms
    until ``done`` is set or ``until_s`` (this script's clock) passes, then goes on freely. It is
    signalled through a pidfd taken while it was the run's child, so a pid reused after it exits is
    never signalled."""

    def __init__(self, pid: int, share: float, until_s: float) -> None:
        super().__init__(daemon=True)
        self.pid, self.share, self.until_s, self.done = pid, share, until_s, threading.Event()

    def _auditor(self) -> int | None:
        """A pidfd of the run's audit process, once it is there."""
        for kid in _children(self.pid):
            if _role(kid) != "auditor":
                continue
            try:
                fd = os.pidfd_open(kid)
            except OSError:
                continue
            if kid in _children(self.pid):  # still the run's child once pinned: the fd is that process
                return fd
            os.close(fd)
        return None

    def run(self) -> None:
        auditor = None
        try:
            while not self.done.is_set() and time.monotonic() < self.until_s:
                if auditor is None:
                    auditor = self._auditor()
                    self.done.wait(0.2)
                    continue
                signal.pidfd_send_signal(auditor, signal.SIGCONT)
                self.done.wait(0.2 * self.share)
                signal.pidfd_send_signal(auditor, signal.SIGSTOP)
                self.done.wait(0.2 * (1 - self.share))
        except ProcessLookupError:  # it exited
            pass
        finally:
            if auditor is not None:
                try:
                    signal.pidfd_send_signal(auditor, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                os.close(auditor)


def _disk_mb(broker_dir: Path) -> float:
    total = 0
    for path in broker_dir.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_blocks * 512  # Kafka's index files are preallocated, sparse
        except OSError:
            pass
    return total / 2**20


def _run(minutes: float, rate: float, pattern: str, bootstrap: str, out: Path, env: dict,
         starve: float | None = None) -> dict:
    duration_s = minutes * 60
    load_end_s = WARMUP_S + duration_s
    cmd = [sys.executable, "-m", "bench", "run", "--pattern", pattern, "--rate", f"{rate:g}",
           "--duration", f"{duration_s:g}s", "--warmup", f"{WARMUP_S}s", "--bootstrap-servers", bootstrap,
           "--output", str(out)]
    began = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    watch = _Watch(proc.pid)
    watch.start()
    starving = None
    if starve is not None:
        starving = _Starve(proc.pid, starve, began + 60 + load_end_s)  # released at the load's end (below)
        starving.start()
    load_ended = None
    with (out.parent / f"{out.name}.log").open("w") as log:
        for line in proc.stdout:
            log.write(line)
            match = LIVE_LINE.match(line)
            if match and load_ended is None:
                # The live line of second k is printed k s after the load's start: the first one
                # read anchors the load's end on this script's clock.
                load_ended = time.monotonic() + (load_end_s - int(match.group(1)))
            if starving is not None and load_ended is not None and time.monotonic() >= load_ended:
                starving.done.set()  # the load is over: the audit reads the rest at full speed
    proc.wait()
    ended = time.monotonic()
    watch.done.set()
    watch.join()
    if starving is not None:
        starving.done.set()
        starving.join()
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    drift = summary.get("drift") or {}  # the run's own first and last tenth (bench.run.drift)
    roles = watch.by_role()
    return {"minutes": minutes, "exit": proc.returncode, "wall_s": ended - began,
            "verdict_after_load_s": None if load_ended is None else ended - load_ended,
            "harness_mb": roles.pop("harness", 0.0), "roles_mb": roles,
            "valid": summary.get("valid"), "clean": summary.get("clean"),
            "orders": summary.get("orders", {}).get("started"),
            "cpu_us_per_order": (summary.get("cost") or {}).get("cpu_us_per_order", {}).get("total"),
            "audit_reopened_step_seconds": _audit_report(out).get("reopened_step_seconds"),
            "first_tenth": drift.get("first_tenth", {}), "last_tenth": drift.get("last_tenth", {}),
            "changed": drift.get("changed")}


def _audit_report(out: Path) -> dict:
    try:
        return json.loads((out / "audit.json").read_text())
    except (OSError, ValueError):
        return {}


@click.command()
@click.option("--minutes", default="5,15,30", show_default=True, help="Run lengths, comma-separated.")
@click.option("--rate", default=5000.0, show_default=True)
@click.option("--pattern", default="orchestration", show_default=True)
@click.option("--keep", type=click.Path(path_type=Path), help="Keep the runs here (default: a temporary directory).")
@click.option("--starve-audit", "starve", type=click.FloatRange(0.01, 1.0), default=None,
              help="Let the audit process run only this share of the time during the load.")
def main(minutes: str, rate: float, pattern: str, keep: Path | None, starve: float | None) -> None:
    broker_dir = Path(tempfile.mkdtemp(prefix="bench-soak-broker-"))
    os.environ["BENCH_BROKER_DIR"] = str(broker_dir)
    sys.path.insert(0, str(ROOT))
    from bench.broker import embedded, warmup

    scratch = keep or Path(tempfile.mkdtemp(prefix="bench-soak-"))
    scratch.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows = []
    with embedded.embedded(port=PORT) as cluster:
        warmup.warm_up(cluster.bootstrap_servers)
        disk_before = _disk_mb(broker_dir)
        for m in (float(x) for x in minutes.split(",")):
            click.echo(f"--- {pattern} at {rate:g}/s for {m:g} min (results in {scratch})", err=True)
            row = _run(m, rate, pattern, cluster.bootstrap_servers, scratch / f"{pattern}-{m:g}min", env, starve)
            row["disk_mb"] = _disk_mb(broker_dir) - disk_before
            rows.append(row)
            click.echo(json.dumps(row), err=True)
    click.echo(f"{'minutes':>7} {'exit':>4} {'valid':>5} {'clean':>5} {'orders':>9} {'harness MB':>10} "
               f"{'largest child MB':>16} {'verdict s':>9} {'disk MB':>8} {'cpu us/order':>12} "
               f"{'p50 first/last ms':>18} {'p99 first/last ms':>18}")
    for r in rows:
        child = max(r["roles_mb"].items(), key=lambda kv: kv[1], default=("-", 0.0))
        verdict = "-" if r["verdict_after_load_s"] is None else f"{r['verdict_after_load_s']:.0f}"
        first, last = r["first_tenth"], r["last_tenth"]
        p50 = f"{first.get('e2e_p50_ms') or float('nan'):.1f}/{last.get('e2e_p50_ms') or float('nan'):.1f}"
        p99 = f"{first.get('e2e_p99_ms') or float('nan'):.1f}/{last.get('e2e_p99_ms') or float('nan'):.1f}"
        cpu = "-" if r["cpu_us_per_order"] is None else f"{r['cpu_us_per_order']:.0f}"
        click.echo(f"{r['minutes']:>7g} {r['exit']:>4} {str(r['valid']):>5} {str(r['clean']):>5} {r['orders'] or 0:>9} "
                   f"{r['harness_mb']:>10.0f} {child[1]:>9.0f} ({child[0][:6]}) {verdict:>9} {r['disk_mb']:>8.0f} "
                   f"{cpu:>12} {p50:>18} {p99:>18}")
        click.echo("        peak MB by role: " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["roles_mb"].items()))
                   + f"; audit step seconds reopened: {r['audit_reopened_step_seconds']}")
        click.echo(f"        drift, first/last tenth: cpu us/order {first.get('cpu_us_per_order')}/"
                   f"{last.get('cpu_us_per_order')}, broker RSS MB {first.get('broker_rss_mb')}/"
                   f"{last.get('broker_rss_mb')}; changed: {r['changed']}")


if __name__ == "__main__":
    main()
