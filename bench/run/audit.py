"""Correctness audit: did every order end exactly once, and consistently?

After a run, :func:`bench.kafka.records.read_topics` reads the saga topics from the
beginning to their high watermarks; :func:`audit` folds the records into an
:class:`AuditReport` and :func:`step_latencies` derives per-step latency from
consecutive ``ts_us`` of one order. Both are pure functions over an iterable of
:class:`Record`, so they are tested with synthetic logs and need no broker.

Words used below:

- *step event*: a message the audit reads as a step of one order: order-created,
  a step's fact (choreography: on ``<step>-events``; orchestration: replies on
  order-processor-replies), a command (orchestration), a terminal event on
  order-events. Saga state is bookkeeping: it counts as progress and as cost,
  never as a business fact.
- *effect*: a fact that changes the world: a step's success (charged, reserved,
  shipped, ...) or a compensation (refunded, released, ...).
- *production*: one message as its producer stamped it (its ``ts_us``). The same
  status with the same ``ts_us`` twice is one production delivered twice.

Every step name, status and topic comes from the run's :class:`bench.flow.saga.Saga`
through the pattern's :class:`bench.patterns.base.Topology`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field

from bench.flow import events as ev
from bench.patterns.base import Topology
from bench.kafka.records import Record
from bench.flow.saga import E2E, Saga
from bench.results.summary import Orders

EXAMPLES_PER_CATEGORY = 5
_ENTRY_EXIT = frozenset({ev.ORDER_CREATED, ev.ORDER_EVENTS})

StepLog = dict[str, list[int]]  # step key (a status or a command) -> ts_us of each message, in read order
Latencies = dict[str, list[tuple[float, int]]]


@dataclass
class AuditReport:
    """What the log says about every started order.

    Every started order is exactly one of completed, cancelled, lost or stuck,
    so ``completed + cancelled + lost + stuck == orders_started``:

    - completed / cancelled: its first terminal event on order-events (by ts_us).
    - lost: no terminal event and no record past order-created (the order never
      entered the saga, or order-created itself never reached Kafka).
    - stuck: no terminal event, but some record past order-created (a fact,
      command, reply, saga state or dead letter): the saga started and stalled.

    Duplicates are counted in orders. ``duplicate_events``: orders with some step
    event (created, fact, reply, terminal) present more than once, for any
    reason. ``duplicate_effects`` (a subset): orders where an effect was applied
    more than once, i.e. produced fresh more than once (a retried command that a
    service answers from its ledger is marked ``replay``: a duplicate delivery,
    not a duplicate effect).

    ``inconsistent``: finished orders breaking a rule of ``inconsistent_by_rule``
    (an order counts once, each rule it breaks counts once); an outcome other
    than ``Saga.expected_outcome`` is one of those rules.
    """

    orders_started: int
    completed: int = 0
    cancelled: int = 0
    lost: int = 0
    stuck: int = 0
    never_created: int = 0  # started orders with no order-created record (explains most lost ones)
    duplicate_events: int = 0
    duplicate_effects: int = 0
    duplicate_effects_by_fact: dict[str, int] = field(default_factory=dict)  # effect -> orders applying it twice
    multiple_terminal: int = 0  # orders with more than one terminal event
    inconsistent: int = 0
    inconsistent_by_rule: dict[str, int] = field(default_factory=dict)
    unexpected_outcome: int = 0  # completed although Saga.expected_outcome says a step fails
    compensated_early: int = 0  # consistently cancelled although every step would succeed (e.g. a timeout)
    compensations: dict[str, int] = field(default_factory=dict)  # compensable step -> compensations applied
    undecodable: dict[str, int] = field(default_factory=dict)  # topic -> values that are not order events
    unconsumed_topics: dict[str, int] = field(default_factory=dict)  # topic nobody reads -> its messages
    unknown_orders: int = 0  # distinct orderIds in the log that were never started
    replayed_replies: int = 0  # answers to repeated commands, marked so: duplicates absorbed, nothing applied
    dead_letters: int = 0  # messages a service could not decode and parked on the dead-letter topic
    injected: dict[str, int] = field(default_factory=dict)  # topic -> records a fault injected (poison, its dead letters)
    messages_per_order: float | None = None
    bytes_per_order: float | None = None
    examples: dict[str, list[str]] = field(default_factory=dict)  # category -> first orderIds, for debugging

    @property
    def finished(self) -> int:
        return self.completed + self.cancelled

    @property
    def unfinished(self) -> int:
        return self.lost + self.stuck

    def orders(self) -> Orders:
        return Orders(self.orders_started, self.completed, self.cancelled, self.lost, self.stuck,
                      self.duplicate_effects, self.multiple_terminal, self.compensated_early, self.inconsistent,
                      self.unknown_orders, sum(self.undecodable.values()), sum(self.unconsumed_topics.values()))

    @property
    def clean(self) -> bool:
        return self.orders().clean

    def to_dict(self) -> dict:
        return {**asdict(self), "finished": self.finished, "unfinished": self.unfinished, "clean": self.clean}


# --- reading the log -------------------------------------------------------


@dataclass(slots=True)
class _Log:
    orders: dict[str, StepLog]
    t0_us: dict[str, int]
    messages: int = 0  # records attributed to a started order (by value's orderId, else by key)
    bytes: int = 0
    progressed: set[str] = field(default_factory=set)  # started orders with a record past order-created
    unknown: dict[str, None] = field(default_factory=dict)  # orderIds not started, in first-seen order
    per_topic: dict[str, int] = field(default_factory=dict)
    undecodable: dict[str, int] = field(default_factory=dict)
    injected: dict[str, int] = field(default_factory=dict)  # records keyed as a fault's poison, per topic
    replays: int = 0  # replies a service marked as answering a repeated command (nothing applied)


def _collect(records: Iterable[Record], topics: Mapping[str, tuple[str, frozenset[str]]],
             started: Mapping[str, int]) -> _Log:
    """One pass over the records; per record only a few dict operations."""
    log = _Log({}, {})
    orders, t0s, progressed, unknown = log.orders, log.t0_us, log.progressed, log.unknown
    per_topic, undecodable = log.per_topic, log.undecodable
    messages = nbytes = 0
    injected = log.injected
    for r in records:
        topic = r.topic
        if r.key is not None and r.key.startswith(ev.POISON_KEY_PREFIX):
            injected[topic] = injected.get(topic, 0) + 1
            continue
        per_topic[topic] = per_topic.get(topic, 0) + 1
        value = r.value
        oid = None if value is None else value.get("orderId")
        if type(oid) is not str:
            undecodable[topic] = undecodable.get(topic, 0) + 1
            value, oid = None, r.key
            if oid is None:
                continue
        if oid in started:
            messages += 1
            nbytes += r.size
            if topic not in _ENTRY_EXIT:
                progressed.add(oid)
        else:
            unknown[oid] = None
        kind = topics.get(topic)
        if value is None or kind is None:
            continue
        name = value.get(kind[0])
        if type(name) is not str or name not in kind[1]:
            continue
        if value.get("replay") is True:
            log.replays += 1  # a duplicate the service absorbed: not a step, not an effect
            continue
        ts = value.get("ts_us")
        if type(ts) is not int:  # a step event without its timestamp breaks the wire format
            undecodable[topic] = undecodable.get(topic, 0) + 1
            continue
        steps = orders.get(oid)
        if steps is None:
            orders[oid] = {name: [ts]}
            if type(t0 := value.get("t0_us")) is int:
                t0s[oid] = t0
        elif name in steps:
            steps[name].append(ts)
        else:
            steps[name] = [ts]
    log.messages, log.bytes = messages, nbytes
    return log


# --- judging one order -----------------------------------------------------


def _effects(steps: StepLog, status: str) -> int:
    """How many times an effect was applied: its distinct productions (a redelivered record keeps
    its ``ts_us``). An answer to a repeated request that applied nothing is marked ``replay`` by
    the service and never reaches here, so a retried command explains no second effect."""
    seen = steps.get(status)
    if not seen:
        return 0
    return 1 if len(seen) == 1 else len(set(seen))


def _first_terminal(steps: StepLog) -> tuple[str, int] | None:
    """The order's first terminal event, (status, ts_us), or None when it has none."""
    completed, cancelled = steps.get(ev.COMPLETED), steps.get(ev.CANCELLED)
    if completed and (not cancelled or min(completed) <= min(cancelled)):
        return ev.COMPLETED, min(completed)
    return (ev.CANCELLED, min(cancelled)) if cancelled else None


