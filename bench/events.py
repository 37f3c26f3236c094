"""The order saga's vocabulary: topic names, event statuses, the wire format.

Every message is a JSON object keyed by its ``orderId`` (so all events of one
order land on the same partition, in order). Fields every event carries:

- ``orderId``: str
- ``status``: what happened (an event) or, for commands, ``command``: what to do
- ``t0_us``: the order's *intended* start, wall clock in microseconds; carried
  along unchanged so any reader can compute end-to-end latency on one clock
- ``ts_us``: wall clock in microseconds when this message was produced; the
  audit derives per-step latency from consecutive ``ts_us`` of one order

Business outcomes are decided by :func:`decide`, a hash of the order id, so a
redelivered or retried step takes the same decision and the audit can predict
how every order must end.
"""
from __future__ import annotations

import hashlib
import time

import orjson

# Entry and exit, shared by both patterns.
ORDER_CREATED = "order-created"
ORDER_EVENTS = "order-events"  # terminal: completed | cancelled; read by the load generator

# Choreography: each service publishes its facts on its own topic.
PAYMENT_EVENTS = "payment-events"
INVENTORY_EVENTS = "inventory-events"
SHIPPING_EVENTS = "shipping-events"

# Orchestration: commands on topics named from the tutorial's `order-processor`.
COMMAND_TOPIC_PREFIX = "order-processor"
PAYMENT_COMMANDS = "order-processor-payment"
INVENTORY_COMMANDS = "order-processor-inventory"
SHIPPING_COMMANDS = "order-processor-shipping"
REPLIES = "order-processor-replies"
SAGA_STATE = "order-processor-saga-state"  # compacted, keyed by orderId

DEAD_LETTER = "bench-dead-letter"

# Keys of the records the poison fault injects: the audit sets them (and their dead letters)
# apart, so what a fault put on purpose is not taken for what the run broke.
POISON_KEY_PREFIX = "bench-poison-"

# Statuses.
CREATED, COMPLETED, CANCELLED = "created", "completed", "cancelled"
CHARGED, DECLINED, REFUNDED = "charged", "declined", "refunded"
RESERVED, OUT_OF_STOCK, RELEASED = "reserved", "out-of-stock", "released"
SHIPPED, REFUSED = "shipped", "refused"
TERMINAL = (COMPLETED, CANCELLED)

# Commands (orchestration) and the statuses a service may answer them with.
CHARGE, REFUND = "charge", "refund"
RESERVE, RELEASE = "reserve", "release"
SHIP = "ship"
REPLIES_TO = {
    CHARGE: (CHARGED, DECLINED),
    REFUND: (REFUNDED,),
    RESERVE: (RESERVED, OUT_OF_STOCK),
    RELEASE: (RELEASED,),
    SHIP: (SHIPPED, REFUSED),
}

# Which business step a failure probability belongs to, by workload key.
FAILURE_STEPS = ("payment", "inventory", "shipping")


def now_us() -> int:
    return time.time_ns() // 1000


def encode(event: dict) -> bytes:
    return orjson.dumps(event)


def decode(raw: bytes) -> dict:
    """Decode one message value; raises ValueError on anything that is not a JSON object."""
    event = orjson.loads(raw)
    if not isinstance(event, dict) or "orderId" not in event:
        raise ValueError("not an order event")
    return event


def decide(order_id: str, step: str, failure_probability: float) -> bool:
    """True when ``step`` succeeds for this order. Deterministic in the order id."""
    if failure_probability <= 0.0:
        return True
    digest = hashlib.blake2b(f"{order_id}/{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 >= failure_probability


def expected_outcome(order_id: str, failures: dict[str, float]) -> str:
    """How the saga must end for this order under the workload's failure probabilities."""
    for step in FAILURE_STEPS:
        if not decide(order_id, step, failures.get(step, 0.0)):
            return CANCELLED
    return COMPLETED


def follow(source: dict, **fields) -> dict:
    """A new event about the same order, carrying its intended start along."""
    return {"orderId": source["orderId"], "t0_us": source.get("t0_us"), **fields}
