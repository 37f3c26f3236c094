"""`bench validate`: the model against the real broker, side by side.

For every pattern and rate, a real run (:func:`bench.run.run.run`) and a simulation
of the same workload; or, with ``against``, simulations of real result
directories measured before. The error of p50, p99 and finished throughput is
the simulated value's relative difference from the real one; each pattern's
knee (:func:`bench.run.sweep.knee`) is found in both and compared. Targets: p50
within 15% and p99 within 30% where the real run held its rate, knee within 20%.
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
from bench.sim.fit import workload_of
from bench.sim.profile import Profile
from bench.run.sweep import Point, knee, rate_text, sweep_dir
from bench.flow.workload import Workload

TARGETS = {"p50": 0.15, "p99": 0.30, "knee": 0.20}
VALIDATION = "validation.json"


@dataclass(frozen=True)
class ValidateRequest:
    patterns: tuple[Pattern, ...]
    rates_per_s: tuple[float, ...]
    workload: Workload
    profile: Profile
    bootstrap_servers: str | None = None
    kafka_config: Path | None = None
    output: Path | None = None
    results_base: Path = Path("results")
    against: tuple[Path, ...] = ()  # real result dirs to simulate instead of running


@dataclass
class Pair:
    pattern: str
    workload: str  # its name: knees are found per pattern and workload
    rate_per_s: float
    real: Point
    sim: Point

    def error(self, stat: str) -> float | None:
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
    bound_p99_ms: float = 500.0

    def series(self) -> list[tuple[str, str]]:
        """(pattern, workload) of each sweep the pairs form, in order."""
        return list(dict.fromkeys((p.pattern, p.workload) for p in self.pairs))

    def knees(self, pattern: str, workload: str) -> tuple[float | None, float | None]:
        pairs = [p for p in self.pairs if (p.pattern, p.workload) == (pattern, workload)]
        return knee([p.real for p in pairs], self.bound_p99_ms), knee([p.sim for p in pairs], self.bound_p99_ms)

    def bracketed(self, pattern: str, workload: str) -> bool:
        """Whether some real rate of the series missed the bound: only then is its knee a knee
        and not just the highest rate tried."""
        return any(not p.real.within(self.bound_p99_ms) for p in self.pairs if (p.pattern, p.workload) == (pattern, workload))

    def met(self) -> bool:
        """Every target met (a knee counts only when both sides found one)."""
        for pair in self.pairs:
            if not pair.below_saturation:
                continue
            for stat, key in (("p50_ms", "p50"), ("p99_ms", "p99")):
                error = pair.error(stat)
                if error is None or abs(error) > TARGETS[key]:
                    return False
        for series in self.series():
            real, sim = self.knees(*series)
            if self.bracketed(*series) and (not real or not sim or abs(sim - real) / real > TARGETS["knee"]):
                return False
        return True


def check(request: ValidateRequest) -> list[tuple[Pattern, Workload, Path, dict]]:
    """Every --against result read (schema-checked, its workload validated) before anything runs."""
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
    validation = Validation(out, bound_p99_ms=request.workload.latency_bound_p99_s * 1000.0)
    for pattern, workload, real_dir in _real_runs(request, out, echo):
        real = run_summary.read(real_dir)
        sim_dir = out / f"{pattern.name}-{rate_text(workload.rate_per_s)}-sim"
        sim = simulation.run(simulation.SimRequest(pattern, workload, request.profile, output=sim_dir), echo)
        validation.pairs.append(Pair(pattern.name, workload.name, workload.rate_per_s,
                                     Point.of(real, str(real_dir)), Point.of(sim.summary, sim_dir.name)))
        _write(validation, request)
    return validation


def _real_runs(request: ValidateRequest, out: Path, echo):
    """(pattern, workload, real result dir): the given ones, or fresh real runs."""
    if request.against:
        for pattern, workload, directory, _ in check(request):
            yield pattern, workload, directory
        return
    for pattern in request.patterns:
        for rate in sorted(set(request.rates_per_s)):
            workload = request.workload.with_overrides(rate_per_s=rate)
            real_dir = out / f"{pattern.name}-{rate_text(rate)}"
            echo(f"validate: real {pattern.name} at {rate:g}/s -> {real_dir}")
            real_run(RunRequest(pattern, workload, request.bootstrap_servers, request.kafka_config, real_dir), echo)
            yield pattern, workload, real_dir


def _write(validation: Validation, request: ValidateRequest) -> Path:
    document = {
        "schema_version": 1,
        "kind": "validation",
        "targets": TARGETS,
        "latency_bound_p99_ms": validation.bound_p99_ms,
        "profile": str(request.profile.source) if request.profile.source else None,
        "pairs": [{**asdict(p), "error": {k: p.error(f"{k}_ms") for k in ("p50", "p99")} |
                   {"throughput": p.error("rate_achieved_per_s")}} for p in validation.pairs],
        "knees_per_s": [{"pattern": pattern, "workload": workload,
                         **dict(zip(("real", "sim"), validation.knees(pattern, workload)))}
                        for pattern, workload in validation.series()],
        "workload": secrets.redact(request.workload.to_dict()),
        "environment": results.environment(),
    }
    return results.write_json(validation.directory / VALIDATION, document)


def render_table(validation: Validation) -> str:
    pct = lambda e: "-" if e is None else f"{e * 100:+.0f}%"
    ms = lambda v: "-" if v is None else f"{v:.1f}"
    rows = [("pattern", "workload", "rate/s", "real p50", "sim p50", "err", "real p99", "sim p99", "err",
             "real done/s", "sim done/s", "err", "real valid")]
    for p in validation.pairs:
        rows.append((p.pattern, p.workload, rate_text(p.rate_per_s), ms(p.real.p50_ms), ms(p.sim.p50_ms), pct(p.error("p50_ms")),
                     ms(p.real.p99_ms), ms(p.sim.p99_ms), pct(p.error("p99_ms")),
                     ms(p.real.rate_achieved_per_s), ms(p.sim.rate_achieved_per_s),
                     pct(p.error("rate_achieved_per_s")), "yes" if p.real.valid else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
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
    lines.append(f"targets below saturation: p50 within {TARGETS['p50']:.0%}, p99 within {TARGETS['p99']:.0%}; "
                 f"knee within {TARGETS['knee']:.0%}: {'met' if validation.met() else 'NOT met'}")
    return "\n".join(lines)


def rates(text: str) -> tuple[float, ...]:
    return inputs.rate_list(text, "--rates")


def patterns_of(text: str) -> tuple[Pattern, ...]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PATTERNS]
    if unknown or not names:
        raise BadInput(f"--patterns: choose from {', '.join(PATTERNS)}")
    return tuple(PATTERNS[n] for n in names)

