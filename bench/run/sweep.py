"""Rate sweeps: every pattern at every rate into one directory, and each pattern's knee.

The knee is the highest rate whose run was valid (it held the rate, the backlog did
not grow) with p99 end-to-end latency under the workload's ``latency_bound_p99``,
and every lower rate of the sweep too.
``sweep.json`` is rewritten after every point, so an interrupted sweep keeps what it
measured; each point is an ordinary result directory beside it.
"""
from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.results import files as results
from bench.kafka import secrets
from bench.patterns.base import Pattern
from bench.run.run import RunRequest, check, one_broker, run
from bench.results import summary as run_summary
from bench.flow.workload import Workload

SWEEP = "sweep.json"
PLOT = "sweep.png"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class SweepRequest:
    patterns: tuple[Pattern, ...]
    rates_per_s: tuple[float, ...]
    workload: Workload
    bootstrap_servers: str | None = None  # None: the embedded broker (started for the sweep if none runs)
    kafka_config: Path | None = None
    output: Path | None = None
    results_base: Path = Path("results")
    stop_early: bool = False  # skip a pattern's higher rates once a point misses the bound


@dataclass(frozen=True)
class Point:
    """One run of the sweep; ``directory`` is relative to the sweep directory."""

    pattern: str
    rate_target_per_s: float
    rate_achieved_per_s: float
    valid: bool
    invalid_reason: str | None
    p50_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    clean: bool  # bench.results.summary.clean: the audit found no faulty order
    directory: str

    @classmethod
    def of(cls, summary: dict[str, Any], directory: str) -> Point:
        e2e = summary["latency_ms"]["e2e"]
        return cls(summary["pattern"], summary["rate_target_per_s"], summary["rate_achieved_per_s"],
                   bool(summary["valid"]), summary.get("invalid_reason"), e2e["p50"], e2e["p99"], e2e["p999"],
                   run_summary.clean(summary), directory)

    def within(self, bound_p99_ms: float) -> bool:
        return self.valid and self.p99_ms is not None and self.p99_ms < bound_p99_ms


def knee(points: Sequence[Point], bound_p99_ms: float) -> float | None:
    """The highest target rate that was valid with p99 under the bound, counting up from the
    lowest rate and stopping at the first that was not: a higher rate that passes after a
    miss is luck (a quiet moment on the machine), not capacity."""
    best = None
    for point in sorted(points, key=lambda p: p.rate_target_per_s):
        if not point.within(bound_p99_ms):
            break
        best = point.rate_target_per_s
    return best


@dataclass
class SweepOutcome:
    directory: Path
    points: list[Point]
    bound_p99_ms: float
    knees: dict[str, float | None] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return run_summary.EXIT_INTERRUPTED
        return run_summary.EXIT_OK if all(p.clean for p in self.points) else run_summary.EXIT_AUDIT


def rate_text(rate: float) -> str:
    return str(int(rate)) if float(rate).is_integer() else f"{rate:g}"


def sweep_dir(base: str | Path = "results", now: datetime | None = None) -> Path:
    """Create and return a new ``<base>/<UTC stamp>-sweep/`` (``-2``, ``-3``... on a clash)."""
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    Path(base).mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        path = Path(base) / (f"{stamp}-sweep" if attempt == 1 else f"{stamp}-sweep-{attempt}")
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise results.ResultsError(f"{base}: too many sweep directories named {stamp}-sweep")


def sweep(request: SweepRequest, echo: Callable[[str], None] = print) -> SweepOutcome:
    checked = [RunRequest(p, request.workload, request.bootstrap_servers, request.kafka_config) for p in request.patterns]
    for each in checked:
        check(each)  # bad input is one line, and no sweep directory
    out = request.output or sweep_dir(request.results_base)
    out.mkdir(parents=True, exist_ok=True)
    outcome = SweepOutcome(out, [], request.workload.latency_bound_p99_s * 1000.0)
    rates = sorted(set(request.rates_per_s))
    total, done = len(request.patterns) * len(rates), 0
    with one_broker(checked[0], echo):
        for pattern in request.patterns:
            for rate in rates:
                done += 1
                name = f"{pattern.name}-{rate_text(rate)}"
                echo(f"sweep point {done}/{total}: {pattern.name} at {rate:g}/s -> {out / name}")
                result = run(RunRequest(pattern, request.workload.with_overrides(rate_per_s=rate),
                                        request.bootstrap_servers, request.kafka_config, out / name), echo)
                point = Point.of(result.summary, name)
                outcome.points.append(point)
                outcome.knees = {p.name: knee([q for q in outcome.points if q.pattern == p.name],
                                              outcome.bound_p99_ms) for p in request.patterns}
                write_sweep(outcome, request)
                if result.summary["interrupted"]:
                    outcome.interrupted = True
                    break
                if request.stop_early and not point.within(outcome.bound_p99_ms):
                    echo(f"sweep: {pattern.name} missed the bound at {rate:g}/s; skipping its higher rates")
                    break
            if outcome.interrupted:
                break
    if outcome.points:
        (out / PLOT).write_bytes(plot(outcome))
    return outcome


