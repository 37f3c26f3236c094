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

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field

from bench.flow import events as ev
from bench.patterns.base import Latencies, StepLog, Topology, first_terminal
from bench.kafka.records import Record
from bench.flow.saga import Saga
from bench.results.summary import Orders

EXAMPLES_PER_CATEGORY = 5
_ENTRY_EXIT = frozenset({ev.ORDER_CREATED, ev.ORDER_EVENTS})
# fold() reads these per record: module names, not an attribute of ``ev`` each time.
_POISON_KEY_PREFIX, _ORDER_EVENTS = ev.POISON_KEY_PREFIX, ev.ORDER_EVENTS


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
    late_events: int = 0  # step events read after their order was judged (a live audit judges as it goes)
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
    read_to_end: bool = True  # False: the reading was cut short (interrupted), orders judged as far as it went

    @property
    def finished(self) -> int:
        return self.completed + self.cancelled

    @property
    def unfinished(self) -> int:
        return self.lost + self.stuck

    def orders(self) -> Orders:
        return Orders(self.orders_started, self.completed, self.cancelled, self.lost, self.stuck,
                      self.duplicate_effects, self.multiple_terminal, self.compensated_early, self.inconsistent,
                      self.unknown_orders, sum(self.undecodable.values()), sum(self.unconsumed_topics.values()),
                      self.late_events)

    @property
    def clean(self) -> bool:
        return self.orders().clean

    def to_dict(self) -> dict:
        return {**asdict(self), "finished": self.finished, "unfinished": self.unfinished, "clean": self.clean}


# --- reading the log -------------------------------------------------------


@dataclass(slots=True)
class _Order:
    """What the log said so far about one order that is not judged yet."""

    seq: int = 0  # its number among the started orders (0: foreign)
    # Its step events as read, flat: name, ts_us, name, ts_us ... (a live audit holds ~150,000
    # orders at 5000/s: with one list an order rather than a dict of one list per step, and the
    # names shared, an orchestration order held takes 834 bytes, was 1822: benchmarks/audit_cpu.py);
    # the rules and the spans get it as a StepLog (_step_log) when it is judged.
    log: list = field(default_factory=list)
    t0_us: int | None = None  # from its first step event
    progressed: bool = False  # a record past order-created
    messages: int = 0  # records attributed to it (by value's orderId, else by key)
    bytes: int = 0
    ended_at: float | None = None  # when its first terminal event was in the log, on the auditor's clock (see fold)
    first_s: int | None = None  # the second its spans can end in at the earliest (t0, else its first step)


class _Judged:
    """The orders judged and forgotten, in memory that follows what is in flight: orders end
    roughly in sequence order, so every sequence up to ``low`` is judged except the few in
    ``holes`` (unjudged: in flight, stuck or never seen), and above it the judged ones are listed."""

    SKIP_AFTER = 2_000  # judged orders listed above ``low`` before an unjudged one is set aside as a hole

    def __init__(self) -> None:
        self.low = 0
        self.above: set[int] = set()
        self.holes: set[int] = set()

    def __contains__(self, seq: int) -> bool:
        return seq in self.above if seq > self.low else seq not in self.holes

    def add(self, seq: int, started: int) -> None:
        if seq <= self.low:
            self.holes.discard(seq)
        else:
            self.above.add(seq)
        above, low = self.above, self.low
        while True:
            if low + 1 in above:
                above.discard(low + 1)
            elif len(above) > self.SKIP_AFTER and low < started:
                self.holes.add(low + 1)  # unjudged: still judged later, at the latest by finish()
            else:
                break
            low += 1
        self.low = low

    def unjudged(self, started: int) -> Iterator[int]:
        """Every sequence 1 .. ``started`` not judged yet, in order."""
        yield from sorted(self.holes)
        above = self.above
        for seq in range(self.low + 1, started + 1):
            if seq not in above:
                yield seq


class StartedOrders:
    """Which orderIds were started, each numbered 1 .. n in start order. A run's orders are
    ``<run_id>-<seq>``; :meth:`of` numbers any mapping of orderIds (the batch audit's ``started``)."""

    def __init__(self, run_id: str | None = None) -> None:
        self.prefix = None if run_id is None else f"{run_id}-"
        self.index: dict[str, int] | None = None
        self.ids: list[str] | None = None

    @classmethod
    def of(cls, started: Iterable[str]) -> "StartedOrders":
        numbered = cls()
        numbered.ids = list(started)
        numbered.index = {oid: i for i, oid in enumerate(numbered.ids, 1)}
        return numbered

    def seq(self, order_id: str) -> int | None:
        """The order's number, or None for an id this run cannot have started (foreign)."""
        if self.index is not None:
            return self.index.get(order_id)
        prefix = self.prefix
        if not order_id.startswith(prefix):
            return None
        tail = order_id[len(prefix):]
        return int(tail) if tail.isdigit() and tail[0] != "0" else None

    def id(self, seq: int) -> str:
        return self.ids[seq - 1] if self.ids is not None else f"{self.prefix}{seq}"


