"""Rate sweeps: every pattern at every rate into one directory, and each pattern's knee.

The knee is the highest rate that held (most of its runs were valid, holding the rate
with a backlog that did not grow, with p99 end-to-end latency under the workload's
``latency_bound_p99``), and every lower rate of the sweep too. No single run decides it:
a rate whose one run missed is run again before its miss counts, and with ``repeat`` the
rates on either side of the knee are each run that many times.
``sweep.json`` is rewritten after every run, so an interrupted sweep keeps what it
measured; each rate is a series directory beside it (``<pattern>-<rate>/1``, ``/2`` ...),
which ``bench compare`` reads like ``bench run --repeat``'s.
"""
from __future__ import annotations

import io
import math
import statistics
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

SWEEP = results.SWEEP
PLOT = "sweep.png"
SCHEMA_VERSION = 2  # 2: several runs per rate (`run`), `repeat`, `stop_early`, `knee_passes_per_s`


@dataclass(frozen=True)
class SweepRequest:
    patterns: tuple[Pattern, ...]
    rates_per_s: tuple[float, ...]
    workload: Workload
    bootstrap_servers: str | None = None  # None: the embedded broker (started for the sweep if none runs)
    kafka_config: Path | None = None
    output: Path | None = None
    results_base: Path = Path("results")
    stop_early: bool = False  # skip a pattern's higher rates once a rate did not hold
    repeat: int = 1  # runs of each rate on either side of the knee (a lone miss is run again whatever this is)


@dataclass(frozen=True)
class Point:
    """One run of the sweep; ``directory`` is relative to the sweep directory, ``run`` is its
    number among the runs of its rate (1 in a version 1 sweep.json, which has no such key)."""

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
    run: int = 1

    @classmethod
    def of(cls, summary: dict[str, Any], directory: str, run: int = 1) -> Point:
        e2e = summary["latency_ms"]["e2e"]
        return cls(summary["pattern"], summary["rate_target_per_s"], summary["rate_achieved_per_s"],
                   bool(summary["valid"]), summary.get("invalid_reason"), e2e["p50"], e2e["p99"], e2e["p999"],
                   run_summary.clean(summary), directory, run)

    def within(self, bound_p99_ms: float) -> bool:
        return self.valid and self.p99_ms is not None and self.p99_ms < bound_p99_ms


def runs_by_rate(points: Sequence[Point]) -> dict[float, list[Point]]:
    """Each target rate's runs in the order they ran, rates ascending."""
    runs: dict[float, list[Point]] = {}
    for point in sorted(points, key=lambda p: p.rate_target_per_s):
        runs.setdefault(point.rate_target_per_s, []).append(point)
    return runs


def held(runs: Sequence[Point], bound_p99_ms: float) -> bool | None:
    """Whether a rate held, judged on its runs: True when most were valid with p99 under the
    bound; False when most missed and at least two did; None (undecided) otherwise.

    One miss alone is not believed: on a shared machine a stall of a second or two near the end
    of a short run leaves it short of its rate (orchestration at 12,000/s finished 0.2% short
    after one in the last two seconds of a 20 s run). That run still says it is invalid; the
    rate is judged on a second run, and a third when the two disagree."""
    within = sum(p.within(bound_p99_ms) for p in runs)
    missed = len(runs) - within
    if within > missed:
        return True
    if missed > within and missed >= 2:
        return False
    return None


def knee(points: Sequence[Point], bound_p99_ms: float) -> float | None:
    """The highest target rate that held (:func:`held`), counting up from the lowest rate and
    stopping at the first that did not: a higher rate that holds after a miss is luck (a quiet
    moment on the machine), not capacity. With one run per rate: the highest valid rate with
    p99 under the bound below the first that was not."""
    best = None
    for rate, runs in runs_by_rate(points).items():
        if held(runs, bound_p99_ms) is not True:
            break
        best = rate
    return best


def pass_knees(points: Sequence[Point], bound_p99_ms: float) -> list[float | None]:
    """The knee of each pass over the rates: pass k takes each rate's k-th run (its last when it
    has fewer), so the spread of these is how far the knee moves from one run to the next."""
    runs = list(runs_by_rate(points).values())
    count = max(map(len, runs), default=0)
    return [knee([r[min(k, len(r) - 1)] for r in runs], bound_p99_ms) for k in range(count)]


