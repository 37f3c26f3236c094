"""`bench report`: one self-contained HTML file of charts comparing result directories.

Charts are drawn with matplotlib's Agg canvas (no display, no pyplot state), saved as
PNGs beside the HTML and embedded in it as data URIs, so the file opens offline.
"""
from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

from bench import inputs, ownership
from bench.compare.render import fmt_change, fmt_value, label
from bench.compare.sides import Result, Side
from bench.compare.table import side_by_side, step_names
from bench.results.measurement import Second
from bench.results.recording import E2E_HLOG, merged, summary_ms
from bench.results.summary import Orders
from bench.results.files import TIMESERIES, ResultsError, read_timeseries

NINES = 6  # the spectrum's x axis runs to 99.9999%
DPI = 100


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    png: bytes


# Labels are plain text: a name or value holding `$...$` is not matplotlib mathtext.
_PLAIN = {"text.parse_math": False, "text.usetex": False}
# In every PNG bench writes (a tEXt chunk near the start): how `bench report` knows a PNG beside
# its HTML is one of its own and may be replaced; any other file of that name is the user's.
PNG_MARK = "bench report chart"


def _figure(width: float = 9.0, height: float = 4.5) -> Figure:
    with matplotlib.rc_context(_PLAIN):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    with matplotlib.rc_context(_PLAIN):
        fig.savefig(out, format="png", metadata={"Software": PNG_MARK})
    return out.getvalue()


def _name(i: int, r: Result) -> str:
    return f"{label(i)}: {r.pattern} {fmt_value(r.summary.get('rate_target_per_s'))}/s"


def _color(i: int) -> str:
    return f"C{i % 10}"


# --- percentile spectrum ------------------------------------------------------


def spectrum_points(histogram) -> tuple[np.ndarray, np.ndarray]:
    """Step-curve points of a latency histogram (microseconds) for a percentile plot in
    nines: x is 1 / (1 - percentile), as HdrHistogram's plotter draws it; y in ms.
    The last step ends at x = total count, where the percentile reaches the maximum."""
    total = histogram.get_total_count()
    xs, ys = [], []
    before = 0
    for step in histogram.get_recorded_iterator():
        after = step.total_count_to_this_value
        value_ms = histogram.get_highest_equivalent_value(step.value_iterated_to) / 1000.0
        for count in (before, after if after < total else total - 1):
            xs.append(1.0 / (1.0 - count / total))
            ys.append(value_ms)
        before = after
    return np.asarray(xs), np.asarray(ys)


