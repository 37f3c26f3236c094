"""Orchestration: a central orchestrator commands the steps and drives compensation.

The orchestrator consumes order-created and the steps' replies, sends commands
on an ``order-processor-<step>`` topic per step, and writes every saga
transition to the compacted ``order-processor-saga-state`` topic *in the same
batch as the commands it causes*, so a restarted orchestrator resumes from
Kafka: it re-sends each in-flight saga's pending commands, and the steps'
ledgers answer a repeated command without applying it twice.

A saga runs stage by stage: all commands of a stage go out together and the
orchestrator waits for every reply. If one failed, it undoes the stage's
members that succeeded, then every earlier stage, last first.

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

import functools
import heapq

from bench.flow import events as ev
from bench.flow.ledger import Ledger, StepLedger
from bench.patterns.base import (Latencies, Outbox, Pattern, SpanFinder, Stateless, StepLog, Topology, add_span,
                                 first_terminal)
from bench.flow.saga import E2E, FAILED, OK, ORCHESTRATOR, UNDONE, Saga, Step
from bench.flow.workload import Workload

MAX_BACKOFF = 8  # a step's timeout grows 1x, 2x, 4x, 8x, 8x ... the workload's step_timeout


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


class Orchestrator:
    """Drives each saga stage by stage. Its state per order, written to saga state:

    - ``stage``: the stage whose commands are out (while undoing: the stage being undone)
    - ``ok``: the steps that succeeded and are not undone (or may have: a step given up on)
    - ``waiting``: step -> attempt, for each command of that stage not yet answered
    - ``failed``: a step of the stage failed (or was given up on): roll back once all answered
    - ``undo``: rolling back

    ``ok`` and ``waiting`` are replaced, never changed in place, so the state record sent with
    a command is a shallow copy (the simulation keeps the record objects it is given).
    """

    def __init__(self, saga: Saga, workload: Workload) -> None:
        self.saga = saga
        self.timeout_s = workload.step_timeout_s
        self.retries = workload.step_retries
        self.sagas: dict[str, dict] = {}
        self.finished = Ledger()
        self.deadlines: list[tuple[float, str, str, int, bool]] = []  # (deadline, orderId, step, attempt, undo)
        self.budget = RetryBudget()
        self.now_s = 0.0
        self.absorbed = 0  # repeated order-created and stale or repeated replies, ignored
        # Per stage, what starting it sends (the forward path, per message): waiting, commands.
        self.starts = [({s.name: 1 for s in stage}, [(s.commands_topic, s.do, s.name) for s in stage])
                       for stage in saga.stages]
        self.last_stage = len(saga.stages) - 1
        self.replies = {status: (step.name, kind) for status, (step, kind) in saga.fact.items()}

    def handle(self, topic: str, partition: int, event: dict, out: Outbox) -> None:
        order_id = event["orderId"]
        if topic == ev.ORDER_CREATED:
            if order_id in self.sagas or self.finished.get(order_id):
                self.absorbed += 1
                return
            # `p`: the partition this saga lives on (all its topics are keyed and
            # partitioned alike), so a rebalance can hand it to another instance.
            saga = {"orderId": order_id, "t0_us": event.get("t0_us"), "p": partition, "stage": 0,
                    "ok": (), "waiting": {}}
            self._start(saga, 0, out)
            return
        saga = self.sagas.get(order_id)
        if saga is None:
            self.absorbed += 1  # a reply for a saga already finished
            return
        meaning = self.replies.get(event.get("status"))
        waiting = saga["waiting"]
        if meaning is None or meaning[0] not in waiting or (meaning[1] == UNDONE) != ("undo" in saga):
            self.absorbed += 1  # a stale or repeated reply to an earlier command
            return
        name, kind = meaning
        saga["waiting"] = waiting = {} if len(waiting) == 1 else {k: a for k, a in waiting.items() if k != name}
        if kind == OK:
            saga["ok"] = (*saga["ok"], name)
        elif kind == FAILED:
            saga["failed"] = True
        else:
            saga["ok"] = tuple(n for n in saga["ok"] if n != name)
        if not waiting:
            self._next(saga, out)

    def _next(self, saga: dict, out: Outbox) -> None:
        """Every command of the stage is answered: go on to the next stage, roll back, or end."""
        stage = saga["stage"]
        if "undo" in saga:
            self._undo(saga, stage - 1, out)
        elif saga.pop("failed", False):
            saga["undo"] = True
            self._undo(saga, stage, out)
        elif stage < self.last_stage:
            self._start(saga, stage + 1, out)
        else:
            self._end(saga, ev.COMPLETED, out)

    def _start(self, saga: dict, stage: int, out: Outbox) -> None:
        """Send a stage's commands, first attempts, with the state record they cause (``_send``
        unrolled for the path every order takes: its stage's waiting and commands precomputed)."""
        waiting, commands = self.starts[stage]
        order_id = saga["orderId"]
        saga["stage"], saga["waiting"] = stage, waiting.copy()
        self.sagas[order_id] = saga
        out.emit(ev.SAGA_STATE, dict(saga))
        t0_us = saga["t0_us"]
        deadline = self.now_s + self.timeout_s
        budget = self.budget
        for topic, command, name in commands:
            out.emit(topic, {"orderId": order_id, "t0_us": t0_us, "command": command, "attempt": 1})
            budget.deposit()
            heapq.heappush(self.deadlines, (deadline, order_id, name, 1, False))

    def _undo(self, saga: dict, stage: int, out: Outbox) -> None:
        """Undo the latest stage at or before ``stage`` that holds a success; cancelled once none does."""
        ok = saga["ok"]
        while stage >= 0:
            todo = [s for s in self.saga.stages[stage] if s.name in ok]
            if todo:
                saga["stage"] = stage
                self._send(saga, {s.name: 1 for s in todo}, out)
                return
            stage -= 1
        self._end(saga, ev.CANCELLED, out)

    def _end(self, saga: dict, outcome: str, out: Outbox) -> None:
        order_id = saga["orderId"]
        self.sagas.pop(order_id, None)
        self.finished.put(order_id, outcome)
        out.emit(ev.SAGA_STATE, {**saga, "outcome": outcome})
        out.emit(ev.ORDER_EVENTS, ev.follow(saga, status=outcome))

    def _send(self, saga: dict, attempts: dict[str, int], out: Outbox) -> None:
        """Send the commands for ``attempts`` (step -> attempt, steps of the one stage now out)
        with the state record they cause."""
        order_id = saga["orderId"]
        saga["waiting"] = {**saga["waiting"], **attempts}
        self.sagas[order_id] = saga
        out.emit(ev.SAGA_STATE, dict(saga))
        undo = "undo" in saga
        for name, attempt in attempts.items():
            step = self.saga.step(name)
            out.emit(step.commands_topic, ev.follow(saga, command=step.undo if undo else step.do, attempt=attempt))
            if attempt == 1:
                self.budget.deposit()
            self._arm(order_id, name, attempt, undo)

    def _arm(self, order_id: str, step: str, attempt: int, undo: bool) -> None:
        # The phase is part of the key: an undo's first attempt must not meet the forward
        # command's deadline still in the heap.
        heapq.heappush(self.deadlines, (self.now_s + self.timeout_s * _backoff(attempt), order_id, step, attempt, undo))

    def _retried_until_answered(self, saga: dict, step: Step) -> bool:
        # A compensation (giving up would leave money taken or stock held) and the pivot (it
        # cannot be undone, so an order whose pivot may still happen late must not be cancelled).
        return "undo" in saga or not step.compensable

    def tick(self, now_s: float, out: Outbox) -> None:
        self.now_s = now_s
        while self.deadlines and self.deadlines[0][0] <= now_s:
            _, order_id, name, attempt, undo = heapq.heappop(self.deadlines)
            saga = self.sagas.get(order_id)
            if saga is None or saga["waiting"].get(name) != attempt or ("undo" in saga) != undo:
                continue  # answered in time, or already retried
            step = self.saga.step(name)
            if attempt <= self.retries or self._retried_until_answered(saga, step):
                if self.budget.withdraw(now_s):
                    self._send(saga, {name: attempt + 1}, out)
                else:
                    self._arm(order_id, name, attempt, undo)  # over budget: keep waiting for the answer
            else:
                # The step may still happen late; undo it as if it had (its ledger then turns
                # the late request into a no-op). `timed_out` tells a reader of saga state why.
                saga["waiting"] = {k: a for k, a in saga["waiting"].items() if k != name}
                saga["ok"] = (*saga["ok"], name)
                saga["failed"] = True
                saga["timed_out"] = name
                if saga["waiting"]:
                    out.emit(ev.SAGA_STATE, dict(saga))  # so a restarted orchestrator does not ask again
                else:
                    self._next(saga, out)

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
            elif order_id not in self.sagas and saga.get("waiting"):
                saga = {k: v for k, v in saga.items() if k != "ts_us"}
                pending = saga["waiting"]
                saga["ok"], saga["waiting"] = tuple(saga.get("ok", ())), {}
                self._send(saga, {name: attempt + 1 for name, attempt in pending.items()}, out)

    def revoke(self, partitions: set[int]) -> None:
        for order_id in [o for o, saga in self.sagas.items() if saga.get("p") in partitions]:
            del self.sagas[order_id]


