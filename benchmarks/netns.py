"""Hosts inside one machine: network namespaces on a bridge, an address each (needs root).

    with Hosts(2) as hosts:              # h1, h2; the root namespace is the bridge's .1
        hosts.popen("h1", ["python", "-m", "bench", "agent", "--listen", f"{hosts.address('h1')}:7070"])

Everything is named with a random tag this object chose and is removed on the way out, failure or
not; nothing it did not create is touched. Traffic stays inside: the subnet is 10.231.<n>.0/24,
picked so that no address of this machine is in it, and nothing is routed.
"""
from __future__ import annotations

import random
import secrets
import subprocess


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


class Hosts:
    def __init__(self, count: int) -> None:
        self.tag = secrets.token_hex(3)
        self.bridge = f"bb{self.tag}"
        taken = _ip("-4", "-o", "addr").stdout
        third = next(n for n in random.sample(range(1, 255), 254) if f" 10.231.{n}." not in taken)
        self.prefix = f"10.231.{third}"
        self.names = [f"h{i + 1}" for i in range(count)]
        self.made: list[tuple[str, str]] = []  # ("netns" | "link", name), in the order made

    @property
    def root_address(self) -> str:
        """This (the root) namespace's address on the bridge: where a broker the hosts reach listens."""
        return f"{self.prefix}.1"

    def address(self, host: str) -> str:
        return f"{self.prefix}.{self.names.index(host) + 2}"

    def namespace(self, host: str) -> str:
        return f"bench-{self.tag}-{host}"

    def __enter__(self) -> "Hosts":
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            self.made.append(("link", self.bridge))
            _ip("addr", "add", f"{self.root_address}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, host in enumerate(self.names):
                ns, outside, inside = self.namespace(host), f"vr{self.tag}{i}", f"vn{self.tag}{i}"
                _ip("netns", "add", ns)
                self.made.append(("netns", ns))
                _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
                self.made.append(("link", outside))
                _ip("link", "set", inside, "netns", ns)
                _ip("link", "set", outside, "master", self.bridge, "up")
                _ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", inside)
                _ip("-n", ns, "link", "set", inside, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove what this object made (processes still inside a namespace are the caller's to stop)."""
        for kind, name in reversed(self.made):
            if kind == "netns":
                _ip("netns", "del", name, check=False)
            else:
                _ip("link", "del", name, check=False)
        self.made.clear()

    def command(self, host: str, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(host), *argv]

    def popen(self, host: str, argv: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.command(host, argv), **kwargs)