def spectrum_chart(results: Sequence[Result]) -> Chart:
    fig = _figure()
    ax = fig.add_subplot()
    top = 10.0
    for i, r in enumerate(results):
        histogram = merged(r.histograms(E2E_HLOG))
        if not histogram.get_total_count():
            continue
        x, y = spectrum_points(histogram)
        ax.plot(x, y, color=_color(i), label=_name(i, r))
        top = max(top, x[-1])
    ax.set_xscale("log")
    nines = min(NINES, max(1, math.ceil(math.log10(top))))
    ax.set_xlim(1, 10.0**nines)
    ax.xaxis.set_major_locator(FixedLocator([10.0**k for k in range(nines + 1)]))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels(["0%"] + [f"{100 - 10.0 ** (2 - k):.{max(k - 2, 0)}f}%" for k in range(1, nines + 1)])
    ax.set_xlabel("percentile")
    ax.set_ylabel("end-to-end latency (ms)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title("End-to-end latency by percentile")
    return Chart("spectrum", "Latency by percentile (HdrHistogram spectrum)", _png(fig))


# --- over time --------------------------------------------------------------------


def timeline(r: Result) -> list[Second]:
    """timeseries.csv, or for a run without it, e2e.hlog's intervals (no offered rate)."""
    path = r.path / TIMESERIES
    if not path.exists():
        start = (r.summary.get("timeline") or {}).get("start_wall_s", 0.0)
        return [Second(round(h.get_end_time_stamp() / 1000.0 - start), None, float(h.get_total_count()), None, None,
                       summary_ms(h)["p99"], None) for h in r.histograms(E2E_HLOG)]
    return read_timeseries(path)


def _shade_faults(ax, results: Sequence[Result]) -> None:
    """Each run's fault windows in the run's colour; instantaneous faults as a line."""
    for i, r in enumerate(results):
        for fault in r.summary.get("faults") or []:
            start, end = fault.get("at_s"), fault.get("end_s")
            if start is None:
                continue
            if end is None or end - start < 0.5:
                ax.axvline(start, color=_color(i), alpha=0.6, linestyle="--", zorder=0)
            else:
                ax.axvspan(start, end, color=_color(i), alpha=0.15, zorder=0)
            ax.annotate(f"{fault.get('type')} {fault.get('target', '')}".strip(), (start, 1.0),
                        xycoords=("data", "axes fraction"), fontsize="x-small", va="top", rotation=90,
                        color=_color(i))


def time_chart(results: Sequence[Result]) -> Chart:
    fig = _figure(9.0, 6.5)
    latency, rate = fig.subplots(2, 1, sharex=True)
    for i, r in enumerate(results):
        seconds = timeline(r)
        t = [s.t_s for s in seconds]
        latency.plot(t, [math.nan if s.p99_ms is None else s.p99_ms for s in seconds], color=_color(i),
                     marker=".", label=_name(i, r))
        rate.plot(t, [s.finished for s in seconds], color=_color(i), label=f"{_name(i, r)} finished")
        if any(s.offered is not None for s in seconds):
            rate.plot(t, [math.nan if s.offered is None else s.offered for s in seconds], color=_color(i),
                      linestyle=":", label=f"{_name(i, r)} offered")
    warmup = max(float(r.summary.get("warmup_s") or 0.0) for r in results)
    for ax in (latency, rate):
        if warmup:
            ax.axvspan(0, warmup, color="0.9", zorder=0)
        _shade_faults(ax, results)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    latency.set_ylabel("p99 of each second (ms)")
    faults = any(r.summary.get("faults") for r in results)
    latency.set_title("Latency and throughput over time (grey: warm-up, not measured"
                      + ("; coloured: fault windows)" if faults else ")"))
    latency.legend()
    rate.set_ylabel("orders per second")
    rate.set_xlabel("seconds since load started")
    rate.legend(fontsize="small", ncol=2)
    return Chart("time", "Latency and throughput over time", _png(fig))


# --- per-step breakdown -------------------------------------------------------------


def step_chart(results: Sequence[Result]) -> Chart:
    """Left: each step's p50 (dot) to p99 (bar end) per run. Right: where an average order's
    time goes: each step's mean times how often an order takes it, the rest of e2e on top."""
    steps = step_names(results)
    fig = _figure(11.0, max(4.0, 0.35 * len(steps) * len(results) + 1.5))
    ranges, stack = fig.subplots(1, 2, width_ratios=(3, 2))
    spacing = 0.6 / len(results)
    for i, r in enumerate(results):
        found = (r.summary.get("latency_ms") or {}).get("steps") or {}
        y = np.arange(len(steps)) + (i - (len(results) - 1) / 2) * spacing
        p50 = np.array([(found.get(s) or {}).get("p50") or math.nan for s in steps], dtype=float)
        p99 = np.array([(found.get(s) or {}).get("p99") or math.nan for s in steps], dtype=float)
        ranges.hlines(y, p50, p99, color=_color(i), linewidth=3)
        ranges.plot(p50, y, "o", color=_color(i), label=f"{_name(i, r)}")
        ranges.plot(p99, y, "|", color=_color(i), markersize=12)
    ranges.set_yticks(np.arange(len(steps)), steps)
    ranges.invert_yaxis()
    ranges.set_xscale("log")
    ranges.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ranges.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ranges.xaxis.set_minor_formatter(NullFormatter())
    ranges.set_xlabel("step latency (ms, log): dot p50, bar to p99")
    ranges.grid(True, axis="x", which="both", alpha=0.3)
    ranges.legend(fontsize="small", loc="best")
    ranges.set_title("Latency of each step")
    _per_order_stack(stack, results, steps)
    return Chart("steps", "Per-step latency breakdown", _png(fig))


def _per_order_stack(ax, results: Sequence[Result], steps: list[str]) -> None:
    names = [f"{label(i)}: {r.pattern}" for i, r in enumerate(results)]
    left = np.zeros(len(results))
    palette = ["C2", "C3", "C4", "C5", "C6", "C8", "C9"]  # C0, C1 mark runs elsewhere; C7 is grey
    for k, step in enumerate([*steps, "rest of e2e"]):
        widths = np.array([_per_order_ms(r, step) for r in results])
        color = "0.7" if step == "rest of e2e" else palette[k % len(palette)]
        ax.barh(names, widths, left=left, color=color, label=step, edgecolor="white", height=0.6)
        left += widths
    ax.invert_yaxis()
    ax.set_xlabel("ms per order (mean x times per order)")
    ax.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=4)
    ax.set_title("Where an average order's time goes")


def _per_order_ms(r: Result, step: str) -> float:
    latency = r.summary.get("latency_ms", {})
    e2e = latency.get("e2e", {})
    orders = e2e.get("count") or 0
    if not orders:
        return 0.0
    if step == "rest of e2e":
        spent = sum(_per_order_ms(r, s) for s in latency.get("steps", {}))
        return max((e2e.get("mean") or 0.0) - spent, 0.0)
    s = latency.get("steps", {}).get(step) or {}
    return (s.get("mean") or 0.0) * (s.get("count") or 0) / orders