class CommandHandler(Stateless):
    """One step: does what the orchestrator says and always answers."""

    def __init__(self, step: Step, workload: Workload) -> None:
        self.step = step
        self.ledger = StepLedger(step)
        self.actions = {step.do: self.ledger.apply}
        if step.compensable:
            self.actions[step.undo] = self.ledger.compensate

    @property
    def absorbed(self) -> int:
        return self.ledger.absorbed

    def restore(self, records, out: Outbox) -> None:
        name = self.step.name
        for _topic, reply in records:
            if reply.get("step") == name and not reply.get("replay"):
                self.ledger.remember(reply["orderId"], reply.get("status"))

    def handle(self, topic: str, partition: int, event: dict, out: Outbox) -> None:
        action = self.actions.get(event.get("command"))
        if action is None:
            return
        status, fresh = action(event["orderId"])
        reply = ev.follow(event, status=status, step=self.step.name, attempt=event.get("attempt", 1))
        if not fresh:
            reply["replay"] = True  # the answer to a repeated command; nothing was applied
        out.emit(ev.REPLIES, reply)


class OrchestrationTopology(Topology):
    """Orchestration laid out for a saga: a step's span ends with its reply to a command, the
    orchestrator's with each command or terminal event it sends."""

    def span_finder(self) -> SpanFinder:
        commands = {}
        for s in self.saga.steps:
            commands[s.do] = s.name
            if s.compensable:
                commands[s.undo] = s.undo_span
        outputs = frozenset({*(s.commands_topic for s in self.saga.steps), ev.ORDER_EVENTS})
        coordinator = self.coordinator

        def span(topic: str, event: dict, source: dict) -> str | None:
            if topic == ev.REPLIES:
                return commands.get(source.get("command"))
            return coordinator if topic in outputs else None
        return span

    def step_topics(self) -> dict[str, tuple[str, frozenset[str]]]:
        # The steps' facts as replies on one topic; each step's commands on its commands topic.
        topics = {**super().step_topics(), ev.REPLIES: ("status", frozenset(self.saga.fact))}
        for s in self.saga.steps:
            topics[s.commands_topic] = ("command", frozenset(s.commands))
        return topics

    @functools.cached_property
    def _span_plan(self) -> tuple[tuple[tuple[str, str, tuple[str, ...]], ...], tuple[str, ...], tuple[str, ...]]:
        # What order_spans walks for every order, laid out once: (command, its span, the statuses
        # answering it) per step and compensation; the keys of the orchestrator's inputs and outputs.
        saga = self.saga
        calls = tuple(call for step in saga.steps
                      for call in ((step.do, step.name, (step.ok, step.failed)),
                                   (step.undo, step.undo_span, (step.undone,)))
                      if step.compensable or call[0] == step.do)
        return calls, (ev.CREATED, *saga.fact), (*saga.command, *ev.TERMINAL)

    def order_spans(self, steps: StepLog, t0_us: int | None, out: Latencies) -> None:
        # Called for every order the live audit judges: spans appended directly, no helper per span.
        calls, input_keys, output_keys = self._span_plan
        get = steps.get
        for command, span, answers in calls:
            attempts = get(command)
            if attempts:
                sent = max(attempts)  # the latest attempt
                reply = None
                for status in answers:
                    for ts in get(status, ()):
                        if ts >= sent and (reply is None or ts < reply):
                            reply = ts
                if reply is not None:
                    out[span].append((reply / 1e6, reply - sent))
        # Orchestrator time: from what it reacted to (order-created or a reply) to what it
        # sent next (a command or the terminal event). A retry after a timeout follows no input;
        # the second command of a parallel stage follows the same input as the first.
        inputs = [ts for key in input_keys for ts in get(key, ())]
        inputs.sort()
        outputs = [ts for key in output_keys for ts in get(key, ())]
        outputs.sort()
        coordinator = out[self.coordinator]
        i, pending, n = 0, None, len(inputs)
        for sent in outputs:
            while i < n and inputs[i] <= sent:
                pending, i = inputs[i], i + 1
            if pending is not None:
                coordinator.append((sent / 1e6, sent - pending))
            pending = None
        terminal = first_terminal(steps)
        if terminal is not None:
            add_span(out, E2E, t0_us, terminal[1])


def derive(pattern: Pattern, saga: Saga) -> Topology:
    coordinator = pattern.coordinator
    subscriptions = {coordinator: (ev.ORDER_CREATED, ev.REPLIES)}
    handlers = {coordinator: lambda w: Orchestrator(saga, w)}
    # The orchestrator's own output is its saga state and the terminal events it sent.
    restore_from = {coordinator: (ev.SAGA_STATE, ev.ORDER_EVENTS)}
    for step in saga.steps:
        subscriptions[step.name] = (step.commands_topic,)
        handlers[step.name] = lambda w, s=step: CommandHandler(s, w)
        restore_from[step.name] = (ev.REPLIES,)
    return OrchestrationTopology(
        pattern=pattern.name, saga=saga, coordinator=coordinator, subscriptions=subscriptions,
        topics=(ev.ORDER_CREATED, *(s.commands_topic for s in saga.steps), ev.REPLIES, ev.SAGA_STATE,
                ev.ORDER_EVENTS, ev.DEAD_LETTER),
        handlers=handlers, restore_from=restore_from, compacted=(ev.SAGA_STATE,),
    )


ORCHESTRATION = Pattern(name="orchestration", coordinator=ORCHESTRATOR, derive=derive)