def next_run(rates: Sequence[float], points: Sequence[Point], bound_p99_ms: float, repeat: int = 1,
             stop_early: bool = False) -> tuple[float, str] | None:
    """The rate one pattern's sweep runs next and why; None when its knee is settled.

    First each rate once, ascending (with ``stop_early`` none above the first rate that did not
    hold). Then the first rate that is undecided is run again, and once one did not hold, it and
    the knee below it are each run until they have ``repeat`` runs. That can move the knee
    (the knee's rate misses, or the rate above holds after all): the new bracket is settled the
    same way, and with ``stop_early`` the rates above a rate that now holds are run."""
    runs = runs_by_rate(points)
    if not stop_early:
        unrun = [rate for rate in sorted(rates) if rate not in runs]
        if unrun:
            return unrun[0], "first pass"
    below = None
    for rate in sorted(rates):
        if rate not in runs:
            return rate, "first pass"
        verdict = held(runs[rate], bound_p99_ms)
        if verdict is None:
            return rate, "a lone miss is run again" if len(runs[rate]) == 1 else "its runs disagree"
        if verdict is False:
            return _short_series(runs, (rate, below), repeat)
        below = rate
    return _short_series(runs, (below,), repeat)  # every rate held: the highest is the knee


def _short_series(runs: dict[float, list[Point]], rates: Sequence[float | None],
                  repeat: int) -> tuple[float, str] | None:
    for rate in rates:
        if rate is not None and len(runs[rate]) < repeat:
            return rate, f"next to the knee: run {len(runs[rate]) + 1} of {repeat}"
    return None


@dataclass
class SweepOutcome:
    directory: Path
    points: list[Point]
    bound_p99_ms: float
    knees: dict[str, float | None] = field(default_factory=dict)
    passes: dict[str, list[float | None]] = field(default_factory=dict)  # pattern: knee of each pass
    interrupted: bool = False

    def of(self, pattern: str) -> list[Point]:
        return [p for p in self.points if p.pattern == pattern]

    def judge(self, patterns: Sequence[str]) -> None:
        """Each pattern's knee and the knee of each of its passes, from the runs so far."""
        self.knees = {name: knee(self.of(name), self.bound_p99_ms) for name in patterns}
        self.passes = {name: pass_knees(self.of(name), self.bound_p99_ms) for name in patterns}

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
    with one_broker(checked[0], echo):
        for pattern in request.patterns:
            _sweep_pattern(request, pattern, outcome, echo)
            if outcome.interrupted:
                break
    if outcome.points:
        (out / PLOT).write_bytes(plot(outcome))
    return outcome


def _sweep_pattern(request: SweepRequest, pattern: Pattern, outcome: SweepOutcome,
                   echo: Callable[[str], None]) -> None:
    """Run one pattern's rates until :func:`next_run` says its knee is settled, or a run is interrupted."""
    rates = sorted(set(request.rates_per_s))
    while step := next_run(rates, outcome.of(pattern.name), outcome.bound_p99_ms, request.repeat, request.stop_early):
        rate, why = step
        number = 1 + sum(p.rate_target_per_s == rate for p in outcome.of(pattern.name))
        name = f"{pattern.name}-{rate_text(rate)}/{number}"
        echo(f"sweep run {len(outcome.points) + 1}: {pattern.name} at {rate:g}/s ({why}) -> {outcome.directory / name}")
        result = run(RunRequest(pattern, request.workload.with_overrides(rate_per_s=rate),
                                request.bootstrap_servers, request.kafka_config, outcome.directory / name), echo)
        outcome.points.append(Point.of(result.summary, name, number))
        outcome.judge([p.name for p in request.patterns])
        write_sweep(outcome, request)
        if result.summary["interrupted"]:
            outcome.interrupted = True
            return
    runs = runs_by_rate(outcome.of(pattern.name))
    skipped = [rate_text(r) for r in rates if r not in runs]
    if skipped:
        missed = min(r for r, points in runs.items() if held(points, outcome.bound_p99_ms) is False)
        echo(f"sweep: {pattern.name} did not hold {rate_text(missed)}/s in "
             f"{_held_text(runs[missed], outcome.bound_p99_ms)}; skipped {', '.join(skipped)}/s")


def _held_text(runs: Sequence[Point], bound_p99_ms: float) -> str:
    return f"{sum(p.within(bound_p99_ms) for p in runs)} of {len(runs)} run{'s' if len(runs) > 1 else ''}"


def write_sweep(outcome: SweepOutcome, request: SweepRequest) -> Path:
    document = {
        "schema_version": SCHEMA_VERSION,
        "kind": "sweep",
        "patterns": [p.name for p in request.patterns],
        "rates_per_s": sorted(set(request.rates_per_s)),
        "repeat": request.repeat,
        "stop_early": request.stop_early,
        "latency_bound_p99_ms": outcome.bound_p99_ms,
        "knees_per_s": outcome.knees,
        "knee_passes_per_s": outcome.passes,
        "points": [asdict(p) for p in outcome.points],
        "workload": secrets.redact(request.workload.to_dict()),
        "environment": results.environment(),
    }
    # Atomic: an interrupted sweep leaves the last whole file.
    return results.write_json(outcome.directory / SWEEP, document)