# --- judging one order -----------------------------------------------------


def _effects(steps: StepLog, status: str) -> int:
    """How many times an effect was applied: its distinct productions (a redelivered record keeps
    its ``ts_us``). An answer to a repeated request that applied nothing is marked ``replay`` by
    the service and never reaches here, so a retried command explains no second effect."""
    seen = steps.get(status)
    if not seen:
        return 0
    return 1 if len(seen) == 1 else len(set(seen))


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


@dataclass(frozen=True, slots=True)
class _Verdict:
    """What the rules say about one order's log; the same for every order whose log has the same shape."""

    notes: tuple[str, ...]  # tally categories the order falls in
    outcome: str | None  # its first terminal status; None: lost or stuck
    rules: tuple[str, ...]  # inconsistency rules it breaks
    doubled: tuple[str, ...]  # effects applied more than once
    compensations: tuple[tuple[str, int], ...]  # (compensable step, compensations applied)


class _Judge:
    """Judges one order at a time against the saga.

    Most orders' logs have one record per step event, and then the verdict depends only on
    which step events there are, which one ended the order and how the saga says it must end:
    such verdicts are remembered by that shape (a few dozen in a run), so an order costs a
    lookup rather than the rules' walk (the live audit judges 5000 orders a second)."""

    SHAPES = 4096  # verdicts remembered; orders of any further shape are judged in full

    def __init__(self, saga: Saga, report: AuditReport, tally: _Tally) -> None:
        self.saga, self.report, self.tally = saga, report, tally
        self.effects = saga.effects()
        self.event_keys = saga.facts() | {ev.CREATED, *ev.TERMINAL}
        self.compensable = [s for s in saga.steps if s.compensable]
        report.compensations = {s.name: 0 for s in self.compensable}
        self.shapes: dict[tuple, _Verdict] = {}

    def __call__(self, order_id: str, steps: StepLog, progressed: bool) -> None:
        terminal = first_terminal(steps)
        expected = None if terminal is None else self.saga.expected_outcome(order_id)
        if steps and max(map(len, steps.values())) == 1:  # the common case: nothing repeated
            shape = (frozenset(steps), None if terminal is None else terminal[0], expected, progressed)
            verdict = self.shapes.get(shape)
            if verdict is None:
                verdict = self.verdict(steps, terminal, expected, progressed)
                if len(self.shapes) < self.SHAPES:
                    self.shapes[shape] = verdict
        else:
            verdict = self.verdict(steps, terminal, expected, progressed)
        report, tally = self.report, self.tally
        for name, n in verdict.compensations:
            report.compensations[name] += n
        if verdict.outcome == ev.COMPLETED:
            report.completed += 1
        elif verdict.outcome == ev.CANCELLED:
            report.cancelled += 1
        for status in verdict.doubled:
            report.duplicate_effects_by_fact[status] = report.duplicate_effects_by_fact.get(status, 0) + 1
        for rule in verdict.rules:
            report.inconsistent_by_rule[rule] = report.inconsistent_by_rule.get(rule, 0) + 1
        for category in verdict.notes:
            tally.note(category, order_id)

    def verdict(self, steps: StepLog, terminal: tuple[str, int] | None, expected: str | None,
                progressed: bool) -> _Verdict:
        """The rules, applied to one order's log (``terminal``: its first terminal event;
        ``expected``: how the saga says it must end, when it ended)."""
        notes: list[str] = []
        doubled: list[str] = []
        if ev.CREATED not in steps:
            notes.append("never_created")
        if steps and max(map(len, steps.values())) == 1:
            effects = {status: int(status in steps) for status in self.effects}
        else:
            effects = {status: _effects(steps, status) for status in self.effects}
            if any(len(seen) > 1 for key, seen in steps.items() if key in self.event_keys):
                notes.append("duplicate_events")
            doubled = [status for status, n in effects.items() if n > 1]
            if doubled:
                notes.append("duplicate_effects")
        compensations = tuple((s.name, effects[s.undone]) for s in self.compensable)
        if terminal is None:
            notes.append("stuck" if progressed else "lost")
            return _Verdict(tuple(notes), None, (), tuple(doubled), compensations)
        outcome = terminal[0]
        if len(steps.get(ev.COMPLETED, ())) + len(steps.get(ev.CANCELLED, ())) > 1:
            notes.append("multiple_terminal")
        rules = _violations(steps, outcome, expected, effects, self.saga)
        if outcome == ev.CANCELLED and expected == ev.COMPLETED and not rules:
            notes.append("compensated_early")
        if rules:
            notes.append("inconsistent")
            if "unexpected_outcome" in rules:
                notes.append("unexpected_outcome")
        return _Verdict(tuple(notes), outcome, tuple(rules), tuple(doubled), compensations)


