"""`bench validate`: the model against the real broker, side by side.

A matrix of cells, every pattern x workload (saga) x rate: a real run (:func:`bench.run.run.run`)
and a simulation of the same workload; or, with ``against``, simulations of real result
directories measured before. The error of p50, p99, CPU per order and finished throughput
is the simulated value's relative difference from the real one; each pattern's knee
(:func:`bench.run.sweep.knee`) is found in both and compared. Targets: p50 within 15%, p99
within 30% and CPU per order within 20% where the real run held its rate, knee within 20%.

With ``fit_rates``, the model's fitted parameters (the wait for cores, the broker's CPU line:
:mod:`bench.sim.fit`) are fitted to the real runs of the cells at those rates only, and the
targets are judged on the other cells, which the fit never saw: the errors are not a fit to
themselves.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import inputs
from bench.errors import BadInput
from bench.results import files as results
from bench.results import summary as run_summary
from bench.kafka import secrets
from bench.patterns import PATTERNS
from bench.patterns.base import Pattern
from bench.run.run import RunRequest
from bench.run.run import run as real_run
from bench.sim import simulation
from bench.sim import fit
from bench.sim.fit import workload_of
from bench.sim.profile import Profile
from bench.run.sweep import Point, knee, rate_text, sweep_dir
from bench.flow.workload import Workload

TARGETS = {"p50": 0.15, "p99": 0.30, "cpu": 0.20, "knee": 0.20}
VALIDATION = "validation.json"


@dataclass(frozen=True)
class ValidateRequest:
    patterns: tuple[Pattern, ...]
    rates_per_s: tuple[float, ...]
    workloads: tuple[Workload, ...]  # the sagas (and settings) of the matrix, each at every rate
    profile: Profile
    bootstrap_servers: str | None = None
    kafka_config: Path | None = None
    output: Path | None = None
    results_base: Path = Path("results")
    against: tuple[Path, ...] = ()  # real result dirs to simulate instead of running
    fit_rates: tuple[float, ...] = ()  # cells at these rates are fitted to; the others are judged


def cpu_us_per_order(summary: dict, broker: bool) -> float | None:
    """CPU per started order as the model counts it: the load generator and the services, and the
    broker's when ``broker`` (the live audit is the harness's, not the system's: the model charges it to
    the host, where it competes for the cores, but it is not what a pattern costs)."""
    cpu, started = summary.get("cpu_s") or {}, (summary.get("orders") or {}).get("started")
    if not started or cpu.get("load_generator") is None:
        return None
    total = cpu["load_generator"] + sum((cpu.get("services") or {}).values())
    if broker:
        if cpu.get("broker") is None:
            return None
        total += cpu["broker"]
    return total / started * 1e6


def messages_per_request(summary: dict) -> float | None:
    """Messages per produce request over every client, as librdkafka counted them in a real run (its
    ``cost.batching``) or as the model did (``simulation.batching``): how batches formed at the rate."""
    batching = (summary.get("cost") or {}).get("batching") or (summary.get("simulation") or {}).get("batching") or {}
    return (batching.get("all") or {}).get("messages_per_produce_request")


@dataclass
class Pair:
    pattern: str
    workload: str  # its name: knees are found per pattern and workload
    rate_per_s: float
    real: Point
    sim: Point
    real_cpu_us: float | None = None  # per order, the broker's included when the real run measured it
    sim_cpu_us: float | None = None
    fitted: bool = False  # the model was fitted to this cell's real run
    real_batch: float | None = None  # messages per produce request, every client
    sim_batch: float | None = None

    def error(self, stat: str) -> float | None:
        if stat == "cpu":
            real, sim = self.real_cpu_us, self.sim_cpu_us
        elif stat == "batch":
            real, sim = self.real_batch, self.sim_batch
        else:
            real, sim = getattr(self.real, stat), getattr(self.sim, stat)
        if real is None or sim is None or real == 0:
            return None
        return (sim - real) / real

    @property
    def below_saturation(self) -> bool:
        return self.real.valid


@dataclass
class Validation:
    directory: Path
    pairs: list[Pair] = field(default_factory=list)
    bounds_p99_ms: dict[str, float] = field(default_factory=dict)  # workload name -> its latency bound
    profile: Profile | None = None  # the profile the simulations ran with (fitted, when asked)

    def bound_p99_ms(self, workload: str) -> float:
        return self.bounds_p99_ms.get(workload, 500.0)

    def judged(self) -> list[Pair]:
        """The cells the targets are judged on: those the fit never saw."""
        return [p for p in self.pairs if not p.fitted]

    def series(self) -> list[tuple[str, str]]:
        """(pattern, workload) of each sweep the pairs form, in order."""
        return list(dict.fromkeys((p.pattern, p.workload) for p in self.pairs))

    def knees(self, pattern: str, workload: str) -> tuple[float | None, float | None]:
        pairs = [p for p in self.pairs if (p.pattern, p.workload) == (pattern, workload)]
        bound = self.bound_p99_ms(workload)
        return knee([p.real for p in pairs], bound), knee([p.sim for p in pairs], bound)

    def bracketed(self, pattern: str, workload: str) -> bool:
        """Whether some real rate of the series missed the bound: only then is its knee a knee
        and not just the highest rate tried."""
        return any(not p.real.within(self.bound_p99_ms(workload)) for p in self.pairs
                   if (p.pattern, p.workload) == (pattern, workload))

    def met(self) -> bool:
        """Every target met on the judged cells (a knee counts only when both sides found one;
        CPU only where both sides measured it)."""
        for pair in self.judged():
            if not pair.below_saturation:
                continue
            for stat, key in (("p50_ms", "p50"), ("p99_ms", "p99")):
                error = pair.error(stat)
                if error is None or abs(error) > TARGETS[key]:
                    return False
            error = pair.error("cpu")
            if error is not None and abs(error) > TARGETS["cpu"]:
                return False
        for series in self.series():
            real, sim = self.knees(*series)
            if self.bracketed(*series) and (not real or not sim or abs(sim - real) / real > TARGETS["knee"]):
                return False
        return True


def check(request: ValidateRequest) -> list[tuple[Pattern, Workload, Path, dict]]:
    """Every --against result read (schema-checked, its workload validated) before anything runs."""
    names = [w.name for w in request.workloads]
    if len(set(names)) < len(names):
        raise BadInput(f"--workload: two workloads named {next(n for n in names if names.count(n) > 1)!r}; "
                       "the matrix tells its rows apart by name")
    found = []
    for directory in request.against:
        summary = run_summary.read(directory)
        found.append((PATTERNS[summary["pattern"]] if summary["pattern"] in PATTERNS else None,
                      workload_of(summary, directory), Path(directory), summary))
    return found


def validate(request: ValidateRequest, echo: Callable[[str], None] = print) -> Validation:
    check(request)
    out = request.output or sweep_dir(request.results_base)
    out.mkdir(parents=True, exist_ok=True)
    validation = Validation(out, bounds_p99_ms={w.name: w.latency_bound_p99_s * 1000.0 for w in request.workloads})
    cells = list(_real_runs(request, out, echo))  # every real run first: the fit may need them all
    # Fitted to the real runs that held their rate only: a saturated run's latency is the length of
    # its queue, which no cost of the model explains (and would drag the wait for cores to its limit).
    fitted = [(pattern, workload, real_dir) for pattern, workload, real_dir in cells
              if workload.rate_per_s in request.fit_rates and run_summary.read(real_dir).get("valid")]
    if fitted:
        echo(f"validate: fitting the model to {len(fitted)} real run(s): {', '.join(d.name for _, _, d in fitted)}")
    profile = fit.fit_all(request.profile, [fit.reference(d) for _, _, d in fitted], echo) if fitted else request.profile
    validation.profile = profile
    for pattern, workload, real_dir in cells:
        validation.bounds_p99_ms.setdefault(workload.name, workload.latency_bound_p99_s * 1000.0)
        real = run_summary.read(real_dir)
        sim_dir = out / f"{pattern.name}-{workload.name}-{rate_text(workload.rate_per_s)}-sim"
        sim = simulation.run(simulation.SimRequest(pattern, workload, profile, output=sim_dir), echo)
        with_broker = (real.get("cpu_s") or {}).get("broker") is not None
        validation.pairs.append(Pair(pattern.name, workload.name, workload.rate_per_s,
                                     Point.of(real, str(real_dir)), Point.of(sim.summary, sim_dir.name),
                                     cpu_us_per_order(real, with_broker), cpu_us_per_order(sim.summary, with_broker),
                                     fitted=workload.rate_per_s in request.fit_rates,
                                     real_batch=messages_per_request(real), sim_batch=messages_per_request(sim.summary)))
        _write(validation, request)
    return validation


def _real_runs(request: ValidateRequest, out: Path, echo):
    """(pattern, workload, real result dir): the given ones, or fresh real runs."""
    if request.against:
        for pattern, workload, directory, _ in check(request):
            yield pattern, workload, directory
        return
    for workload in request.workloads:
        for pattern in request.patterns:
            for rate in sorted(set(request.rates_per_s)):
                cell = workload.with_overrides(rate_per_s=rate)
                real_dir = out / f"{pattern.name}-{workload.name}-{rate_text(rate)}"
                echo(f"validate: real {pattern.name} ({workload.name}) at {rate:g}/s -> {real_dir}")
                real_run(RunRequest(pattern, cell, request.bootstrap_servers, request.kafka_config, real_dir), echo)
                yield pattern, cell, real_dir


def _write(validation: Validation, request: ValidateRequest) -> Path:
    profile = validation.profile or request.profile
    document = {
        "schema_version": 2,
        "kind": "validation",
        "targets": TARGETS,
        "latency_bound_p99_ms": validation.bounds_p99_ms,
        "profile": str(request.profile.source) if request.profile.source else None,
        # What the fit set (the profile's own values when nothing was fitted).
        "fitted_on_rates": list(request.fit_rates),
        "fitted": {"contention_us": profile.contention_us, "request_cpu_us": profile.service_cpu_us.get("request", 0.0),
                   "idle_cores": profile.service_cpu_us.get("idle_cores", 0.0), "auditor_us": profile.auditor_us,
                   "load_generator": dict(profile.load_generator),
                   "broker_cores_line": list(profile.broker_cores_line) if profile.broker_cores_line else None},
        "pairs": [{**asdict(p), "error": {k: p.error(f"{k}_ms") for k in ("p50", "p99")} |
                   {"cpu": p.error("cpu"), "throughput": p.error("rate_achieved_per_s"),
                                                                    "batch": p.error("batch")}}
                  for p in validation.pairs],
        "knees_per_s": [{"pattern": pattern, "workload": workload,
                         **dict(zip(("real", "sim"), validation.knees(pattern, workload)))}
                        for pattern, workload in validation.series()],
        "workloads": [secrets.redact(w.to_dict()) for w in request.workloads],
        "environment": results.environment(),
    }
    return results.write_json(validation.directory / VALIDATION, document)


def render_table(validation: Validation) -> str:
    pct = lambda e: "-" if e is None else f"{e * 100:+.0f}%"
    ms = lambda v: "-" if v is None else f"{v:.1f}"
    us = lambda v: "-" if v is None else f"{v:.0f}"
    rows = [("pattern", "workload", "rate/s", "cell", "real p50", "sim p50", "err", "real p99", "sim p99", "err",
             "real us/order", "sim us/order", "err", "real done/s", "sim done/s", "err",
             "real msg/req", "sim msg/req", "err", "real valid")]
    for p in validation.pairs:
        rows.append((p.pattern, p.workload, rate_text(p.rate_per_s), "fit" if p.fitted else "judged",
                     ms(p.real.p50_ms), ms(p.sim.p50_ms), pct(p.error("p50_ms")),
                     ms(p.real.p99_ms), ms(p.sim.p99_ms), pct(p.error("p99_ms")),
                     us(p.real_cpu_us), us(p.sim_cpu_us), pct(p.error("cpu")),
                     ms(p.real.rate_achieved_per_s), ms(p.sim.rate_achieved_per_s),
                     pct(p.error("rate_achieved_per_s")), ms(p.real_batch), ms(p.sim_batch), pct(p.error("batch")),
                     "yes" if p.real.valid else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 or i == 3 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    for pattern, workload in validation.series():
        real, sim = validation.knees(pattern, workload)
        if not validation.bracketed(pattern, workload):
            lines.append(f"knee {pattern} ({workload}): above every rate tried (real and sim valid up to "
                         f"{rate_text(max(p.rate_per_s for p in validation.pairs if (p.pattern, p.workload) == (pattern, workload)))}/s"
                         f"{'' if sim == real else ', but sim knee ' + (rate_text(sim) + '/s' if sim else 'none')})")
            continue
        error = f"{(sim - real) / real * 100:+.0f}%" if real and sim else "-"
        show = lambda k: f"{rate_text(k)}/s" if k is not None else "none"
        lines.append(f"knee {pattern} ({workload}): real {show(real)}  sim {show(sim)}  err {error}")
    profile = validation.profile
    if profile is not None and any(p.fitted for p in validation.pairs):
        line, lg = profile.broker_cores_line, profile.load_generator
        lines.append(f"fitted on the 'fit' cells: {profile.service_cpu_us.get('request', 0.0):.1f} us of CPU per Kafka "
                     f"request, {profile.service_cpu_us.get('idle_cores', 0.0):.4f} cores per service instance at rest, "
                     f"audit {profile.auditor_us:.2f} us per record, "
                     f"contention {profile.contention_us:.0f} us per hop"
                     + (f", broker {line[0]:.3f} cores + {line[1] * 1e6:.2f} per million messages/s"
                        + (f" + {line[2] * 1e3:.3f} per thousand requests/s" if len(line) > 2 else "") if line else "")
                     + f"; load generator {lg['order_us']:.1f} us per order + {lg.get('request_us', 0.0):.1f} per request"
                     + f" + {lg['idle_cores']:.4f} cores")
    lines.append(f"targets on the judged cells{' (the fit never saw them)' if any(p.fitted for p in validation.pairs) else ''} "
                 f"below saturation: p50 within {TARGETS['p50']:.0%}, p99 within {TARGETS['p99']:.0%}, "
                 f"CPU per order within {TARGETS['cpu']:.0%}; knee within {TARGETS['knee']:.0%}: "
                 f"{'met' if validation.met() else 'NOT met'}")
    return "\n".join(lines)


def rates(text: str) -> tuple[float, ...]:
    return inputs.rate_list(text, "--rates")


def fit_rates(text: str, rates_per_s: tuple[float, ...] | None) -> tuple[float, ...]:
    """--fit-rates: some of the matrix's rates, not all of them (else nothing is judged on cells the
    fit never saw); ``rates_per_s`` None: the rates of --against's runs, known once they are read."""
    chosen = inputs.rate_list(text, "--fit-rates")
    if rates_per_s is None:
        return chosen
    if any(r not in rates_per_s for r in chosen):
        raise BadInput("--fit-rates: every rate must be one of --rates")
    if set(chosen) >= set(rates_per_s):
        raise BadInput("--fit-rates: leave at least one rate of --rates out, to judge the model where it was not fitted")
    return chosen


def patterns_of(text: str) -> tuple[Pattern, ...]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PATTERNS]
    if unknown or not names:
        raise BadInput(f"--patterns: choose from {', '.join(PATTERNS)}")
    return tuple(PATTERNS[n] for n in names)

