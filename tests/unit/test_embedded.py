"""The embedded broker's pure parts (starting one is tested in tests/integration/test_broker.py)."""
from __future__ import annotations

from bench.broker import embedded


def test_cluster_ids_never_start_with_a_dash():
    # One in 64 random ids did, and `kafka-storage format -t -...` read it as an option.
    assert not any(embedded._cluster_id().startswith("-") for _ in range(2000))
