"""The control plane between a run's coordinator and the agents on other hosts: HTTP, JSON bodies,
every command signed with the run's shared secret.

HTTP, as OpenMessaging Benchmark's workers do, rather than topics on the cluster: a command to kill
or restart a service, or to stop a broker node, must get through while the cluster itself is failing
over, and an agent must be reachable before any broker runs.

Who may command an agent: whoever holds the shared secret. The secret never crosses the wire and
never appears in an argument list, a log or an error: each request carries an HMAC-SHA256 of its
method, path and body under the secret, keyed to a session the agent issued and a counter that must
rise within it, so a request seen on the network cannot be replayed or altered. (The commands are
not secret, only authenticated: client credentials for Kafka stay in each host's own properties file.)
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import signal
from pathlib import Path

from bench import inputs
from bench.errors import BadInput

SECRET_ENV = "BENCH_AGENT_SECRET"
_from_env: str | None = None  # the secret once taken out of the environment (see read_secret)
MIN_SECRET_BYTES = 16
HEADER = "X-Bench-Auth"  # session=<hex>;counter=<n>;mac=<hex>
_HEADER = re.compile(r"^session=([0-9a-f]{32});counter=([0-9]{1,18});mac=([0-9a-f]{64})$")


def read_secret(path: Path | None) -> bytes:
    """The shared secret: the file ``path`` (its first line), else ${BENCH_AGENT_SECRET}. Never
    quoted back: a problem names where it came from and what is wrong with it."""
    if path is not None:
        where = f"agent secret file {path}"
        text = inputs.read_text(path, "agent secret file", BadInput)
        lines = text.splitlines()
        secret = lines[0].strip() if lines else ""
    else:
        global _from_env
        where = f"${SECRET_ENV}"
        # Taken out of the environment on first read: every process bench starts (services, the
        # live audit, the broker's JVM) inherits the environment, and none of them needs it.
        if _from_env is None and SECRET_ENV in os.environ:
            _from_env = os.environ.pop(SECRET_ENV)
        secret = (_from_env or "").strip()
        if not secret:
            raise BadInput(f"no agent secret: set {SECRET_ENV}, or give --secret-file (a file only you can read)")
    data = secret.encode("utf-8", "surrogateescape")
    if len(data) < MIN_SECRET_BYTES:
        raise BadInput(f"{where}: the secret is shorter than {MIN_SECRET_BYTES} bytes: use a random one, "
                       "e.g. `openssl rand -hex 32`")
    return data


# The signals an agent passes on, by name: what the faults need (kill; pause and resume; a
# service's slow-down on and off, SIGUSR1/SIGUSR2), and SIGTERM to stop.
SIGNALS = {"KILL": signal.SIGKILL, "STOP": signal.SIGSTOP, "CONT": signal.SIGCONT, "TERM": signal.SIGTERM,
           "USR1": signal.SIGUSR1, "USR2": signal.SIGUSR2}


def parse_address(text: str, what: str, error: type[BadInput] = BadInput) -> tuple[str, int]:
    """``ADDRESS:PORT`` (an agent's) as (address, port); one line naming ``what`` otherwise."""
    host, sep, port = text.rpartition(":") if isinstance(text, str) else ("", "", "")
    if not sep or not host or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise error(f"{what}: not ADDRESS:PORT (e.g. 10.0.0.2:7070)")
    return host.strip("[]"), int(port)


def mac(secret: bytes, session: str, counter: int, method: str, path: str, body: bytes) -> str:
    message = b"\n".join([session.encode(), str(counter).encode(), method.encode(), path.encode(), body])
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def header(secret: bytes, session: str, counter: int, method: str, path: str, body: bytes) -> str:
    return f"session={session};counter={counter};mac={mac(secret, session, counter, method, path, body)}"


def parse_header(value: str | None) -> tuple[str, int, str] | None:
    """(session, counter, mac) of a well-formed header; None otherwise."""
    match = _HEADER.match(value or "")
    return (match.group(1), int(match.group(2)), match.group(3)) if match else None


def valid(secret: bytes, session: str, counter: int, received_mac: str, method: str, path: str, body: bytes) -> bool:
    return hmac.compare_digest(mac(secret, session, counter, method, path, body), received_mac)
