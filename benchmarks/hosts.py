"""Services on other hosts against every process on one, interleaved: what the placement costs.

    python benchmarks/hosts.py [--rate 1000] [--duration 30s] [--warmup 5s] [--rounds 2]

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


@click.command()
@click.option("--rate", default=1000.0, show_default=True)
@click.option("--duration", default="30s", show_default=True)
@click.option("--warmup", default="5s", show_default=True)
@click.option("--rounds", default=2, show_default=True)
def main(rate: float, duration: str, warmup: str, rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-hosts-"))
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