# --- cost and correctness -----------------------------------------------------------


def _bar_values(ax, names: list[str], values: list[float | None], colors: list[str], title: str, unit: str) -> None:
    heights = [v or 0.0 for v in values]
    ax.bar(names, heights, color=colors)
    for x, v in enumerate(values):
        ax.annotate(fmt_value(v), (x, heights[x]), ha="center", va="bottom", fontsize="small")
    ax.set_title(title)
    ax.set_ylabel(unit)
    ax.margins(y=0.15)


def cost_chart(results: Sequence[Result]) -> Chart:
    fig = _figure(9.0, 3.8)
    names = [_name(i, r) for i, r in enumerate(results)]
    colors = [_color(i) for i in range(len(results))]
    messages, size = fig.subplots(1, 2)
    _bar_values(messages, names, [r.summary.get("messages_per_order") for r in results], colors,
                "Messages per order", "messages")
    _bar_values(size, names, [r.summary.get("bytes_per_order") for r in results], colors, "Bytes per order", "bytes")
    for ax in (messages, size):
        ax.tick_params(axis="x", labelrotation=15, labelsize="small")
    return Chart("messages", "Messages and bytes per order", _png(fig))


COUNTS = Orders.PROBLEMS


def correctness_chart(results: Sequence[Result]) -> Chart:
    fig = _figure(9.0, 3.8)
    ax = fig.add_subplot()
    width = 0.8 / len(results)
    x = np.arange(len(COUNTS))
    for i, r in enumerate(results):
        orders = r.summary.get("orders") or {}
        values = [orders.get(c) for c in COUNTS]
        heights = [v or 0 for v in values]
        ax.bar(x + i * width, heights, width=width, color=_color(i), label=_name(i, r))
        for xi, v in zip(x + i * width, values):
            ax.annotate("-" if v is None else str(v), (xi, v or 0), ha="center", va="bottom", fontsize="small")
    ax.set_xticks(x + 0.4 - width / 2, COUNTS)
    ax.set_ylabel("orders")
    ax.set_ylim(bottom=0, top=max(1, ax.get_ylim()[1]))
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")
    ax.set_title("Audit: faulty orders (should all be 0)")
    return Chart("correctness", "Lost, stuck and duplicate orders", _png(fig))


CHARTS: tuple[Callable[[Sequence[Result]], Chart], ...] = (
    spectrum_chart, time_chart, step_chart, cost_chart, correctness_chart)


def draw_charts(results: Sequence[Result]) -> list[Chart]:
    """Every chart, with labels as plain text (no mathtext, no TeX)."""
    with matplotlib.rc_context(_PLAIN):
        return [make(results) for make in CHARTS]


CHART_NAMES = ("spectrum", "time", "steps", "messages", "correctness")  # the Chart.name of each


