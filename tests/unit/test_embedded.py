"""The embedded broker's pure parts (starting one is tested in tests/integration/test_broker.py)."""
from __future__ import annotations

from bench.broker import embedded


def test_cluster_ids_never_start_with_a_dash():
    # One in 64 random ids did, and `kafka-storage format -t -...` read it as an option.
    assert not any(embedded.new_cluster_id().startswith("-") for _ in range(2000))


def test_a_corrupt_state_file_is_one_line(tmp_path):
    import pytest

    from bench.kafka.errors import BrokerError

    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(BrokerError) as err:
        embedded.Cluster.load(tmp_path)
    assert "not a bench broker state file" in str(err.value) and "\n" not in str(err.value)
