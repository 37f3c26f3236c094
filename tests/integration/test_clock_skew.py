"""A run whose every process sees a wall clock 0.5% fast and stepped +5 s mid-run measures what an
honest clock measures: latency, slip and the verdict are on the monotonic clock, and the summary
names the clock event. The clock lies through benchmarks/wallskew.c, preloaded into the harness
and every service it spawns (the broker, already running, keeps the real clock)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
import wallskew  # noqa: E402

pytestmark = pytest.mark.broker


def bench_run(bootstrap_servers: str, out: Path, env: dict | None) -> dict:
    argv = [sys.executable, "-m", "bench", "run", "--pattern", "orchestration", "--rate", "500",
            "--duration", "8s", "--warmup", "3s", "--bootstrap-servers", bootstrap_servers, "--output", str(out)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert (out / "summary.json").exists(), done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    return {**summary, "exit": done.returncode, "stdout": done.stdout}


def test_a_slewed_and_stepped_wall_clock_moves_no_figure(bootstrap_servers, tmp_path):
    lib = wallskew.build(tmp_path)
    plain = bench_run(bootstrap_servers, tmp_path / "plain", None)
    # The step lands in the measurement window: services start about 2 s in, the load 3 s later.
    skewed = bench_run(bootstrap_servers, tmp_path / "skewed",
                       wallskew.environment(lib, rate=0.005, step_at_s=8.0, step_s=5.0))

    for run in (plain, skewed):
        assert run["exit"] == 0 and run["valid"], (run["invalid_reason"], run["orders"])
        # A slip read on the wall clock would be 5 s after the step; a busy 2-core machine gives
        # tens of ms of honest slip, so the bound sits between the two.
        assert run["latency_ms"]["schedule_slip"]["p99"] < 1000.0
    p50, skewed_p50 = plain["latency_ms"]["e2e"]["p50"], skewed["latency_ms"]["e2e"]["p50"]
    # Run-to-run noise of 8 s runs is wide, wider on a loaded machine; a wall-clock latency would be
    # off by the 5 s step.
    assert skewed_p50 < 2 * p50 + 50.0 and skewed["latency_ms"]["e2e"]["p99"] < plain["latency_ms"]["e2e"]["p99"] + 1000
    assert skewed["rate_achieved_per_s"] == pytest.approx(plain["rate_achieved_per_s"], rel=0.05)

    assert plain["clock"]["moved"] is False
    moved = skewed["clock"]
    assert moved["moved"] and moved["steps"] == 1 and moved["largest_step_ms"] == pytest.approx(5000, abs=50)
    assert moved["wall_rate_ppm"] == pytest.approx(5000, rel=0.2)
    assert "the wall clock moved during the run" in skewed["stdout"]

    # Per-second rows stay one a second on the monotonic clock, with a backlog figure of the services.
    rows = list(csv.DictReader((tmp_path / "skewed" / "timeseries.csv").open()))
    # (The row of the load's last second is written only when the drain outlasts it.)
    seconds = [float(r["t_s"]) for r in rows]
    assert len(seconds) >= 10 and seconds == [float(k) for k in range(1, len(seconds) + 1)]
    backlogs = [int(r["backlog"]) for r in rows if r["backlog"]]
    assert backlogs and max(backlogs) < 500  # a few orders' messages, not a commit interval's worth
