"""The wire format and the names every saga shares: entry and exit topics, order statuses.

Each step's own statuses, commands and topics are derived in :mod:`bench.flow.saga`.

Every message is a JSON object keyed by its ``orderId`` (so all events of one
order land on the same partition, in order). Fields every event carries:

- ``orderId``: str
- ``status``: what happened (an event) or, for commands, ``command``: what to do
- ``t0_us``: the order's *intended* start, in microseconds of the monotonic
  clock of the process that started it (:func:`now_us`); carried along unchanged
  so that process computes end-to-end latency on one clock
- ``ts_us``: :func:`now_us` when this message was produced; the audit derives
  per-step latency from consecutive ``ts_us`` of one order

Both stamps are CLOCK_MONOTONIC, never the wall clock: nothing steps or slews it
mid-run, and every process on one machine reads the same one, so a span between
two processes of one host is exact. Monotonic clocks of different hosts start at
different times (boot): a span between hosts needs their measured offset.

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

# Each step's own topics (choreography's <step>-events, orchestration's
# order-processor-<step>) are named by bench.flow.saga.

# Orchestration: command topics are named from the tutorial's `order-processor`.
COMMAND_TOPIC_PREFIX = "order-processor"
REPLIES = "order-processor-replies"
SAGA_STATE = "order-processor-saga-state"  # compacted, keyed by orderId

DEAD_LETTER = "bench-dead-letter"

# Keys of the records the poison fault injects: the audit sets them (and their dead letters)
# apart, so what a fault put on purpose is not taken for what the run broke.
POISON_KEY_PREFIX = "bench-poison-"

# Order statuses; each step's statuses come from bench.flow.saga.
CREATED, COMPLETED, CANCELLED = "created", "completed", "cancelled"
TERMINAL = (COMPLETED, CANCELLED)


def now_us() -> int:
    """Microseconds on CLOCK_MONOTONIC: shared by every process of this machine, never stepped."""
    return time.monotonic_ns() // 1000


def encode(event: dict) -> bytes:
    return orjson.dumps(event)


loads = orjson.loads  # raises a ValueError on what is not JSON; decode() is the whole rule


def decode(raw: bytes) -> dict:
    """Decode one message value; raises ValueError on anything that is not a JSON object."""
    event = loads(raw)
    if not isinstance(event, dict) or "orderId" not in event:
        raise ValueError("not an order event")
    return event


def decide(order_id: str, step: str, failure_probability: float) -> bool:
    """True when ``step`` succeeds for this order. Deterministic in the order id: the hash's first
    8 bytes, as a fraction of 2**64, at or above ``failure_probability``."""
    if failure_probability <= 0.0:
        return True
    threshold = _THRESHOLDS.get(failure_probability)
    if threshold is None:
        threshold = _THRESHOLDS[failure_probability] = _threshold(failure_probability)
    return int.from_bytes(_blake2b(f"{order_id}/{step}".encode(), digest_size=8).digest()) >= threshold


_blake2b = hashlib.blake2b
_THRESHOLDS: dict[float, int] = {}  # failure probability -> _threshold's answer


def _threshold(probability: float) -> int:
    """The least ``v`` with ``v / 2**64 >= probability`` (2**64 when none): comparing the hash as an
    integer with it decides exactly as the float division would (that division rounds correctly, so
    it never falls as ``v`` grows), without a big-integer division per decision (a quarter of
    decide's time, which every step pays per order in the real runtime and the model alike)."""
    low, high = 0, 2**64
    while low < high:
        middle = (low + high) // 2
        if middle / 2**64 >= probability:
            high = middle
        else:
            low = middle + 1
    return low


def follow(source: dict, **fields) -> dict:
    """A new event about the same order, carrying its intended start along."""
    return {"orderId": source["orderId"], "t0_us": source.get("t0_us"), **fields}
