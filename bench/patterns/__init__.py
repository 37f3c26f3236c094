"""The coordination patterns, by name: an explicit registry."""
from __future__ import annotations

from bench.errors import BadInput
from bench.patterns.base import Pattern
from bench.patterns.choreography import CHOREOGRAPHY
from bench.patterns.orchestration import ORCHESTRATION

PATTERNS: dict[str, Pattern] = {p.name: p for p in (CHOREOGRAPHY, ORCHESTRATION)}


def get(name: str) -> Pattern:
    try:
        return PATTERNS[name]
    except KeyError:
        raise BadInput(f"unknown pattern {name!r}: choose one of {', '.join(PATTERNS)}") from None