def _violations(steps: StepLog, outcome: str, expected: str, effects: Mapping[str, int], saga: Saga) -> list[str]:
    rules = []
    if ev.COMPLETED in steps and ev.CANCELLED in steps:
        rules.append("conflicting_terminal")
    compensable = [s for s in saga.steps if s.compensable]
    if outcome == ev.COMPLETED:
        if not all(effects[s.ok] for s in saga.steps):
            rules.append("completed_without_effect")
        if any(effects[s.undone] for s in compensable):
            rules.append("completed_but_compensated")
    else:
        rules += [f"{s.name}_not_undone" for s in compensable if effects[s.undone] < effects[s.ok]]
        if effects[saga.pivot.ok]:
            rules.append("cancelled_after_pivot")
    if any(effects[s.undone] > effects[s.ok] for s in compensable):
        rules.append("compensation_without_effect")
    if outcome == ev.COMPLETED and expected != ev.COMPLETED:
        # A step that must fail succeeded. The other way round (cancelled although every step
        # would have succeeded) is a legitimate, consistent saga: a step timed out and was compensated.
        rules.append("unexpected_outcome")
    return rules


class _Tally:
    """Counts per problem category, with the first few orderIds of each."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def note(self, category: str, order_id: str) -> None:
        self.counts[category] = self.counts.get(category, 0) + 1
        examples = self.examples.setdefault(category, [])
        if len(examples) < EXAMPLES_PER_CATEGORY:
            examples.append(order_id)


def _note_duplicates(order_id: str, steps: StepLog, effects: Mapping[str, int], event_keys: frozenset[str],
                     report: AuditReport, tally: _Tally) -> None:
    if any(len(seen) > 1 for key, seen in steps.items() if key in event_keys):
        tally.note("duplicate_events", order_id)
    doubled = [status for status, n in effects.items() if n > 1]
    if doubled:
        tally.note("duplicate_effects", order_id)
        for status in doubled:
            report.duplicate_effects_by_fact[status] = report.duplicate_effects_by_fact.get(status, 0) + 1


class _Judge:
    """Judges one order at a time against the saga."""

    def __init__(self, saga: Saga, report: AuditReport, tally: _Tally) -> None:
        self.saga, self.report, self.tally = saga, report, tally
        self.effects = saga.effects()
        self.event_keys = saga.facts() | {ev.CREATED, *ev.TERMINAL}
        self.compensable = [s for s in saga.steps if s.compensable]
        report.compensations = {s.name: 0 for s in self.compensable}

    def __call__(self, order_id: str, steps: StepLog, progressed: bool) -> None:
        report, tally = self.report, self.tally
        if ev.CREATED not in steps:
            tally.note("never_created", order_id)
        if steps and max(map(len, steps.values())) == 1:  # the common case: nothing repeated
            effects = {status: int(status in steps) for status in self.effects}
        else:
            effects = {status: _effects(steps, status) for status in self.effects}
            _note_duplicates(order_id, steps, effects, self.event_keys, report, tally)
        for s in self.compensable:
            report.compensations[s.name] += effects[s.undone]

        terminal = _first_terminal(steps)
        if terminal is None:
            tally.note("stuck" if progressed else "lost", order_id)
            return
        outcome = terminal[0]
        if outcome == ev.COMPLETED:
            report.completed += 1
        else:
            report.cancelled += 1
        if len(steps.get(ev.COMPLETED, ())) + len(steps.get(ev.CANCELLED, ())) > 1:
            tally.note("multiple_terminal", order_id)
        expected = self.saga.expected_outcome(order_id)
        rules = _violations(steps, outcome, expected, effects, self.saga)
        if outcome == ev.CANCELLED and expected == ev.COMPLETED and not rules:
            tally.note("compensated_early", order_id)
        if rules:
            tally.note("inconsistent", order_id)
            for rule in rules:
                report.inconsistent_by_rule[rule] = report.inconsistent_by_rule.get(rule, 0) + 1
            if "unexpected_outcome" in rules:
                tally.note("unexpected_outcome", order_id)


def audit(records: Iterable[Record], started: Mapping[str, int], topology: Topology) -> AuditReport:
    """Audit the whole log of one run of ``topology`` (a pattern laid out for the run's saga).

    ``started``: orderId -> intended start (t0_us) of every order the load
    generator produced. A topic no service or the load generator reads that
    holds messages is reported in ``unconsumed_topics``.
    ``messages_per_order`` / ``bytes_per_order``: every record attributed to a
    started order (on any topic read, undecodable ones by key) per finished
    order; None when nothing finished.
    """
    log = _collect(records, _topics(topology), started)
    report, tally = AuditReport(orders_started=len(started)), _Tally()
    judge = _Judge(topology.saga, report, tally)
    no_steps: StepLog = {}
    for order_id in started:
        judge(order_id, log.orders.get(order_id, no_steps), order_id in log.progressed)
    for order_id in log.unknown:
        tally.note("unknown_orders", order_id)

    for category, count in tally.counts.items():  # every category is a field of the report
        setattr(report, category, count)
    report.examples = tally.examples
    report.undecodable = log.undecodable
    consumed = topology.consumed_topics()
    report.unconsumed_topics = {t: n for t, n in log.per_topic.items() if t not in consumed}
    report.replayed_replies = log.replays
    report.injected = log.injected
    report.dead_letters = log.per_topic.get(ev.DEAD_LETTER, 0) + log.injected.get(ev.DEAD_LETTER, 0)
    if report.finished:
        report.messages_per_order = log.messages / report.finished
        report.bytes_per_order = log.bytes / report.finished
    return report


# --- per-step latency ------------------------------------------------------


def _earliest(a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None or a <= b else b


def _span(out: Latencies, step: str, start: int | None, end: int | None) -> None:
    if start is not None and end is not None:
        out[step].append((end / 1e6, end - start))


def _latest(times) -> int | None:
    """When the last of ``times`` happened; None unless all did."""
    latest = None
    for t in times:
        if t is None:
            return None
        latest = t if latest is None or t > latest else latest
    return latest


def _choreography_steps(saga: Saga, coordinator: str, steps: StepLog, t0_us: int | None, out: Latencies) -> None:
    first = {key: min(seen) for key, seen in steps.items()}
    get = first.get

    def rolled_back(stage) -> int | None:  # when the last member of a stage failed or was undone
        return _latest(_earliest(get(s.failed), get(s.undone) if s.compensable else None) for s in stage)

    for step in saga.steps:
        before = saga.before(step)
        start = _latest(get(s.ok) for s in before) if before else get(ev.CREATED)
        _span(out, step.name, start, _earliest(get(step.ok), get(step.failed)))
        if step.compensable and step.undone in first:
            trigger = None
            for s in saga.siblings(step):
                trigger = _earliest(trigger, get(s.failed))
            after = saga.after(step)
            trigger = _earliest(trigger, rolled_back(after) if after else None)
            if trigger is not None:
                ok = get(step.ok)
                _span(out, step.undo_span, trigger if ok is None or ok <= trigger else ok, first[step.undone])
    terminal = _first_terminal(steps)
    if terminal is not None:
        outcome, end = terminal
        ender = get(saga.pivot.ok) if outcome == ev.COMPLETED else rolled_back(saga.stages[0])
        _span(out, coordinator, ender, end)
        _span(out, E2E, t0_us, end)


def _orchestration_steps(saga: Saga, coordinator: str, steps: StepLog, t0_us: int | None, out: Latencies) -> None:
    for step in saga.steps:
        for command, span, answers in ((step.do, step.name, (step.ok, step.failed)),
                                       (step.undo, step.undo_span, (step.undone,))):
            if command in steps and (step.compensable or command == step.do):
                sent = max(steps[command])  # the latest attempt
                replies = [ts for status in answers for ts in steps.get(status, ()) if ts >= sent]
                _span(out, span, sent, min(replies, default=None))
    # Orchestrator time: from what it reacted to (order-created or a reply) to what it
    # sent next (a command or the terminal event). A retry after a timeout follows no input;
    # the second command of a parallel stage follows the same input as the first.
    inputs = sorted(ts for key in (ev.CREATED, *saga.fact) for ts in steps.get(key, ()))
    outputs = sorted(ts for key in (*saga.command, *ev.TERMINAL) for ts in steps.get(key, ()))
    i, pending = 0, None
    for sent in outputs:
        while i < len(inputs) and inputs[i] <= sent:
            pending, i = inputs[i], i + 1
        _span(out, coordinator, pending, sent)
        pending = None
    terminal = _first_terminal(steps)
    if terminal is not None:
        _span(out, E2E, t0_us, terminal[1])


StepFunction = Callable[[Saga, str, StepLog, "int | None", Latencies], None]
_STEP_FUNCTIONS: dict[str, StepFunction] = {"choreography": _choreography_steps, "orchestration": _orchestration_steps}


def _statuses(statuses) -> tuple[str, frozenset[str]]:
    return "status", frozenset(statuses)


def _topics(topology: Topology) -> dict[str, tuple[str, frozenset[str]]]:
    """topic -> (the field naming the step, the values that are steps) for the topology's topics."""
    saga = topology.saga
    topics = {ev.ORDER_CREATED: _statuses((ev.CREATED,)), ev.ORDER_EVENTS: _statuses(ev.TERMINAL)}
    if topology.pattern == "orchestration":
        topics[ev.REPLIES] = _statuses(saga.fact)
        for step in saga.steps:
            topics[step.commands_topic] = ("command", frozenset(step.commands))
    else:
        for step in saga.steps:
            topics[step.events_topic] = _statuses(step.facts)
    return topics


def step_latencies(records: Iterable[Record], topology: Topology) -> Latencies:
    """Per step name, one ``(ts_s, latency_us)`` per order that took the step:
    ``ts_s`` is the wall-clock second the step ended, ``latency_us`` the
    difference of the ``ts_us`` stamps that bound it (producers on different
    hosts may disagree, so it can be negative under clock skew). Duplicated
    events count once, from their earliest copy. ``e2e`` runs from the order's
    intended start ``t0_us`` to its first terminal event's ``ts_us``."""
    steps_of = _STEP_FUNCTIONS[topology.pattern]
    log = _collect(records, _topics(topology), {})
    out: Latencies = {name: [] for name in topology.step_names()}
    saga, coordinator = topology.saga, topology.coordinator
    for order_id, steps in log.orders.items():
        steps_of(saga, coordinator, steps, log.t0_us.get(order_id), out)
    return out
