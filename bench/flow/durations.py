"""Durations as workloads write them: ``"500ms"``, ``"10s"``, ``"2m"``, or plain seconds."""
from __future__ import annotations

import math
import re
from typing import Any

_SECONDS_PER_UNIT = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|m|h)?\s*")


def parse_duration(text: Any) -> float:
    """Seconds from ``"500ms"``, ``"10s"``, ``"2m"``, ``"1.5s"``, ``"250us"``, ``"1h"``,
    or a plain number (or numeric string) of seconds. Raises ValueError otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    elif isinstance(text, str) and (match := _DURATION.fullmatch(text)):
        seconds = float(match[1]) * _SECONDS_PER_UNIT[match[2] or "s"]
    else:
        raise ValueError(
            f"invalid duration {text!r}: expected seconds or a number with a unit "
            "(us, ms, s, m, h), e.g. '500ms', '10s', '2m'"
        )
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"invalid duration {text!r}: must be finite and not negative")
    return seconds
