"""Choreography: services react to each other's facts; no one is in charge.

    order-created --payment--> payment-events --inventory--> inventory-events --shipping--> shipping-events
Compensation runs backwards: shipping refused -> inventory releases -> payment refunds;
out of stock -> payment refunds. The order service turns the facts that end a
saga (declined, refunded, shipped) into the terminal event on order-events.
"""
from __future__ import annotations

from bench import events as ev
from bench import services
from bench.patterns.base import Outbox, Pattern, Stateless
from bench.workload import Workload


class PaymentService(Stateless):
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


class InventoryService(Stateless):
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


class ShippingService(Stateless):
    def __init__(self, workload: Workload) -> None:
        self.step = services.shipping(workload.failures)

    def handle(self, topic: str, partition: int, event: dict, out: Outbox) -> None:
        if event.get("status") != ev.RESERVED:
            return
        result, fresh = self.step.apply(event["orderId"])
        if fresh:
            out.emit(ev.SHIPPING_EVENTS, ev.follow(event, status=result))


class OrderService(Stateless):
    """Ends the saga. Stateless because each ending has exactly one last fact."""

    ENDINGS = {ev.SHIPPED: ev.COMPLETED, ev.DECLINED: ev.CANCELLED, ev.REFUNDED: ev.CANCELLED}

    def __init__(self, workload: Workload) -> None:
        self.ended = services.Ledger()

    def handle(self, topic: str, partition: int, event: dict, out: Outbox) -> None:
        ending = self.ENDINGS.get(event.get("status"))
        if ending is None or self.ended.get(event["orderId"]) is not None:
            return
        self.ended.put(event["orderId"], ending)
        out.emit(ev.ORDER_EVENTS, ev.follow(event, status=ending))


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
)