# --- the HTML -------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bad { color: #b00; font-weight: bold; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0 1.5em; }
code { font-size: 0.9em; }
"""


def _runs_html(results: Sequence[Result]) -> str:
    head = "<tr><th></th><th>directory</th><th>pattern</th><th>mode</th><th>rate</th><th>valid</th>" \
           "<th>workload</th><th>commit</th></tr>"
    rows = []
    for i, r in enumerate(results):
        s = r.summary
        git = (s.get("environment") or {}).get("git") or {}
        commit = f"{git.get('commit', '?')}{' (dirty)' if git.get('dirty') else ''}" if git else "-"
        valid = "yes" if s.get("valid") else f"<span class=bad>no: {html.escape(str(s.get('invalid_reason')))}</span>"
        workload = (s.get("workload") or {}).get("name", "?")
        rows.append(f"<tr><th>{label(i)}</th><td><code>{html.escape(str(r.path))}</code></td>"
                    f"<td>{html.escape(r.pattern)}</td><td>{html.escape(str(s.get('mode')))}</td>"
                    f"<td class=num>{fmt_value(s.get('rate_target_per_s'))}/s</td><td>{valid}</td>"
                    f"<td>{html.escape(str(workload))}, {fmt_value(s.get('duration_s'))}s</td>"
                    f"<td>{html.escape(commit)}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


_DRIFT_FIGURES = (("e2e_p50_ms", "e2e p50 ms"), ("e2e_p99_ms", "e2e p99 ms"), ("started_per_s", "started/s"),
                  ("cpu_us_per_order", "CPU us/order"), ("broker_rss_mb", "broker RSS MB"),
                  ("broker_disk_mb", "broker disk MB"))


def _drift_html(results: Sequence[Result]) -> str:
    """Each run's first against its last tenth of the window (summary.json's ``drift``); what
    changed past the bounds is marked. Empty when no run has drift (simulated, older, cut short)."""
    rows = []
    for i, r in enumerate(results):
        drift = r.summary.get("drift")
        if not isinstance(drift, dict):
            continue
        first, last, changed = drift.get("first_tenth") or {}, drift.get("last_tenth") or {}, drift.get("changed") or []
        cells = "".join(f"<td class=num{' bad' if key in changed else ''}>{fmt_value(first.get(key))} &rarr; "
                        f"{fmt_value(last.get(key))}</td>" for key, _ in _DRIFT_FIGURES)
        rows.append(f"<tr><th>{label(i)}</th><td class=num>{fmt_value(drift.get('tenth_s'))}</td>{cells}</tr>")
    if not rows:
        return ""
    head = "<tr><th></th><th>tenth s</th>" + "".join(f"<th>{name}</th>" for _, name in _DRIFT_FIGURES) + "</tr>"
    return (f"<h2>Drift: first against last tenth of the window</h2>\n<table>{head}{''.join(rows)}</table>\n")


def _table_html(results: Sequence[Result]) -> str:
    head = "<tr><th>metric</th><th>unit</th>" + "".join(
        f"<th>{label(i)}</th>" if i == 0 else f"<th>{label(i)}</th><th>vs {label(0)}</th>"
        for i in range(len(results))) + "</tr>"
    body = []
    for row in side_by_side([Side.of(r) for r in results]):
        cells = [f"<td>{html.escape(row.name)}</td><td>{html.escape(row.unit)}</td>"]
        for i, (value, change) in enumerate(zip(row.values, row.changes)):
            cells.append(f"<td class=num>{html.escape(fmt_value(value))}</td>")
            if i:
                cells.append(f"<td class=num>{html.escape(fmt_change(change))}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table>{head}{''.join(body)}</table>"


def render_html(results: Sequence[Result], charts: Sequence[Chart], now: datetime | None = None) -> str:
    when = (now or datetime.now(timezone.utc)).strftime("%Y-%m-%d %H:%M UTC")
    figures = "".join(
        f"<h2>{html.escape(c.title)}</h2>\n<img alt=\"{html.escape(c.title)}\" "
        f"src=\"data:image/png;base64,{base64.b64encode(c.png).decode('ascii')}\">\n" for c in charts)
    return (f"<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>bench report</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>bench report</h1>\n<p>Generated {when}. "
            f"Latency is measured from each order's intended start (open loop); warm-up is excluded.</p>\n"
            f"<h2>Runs</h2>\n{_runs_html(results)}\n{_drift_html(results)}{figures}<h2>Side by side</h2>\n{_table_html(results)}\n"
            f"</body></html>\n")


def default_output(base: str | Path = "results", now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return Path(base) / f"report-{stamp}.html"


def _check_output(output: Path) -> None:
    """A report is an .html file, and never replaces a file that is not an earlier report
    (`--output results/x/summary.json` would have overwritten a run's summary)."""
    if output.suffix.lower() not in (".html", ".htm"):
        raise ResultsError(f"--output {output}: a report is an .html file; name one, e.g. {output.with_suffix('.html')}")
    if inputs.check_output_file(output, "--output", ResultsError):
        try:
            ours = output.read_bytes()[:200].startswith(b"<!DOCTYPE html>") and b"bench report" in output.read_bytes()[:400]
        except OSError:
            ours = False
        if not ours:
            raise ResultsError(f"--output {output}: the file exists and is not a bench report; choose another path")


def write_report(dirs: Sequence[str | Path], output: str | Path | None = None) -> tuple[Path, list[Path]]:
    """Write the HTML report of ``dirs`` (runs or series) and one PNG per chart beside it (``<stem>-<chart>.png``).
    Returns the HTML path and the PNG paths. Raises ResultsError for a directory it cannot use."""
    if not dirs:
        raise ResultsError("report needs at least one result directory")
    output = Path(output) if output is not None else default_output()
    _check_output(output)
    for name in CHART_NAMES:  # never overwrite a PNG bench did not write
        png = output.with_name(f"{output.stem}-{name}.png")
        if inputs.check_output_file(png, "chart", ResultsError) and \
                not ownership.owned_file(png, PNG_MARK.encode()):
            raise ResultsError(f"--output {output}: {png.name} beside it exists and is not a bench chart; "
                               "choose another name for the report")
    results = [run for d in dirs for run in Side.load(d).runs]  # a series shows each of its runs
    charts = draw_charts(results)
    output.parent.mkdir(parents=True, exist_ok=True)
    pngs = []
    for chart in charts:
        png = output.with_name(f"{output.stem}-{chart.name}.png")
        png.write_bytes(chart.png)
        pngs.append(png)
    output.write_text(render_html(results, charts), encoding="utf-8")
    return output, pngs

