"""The business steps of the order saga, shared by both patterns.

Each service keeps a ledger of what it did per order, so a redelivered or
retried request is answered with the original outcome and applied once
(no double charge, no double reservation). Outcomes come from
:func:`bench.events.decide`, so every instance decides the same way.
"""
from __future__ import annotations

from collections import OrderedDict

from bench import events as ev

# A bounded ledger: redeliveries arrive within seconds, not hours.
LEDGER_SIZE = 500_000


class Ledger:
    """orderId -> last applied status, with insertion-order eviction."""

    def __init__(self, size: int = LEDGER_SIZE) -> None:
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._size = size

    def get(self, order_id: str) -> str | None:
        return self._entries.get(order_id)

    def put(self, order_id: str, status: str) -> None:
        self._entries[order_id] = status
        self._entries.move_to_end(order_id)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)


class Step:
    """One business step with a forward action and its compensation.

    ``apply`` and ``compensate`` return ``(status, fresh)``: the outcome, and
    whether this call changed anything (False for a duplicate request, whose
    answer repeats the original outcome).
    """

    def __init__(self, name: str, failure_probability: float, ok: str, failed: str, undone: str | None) -> None:
        self.name = name
        self.failure_probability = failure_probability
        self.ok, self.failed, self.undone = ok, failed, undone
        self.ledger = Ledger()
        self.absorbed = 0  # repeated requests answered from the ledger, not applied again

    def apply(self, order_id: str) -> tuple[str, bool]:
        done = self.ledger.get(order_id)
        if done is not None:
            # Already applied, or already compensated: a late duplicate must not re-apply it.
            self.absorbed += 1
            return done, False
        status = self.ok if ev.decide(order_id, self.name, self.failure_probability) else self.failed
        self.ledger.put(order_id, status)
        return status, True

    def remember(self, order_id: str, status: str) -> None:
        """Replay one of this step's own past outcomes (state restore after a crash)."""
        if status in (self.ok, self.failed, self.undone):
            self.ledger.put(order_id, status)

    def compensate(self, order_id: str) -> tuple[str, bool]:
        done = self.ledger.get(order_id)
        if done == self.undone:
            self.absorbed += 1
            return self.undone, False
        self.ledger.put(order_id, self.undone)
        # Compensating something never applied (a timed-out request) is a no-op that still answers.
        return self.undone, done == self.ok


def payment(failures) -> Step:
    return Step("payment", failures.get("payment", 0.0), ev.CHARGED, ev.DECLINED, ev.REFUNDED)


def inventory(failures) -> Step:
    return Step("inventory", failures.get("inventory", 0.0), ev.RESERVED, ev.OUT_OF_STOCK, ev.RELEASED)


def shipping(failures) -> Step:
    return Step("shipping", failures.get("shipping", 0.0), ev.SHIPPED, ev.REFUSED, None)


STEPS = {"payment": payment, "inventory": inventory, "shipping": shipping}