def plot(outcome: SweepOutcome) -> bytes:
    """p50 (dashed) and p99 (solid) against finished throughput per pattern, the lines through
    each rate's median run; a mark per run, hollow for invalid runs; the dotted line is the p99
    bound, a star marks each knee."""
    fig = Figure(figsize=(9.0, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for k, pattern in enumerate(dict.fromkeys(p.pattern for p in outcome.points)):
        runs = runs_by_rate(outcome.of(pattern))
        every = [p for points in runs.values() for p in points]
        x = [_median(p.rate_achieved_per_s for p in points) for points in runs.values()]
        color = f"C{k}"
        for stat, style in (("p99_ms", "-"), ("p50_ms", "--")):
            y = [_median(getattr(p, stat) for p in points) for points in runs.values()]
            ax.plot(x, y, style, color=color, label=f"{pattern} {stat.removesuffix('_ms')}")
            ax.scatter([p.rate_achieved_per_s for p in every], [_number(getattr(p, stat)) for p in every],
                       color=color, zorder=3, facecolors=[color if p.valid else "white" for p in every])
        best = knee(every, outcome.bound_p99_ms)
        for (rate, points), xr in zip(runs.items(), x):
            yr = _median(p.p99_ms for p in points)
            ax.annotate(f"{rate_text(rate)}/s", (xr, 0 if math.isnan(yr) else yr),
                        textcoords="offset points", xytext=(4, 4), fontsize="x-small", color=color)
            if rate == best:
                ax.plot([xr], [yr], "*", color=color, markersize=16, label=f"{pattern} knee {rate_text(best)}/s")
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


def _number(value: float | None) -> float:
    return math.nan if value is None else value


def _median(values) -> float:
    """The median of the known values (NaN, which matplotlib leaves out, when none is known)."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else math.nan


def render_table(outcome: SweepOutcome) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.1f}"
    rows = [("pattern", "rate/s", "run", "finished/s", "valid", "p50 ms", "p99 ms", "p99.9 ms", "audit")]
    for p in sorted(outcome.points, key=lambda p: (p.pattern, p.rate_target_per_s, p.run)):
        rows.append((p.pattern, rate_text(p.rate_target_per_s), str(p.run), fmt(p.rate_achieved_per_s),
                     "yes" if p.valid else "no", fmt(p.p50_ms), fmt(p.p99_ms), fmt(p.p999_ms),
                     "clean" if p.clean else "PROBLEMS"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines += [knee_line(outcome, pattern) for pattern in outcome.knees]
    return "\n".join(lines)


def knee_line(outcome: SweepOutcome, pattern: str) -> str:
    """``knee <pattern>: <rate>/s (...)``: the runs that held it, the rate above and its runs, and
    the knee's spread over the passes."""
    bound = outcome.bound_p99_ms
    rate = outcome.knees.get(pattern)
    runs = runs_by_rate(outcome.of(pattern))
    if not runs:
        return f"knee {pattern}: not measured"
    held_by = lambda r: f"valid with p99 < {bound:g} ms in {_held_text(runs[r], bound)}"
    above = next((r for r in runs if rate is None or r > rate), None)  # the rate that did not hold
    if rate is None:
        facts = [f"the lowest rate, {rate_text(above)}/s, {held_by(above)}"]
    elif above is None:
        facts = [held_by(rate), "the highest rate swept: the knee may lie above"]
    else:
        facts = [held_by(rate), f"{rate_text(above)}/s in {_held_text(runs[above], bound)}"]
    passes = outcome.passes.get(pattern) or []
    if len(passes) > 1:
        facts.append(spread_text(passes))
    return f"knee {pattern}: {rate_text(rate) + '/s' if rate is not None else 'none'}  ({'; '.join(facts)})"


def spread_text(passes: Sequence[float | None]) -> str:
    """The knee's spread over the passes, ``10000..12000/s over 3 passes`` (none lowest)."""
    show = lambda k: "none" if k is None else rate_text(k)
    ordered = sorted(passes, key=lambda k: -math.inf if k is None else k)
    if ordered[0] == ordered[-1]:
        return f"the same in all {len(passes)} passes"
    return f"{show(ordered[0])}..{show(ordered[-1])}/s over {len(passes)} passes"
