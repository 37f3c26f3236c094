"""Orchestration: a central orchestrator commands the services and drives compensation.

The orchestrator consumes order-created and the services' replies, sends
commands on ``order-processor-<service>`` topics, and writes every saga
transition to the compacted ``order-processor-saga-state`` topic *in the same
batch as the command it causes*, so a restarted orchestrator resumes from
Kafka: it re-sends each in-flight saga's pending command, and the services'
ledgers answer a repeated command without applying it twice.

A saga's last state record and its terminal event on order-events go to
different partitions, so a crash can leave either one without the other; the
restore reads both topics and re-emits a terminal event only where it is missing.

A step that does not answer in time is re-sent with its timeout doubled each
attempt (capped), and retries draw on a budget earned by fresh commands: when
every reply is late because the system is backlogged (a cold or failed-over
cluster), re-sending every in-flight command would double the load on a system
already behind, and it would never catch up.
"""
from __future__ import annotations

import heapq

from bench import events as ev
from bench import services
from bench.patterns.base import Outbox, Pattern, Stateless
from bench.workload import Workload

COMMAND_TOPIC = {
    ev.CHARGE: ev.PAYMENT_COMMANDS, ev.REFUND: ev.PAYMENT_COMMANDS,
    ev.RESERVE: ev.INVENTORY_COMMANDS, ev.RELEASE: ev.INVENTORY_COMMANDS,
    ev.SHIP: ev.SHIPPING_COMMANDS,
}
COMPENSATIONS = (ev.REFUND, ev.RELEASE)
# Asked again until answered, never given up on: a compensation (giving up would leave money
# taken or stock held) and shipping, the saga's pivot (it cannot be undone, so an order whose
# shipment may still happen late must not be cancelled).
RETRIED_UNTIL_ANSWERED = (*COMPENSATIONS, ev.SHIP)
MAX_BACKOFF = 8  # a step's timeout grows 1x, 2x, 4x, 8x, 8x ... the workload's step_timeout

# Reply to the awaited command -> (what the saga now holds, next command or a terminal status).
TRANSITIONS = {
    (ev.CHARGE, ev.CHARGED): ({"charged": True}, ev.RESERVE),
    (ev.CHARGE, ev.DECLINED): ({}, ev.CANCELLED),
    (ev.RESERVE, ev.RESERVED): ({"reserved": True}, ev.SHIP),
    (ev.RESERVE, ev.OUT_OF_STOCK): ({}, ev.REFUND),
    (ev.SHIP, ev.SHIPPED): ({}, ev.COMPLETED),
    (ev.SHIP, ev.REFUSED): ({}, ev.RELEASE),
    (ev.RELEASE, ev.RELEASED): ({"reserved": False}, None),
    (ev.REFUND, ev.REFUNDED): ({"charged": False}, None),
}


class RetryBudget:
    """Retries may add at most ``RATIO`` of the fresh commands, plus ``FLOOR_PER_S`` a second
    so a quiet system can still retry (the scheme of Finagle's retry budget)."""

    RATIO = 0.1
    FLOOR_PER_S = 10.0
    CAP = 1000.0

    def __init__(self) -> None:
        self.tokens = self.FLOOR_PER_S
        self.last_s: float | None = None

    def deposit(self) -> None:
        self.tokens = min(self.CAP, self.tokens + self.RATIO)

    def withdraw(self, now_s: float) -> bool:
        if self.last_s is not None:
            self.tokens = min(self.CAP, self.tokens + (now_s - self.last_s) * self.FLOOR_PER_S)
        self.last_s = now_s
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


def _backoff(attempt: int) -> int:
    return min(2 ** (attempt - 1), MAX_BACKOFF)


def _undo(saga: dict) -> str:
    """The next compensation, or cancelled once nothing is left to undo."""
    if saga.get("reserved"):
        return ev.RELEASE
    if saga.get("charged"):
        return ev.REFUND
    return ev.CANCELLED


