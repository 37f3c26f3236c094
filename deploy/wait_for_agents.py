"""Wait until every agent that hosts files name (and every --address) accepts connections, then
exit 0; at the timeout, exit 1 naming those that did not (2: a hosts file bench would refuse).

A run's coordinator may start before its agents do (a Kubernetes Job beside a StatefulSet, a
compose service), and `bench run` tries each agent once: an agent not up yet would end the run.
A broker started beside it (docker compose) is waited for the same way.

    python deploy/wait_for_agents.py /config/hosts-orchestration.yaml [...] [--address kafka:19092]
"""
from __future__ import annotations

import argparse
import socket
import sys
import time
from pathlib import Path

from bench.errors import BadInput
from bench.run import control
from bench.run.remote import read_placement

CONNECT_TIMEOUT_S = 2.0
RETRY_S = 2.0


def unreachable(addresses: list[tuple[str, int]]) -> list[str]:
    """The addresses that do not accept a connection now (a name that does not resolve yet, as a
    headless Service's name for a pod not ready, counts as not accepting)."""
    missing = []
    for host, port in addresses:
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
                pass
        except OSError:
            missing.append(f"{host}:{port}")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="wait_for_agents", description="Wait until the agents of hosts files, and other addresses, accept connections.")
    parser.add_argument("hosts", nargs="*", type=Path, help="hosts files (bench run --hosts)")
    parser.add_argument("--address", action="append", default=[], metavar="HOST:PORT",
                        help="another address to wait for (a broker's)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds to wait in all (default 600)")
    args = parser.parse_args(argv)
    try:
        addresses = {host.address for path in args.hosts for host in read_placement(path).hosts}
        addresses |= {control.parse_address(text, "--address") for text in args.address}
    except BadInput as err:
        print(f"wait_for_agents: {err}", file=sys.stderr)
        return 2
    addresses = sorted(addresses)
    deadline = time.monotonic() + args.timeout
    while missing := unreachable(addresses):
        if time.monotonic() >= deadline:
            print(f"wait_for_agents: {len(missing)} of {len(addresses)} addresses not reachable after "
                  f"{args.timeout:.0f} s: {', '.join(missing)}", file=sys.stderr)
            return 1
        time.sleep(RETRY_S)
    print(f"wait_for_agents: all {len(addresses)} addresses accept connections", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
