"""Does a run's latency move when the wall clock does? Runs with a lying wall clock against plain ones.

    python benchmarks/clock_skew.py [--runs 2] [--rate 1000] [--duration 30s] [--warmup 10s] \
        [--rate-skew 0.005] [--step 5] [--step-at 20] [--out DIR] [-- more bench run options]

Each round runs ``bench run --pattern orchestration`` twice on the running (or a started) broker:
once as it is, once with the harness and every service preloaded with benchmarks/wallskew.c,
whose wall clock runs ``--rate-skew`` fast from the run's start and steps ``--step`` seconds
forward ``--step-at`` seconds in (the monotonic clock is left alone, as on a VM whose time
daemon is still disciplining the clock). Rounds interleave plain and skewed runs after one
discarded run. Prints e2e p50/p99, slip p99, the verdict and the clock event each run recorded,
then the skewed runs' medians as ratios of the plain ones.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import wallskew


def run(out: Path, args: argparse.Namespace, extra: list[str], env: dict | None) -> dict:
    argv = [sys.executable, "-m", "bench", "run", "--pattern", "orchestration", "--rate", str(args.rate), "--duration", args.duration,
            "--warmup", args.warmup, "--output", str(out), *extra]
    done = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if not (out / "summary.json").exists():
        sys.exit(f"`{' '.join(argv)}` exited {done.returncode} without a summary: {done.stderr.strip()[-300:]}")
    return json.loads((out / "summary.json").read_text())


def row(name: str, s: dict) -> dict:
    lat = s["latency_ms"]
    clock = s.get("clock") or {}
    return {"run": name, "p50_ms": lat["e2e"]["p50"], "p99_ms": lat["e2e"]["p99"],
            "slip_p99_ms": lat["schedule_slip"]["p99"], "valid": s["valid"],
            "wall_rate_ppm": clock.get("wall_rate_ppm"), "wall_step_ms": clock.get("largest_step_ms")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--duration", default="30s")
    parser.add_argument("--warmup", default="10s")
    parser.add_argument("--rate-skew", type=float, default=0.005)
    parser.add_argument("--step", type=float, default=5.0)
    parser.add_argument("--step-at", type=float, default=20.0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("extra", nargs="*")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="clock-skew-"))
    lib = wallskew.build(Path(tempfile.mkdtemp(prefix="wallskew-")))
    run(out / "warm-up", args, args.extra, None)
    rows = []
    for k in range(1, args.runs + 1):
        rows.append(row("plain", run(out / f"plain-{k}", args, args.extra, None)))
        env = wallskew.environment(lib, args.rate_skew, args.step_at, args.step)
        rows.append(row("skewed", run(out / f"skewed-{k}", args, args.extra, env)))
    print(f"orchestration {args.rate:g}/s for {args.duration} after {args.warmup}; skewed: wall clock "
          f"{args.rate_skew * 1e6:+.0f} ppm and a {args.step:+g} s step {args.step_at:g} s after start; results in {out}")
    print(f"{'run':<8} {'p50 ms':>8} {'p99 ms':>8} {'slip p99':>9} {'valid':>6} {'wall ppm':>9} {'step ms':>9}")
    for r in rows:
        print(f"{r['run']:<8} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['slip_p99_ms']:>9.2f} {str(r['valid']):>6} "
              f"{r['wall_rate_ppm'] if r['wall_rate_ppm'] is not None else '-':>9} "
              f"{r['wall_step_ms'] if r['wall_step_ms'] is not None else '-':>9}")
    for key in ("p50_ms", "p99_ms"):
        plain = statistics.median(r[key] for r in rows if r["run"] == "plain")
        skewed = statistics.median(r[key] for r in rows if r["run"] == "skewed")
        print(f"median {key}: plain {plain:.2f}, skewed {skewed:.2f}, ratio {skewed / plain:.3f}")


if __name__ == "__main__":
    main()
