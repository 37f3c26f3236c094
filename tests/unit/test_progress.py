"""The long phases on screen (bench.cli.progress.Phases), as a log shows them (not a terminal)."""
from __future__ import annotations

import io

from bench.cli.progress import Phases


def _phases() -> tuple[Phases, list[str]]:
    lines: list[str] = []
    return Phases(lines.append, stream=io.StringIO()), lines


def test_a_finished_phase_is_said_once_however_often_a_poller_repeats_it():
    """The run polls the audit's last report every 50 ms: after the reading reached its total it
    went on reporting it for the seconds the final judging took, and a 15-minute soak's log had
    173 lines of 'reading the rest of every topic: 100% after 0s'."""
    phases, lines = _phases()
    phases("audit: reading", 10, 100)
    phases("audit: reading", 100, 100)
    for _ in range(50):
        phases("audit: reading", 100, 100)
    assert lines == ["audit: reading: 100 of 100 (100%) after 0s"]
    phases("audit: judging", 0, 40)
    phases("audit: judging", 40, 40)
    phases("audit: judging", 40, 40)
    assert lines[1:] == ["audit: judging: 40 of 40 (100%) after 0s"]


def test_a_phase_that_finished_and_has_more_to_do_is_shown_again():
    phases, lines = _phases()
    phases("reading", 5, 5)
    phases("reading", 5, 8)  # more came: not done any more
    phases("reading", 8, 8)
    assert lines == ["reading: 5 of 5 (100%) after 0s", "reading: 8 of 8 (100%) after 0s"]
