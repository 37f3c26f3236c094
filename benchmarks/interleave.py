"""Interleaved series: runs of two (or more) installs or settings, A B A B ..., on one broker.

A regression gate compares series, not single runs, and interleaves them, so that whatever
drifts on the machine during the gate (the broker's state, page cache, neighbours) falls on
both sides alike. One run first is discarded: the broker's first minutes are slower.

    python benchmarks/interleave.py --out perf/orch --runs 4 \
        --side baseline=../venv-baseline/bin/bench --side candidate=../venv-candidate/bin/bench \
        -- --pattern orchestration --rate 300 --duration 10s --warmup 3s
    bench compare perf/orch/baseline perf/orch/candidate --fail-on "p50:+10%,p99:+25%"

writes ``OUT/warm-up`` (discarded), then ``OUT/baseline/1``, ``OUT/candidate/1``,
``OUT/baseline/2``, ... A side may add its own ``bench run`` options:
``--side "candidate=bench --workload workloads/processing-2ms.yaml"``.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

# bench run's exit codes that still leave a whole result for the gate to judge (valid or not).
JUDGEABLE = (0, 1, 3)


@dataclass(frozen=True)
class Side:
    name: str
    command: tuple[str, ...]  # the bench executable, then any options of this side's own

    @classmethod
    def parse(cls, text: str) -> Side:
        name, sep, command = text.partition("=")
        if not sep or not name or not command.strip():
            raise ValueError(f"--side {text!r}: expected NAME=BENCH [OPTIONS], e.g. candidate=.venv/bin/bench")
        return cls(name, tuple(shlex.split(command)))


class InterleaveError(RuntimeError):
    pass


def _recreate_option(command: Sequence[str]) -> list[str]:
    """``--recreate-topics`` for an install that knows it. A baseline from before bench recorded
    the topics it creates leaves them unrecorded, and the next side would refuse to delete them."""
    done = subprocess.run([command[0], "run", "--help"], capture_output=True, text=True)
    return ["--recreate-topics"] if "--recreate-topics" in done.stdout else []


def run_one(side: Side, out: Path, run_args: Sequence[str], extra: Sequence[str],
            echo: Callable[[str], None] = print) -> int:
    argv = [side.command[0], "run", *run_args, *side.command[1:], *extra, "--output", str(out)]
    done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode not in JUDGEABLE or not (out / "summary.json").exists():
        tail = (done.stderr or "").strip().splitlines()[-1:] or ["(no output)"]
        raise InterleaveError(f"{side.name}: `{shlex.join(argv)}` exited {done.returncode}: {tail[0]}")
    echo(f"  {side.name:>12} -> {out} (exit {done.returncode})")
    return done.returncode


def interleave(sides: Sequence[Side], out: Path, runs: int, run_args: Sequence[str], warm_up: bool = True,
               echo: Callable[[str], None] = print) -> dict[str, Path]:
    """``runs`` rounds, each one run of every side in order, after one discarded run of the
    first side; returns each side's series directory."""
    out.mkdir(parents=True, exist_ok=True)
    extra = {side.name: _recreate_option(side.command) for side in sides}
    if warm_up:
        run_one(sides[0], out / "warm-up", run_args, extra[sides[0].name], echo)
    for k in range(1, runs + 1):
        echo(f"round {k}/{runs}")
        for side in sides:
            run_one(side, out / side.name / str(k), run_args, extra[side.name], echo)
    return {side.name: out / side.name for side in sides}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory for the warm-up run and each side's series")
    parser.add_argument("--runs", type=int, default=4, help="runs per side (4 + 4 can show significance)")
    parser.add_argument("--side", action="append", required=True, type=Side.parse,
                        help="NAME=BENCH [OPTIONS]: a side's bench executable and its own options (repeatable)")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false", help="keep no discarded first run")
    parser.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then the `bench run` options every side gets")
    args = parser.parse_args(argv)
    if len({s.name for s in args.side}) != len(args.side):
        parser.error("each --side needs its own NAME")
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out} exists and is not empty: choose a new directory")
    run_args = args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args
    try:
        interleave(args.side, args.out, args.runs, run_args, args.warm_up)
    except InterleaveError as err:
        print(f"interleave: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