class Orchestrator:
    def __init__(self, workload: Workload) -> None:
        self.timeout_s = workload.step_timeout_s
        self.retries = workload.step_retries
        self.sagas: dict[str, dict] = {}
        self.finished = services.Ledger()
        self.deadlines: list[tuple[float, str, str, int]] = []  # (deadline, orderId, command, attempt)
        self.budget = RetryBudget()
        self.now_s = 0.0
        self.absorbed = 0  # repeated order-created and stale or repeated replies, ignored

    def handle(self, topic: str, partition: int, event: dict, out: Outbox) -> None:
        order_id = event["orderId"]
        if topic == ev.ORDER_CREATED:
            if order_id in self.sagas or self.finished.get(order_id):
                self.absorbed += 1
                return
            # `p`: the partition this saga lives on (all its topics are keyed and
            # partitioned alike), so a rebalance can hand it to another instance.
            saga = {"orderId": order_id, "t0_us": event.get("t0_us"), "p": partition, "charged": False, "reserved": False}
            self._advance(saga, ev.CHARGE, out)
            return
        saga = self.sagas.get(order_id)
        if saga is None:
            self.absorbed += 1  # a reply for a saga already finished
            return
        transition = TRANSITIONS.get((saga["awaiting"], event.get("status")))
        if transition is None:
            self.absorbed += 1  # a stale or repeated reply to an earlier command
            return
        holds, nxt = transition
        saga.update(holds)
        if nxt is None or (nxt == ev.REFUND and not saga["charged"]):
            nxt = _undo(saga)
        self._advance(saga, nxt, out)

    def _advance(self, saga: dict, nxt: str, out: Outbox, attempt: int = 1) -> None:
        order_id = saga["orderId"]
        if nxt in ev.TERMINAL:
            self.sagas.pop(order_id, None)
            self.finished.put(order_id, nxt)
            out.emit(ev.SAGA_STATE, {**saga, "awaiting": None, "outcome": nxt})
            out.emit(ev.ORDER_EVENTS, ev.follow(saga, status=nxt))
            return
        saga["awaiting"], saga["attempt"] = nxt, attempt
        self.sagas[order_id] = saga
        out.emit(ev.SAGA_STATE, dict(saga))
        out.emit(COMMAND_TOPIC[nxt], ev.follow(saga, command=nxt, attempt=attempt))
        if attempt == 1:
            self.budget.deposit()
        self._arm(order_id, nxt, attempt)

    def _arm(self, order_id: str, command: str, attempt: int) -> None:
        heapq.heappush(self.deadlines, (self.now_s + self.timeout_s * _backoff(attempt), order_id, command, attempt))

    def tick(self, now_s: float, out: Outbox) -> None:
        self.now_s = now_s
        while self.deadlines and self.deadlines[0][0] <= now_s:
            _, order_id, command, attempt = heapq.heappop(self.deadlines)
            saga = self.sagas.get(order_id)
            if saga is None or saga["awaiting"] != command or saga["attempt"] != attempt:
                continue  # answered in time, or already retried
            if attempt <= self.retries or command in RETRIED_UNTIL_ANSWERED:
                if self.budget.withdraw(now_s):
                    self._advance(saga, command, out, attempt + 1)
                else:
                    self._arm(order_id, command, attempt)  # over budget: keep waiting for the answer
            else:
                # The step may still happen late; undo it as if it had (the service's ledger
                # then turns the late request into a no-op).
                if saga["awaiting"] == ev.CHARGE:
                    saga["charged"] = True
                elif saga["awaiting"] == ev.RESERVE:
                    saga["reserved"] = True
                saga["timed_out"] = saga["awaiting"]
                self._advance(saga, _undo(saga), out)

    def restore(self, records, out: Outbox) -> None:
        state: dict[str, dict] = {}
        ended: dict[str, str] = {}  # orderId -> the status of its terminal event on order-events
        for topic, event in records:
            if topic == ev.SAGA_STATE:
                state[event["orderId"]] = event  # the latest transition wins, as compaction keeps it
            elif event.get("status") in ev.TERMINAL:
                ended.setdefault(event["orderId"], event["status"])
        for order_id, status in ended.items():
            self.finished.put(order_id, status)
        for order_id, saga in state.items():
            if order_id in ended:
                continue
            outcome = saga.get("outcome")
            if outcome:
                # The state says finished but the terminal event never made it: send it now.
                self.finished.put(order_id, outcome)
                out.emit(ev.ORDER_EVENTS, ev.follow(saga, status=outcome))
            elif order_id not in self.sagas and saga.get("awaiting"):
                self._advance(dict(saga), saga["awaiting"], out, saga.get("attempt", 1) + 1)

    def revoke(self, partitions: set[int]) -> None:
        for order_id in [o for o, saga in self.sagas.items() if saga.get("p") in partitions]:
            del self.sagas[order_id]


class CommandedService(Stateless):
    """A service that does what the orchestrator says and always answers."""

    service = ""

    def __init__(self, workload: Workload) -> None:
        self.step = services.STEPS[self.service](workload.failures)

    @property
    def absorbed(self) -> int:
        return self.step.absorbed

    def restore(self, records, out: Outbox) -> None:
        for _topic, reply in records:
            if reply.get("service") == self.service and not reply.get("replay"):
                self.step.remember(reply["orderId"], reply.get("status"))

    def handle(self, topic: str, partition: int, event: dict, out: Outbox) -> None:
        command = event.get("command")
        if command in (ev.REFUND, ev.RELEASE):
            status, fresh = self.step.compensate(event["orderId"])
        elif command in (ev.CHARGE, ev.RESERVE, ev.SHIP):
            status, fresh = self.step.apply(event["orderId"])
        else:
            return
        reply = ev.follow(event, status=status, service=self.service, attempt=event.get("attempt", 1))
        if not fresh:
            reply["replay"] = True  # the answer to a repeated command; nothing was applied
        out.emit(ev.REPLIES, reply)


class PaymentService(CommandedService):
    service = "payment"


class InventoryService(CommandedService):
    service = "inventory"


class ShippingService(CommandedService):
    service = "shipping"


ORCHESTRATION = Pattern(
    name="orchestration",
    subscriptions={
        "orchestrator": (ev.ORDER_CREATED, ev.REPLIES),
        "payment": (ev.PAYMENT_COMMANDS,),
        "inventory": (ev.INVENTORY_COMMANDS,),
        "shipping": (ev.SHIPPING_COMMANDS,),
    },
    topics=(ev.ORDER_CREATED, ev.PAYMENT_COMMANDS, ev.INVENTORY_COMMANDS, ev.SHIPPING_COMMANDS,
            ev.REPLIES, ev.SAGA_STATE, ev.ORDER_EVENTS, ev.DEAD_LETTER),
    handlers={"orchestrator": Orchestrator, "payment": PaymentService, "inventory": InventoryService,
              "shipping": ShippingService},
    # The orchestrator's own output is its saga state and the terminal events it sent.
    restore_from={"orchestrator": (ev.SAGA_STATE, ev.ORDER_EVENTS), "payment": (ev.REPLIES,),
                  "inventory": (ev.REPLIES,), "shipping": (ev.REPLIES,)},
    compacted=(ev.SAGA_STATE,),
)
