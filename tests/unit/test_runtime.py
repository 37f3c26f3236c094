"""The service runtime's offset bookkeeping (its loop on a real broker: tests/integration)."""
from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import pytest
from confluent_kafka import KafkaException

from bench.run.runtime import OutputNotDelivered, Service, _Batch


class _Consumer:
    def __init__(self) -> None:
        self.stored: list = []

    def store_offsets(self, offsets) -> None:
        self.stored += [(tp.topic, tp.partition, tp.offset) for tp in offsets]


def _service(*batches: _Batch) -> SimpleNamespace:
    return SimpleNamespace(unacked=deque(batches), owned={("t", 0)}, consumer=_Consumer(),
                           spec=SimpleNamespace(client_id="payment-0"))


def _batch(offset: int, failed: bool = False) -> _Batch:
    batch = _Batch()
    batch.offsets[("t", 0)] = offset
    batch.failed = failed
    return batch


def test_acknowledged_batches_are_stored_in_order_and_a_pending_one_holds_the_rest():
    pending = _batch(30)
    pending.pending = 1
    service = _service(_batch(10), _batch(20), pending, _batch(40))
    Service._store_acknowledged(service)
    assert service.consumer.stored == [("t", 0, 10), ("t", 0, 20)]
    assert list(service.unacked) == [pending, service.unacked[1]]


def test_an_output_not_delivered_stops_before_its_offsets_or_any_later_ones_are_stored():
    failed = _batch(20, failed=True)
    service = _service(_batch(10), failed, _batch(30))
    with pytest.raises(OutputNotDelivered):
        Service._store_acknowledged(service)
    assert service.consumer.stored == [("t", 0, 10)]
    assert service.unacked[0] is failed  # still there: a second attempt (revoke, then close) raises again
    with pytest.raises(OutputNotDelivered):
        Service._store_acknowledged(service)
    assert not issubclass(OutputNotDelivered, KafkaException)  # the commit paths' `except KafkaException` let it pass
