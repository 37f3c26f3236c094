"""Choreography: services react to each other's facts; no one is in charge.

    order-created --payment--> payment-events --inventory--> inventory-events --shipping--> shipping-events
Compensation runs backwards: shipping refused -> inventory releases -> payment refunds;
out of stock -> payment refunds. The order service turns the facts that end a
saga (declined, refunded, shipped) into the terminal event on order-events.
"""
from __future__ import annotations

from bench import events as ev
from bench import services
from bench.patterns.base import Outbox, Pattern
from bench.workload import Workload


class _StepService:
    """A service whose ledger is rebuilt from the facts it published itself."""

    step: services.Step

    @property
    def absorbed(self) -> int:
        return self.step.absorbed

    def tick(self, now_s: float, out: Outbox) -> None:
        pass

    def restore(self, records, out: Outbox) -> None:
        for _topic, event in records:
            self.step.remember(event["orderId"], event.get("status"))

    def revoke(self, partitions: set[int]) -> None:
        pass


class PaymentService(_StepService):
    def __init__(self, workload: Workload) -> None:
        self.step = services.payment(workload.failures)

    def handle(self, topic: str, partition: int, event: dict, out: Outbox) -> None:
        status = event.get("status")
        if topic == ev.ORDER_CREATED:
            result, fresh = self.step.apply(event["orderId"])
        elif status in (ev.OUT_OF_STOCK, ev.RELEASED):
            result, fresh = self.step.compensate(event["orderId"])
        else:
            return
        if fresh:
            out.emit(ev.PAYMENT_EVENTS, ev.follow(event, status=result))


class InventoryService(_StepService):
    def __init__(self, workload: Workload) -> None:
        self.step = services.inventory(workload.failures)

    def handle(self, topic: str, partition: int, event: dict, out: Outbox) -> None:
        status = event.get("status")
        if status == ev.CHARGED:
            result, fresh = self.step.apply(event["orderId"])
        elif status == ev.REFUSED:
            result, fresh = self.step.compensate(event["orderId"])
        else:
            return
        if fresh:
            out.emit(ev.INVENTORY_EVENTS, ev.follow(event, status=result))


class ShippingService(_StepService):
    def __init__(self, workload: Workload) -> None:
        self.step = services.shipping(workload.failures)

    def handle(self, topic: str, partition: int, event: dict, out: Outbox) -> None:
        if event.get("status") != ev.RESERVED:
            return
        result, fresh = self.step.apply(event["orderId"])
        if fresh:
            out.emit(ev.SHIPPING_EVENTS, ev.follow(event, status=result))


class OrderService(_StepService):
    """Ends the saga: each ending has exactly one last fact, so it only remembers what it ended."""

    ENDINGS = {ev.SHIPPED: ev.COMPLETED, ev.DECLINED: ev.CANCELLED, ev.REFUNDED: ev.CANCELLED}

    def __init__(self, workload: Workload) -> None:
        self.ended = services.Ledger()
        self._absorbed = 0

    @property
    def absorbed(self) -> int:
        return self._absorbed

    def handle(self, topic: str, partition: int, event: dict, out: Outbox) -> None:
        ending = self.ENDINGS.get(event.get("status"))
        if ending is None:
            return
        if self.ended.get(event["orderId"]) is not None:
            self._absorbed += 1
            return
        self.ended.put(event["orderId"], ending)
        out.emit(ev.ORDER_EVENTS, ev.follow(event, status=ending))

    def restore(self, records, out: Outbox) -> None:
        for _topic, event in records:
            self.ended.put(event["orderId"], event.get("status"))


CHOREOGRAPHY = Pattern(
    name="choreography",
    subscriptions={
        "order": (ev.PAYMENT_EVENTS, ev.SHIPPING_EVENTS),
        "payment": (ev.ORDER_CREATED, ev.INVENTORY_EVENTS),
        "inventory": (ev.PAYMENT_EVENTS, ev.SHIPPING_EVENTS),
        "shipping": (ev.INVENTORY_EVENTS,),
    },
    topics=(ev.ORDER_CREATED, ev.PAYMENT_EVENTS, ev.INVENTORY_EVENTS, ev.SHIPPING_EVENTS, ev.ORDER_EVENTS, ev.DEAD_LETTER),
    handlers={"order": OrderService, "payment": PaymentService, "inventory": InventoryService, "shipping": ShippingService},
    restore_from={"order": (ev.ORDER_EVENTS,), "payment": (ev.PAYMENT_EVENTS,), "inventory": (ev.INVENTORY_EVENTS,),
                  "shipping": (ev.SHIPPING_EVENTS,)},
)
