"""What is bench's and what is the user's: bench kills, deletes and overwrites only what it can
prove it created.

- A process: a pid is not an identity (pids are reused). bench records, when it starts a
  process, the process's start time (field 22 of /proc/<pid>/stat, in clock ticks since boot)
  and a text its command line must contain (a path only bench wrote); :func:`same_process`
  checks both before anything signals it.
- A directory: bench writes a marker file holding a random token into a directory it creates,
  and records the token in its own state; :func:`owned_dir` checks both before it deletes.
- A file: bench writes a token into files it may replace later (PNG metadata), and
  :func:`owned_file` finds it before it overwrites one.
"""
from __future__ import annotations

import secrets
import shutil
from pathlib import Path

MARKER = ".bench-owned"  # in every directory bench creates and may later delete


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks since boot; None when there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    # fields[0] is field 3 (state); the start time is field 22.
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except (OSError, IndexError, ValueError):
        return None


def same_process(pid: int, recorded_start: int | None, cmdline_contains: str) -> bool:
    """True only when ``pid`` is alive (not a zombie), started at ``recorded_start`` (when bench
    recorded one), and its command line contains ``cmdline_contains``."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 1:
        return False
    if _state(pid) in (None, "Z"):
        return False
    if recorded_start is not None and start_time(pid) != recorded_start:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return bool(cmdline_contains) and cmdline_contains.encode() in cmdline


def new_token() -> str:
    return secrets.token_hex(16)


def mark_dir(directory: Path, token: str) -> None:
    """Record in ``directory`` (which bench has just created) that bench owns it."""
    (Path(directory) / MARKER).write_text(token + "\n", encoding="ascii")


def owned_dir(directory: Path, token: str | None) -> bool:
    """Whether ``directory`` holds bench's marker with ``token`` (recorded in bench's state)."""
    if not token:
        return False
    marker = Path(directory) / MARKER
    try:
        if Path(directory).is_symlink() or not marker.is_file():
            return False
        return marker.read_text(encoding="ascii", errors="replace").strip() == token
    except OSError:
        return False


def remove_owned_dir(directory: Path, token: str | None) -> bool:
    """Delete ``directory`` only when bench can prove it created it; True if deleted."""
    if not owned_dir(directory, token):
        return False
    shutil.rmtree(directory, ignore_errors=True)
    return True


def owned_file(path: Path, token: bytes, head: int = 4096) -> bool:
    """Whether the regular file at ``path`` carries ``token`` in its first ``head`` bytes."""
    path = Path(path)
    try:
        if path.is_symlink() or not path.is_file():
            return False
        with path.open("rb") as file:
            return token in file.read(head)
    except OSError:
        return False