# --- per-step latency ------------------------------------------------------


# --- the auditor: the fold, the judgment and the spans, incrementally ------------

# An order is judged this long after its end (its first terminal event, dated by when it was read or by
# when it was in the log, Auditor.written_by), once the log was read far enough (see Auditor.settle)...
GRACE_S = 30.0
MAX_HOLD_S = 300.0  # ... and at the latest this long after, however far the reading is behind
FINISH_PROGRESS_EVERY = 20_000  # orders judged between two progress reports of finish()


class Auditor:
    """Audits a run's log while it is written, or all of it at once (:func:`audit`).

    :meth:`feed` folds records into per-order state; :meth:`settle` judges every order whose
    first terminal event was read more than ``GRACE_S`` ago (and, when the caller says how far
    every partition was read, whose log was read past that moment), passes its step spans to
    ``spans`` and forgets it, so memory follows the orders in flight, not the run's length;
    :meth:`finish` judges the rest. The rules are :func:`audit`'s; settling adds one: a step
    event of an order judged already is a ``late_event`` (the audit is then not clean), since
    the judgment could not see it.

    ``spans``: step name -> something with ``append((end_s, latency_us))`` (as
    :func:`step_latencies` returns), or None to skip per-step latency.
    """

    def __init__(self, topology: Topology, started: StartedOrders, spans: Mapping | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.topology, self.started, self.spans, self.clock = topology, started, spans, clock
        # Topic -> (its step key, each step name it may carry -> that name): a record's name is
        # looked up to the saga's own string, so the ~150,000 orders a live audit holds share a
        # handful of name strings rather than keeping a decoded copy of one per step event.
        self.kinds = {topic: (key, {name: name for name in names})
                      for topic, (key, names) in topology.step_topics().items()}
        self.steps_of = topology.order_spans
        self.report, self.tally = AuditReport(orders_started=0), _Tally()
        self.judge = _Judge(topology.saga, self.report, self.tally)
        self.started_known = 0 if started.index is None else len(started.index)  # orders known to be started
        self.active: dict[str, _Order] = {}  # started (or maybe started: numbered) orders not judged yet
        self.foreign: dict[str, _Order] = {}  # step events of orders never started, for their spans
        self.unknown: dict[str, None] = {}  # orderIds not started, in first-seen order
        self.judged = _Judged()
        self.ended: deque = deque()  # (ended_at, orderId, seq: 0 foreign) in the order terminal events were read
        # A moment on the auditor's clock by which every record folded since it was set was in the
        # log, when the caller knows one (the live audit sets it per batch from the end offsets it
        # asks); None: a record is dated by when it is folded. See settle.
        self.written_by: float | None = None
        self.waiting: list = []  # due, but not known to be started yet
        self.open_seconds: dict[int, int] = {}  # first_s -> unjudged orders with step events that can end then
        self.messages = self.bytes = 0  # records of judged started orders
        self.per_topic: dict[str, int] = {}
        self.undecodable: dict[str, int] = {}
        self.injected: dict[str, int] = {}
        self.replays = 0
        self.records = 0

    # -- the fold ----------------------------------------------------------

    def feed(self, records: Iterable[Record]) -> None:
        fold = self.fold
        for r in records:
            fold(r.topic, r.key, r.value, r.size)

    def fold(self, topic: str, key: str | None, value: dict | None, size: int) -> None:
        """One record; per record only a few dict operations (the live audit folds 60,000 a
        second at 5000 orders/s, so which step a record is is worked out here, not in a helper)."""
        self.records += 1
        if key is not None and key.startswith(_POISON_KEY_PREFIX):
            self.injected[topic] = self.injected.get(topic, 0) + 1
            return
        per_topic = self.per_topic
        per_topic[topic] = per_topic.get(topic, 0) + 1
        oid = None if value is None else value.get("orderId")
        if type(oid) is not str:
            self.undecodable[topic] = self.undecodable.get(topic, 0) + 1
            value, oid = None, key
            if oid is None:
                return
        late = False  # a record of an order judged and forgotten already
        order = self.active.get(oid)
        if order is None:
            seq = self.started.seq(oid)
            if seq is None:
                if oid not in self.unknown:
                    self.unknown[oid] = None
                order = self.foreign.get(oid)
            elif seq in self.judged:
                late = True
                self.messages += 1
                self.bytes += size
            else:
                order = self.active[oid] = _Order(seq)
        if order is not None and order.seq:
            order.messages += 1
            order.bytes += size
            if topic not in _ENTRY_EXIT:
                order.progressed = True
        # The step the record is, if any: its topic's step key naming one of the topic's steps,
        # not a marked replay (a duplicate the service absorbed: not a step, not an effect), and
        # stamped (a step event without its ts_us breaks the wire format).
        kind = self.kinds.get(topic)
        if value is None or kind is None:
            return
        name = value.get(kind[0])
        if type(name) is not str:
            return
        name = kind[1].get(name)
        if name is None:
            return
        if value.get("replay") is True:
            self.replays += 1
            return
        ts = value.get("ts_us")
        if type(ts) is not int:
            self.undecodable[topic] = self.undecodable.get(topic, 0) + 1
            return
        if late:
            self.tally.note("late_events", oid)
            return
        if order is None:  # a foreign order's first step event
            order = self.foreign[oid] = _Order()
        log = order.log
        if not log:
            t0 = value.get("t0_us")
            if type(t0) is int:
                order.t0_us = t0
            first = (t0 if type(t0) is int and t0 < ts else ts) // 1_000_000
            order.first_s = first
            self.open_seconds[first] = self.open_seconds.get(first, 0) + 1
        log.append(name)
        log.append(ts)
        if order.ended_at is None and topic == _ORDER_EVENTS:
            order.ended_at = self.clock() if self.written_by is None else self.written_by
            self.ended.append((order.ended_at, oid, order.seq))

    # -- judging -------------------------------------------------------------

    def _forget(self, order: _Order) -> None:
        if order.first_s is not None:
            left = self.open_seconds[order.first_s] - 1
            if left:
                self.open_seconds[order.first_s] = left
            else:
                del self.open_seconds[order.first_s]

    def _spans(self, order: _Order, steps: StepLog | None = None) -> None:
        if self.spans is not None and order.log:
            self.steps_of(_step_log(order.log) if steps is None else steps, order.t0_us, self.spans)

    def _judge_started(self, seq: int, order: _Order | None) -> None:
        if order is None:
            self.judge(self.started.id(seq), _NO_STEPS, False)
        else:
            steps = _step_log(order.log)
            self.judge(self.started.id(seq), steps, order.progressed)
            self.messages += order.messages
            self.bytes += order.bytes
            self._spans(order, steps)
            self._forget(order)

    def settle(self, now_s: float | None = None, read_to_s: float | None = None) -> int:
        """Judge and forget every order whose first terminal event was read ``GRACE_S`` before
        ``now_s`` (the auditor's clock) and before ``read_to_s``, a moment by which every partition
        had been read to its end as of then (None: not known, grace alone). Orders not known to be
        started yet wait. Returns how many were judged.

        With ``written_by`` dates (an order's end dated by when its terminal event was in the log,
        not by when it was read), an order is judged once the log was read ``GRACE_S`` past that
        date: what was written up to ``GRACE_S`` after the end was read, however far behind the
        reading runs. Dated by reading, an audit reading a minute behind the log would hold a
        minute of orders more (at 5000/s, 3.7 GB in a 15-minute soak on a saturated machine)."""
        now_s = self.clock() if now_s is None else now_s
        cutoff = now_s - GRACE_S
        if read_to_s is not None:
            read_past = read_to_s if self.written_by is None else read_to_s - GRACE_S
            cutoff = max(min(cutoff, read_past), now_s - MAX_HOLD_S)
        ended, due = self.ended, []
        while ended and ended[0][0] <= cutoff:
            due.append(ended.popleft())
        if self.waiting:
            due, self.waiting = self.waiting + due, []
        judged = 0
        for entry in due:
            _, oid, seq = entry
            if not seq:
                order = self.foreign.pop(oid, None)
                if order is not None:
                    self._spans(order)
                    self._forget(order)
            elif seq > self.started_known:
                self.waiting.append(entry)  # not known to be started yet: judged once it is
            else:
                self._judge_started(seq, self.active.pop(oid, None))
                self.judged.add(seq, self.started_known)
                judged += 1
        return judged

    def started_up_to(self, count: int) -> None:
        """The load generator has started orders 1 .. ``count`` (it says so as it goes)."""
        self.started_known = max(self.started_known, count)

    def oldest_open_s(self) -> int | None:
        """The earliest second a span of an unjudged order can end in (None: no such order)."""
        return min(self.open_seconds, default=None)

    def finish(self, started_count: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> AuditReport:
        """Judge everything left; ``started_count`` orders were started (seq 1 .. n). ``progress``
        hears ``(judged, to judge)`` every :data:`FINISH_PROGRESS_EVERY` orders (the live audit
        judges the last ~30 s of a run here: some seconds at 5000 orders/s)."""
        if started_count is not None:
            self.started_known = started_count
        n = self.started_known
        report, tally = self.report, self.tally
        report.orders_started = n
        active = {order.seq: order for order in self.active.values()}
        self.active.clear()
        left = list(self.judged.unjudged(n))
        for i, seq in enumerate(left):
            if progress is not None and i % FINISH_PROGRESS_EVERY == 0:
                progress(i, len(left))
            self._judge_started(seq, active.pop(seq, None))
        if progress is not None:
            progress(len(left), len(left))
        for seq in sorted(active):  # numbered like the run's orders but never started
            order = active.pop(seq)
            self.unknown[self.started.id(seq)] = None
            self._spans(order)
            self._forget(order)
        for order in self.foreign.values():
            self._spans(order)
            self._forget(order)
        self.foreign.clear()
        for order_id in self.unknown:
            tally.note("unknown_orders", order_id)
        for category, count in tally.counts.items():  # every category is a field of the report
            setattr(report, category, count)
        report.examples = tally.examples
        report.undecodable = self.undecodable
        consumed = self.topology.consumed_topics()
        report.unconsumed_topics = {t: n for t, n in self.per_topic.items() if t not in consumed}
        report.replayed_replies = self.replays
        report.injected = self.injected
        report.dead_letters = self.per_topic.get(ev.DEAD_LETTER, 0) + self.injected.get(ev.DEAD_LETTER, 0)
        if report.finished:
            report.messages_per_order = self.messages / report.finished
            report.bytes_per_order = self.bytes / report.finished
        return report


_NO_STEPS: StepLog = {}


def _step_log(log: list) -> StepLog:
    """An order's flat log (name, ts_us, ...) as a StepLog: each name, in the order first read,
    with its ts_us in the order read."""
    pairs = iter(log)
    steps: StepLog = {name: [ts] for name, ts in zip(pairs, pairs)}
    if 2 * len(steps) == len(log):  # the common case, each name once: no name was overwritten
        return steps
    steps = {}
    pairs = iter(log)
    for name, ts in zip(pairs, pairs):
        seen = steps.get(name)
        if seen is None:
            steps[name] = [ts]
        else:
            seen.append(ts)
    return steps


def audit(records: Iterable[Record], started: Mapping[str, int], topology: Topology) -> AuditReport:
    """Audit the whole log of one run of ``topology`` (a pattern laid out for the run's saga).

    ``started``: orderId -> intended start (t0_us) of every order the load
    generator produced. A topic no service or the load generator reads that
    holds messages is reported in ``unconsumed_topics``.
    ``messages_per_order`` / ``bytes_per_order``: every record attributed to a
    started order (on any topic read, undecodable ones by key) per finished
    order; None when nothing finished.
    """
    auditor = Auditor(topology, StartedOrders.of(started))
    auditor.feed(records)
    return auditor.finish()


def step_latencies(records: Iterable[Record], topology: Topology) -> Latencies:
    """Per step name, one ``(ts_s, latency_us)`` per order that took the step:
    ``ts_s`` is the wall-clock second the step ended, ``latency_us`` the
    difference of the ``ts_us`` stamps that bound it (producers on different
    hosts may disagree, so it can be negative under clock skew). Duplicated
    events count once, from their earliest copy. ``e2e`` runs from the order's
    intended start ``t0_us`` to its first terminal event's ``ts_us``."""
    out: Latencies = {name: [] for name in topology.step_names()}
    auditor = Auditor(topology, StartedOrders.of(()), spans=out)
    auditor.feed(records)
    auditor.finish()
    return out
