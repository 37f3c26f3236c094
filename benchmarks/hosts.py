"""Services on other hosts against every process on one, interleaved: what the placement costs.

    python benchmarks/hosts.py [--rate 1000] [--duration 30s] [--warmup 5s] [--rounds 2]
    python benchmarks/hosts.py --cluster [--rate 1000] ...

``--cluster``: three namespace hosts, each with a KRaft node the run starts there (replication
factor 3), one step service and one load worker (the order service, the orchestrator, the live
audit and the verdict stay in the root namespace), against the same workload on one host with an
embedded 3-node cluster; then what `bench simulate` predicts for that workload, for one machine's
cores (``--placement single``: namespaces share this machine's) and for hosts of their own
(``--placement spread``).

Hosts are network namespaces on a bridge (benchmarks/netns.py; needs root): h1 runs the first
saga step's services, h2 the rest of the roles except the coordinator's, each under a `bench
agent`; the load generator, the live audit, the orchestrator and a fresh embedded broker of this
script's own (listening on the bridge) stay in the root namespace. Each round runs both patterns
placed and on one host, A B A B. Prints one row per run: validity, e2e p50/p99, CPU per order,
each host's share, and the hosts' clock offsets as the run measured them.

One kernel serves every namespace, so this measures what the agents, the placement and the
bridge's veth hops cost, not a real network's latency; compare rows of one invocation.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))
from netns import Hosts  # noqa: E402

PORT = 29392
AGENT_PORT = 7070


def _agent(hosts: Hosts, host: str, env: dict, work: Path) -> subprocess.Popen:
    log = work / f"agent-{host}.log"
    proc = hosts.popen(host, [sys.executable, "-m", "bench", "agent", "--listen", f"{hosts.address(host)}:{AGENT_PORT}",
                              "--work-dir", str(work / f"agent-{host}")],
                       env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while "listening on" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the agent on {host} did not start:\n{log.read_text()}")
        time.sleep(0.1)
    return proc


def _hosts_file(hosts: Hosts, pattern: str, work: Path) -> Path:
    from bench import patterns
    from bench.flow.workload import load_workload

    topology = patterns.get(pattern).topology(load_workload().saga)
    coordinator = getattr(topology, "coordinator", None)
    roles = [r for r in topology.roles if r != coordinator]
    first, rest = roles[:1], roles[1:]
    path = work / f"hosts-{pattern}.yaml"
    path.write_text("hosts:\n" + "".join(
        f"  - {{name: {h}, agent: '{hosts.address(h)}:{AGENT_PORT}', services: {{{', '.join(f'{r}: 1' for r in rs)}}}}}\n"
        for h, rs in (("h1", first), ("h2", rest)) if rs))
    return path


def _run(pattern: str, placed: Path | None, args: list[str], bootstrap: str, out: Path, env: dict) -> dict:
    cmd = [sys.executable, "-m", "bench", "run", "--pattern", pattern, *args, "--bootstrap-servers", bootstrap,
           "--output", str(out)] + (["--hosts", str(placed)] if placed else [])
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if not (out / "summary.json").exists():
        raise SystemExit(f"{' '.join(cmd)} wrote no summary:\n{done.stderr[-2000:]}")
    return json.loads((out / "summary.json").read_text())


CLUSTER_WORKLOAD = ("name: three-hosts\nrate: {rate}\nduration: {duration}\nwarmup: {warmup}\nload_workers: 2\n"
                    "replication_factor: 3\nmin_insync_replicas: 2\n")


def _cluster_hosts_file(hosts: Hosts, pattern: str, work: Path) -> Path:
    from bench import patterns
    from bench.flow.workload import load_workload

    topology = patterns.get(pattern).topology(load_workload().saga)
    coordinator = getattr(topology, "coordinator", None)
    steps = [r for r in topology.roles if r != coordinator and r != "order"][:3]
    path = work / f"cluster-hosts-{pattern}.yaml"
    path.write_text("hosts:\n" + "".join(
        f"  - {{name: {h}, agent: '{hosts.address(h)}:{AGENT_PORT}', brokers: 1, services: {{{role}: 1}}"
        f"{', load_workers: 1' if i < 2 else ''}}}\n" for i, (h, role) in enumerate(zip(hosts.names, steps))))
    return path


def _simulate(pattern: str, workload: Path, placement: str, out: Path) -> dict:
    cmd = [sys.executable, "-m", "bench", "simulate", "--pattern", pattern, "--workload", str(workload),
           "--placement", placement, "--brokers", "3", "--output", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if not (out / "summary.json").exists():
        raise SystemExit(f"{' '.join(cmd)} wrote no summary:\n{done.stderr[-2000:]}")
    return json.loads((out / "summary.json").read_text())


def three_host_cluster(rate: float, duration: str, warmup: str, rounds: int, work: Path, env: dict) -> None:
    workload = work / "three-hosts.yaml"
    workload.write_text(CLUSTER_WORKLOAD.format(rate=f"{rate:g}", duration=duration, warmup=warmup))
    rows = []
    with Hosts(3) as hosts:
        env.update(BENCH_BROKER_PORT=str(PORT))
        os.environ.update(BENCH_BROKER_DIR=str(work / "broker"), BENCH_BROKER_PORT=str(PORT))
        env.update(BENCH_BROKER_DIR=str(work / "broker"))
        from bench.broker import dist, embedded, warmup as broker_warmup

        dist.install()  # the namespaces reach no registry
        agents = [_agent(hosts, h, env, work) for h in hosts.names]
        try:
            for i in range(rounds):
                for pattern in ("choreography", "orchestration"):
                    click.echo(f"--- round {i + 1}: {pattern}, three hosts", err=True)
                    cmd = [sys.executable, "-m", "bench", "run", "--pattern", pattern, "--workload", str(workload),
                           "--hosts", str(_cluster_hosts_file(hosts, pattern, work)),
                           "--output", str(work / f"{pattern}-three-hosts-{i}")]
                    subprocess.run(cmd, env=env, capture_output=True, text=True)
                    rows.append((pattern, "3 hosts", json.loads((work / f"{pattern}-three-hosts-{i}" / "summary.json")
                                                             .read_text())))
                    click.echo(f"--- round {i + 1}: {pattern}, one host", err=True)
                    with embedded.embedded(nodes=3, port=PORT) as one:
                        broker_warmup.warm_up(one.bootstrap_servers)
                        rows.append((pattern, "one host", _run(pattern, None, ["--workload", str(workload)],
                                                                one.bootstrap_servers,
                                                                work / f"{pattern}-one-host-{i}", env)))
        finally:
            for agent in agents:
                agent.terminate()
            for agent in agents:
                agent.wait(30)
    for pattern in ("choreography", "orchestration"):
        for placement in ("single", "spread"):
            rows.append((pattern, f"sim {placement}", _simulate(pattern, workload, placement,
                                                                 work / f"{pattern}-sim-{placement}")))
    click.echo(f"{'pattern':<14}{'run':<14}{'valid':>6}{'clean':>6}{'orders':>8}{'p50 ms':>8}{'p99 ms':>8}"
               f"{'us/order':>9}  load workers (host: orders, e2e p50 ms)")
    for pattern, label, s in rows:
        e2e, per_order = s["latency_ms"]["e2e"], (s.get("cost") or {}).get("cpu_us_per_order") or {}
        workers = "; ".join(f"{w.get('host') or 'root'}: {w['orders']}, {w.get('e2e_p50_ms')}"
                            for w in s.get("load_workers") or [])
        total = per_order.get("total")
        click.echo(f"{pattern:<14}{label:<14}{'yes' if s['valid'] else 'NO':>6}{'yes' if s['clean'] else 'NO':>6}"
                   f"{s['orders']['started']:>8}{e2e['p50']:>8.1f}{e2e['p99']:>8.1f}"
                   f"{(f'{total:.0f}' if isinstance(total, (int, float)) else '-'):>9}  {workers or '-'}")


@click.command()
@click.option("--rate", default=1000.0, show_default=True)
@click.option("--duration", default="30s", show_default=True)
@click.option("--warmup", default="5s", show_default=True)
@click.option("--rounds", default=2, show_default=True)
@click.option("--cluster", "three_hosts", is_flag=True, help="Brokers, services and load workers on three hosts.")
def main(rate: float, duration: str, warmup: str, rounds: int, three_hosts: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-hosts-"))
    if three_hosts:
        three_host_cluster(rate, duration, warmup, rounds, work, {**os.environ, "BENCH_AGENT_SECRET": secrets.token_hex(32),
                                                       "PYTHONPATH": str(ROOT)})
        return
    secret = secrets.token_hex(32)
    env = {**os.environ, "BENCH_AGENT_SECRET": secret, "PYTHONPATH": str(ROOT)}
    rows = []
    with Hosts(2) as hosts:
        os.environ.update(BENCH_BROKER_DIR=str(work / "broker"), BENCH_BROKER_HOST=hosts.root_address)
        env.update(BENCH_BROKER_DIR=str(work / "broker"), BENCH_BROKER_HOST=hosts.root_address)
        from bench.broker import embedded, warmup as broker_warmup

        agents = [_agent(hosts, h, env, work) for h in hosts.names]
        try:
            with embedded.embedded(port=PORT) as cluster:
                broker_warmup.warm_up(cluster.bootstrap_servers)
                args = ["--rate", f"{rate:g}", "--duration", duration, "--warmup", warmup]
                for i in range(rounds):
                    for pattern in ("choreography", "orchestration"):
                        for label, placed in (("one host", None), ("placed", _hosts_file(hosts, pattern, work))):
                            click.echo(f"--- round {i + 1}: {pattern}, {label}", err=True)
                            s = _run(pattern, placed, args, cluster.bootstrap_servers,
                                     work / f"{pattern}-{label.replace(' ', '-')}-{i}", env)
                            rows.append((pattern, label, s))
        finally:
            for agent in agents:
                agent.terminate()
            for agent in agents:
                agent.wait(15)
    click.echo(f"{'pattern':<14}{'services':<10}{'valid':>6}{'clean':>6}{'p50 ms':>8}{'p99 ms':>8}{'us/order':>9}"
               f"  hosts (services' us/order; wall offset ms +- error)")
    for pattern, label, s in rows:
        e2e, cost = s["latency_ms"]["e2e"], s["cost"]["cpu_us_per_order"]
        hosts_text = "; ".join(f"{n}: {h['cpu_us_per_order']} ({h['clock_at_start']['wall_offset_ms']:+.2f} "
                               f"+- {h['clock_at_start']['error_ms']:.2f})" for n, h in (s.get("hosts") or {}).items())
        click.echo(f"{pattern:<14}{label:<10}{'yes' if s['valid'] else 'NO':>6}{'yes' if s['clean'] else 'NO':>6}"
                   f"{e2e['p50']:>8.1f}{e2e['p99']:>8.1f}{cost['total']:>9.0f}  {hosts_text or '-'}")


if __name__ == "__main__":
    main()