def write_sweep(outcome: SweepOutcome, request: SweepRequest) -> Path:
    document = {
        "schema_version": SCHEMA_VERSION,
        "kind": "sweep",
        "patterns": [p.name for p in request.patterns],
        "rates_per_s": sorted(set(request.rates_per_s)),
        "latency_bound_p99_ms": outcome.bound_p99_ms,
        "knees_per_s": outcome.knees,
        "points": [asdict(p) for p in outcome.points],
        "workload": secrets.redact(request.workload.to_dict()),
        "environment": results.environment(),
    }
    # Atomic: an interrupted sweep leaves the last whole file.
    return results.write_json(outcome.directory / SWEEP, document)


def plot(outcome: SweepOutcome) -> bytes:
    """p50 (dashed) and p99 (solid) against finished throughput per pattern; hollow marks
    are invalid runs, the dotted line is the p99 bound, a star marks each knee."""
    fig = Figure(figsize=(9.0, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, pattern in enumerate(dict.fromkeys(p.pattern for p in outcome.points)):
        points = sorted((p for p in outcome.points if p.pattern == pattern), key=lambda p: p.rate_target_per_s)
        x = [p.rate_achieved_per_s for p in points]
        color = f"C{k}"
        for stat, style in (("p99_ms", "-"), ("p50_ms", "--")):
            y = [getattr(p, stat) for p in points]
            ax.plot(x, y, style, color=color, label=f"{pattern} {stat.removesuffix('_ms')}")
            ax.scatter(x, y, color=color, zorder=3,
                       facecolors=[color if p.valid else "white" for p in points])
        best = knee(points, outcome.bound_p99_ms)
        for p in points:
            ax.annotate(f"{rate_text(p.rate_target_per_s)}/s", (p.rate_achieved_per_s, p.p99_ms or 0),
                        textcoords="offset points", xytext=(4, 4), fontsize="x-small", color=color)
            if p.rate_target_per_s == best:
                ax.plot([p.rate_achieved_per_s], [p.p99_ms], "*", color=color, markersize=16,
                        label=f"{pattern} knee {rate_text(best)}/s")
    ax.axhline(outcome.bound_p99_ms, color="0.4", linestyle=":", label=f"p99 bound {outcome.bound_p99_ms:g} ms")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("finished orders per second")
    ax.set_ylabel("end-to-end latency (ms, log)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("Latency against throughput (hollow: invalid run)")
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def render_table(outcome: SweepOutcome) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.1f}"
    rows = [("pattern", "rate/s", "finished/s", "valid", "p50 ms", "p99 ms", "p99.9 ms", "audit")]
    for p in outcome.points:
        rows.append((p.pattern, rate_text(p.rate_target_per_s), fmt(p.rate_achieved_per_s),
                     "yes" if p.valid else "no", fmt(p.p50_ms), fmt(p.p99_ms), fmt(p.p999_ms),
                     "clean" if p.clean else "PROBLEMS"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    for pattern, rate in outcome.knees.items():
        where = f"{rate_text(rate)}/s" if rate is not None else "none (no valid rate under the bound)"
        top = max((p.rate_target_per_s for p in outcome.points if p.pattern == pattern), default=None)
        above = ", the highest rate swept: the knee may lie above" if rate is not None and rate == top else ""
        lines.append(f"knee {pattern}: {where}  (valid, p99 < {outcome.bound_p99_ms:g} ms{above})")
    return "\n".join(lines)
