"""The model's clock: a SimPy environment that can also call a function later, cheaply.

Nearly every event of the model is "call this at that time" (a batch reaching its
leader, a batch replicated, an instance done with a batch): 1.2 to 1.7 million of
them for 7 s at 50,000 orders/s. As a ``simpy.Timeout`` with an appended callback
each cost an Event, a Timeout, a callbacks list and SimPy's dispatch. A call-later
is a bare ``(time, priority, id, fn)`` entry on a heap of its own, keyed as the
Timeout made at the same moment would be (same priority, an id from SimPy's own
counter), and the clock always runs whichever of the two heaps' first entries
comes first: events run in the same order as with Timeouts, so a seeded run
gives the same numbers. SimPy processes (the periodic updates, the load
generator, faults) run as ever.
"""
from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush

import simpy
from simpy.core import EmptySchedule, Infinity
from simpy.events import NORMAL


class Clock(simpy.Environment):
    def __init__(self) -> None:
        super().__init__()
        self._calls: list[tuple[float, int, int, Callable[[], None]]] = []

    def call_in(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Call ``fn()`` ``delay_s`` from now, ordered among other events as a Timeout made now would be."""
        if delay_s < 0:
            raise ValueError(f"negative delay {delay_s}")
        heappush(self._calls, (self._now + delay_s, NORMAL, next(self._eid), fn))

    def peek(self) -> float:
        calls, queue = self._calls, self._queue
        return min(calls[0][0] if calls else Infinity, queue[0][0] if queue else Infinity)

    def step(self) -> None:
        """The next call-later or SimPy event, whichever comes first (ids are unique, so the
        comparison never reaches the callables)."""
        calls, queue = self._calls, self._queue
        if calls and (not queue or calls[0] < queue[0]):
            self._now, _, _, fn = heappop(calls)
            fn()
        elif queue:
            super().step()
        else:
            raise EmptySchedule()

    def run_until(self, until: simpy.Event) -> None:
        """Process events until ``until`` has been processed: ``run(until=until)`` with ``step``
        inlined (a method call per event was 4% of a simulation)."""
        calls, queue = self._calls, self._queue
        while until.callbacks is not None:  # None once processed (only a SimPy event can process it)
            # Call-laters while they come first, without re-checking ``until`` after each (the
            # SimPy queue's head is read again each time: a call may schedule a SimPy event).
            while calls:
                call = calls[0]
                if queue and not call < queue[0]:
                    break
                heappop(calls)
                self._now = call[0]
                call[3]()
            if not queue:
                raise RuntimeError(f"no events left but {until} was not processed")
            self._now, _, _, event = heappop(queue)
            callbacks, event.callbacks = event.callbacks, None
            for callback in callbacks:
                callback(event)
            if not event._ok and not hasattr(event, "_defused"):
                raise event._value
