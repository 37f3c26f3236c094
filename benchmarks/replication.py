"""Replication and the network round trip, measured as the model's placements use them
(`bench calibrate --replication`), on a 3-node cluster on this host and on one in a network
namespace reached over a bridge (a host of its own as far as the network goes; needs root).

    python benchmarks/replication.py [--profile bench/sim/profiles/default.json] [--output DIR]

Prints, per placement of the cluster, the produce p50 with acks=all and acks=1, their difference
(``replication_us``) and the TCP handshake to the brokers beyond one on loopback
(``network_rtt_us``); writes each measured profile to --output. One kernel serves every
namespace, so the round trip is a veth pair and a bridge, not a real network's; and three JVM
brokers share this machine's cores, which sets the replication time.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from netns import Hosts  # noqa: E402

PORT = 29792


def _bench(argv: list[str], env: dict, prefix: list[str] = ()) -> subprocess.CompletedProcess:
    done = subprocess.run([*prefix, sys.executable, "-m", "bench", *argv], env=env, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"bench {' '.join(argv)} failed:\n{done.stdout}{done.stderr}")
    return done


def _measure(name: str, bootstrap: str, profile: str, out: Path, env: dict) -> dict:
    target = out / f"profile-{name}.json"
    _bench(["calibrate", "--from-profile", profile, "--replication", "--bootstrap-servers", bootstrap,
            "--output", str(target)], env)
    written = json.loads(target.read_text())
    return {"placement": name, **written["measured"]["replication"],
            "replication_us": written["replication_us"], "network_rtt_us": written["network_rtt_us"]}


@click.command()
@click.option("--profile", default=str(ROOT / "bench/sim/profiles/default.json"), show_default=True)
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Default: a fresh temporary directory.")
def main(profile: str, output: Path | None) -> None:
    out = output or Path(tempfile.mkdtemp(prefix="bench-replication-"))
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_BROKER_PORT": str(PORT)}
    rows = []
    local = {**env, "BENCH_BROKER_DIR": str(out / "broker-local")}
    _bench(["broker", "start", "--nodes", "3", "--no-warm-up"], local)
    try:
        rows.append(_measure("this host", f"localhost:{PORT}", profile, out, env))
    finally:
        _bench(["broker", "stop"], local)
    with Hosts(1) as hosts:
        address = hosts.address("h1")
        inside = {**env, "BENCH_BROKER_DIR": str(out / "broker-netns"), "BENCH_BROKER_HOST": address}
        in_ns = hosts.command("h1", [])
        _bench(["broker", "start", "--nodes", "3", "--no-warm-up"], inside, in_ns)
        try:
            rows.append(_measure("namespace host", f"{address}:{PORT}", profile, out, env))
        finally:
            _bench(["broker", "stop"], inside, in_ns)
    click.echo(f"{'cluster':16} {'acks=all p50 us':>16} {'acks=1 p50 us':>14} {'replication us':>15} "
               f"{'handshake us':>13} {'loopback us':>12} {'network rtt us':>15}")
    for r in rows:
        click.echo(f"{r['placement']:16} {r['acks_all_p50_us']:16.0f} {r['acks_1_p50_us']:14.0f} "
                   f"{r['replication_us']:15.0f} {r['handshake_us']:13.0f} {r['loopback_handshake_us']:12.0f} "
                   f"{r['network_rtt_us']:15.0f}")
    click.echo(f"profiles: {out}")


if __name__ == "__main__":
    main()
