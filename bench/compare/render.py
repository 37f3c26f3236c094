"""A comparison as text, markdown (for a pull request) or JSON."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

from bench.compare.comparison import Comparison
from bench.compare.judge import Verdict
from bench.compare.stats import spread


FORMATS = ("text", "markdown", "json")


def label(index: int) -> str:
    return chr(ord("A") + index) if index < 26 else f"R{index}"


def fmt_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if float(value).is_integer() or abs(value) >= 10_000:
        return f"{value:.0f}"
    return f"{value:.4g}"


def fmt_change(change: float | None) -> str:
    if change is None:
        return ""
    if math.isinf(change):
        return "new" if change > 0 else "-inf"
    return f"{change * 100:+.1f}%"


def _table_cells(c: Comparison) -> tuple[list[str], list[list[str]]]:
    header = ["metric", "unit"]
    for i in range(len(c.sides)):
        header += [label(i)] if i == 0 else [label(i), f"vs {label(0)}"]
    body = []
    for row in c.rows:
        cells = [row.name, row.unit]
        for i, (value, change) in enumerate(zip(row.values, row.changes)):
            cells += [fmt_value(value)] if i == 0 else [fmt_value(value), fmt_change(change)]
        body.append(cells)
    return header, body


def _fmt_interval(v: Verdict) -> str:
    if v.interval is None:
        return "-"
    low, high, confidence = v.interval
    return f"{confidence * 100:.0f}% CI {fmt_change(low)}..{fmt_change(high)}"


def _fmt_spread(v: Verdict) -> str:
    parts = [f"{label(i)} {s * 100:.0f}%" for i, s in ((0, spread(v.baseline_values)), (v.candidate, spread(v.values)))
             if s is not None]
    return "spread " + ", ".join(parts) if parts else "-"


def _status(v: Verdict) -> str:
    if v.regression:
        return "REGRESSION (threshold only)" if v.threshold_only and not v.rule.metric.count else "REGRESSION"
    return "not significant" if v.past_threshold else "ok"


def _verdict_line(c: Comparison, v: Verdict) -> tuple[str, ...]:
    unit = v.rule.metric.unit
    p = "-" if v.p_value is None else f"{v.p_value:.3g}"
    return (v.rule.text, f"{label(v.candidate)} vs {label(0)}",
            f"{fmt_value(v.baseline_value)} -> {fmt_value(v.value)} {unit}", fmt_change(v.change), _fmt_interval(v),
            _fmt_spread(v), f"p={p}", v.method, _status(v))


def _legend(c: Comparison) -> list[str]:
    lines = []
    for i, side in enumerate(c.sides):
        s = side.summary
        runs = f", {len(side.runs)} runs" if len(side.runs) > 1 else ""
        lines.append(f"{label(i)}  {side.path}  ({side.pattern}, {s.get('mode', '?')}, "
                     f"{fmt_value(s.get('rate_target_per_s'))}/s{runs})")
    return lines


def _problem_lines(c: Comparison) -> list[str]:
    lines = [f"baseline {label(0)} is not a sound measurement: {p}" for p in c.baseline_problems]
    for i, problems in c.broken.items():
        what = "allowed by --allow-broken" if c.allow_broken or not c.verdicts else "fails the gate"
        lines += [f"candidate {label(i)} is broken ({what}): {p}" for p in problems]
    return lines


def _verdict_summary(c: Comparison) -> str:
    parts = []
    if c.regressions:
        parts.append("REGRESSION: " + ", ".join(f"{v.rule.text} ({label(v.candidate)})" for v in c.regressions))
    if c.verdicts and c.broken and not c.allow_broken:
        parts.append("BROKEN CANDIDATE: " + ", ".join(label(i) for i in c.broken))
    if parts:
        return "; ".join(parts)
    if not c.verdicts:
        return "no rules given (--fail-on): nothing judged"
    return f"no regression ({len(c.verdicts)} rule checks)"


def _aligned(rows: list[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def render_text(c: Comparison) -> str:
    header, body = _table_cells(c)
    lines = [*_legend(c), "", *_aligned([header, *body])]
    if c.verdicts:
        lines += ["", "rules: a regression is past its threshold and significant across runs "
                      f"(one-sided, alpha {c.alpha:g}); the change is the median shift between runs"]
        lines += ["  " + line for line in _aligned([_verdict_line(c, v) for v in c.verdicts])]
    problems = _problem_lines(c)
    lines += ["", *problems] if problems else []
    lines += ["", _verdict_summary(c)]
    return "\n".join(lines)


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def render_markdown(c: Comparison) -> str:
    header, body = _table_cells(c)
    mark = "❌" if c.failed else "✅"
    lines = [f"### bench compare: {mark} {_verdict_summary(c)}", ""]
    lines += [f"- **{line[0]}** `{line[3:]}`" for line in _legend(c)]
    lines += [f"- {line}" for line in _problem_lines(c)]
    lines += ["", _md_row(header), _md_row(["---"] * 2 + ["---:"] * (len(header) - 2)), *map(_md_row, body)]
    if c.verdicts:
        lines += ["", f"Rules (regression = past threshold and significant across runs, one-sided alpha {c.alpha:g}):",
                  "", _md_row(["rule", "sides", "values", "change", "interval", "spread", "p", "test", "verdict"]),
                  _md_row(["---"] * 9)]
        lines += [_md_row(_verdict_line(c, v)) for v in c.verdicts]
    return "\n".join(lines)


def to_json(c: Comparison) -> dict[str, Any]:
    finite = lambda x: None if x is None or (isinstance(x, float) and math.isinf(x)) else x
    return {
        "baseline": str(c.sides[0].path),
        "sides": [{"label": label(i), "path": str(side.path), "runs": [str(r.path) for r in side.runs],
                   "pattern": side.pattern, "mode": side.summary.get("mode"),
                   "rate_target_per_s": side.summary.get("rate_target_per_s"),
                   "valid": all(r.summary.get("valid") for r in side.runs), "problems": side.problems()}
                  for i, side in enumerate(c.sides)],
        "table": [{"metric": row.name, "unit": row.unit, "values": list(row.values),
                   "changes": [finite(x) for x in row.changes]} for row in c.rows],
        "alpha": c.alpha,
        "rules": [v.to_dict() for v in c.verdicts],
        "regression": bool(c.regressions),
        "broken_candidates": {label(i): p for i, p in c.broken.items()},
        "failed": c.failed,
    }


def render(c: Comparison, fmt: str = "text") -> str:
    if fmt == "json":
        return orjson.dumps(to_json(c), option=orjson.OPT_INDENT_2).decode()
    return {"text": render_text, "markdown": render_markdown}[fmt](c)
