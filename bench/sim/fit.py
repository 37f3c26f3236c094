"""Fitting to real runs what calibration cannot measure safely: the wait for cores on a busy host,
and the CPU that depends on how batches form at each rate, which one probe cannot show: the
services', the load generator's and the broker's per Kafka request and at rest.

Pushing a shared machine to saturation to watch hops slow down would disturb
everything else running on it, and a plain CPU burner does not reproduce it
(the scheduler favours the threads that wake for a message over a spinning
one). So ``contention_us`` is fitted to real runs instead: the value with
which the model's end-to-end p50 of those runs is, in the geometric mean,
neither above nor below the real one. Runs at low load hardly depend on it;
the runs near the machine's limit decide it.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.errors import BadInput
from bench.results import files as results
from bench.results import summary as run_summary
from bench.patterns import PATTERNS
from bench.results.recording import summary_ms
from bench.sim.histograms import histogram_of
from bench.sim.model import Scenario, simulate
from bench.sim.profile import Profile
from bench.flow.workload import Fault, Workload

MAX_CONTENTION_US = 20_000.0
STEPS = 12
MAX_FIT_DURATION_S = 12.0  # simulate at most this much of each reference run


@dataclasses.dataclass(frozen=True)
class Reference:
    pattern: str
    workload: Workload
    p50_ms: float
    directory: Path
    messages_per_s: float | None = None
    broker_cores: float | None = None  # the broker's CPU during the run, when it was measured
    services_us: dict[str, float] | None = None  # role -> its instances' CPU per started order
    audit: tuple[float, float] | None = None  # the live audit's (CPU seconds, records it read), when it ran
    load_generator_us: float | None = None  # the load generator's CPU per started order


def reference(directory: str | Path) -> Reference:
    summary = run_summary.read(directory)  # schema-checked: every key used below is there, of its type
    p50 = summary["latency_ms"]["e2e"].get("p50")
    if p50 is None or p50 <= 0:
        raise results.ResultsError(f"{directory}: no end-to-end latency to fit to")
    workload = workload_of(summary, directory)
    broker_s = (summary.get("cpu_s") or {}).get("broker")
    # What the CPU figures span: the load and its drain (a real run's cost.load_s, a simulated run's
    # simulated seconds); the loaded seconds when neither was recorded.
    window_s = ((summary.get("cost") or {}).get("load_s") or (summary.get("simulation") or {}).get("simulated_s")
                or workload.warmup_s + workload.duration_s)
    messages = summary.get("messages_per_order")
    started = (summary.get("orders") or {}).get("started")
    services = (summary.get("cpu_s") or {}).get("services")
    auditor_s = (summary.get("cpu_s") or {}).get("auditor")
    load_s = (summary.get("cpu_s") or {}).get("load_generator")
    return Reference(summary["pattern"], workload.with_overrides(duration_s=min(workload.duration_s, MAX_FIT_DURATION_S)),
                     # the message rate over the same window as the CPU figures
                     p50, Path(directory), (messages * started / window_s if started else messages * workload.rate_per_s)
                     if messages else None,
                     broker_s / window_s if broker_s else None,
                     {role: s / started * 1e6 for role, s in services.items() if s is not None} if services and started else None,
                     (auditor_s, messages * started) if auditor_s and messages and started else None,
                     load_s / started * 1e6 if load_s and started else None)


def workload_of(summary: dict, directory: str | Path | None = None) -> Workload:
    """The workload a run used, rebuilt from its summary (``Workload.to_dict``) and validated as a
    workload file is: a summary recording a workload this version refuses is one line (ResultsError)."""
    where = f"{Path(directory) / results.SUMMARY}" if directory is not None else "summary.json"
    if summary.get("pattern") not in PATTERNS:
        raise results.ResultsError(f"{where}: pattern is not one this bench knows ({', '.join(PATTERNS)})")
    raw = summary.get("workload")
    if not isinstance(raw, dict):
        raise results.ResultsError(f"{where}: workload is missing or not an object")
    known = {f.name for f in dataclasses.fields(Workload) if f.init} | {"processing_s"}
    unknown = [k for k in raw if k not in known]
    if unknown:
        raise results.ResultsError(f"{where}: workload.{str(unknown[0])[:60]} is not a workload field of this bench")
    fields = {k: v for k, v in raw.items() if k != "source"}
    if "processing_s" in fields:  # written before sagas were defined in the workload
        fields["processing"] = fields.pop("processing_s")
    faults = fields.get("faults", ())
    if not isinstance(faults, list) or not all(isinstance(f, dict) for f in faults):
        raise results.ResultsError(f"{where}: workload.faults must be a list of objects")
    names = {f.name for f in dataclasses.fields(Fault)}
    for i, fault in enumerate(faults):
        if set(fault) - names or not {"type", "at_s"} <= set(fault):
            raise results.ResultsError(f"{where}: workload.faults[{i}] has missing or unknown keys")
    fields["faults"] = tuple(Fault(**f) for f in faults)
    try:
        return Workload(**fields)
    except BadInput as err:
        raise results.ResultsError(f"{where}: the workload it records is refused: {_after_where(str(err))}") from None
    except (TypeError, AttributeError, KeyError, OverflowError) as err:
        raise results.ResultsError(f"{where}: the workload it records is refused ({type(err).__name__})") from None


def _after_where(message: str) -> str:
    """A workload error without its own 'workload <name>:' prefix."""
    return message.split(": ", 1)[1] if message.startswith("workload ") and ": " in message else message


def simulated_p50_ms(profile: Profile, ref: Reference) -> float:
    result = simulate(Scenario(PATTERNS[ref.pattern], ref.workload, profile))
    return summary_ms(histogram_of(result.e2e[1] * 1e6))["p50"] or 0.0


def mean_log_error(profile: Profile, refs: Sequence[Reference]) -> float:
    return sum(math.log(simulated_p50_ms(profile, r) / r.p50_ms) for r in refs) / len(refs)


def _nonnegative_lstsq(x: np.ndarray, y: np.ndarray, scale: np.ndarray | None = None) -> np.ndarray:
    """Least squares with every coefficient >= 0: the best of the fits on each subset of the columns
    whose coefficients all come out non-negative (a few columns: every subset is cheap). ``scale``
    (one value per row, the real figure the row explains): minimise the errors relative to it."""
    if scale is not None:
        x, y = x / scale[:, None], y / scale
    n = x.shape[1]
    best, best_error = np.zeros(n), float(y @ y)
    for mask in range(1, 1 << n):
        cols = [i for i in range(n) if mask >> i & 1]
        coef = np.linalg.lstsq(x[:, cols], y, rcond=None)[0]
        if (coef < 0).any():
            continue
        error = float(np.sum((x[:, cols] @ coef - y) ** 2))
        if error < best_error:
            best, best_error = np.zeros(n), error
            best[cols] = coef
    return best


def fit_cpu(profile: Profile, refs: Sequence[Reference], echo: Callable[[str], None] = print) -> Profile:
    """``profile`` with the CPU that depends on how batches form, fitted to what the references'
    processes used against the Kafka requests the model counts for each (one simulation per reference,
    from a profile without these costs):

    - the services' CPU per Kafka request and per second at rest (``service_cpu_us["request"]`` and
      ``["idle_cores"]``): each role's real CPU per order beyond the model's per-message and
      per-wake-up charges, one fit over every role of every reference;
    - the load generator's CPU per order, per Kafka request of its producer and terminal reader, and
      per second (``load_generator``);
    - the broker's CPU at rest, per message/s and per Kafka request/s of every client
      (``broker_cores_line``): a broker's work follows its requests as much as its messages.

    References at several rates separate the terms: at a low rate every message is a request of its
    own and a second of rest is shared by few orders, at a high rate a request carries dozens and a
    second thousands. A term that would come out negative is left out (zero)."""
    base = dataclasses.replace(profile, service_cpu_us={**profile.service_cpu_us, "request": 0.0, "idle_cores": 0.0},
                               load_generator={**profile.load_generator, "request_us": 0.0})
    services_y, services_x, load_y, load_x, broker_y, broker_x = [], [], [], [], [], []
    services_real: list[float] = []  # each services row's real CPU per order, which its error is relative to
    load_rates: list[float] = []
    rates: list[float] = []  # of the references that measured the broker
    for ref in refs:
        scenario = Scenario(PATTERNS[ref.pattern], ref.workload, base)
        result = simulate(scenario)
        started = result.load.started_count
        if not started:
            continue
        for role, real_us in (ref.services_us or {}).items():
            # A row's error is relative to its real figure (below): none to be relative to, no row.
            if role in result.processed and math.isfinite(real_us) and real_us > 0:
                instances = ref.workload.instances.get(role, 1)
                services_y.append(real_us - result.cpu_s.get(role, 0.0) / started * 1e6)
                services_real.append(real_us)
                services_x.append((result.requests[role] / started, instances * result.elapsed_s / started * 1e6))
        if ref.load_generator_us is not None and math.isfinite(ref.load_generator_us) and ref.load_generator_us > 0:
            load_rates.append(ref.workload.rate_per_s)
            load_y.append(ref.load_generator_us)
            load_x.append((1.0, result.requests["load_generator"] / started, result.elapsed_s / started * 1e6))
        if ref.broker_cores is not None and ref.messages_per_s:
            brokers = scenario.broker_count
            broker_y.append(ref.broker_cores / brokers)
            broker_x.append((1.0, ref.messages_per_s / brokers, sum(result.requests.values()) / result.elapsed_s / brokers))
            rates.append(ref.workload.rate_per_s)
    service_cpu, load_generator, line = dict(profile.service_cpu_us), dict(profile.load_generator), profile.broker_cores_line
    if services_x and any(r for r, _ in services_x):
        # Relative errors: a run at 200/s costs ten times the CPU per order of one at 5000/s, and in
        # absolute terms would decide the fit alone; the targets are relative.
        per_request, idle = _nonnegative_lstsq(np.asarray(services_x), np.asarray(services_y), np.asarray(services_real))
        service_cpu.update(request=round(float(per_request), 2), idle_cores=round(float(idle), 5))
        echo(f"service CPU: {per_request:.1f} us per Kafka request, {idle:.4f} cores per instance at rest, "
             f"fitted to {len(refs)} run(s)")
    else:
        echo("service CPU: no reference measured its services' CPU; keeping the profile's")
    # Three terms each: at least three references, at two rates or more, or the fit is not determined.
    if len(load_x) >= 3 and len(set(load_rates)) >= 2:
        order, request, idle = _nonnegative_lstsq(np.asarray(load_x), np.asarray(load_y), np.asarray(load_y))
        load_generator.update(order_us=round(float(order), 2), request_us=round(float(request), 2),
                              idle_cores=round(float(idle), 5))
        echo(f"load generator CPU: {order:.1f} us per order, {request:.1f} us per Kafka request, "
             f"{idle:.4f} cores at rest")
    else:
        echo("load generator CPU: fewer than three references, or all at one rate, measured it; keeping the profile's")
    if len(broker_x) >= 3 and len(set(rates)) >= 2:
        rest, per_message, per_request = (float(v) for v in _nonnegative_lstsq(np.asarray(broker_x), np.asarray(broker_y)))
        line = (round(rest, 4), per_message, per_request)
        echo(f"broker CPU: {rest:.3f} cores + {per_message * 1e6:.2f} per million messages/s "
             f"+ {per_request * 1e3:.3f} per thousand requests/s")
    else:
        echo("broker CPU: fewer than three references, or all at one rate, measured it; keeping the profile's")
    return dataclasses.replace(profile, service_cpu_us=service_cpu, load_generator=load_generator,
                               broker_cores_line=line)


def fit_contention(profile: Profile, refs: Sequence[Reference],
                   echo: Callable[[str], None] = print) -> Profile:
    """``profile`` with the ``contention_us`` that brings the mean log error of p50 to zero
    (bisection: more contention never makes the model faster)."""
    low, high = 0.0, MAX_CONTENTION_US
    at = lambda c: mean_log_error(dataclasses.replace(profile, contention_us=c), refs)
    if at(low) >= 0:
        echo("contention: the model is not faster than the references without it; contention_us = 0")
        return dataclasses.replace(profile, contention_us=0.0)
    for _ in range(STEPS):
        middle = (low + high) / 2
        error = at(middle)
        echo(f"contention: {middle:.0f} us -> mean p50 error {math.expm1(error) * 100:+.1f}%")
        if error < 0:
            low = middle
        else:
            high = middle
    return dataclasses.replace(profile, contention_us=round((low + high) / 2, 1))


def fit_auditor(profile: Profile, refs: Sequence[Reference], echo: Callable[[str], None] = print) -> Profile:
    """``profile`` with the live audit's CPU per record read: all the references' audit CPU over all
    the records they produced (the audit reads each once; its cost per record hardly moves with the rate)."""
    audits = [r.audit for r in refs if r.audit]
    if not audits:
        echo("audit CPU: no reference ran the live audit; keeping the profile's")
        return profile
    per_record = sum(s for s, _ in audits) / sum(n for _, n in audits) * 1e6
    echo(f"audit CPU: {per_record:.2f} us per record read, fitted to {len(audits)} run(s)")
    return dataclasses.replace(profile, auditor_us=round(per_record, 3))


def fit_all(profile: Profile, refs: Sequence[Reference], echo: Callable[[str], None] = print) -> Profile:
    """Every fitted parameter, in the order they depend on each other: the services', the live
    audit's and the broker's CPU (together they set how busy the host is), then the wait for cores
    on a host that busy."""
    profile = fit_contention(fit_auditor(fit_cpu(profile, refs, echo), refs, echo), refs, echo)
    return dataclasses.replace(profile, measured={**profile.measured, "fitted_to": [r.directory.name for r in refs]})
