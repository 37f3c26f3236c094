"""Shared fixtures. Broker tests run on a real Kafka: the one at BENCH_BOOTSTRAP_SERVERS,
the embedded broker already running, or one this session starts (and stops).
A broker that cannot start fails the tests that need it; it never skips them."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def bootstrap_servers() -> str:
    configured = os.environ.get("BENCH_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    from bench.broker import embedded

    cluster = embedded.running()
    if cluster is not None:
        yield cluster.bootstrap_servers
        return
    cluster = embedded.start()
    try:
        yield cluster.bootstrap_servers
    finally:
        embedded._kill(cluster)
