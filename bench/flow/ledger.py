"""What each step did per order: the ledgers that make a redelivered request harmless.

A step's ledger answers a redelivered or retried request with the original
outcome and applies it once (no double charge, no double reservation).
Outcomes come from :meth:`bench.flow.saga.Step.succeeds`, so every instance decides
the same way.
"""
from __future__ import annotations

from bench.flow.events import decide
from bench.flow.saga import Step

# A bounded ledger: redeliveries arrive within seconds, not hours.
LEDGER_SIZE = 500_000


class Ledger:
    """orderId -> last recorded value; remembers at least the last ``size`` orders written to
    it, and at most twice as many.

    Two generations of plain dicts: once the current one holds ``size`` orders it becomes the
    previous one, and the one before it is dropped whole. Its memory stops growing as soon as
    two generations are full (200 s at 5000 orders/s). An OrderedDict that evicted its oldest
    entry on every insertion kept growing long after it was full: its table's churn of deleted
    slots and its object arenas, alone at 5000 ids/s, went from a 127 MB peak at 5 minutes to
    164 MB from 15 on; this one: 140 MB at 5 minutes and at 30 (benchmarks/ledger_memory.py)."""

    def __init__(self, size: int = LEDGER_SIZE) -> None:
        self._current: dict[str, object] = {}
        self._previous: dict[str, object] = {}
        self._size = size

    def __len__(self) -> int:
        return len(self._current) + sum(1 for k in self._previous if k not in self._current)

    def __bool__(self) -> bool:
        # Asked per message on a handler's path (`if ledger and ...`); without it Python falls
        # back on __len__, which walks the older generation.
        return bool(self._current or self._previous)

    def get(self, order_id: str):
        value = self._current.get(order_id)
        return self._previous.get(order_id) if value is None else value

    def put(self, order_id: str, value) -> None:
        current = self._current
        if len(current) >= self._size and order_id not in current:
            self._previous = current
            self._current = current = {}
        current[order_id] = value

    def pop(self, order_id: str):
        newer = self._current.pop(order_id, None)
        older = self._previous.pop(order_id, None)
        return older if newer is None else newer


class StepLedger:
    """One step's forward action and its compensation, each applied at most once per order.

    ``apply`` and ``compensate`` return ``(status, fresh)``: the outcome, and
    whether this call changed anything (False for a duplicate request, whose
    answer repeats the original outcome).
    """

    def __init__(self, step: Step) -> None:
        self.step = step
        self.ledger = Ledger()
        self.absorbed = 0  # repeated requests answered from the ledger, not applied again
        self._decide = (step.name, step.failure, step.ok, step.failed)  # read per message

    def get(self, order_id: str) -> str | None:
        return self.ledger.get(order_id)

    def apply(self, order_id: str) -> tuple[str, bool]:
        ledger = self.ledger
        done = ledger._current.get(order_id)  # Ledger.get inlined: once per step and order
        if done is None:
            done = ledger._previous.get(order_id)
        if done is not None:
            # Already applied, or already compensated: a late duplicate must not re-apply it.
            self.absorbed += 1
            return done, False
        name, failure, ok, failed = self._decide
        status = ok if decide(order_id, name, failure) else failed
        self.ledger.put(order_id, status)
        return status, True

    def remember(self, order_id: str, status: str) -> None:
        """Replay one of this step's own past outcomes (state restore after a crash)."""
        if status in self.step.facts:
            self.ledger.put(order_id, status)

    def compensate(self, order_id: str) -> tuple[str, bool]:
        undone = self.step.undone
        done = self.ledger.get(order_id)
        if done == undone:
            self.absorbed += 1
            return undone, False
        self.ledger.put(order_id, undone)
        # Compensating something never applied (a timed-out request) is a no-op that still answers.
        return undone, done == self.step.ok
