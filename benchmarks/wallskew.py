"""Build the wall-clock shim (wallskew.c) and the environment that preloads it.

Used by benchmarks/clock_skew.py and the clock tests: every process started with
``environment(...)`` sees the wall clock run ``rate`` fast from now on and step by
``step_s`` at ``step_at_s``, while its monotonic clock is untouched.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

SOURCE = Path(__file__).with_name("wallskew.c")


def build(directory: Path) -> Path:
    """Compile the shim into ``directory`` with the machine's C compiler; returns the .so."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise RuntimeError("no C compiler (cc or gcc) on PATH to build the wall-clock shim")
    lib = Path(directory) / "wallskew.so"
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(lib), str(SOURCE), "-ldl"], check=True)
    return lib


def environment(lib: Path, rate: float, step_at_s: float, step_s: float, base: dict | None = None) -> dict:
    """``base`` (default: this process's environment) with the shim preloaded, its clock starting now."""
    env = dict(os.environ if base is None else base)
    env.update(LD_PRELOAD=str(lib), WALLSKEW_T0_NS=str(time.monotonic_ns()), WALLSKEW_RATE=repr(rate),
               WALLSKEW_STEP_AT_S=repr(step_at_s), WALLSKEW_STEP_S=repr(step_s))
    return env
