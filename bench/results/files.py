"""The run-result directory: where a run's files go, how summary.json and timeseries.csv are
written and read, and the one atomic JSON writer (:func:`write_json`).

Layout: ``results/<UTC yyyymmddTHHMMSSZ>-<pattern>-<rate>/`` holding :data:`SUMMARY`,
:data:`TIMESERIES` and the .hlog/.hgrm histograms (their names: :mod:`bench.results.recording`).
"""
from __future__ import annotations

import csv
import importlib.metadata
import io
import math
import os
import platform
import socket
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson

import bench
from bench import inputs
from bench.errors import BadInput
from bench.kafka import secrets
from bench.results.measurement import Second

SCHEMA_VERSION = 1
SUMMARY = "summary.json"
SWEEP = "sweep.json"  # in a sweep directory, beside its rates' series (bench.run.sweep)
TIMESERIES = "timeseries.csv"
INCOMPLETE = "INCOMPLETE"  # in a result directory until its summary.json is written

_REPO = Path(__file__).resolve().parents[2]


class ResultsError(BadInput):
    """A result directory that cannot be read; the message is one line."""


def result_dir(pattern: str, rate: float, *, base: str | Path = "results", now: datetime | None = None) -> Path:
    """Create and return a new, empty ``<base>/<UTC stamp>-<pattern>-<rate>/``.

    An existing directory is never reused: a clash (two runs in one second)
    gets a ``-2``, ``-3``... suffix.
    """
    stamp = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    rate_text = str(int(rate)) if float(rate).is_integer() else f"{rate:g}"
    name = f"{stamp}-{pattern}-{rate_text}"
    Path(base).mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        path = Path(base) / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            path.mkdir()  # atomic: fails if another run took the name first
        except FileExistsError:
            continue
        return path
    raise ResultsError(f"{base}: too many result directories named {name}")


def environment(kafka_version: str | None = None) -> dict[str, Any]:
    """What produced a result: versions, commit, machine. ``kafka_version`` is the
    broker's, which only the caller knows."""
    # Imported here: only writing a result asks for librdkafka's version; reading results
    # (bench compare, bench report) must not load the Kafka client.
    import confluent_kafka

    return {
        "bench_version": bench.__version__,
        "python": platform.python_version(),
        # confluent_kafka.version() changed from a tuple to a str in 2.16; the metadata is stable.
        "confluent_kafka": importlib.metadata.version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "kafka": kafka_version,
        "git": _git_commit(_REPO),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "memory_total_bytes": _memory_total_bytes(),
    }


def _git_commit(repo: Path) -> dict[str, Any] | None:
    """``{"commit": short sha, "dirty": bool}``, or None outside a git checkout or before the first commit."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=True)
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = bool(git("status", "--porcelain"))
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit, "dirty": dirty}


def _memory_total_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX (e.g. Windows)
        return None


def write_summary(directory: str | Path, summary: Mapping[str, Any]) -> Path:
    """Write ``summary.json`` atomically, with ``schema_version`` set and credentials redacted
    (:func:`bench.kafka.secrets.redact`: client settings by the allow-list, wherever they sit)."""
    document = secrets.redact(summary)
    document.pop("schema_version", None)
    document = {"schema_version": SCHEMA_VERSION, **document}  # first, for people reading the file
    return write_json(Path(directory) / SUMMARY, document)


def write_json(target: str | Path, document: Any) -> Path:
    """Write ``document`` as indented JSON to ``target`` atomically and durably: to a temporary
    file in the same directory, fsynced, then renamed over ``target``, so a reader (or a crash)
    sees the old file or the new, never half of one. summary.json, sweep.json and validation.json
    are written with it."""
    target = Path(target)
    data = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, target)
    except BaseException:
        os.unlink(temp)
        raise
    return target


def mark_incomplete(directory: str | Path) -> Path:
    """Mark a result directory as being written: a run that fails before its summary leaves the
    mark (and no summary.json), so no reader takes it for a finished run (:data:`INCOMPLETE`)."""
    marker = Path(directory) / INCOMPLETE
    marker.write_text("bench is writing this run, or it failed before its summary.json was written: "
                      "not a finished run\n", encoding="utf-8")
    return marker


def mark_complete(directory: str | Path) -> None:
    (Path(directory) / INCOMPLETE).unlink(missing_ok=True)


# schema_version N -> function turning a version-N summary into version N+1.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


def read_summary(directory: str | Path) -> dict[str, Any]:
    """Read ``summary.json``, upgraded to :data:`SCHEMA_VERSION`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ResultsError(f"{directory}: no such result directory")
    path = directory / SUMMARY
    if not path.exists() and not path.is_symlink():
        raise ResultsError(f"{path}: missing (not a finished run?)")
    summary = inputs.read_json(path, "summary", ResultsError)
    if not isinstance(summary, dict):
        raise ResultsError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    return _upgrade(summary, path)


def _upgrade(summary: dict[str, Any], path: Path) -> dict[str, Any]:
    version = summary.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ResultsError(f"{path}: schema_version must be a positive integer, got {version!r}")
    if version > SCHEMA_VERSION:
        raise ResultsError(
            f"{path}: schema_version {version} is newer than this bench supports ({SCHEMA_VERSION}); upgrade bench"
        )
    while version < SCHEMA_VERSION:
        if version not in UPGRADES:
            raise ResultsError(f"{path}: no upgrade from schema_version {version}")
        summary = UPGRADES[version](summary)
        version += 1
        summary["schema_version"] = version
    return summary


class TimeseriesWriter:
    """Writes ``timeseries.csv``, one row per :meth:`write_row`, flushed at once so an
    interrupted run leaves a valid file.

    Columns: ``t_s`` seconds since the start of load; ``offered`` and ``finished``
    orders started / finished (completed or cancelled) in the interval ending at
    ``t_s``; ``in_flight`` orders started but not finished; ``backlog`` messages on the
    services' input partitions they have not handled yet, as they last reported
    (empty when unknown, e.g. simulated); ``p99_ms`` the interval's p99 latency (empty when nothing finished).
    Read back with :func:`read_timeseries`.
    """

    COLUMNS = ("t_s", "offered", "finished", "in_flight", "backlog", "p99_ms")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file = self.path.open("w", encoding="utf-8", newline="")
        self._csv = csv.writer(self._file)
        self._csv.writerow(self.COLUMNS)
        self._file.flush()

    def write_row(
        self, t_s: float, offered: int, finished: int, in_flight: int, backlog: int | None, p99_ms: float | None
    ) -> None:
        self._csv.writerow(
            (round(t_s, 3), offered, finished, in_flight, "" if backlog is None else backlog, "" if p99_ms is None else p99_ms)
        )
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TimeseriesWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def read_timeseries(path: str | Path) -> list[Second]:
    """The rows of a ``timeseries.csv`` (:class:`TimeseriesWriter`'s), one :class:`Second` each;
    ``t_s`` and ``finished`` are required, an empty or missing other column is None. Raises
    ResultsError naming the line of a row that is not finite numbers."""
    path = Path(path)
    text = inputs.read_text(path, "timeseries", ResultsError)

    def number(row: dict, key: str, required: bool = False) -> float | None:
        value = row.get(key)
        if value in ("", None) and not required:
            return None
        parsed = float(value)  # ValueError, TypeError: named below
        if not math.isfinite(parsed):
            raise ValueError(key)
        return parsed

    seconds = []
    for line, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
        try:
            seconds.append(Second(number(row, "t_s", True), number(row, "offered"), number(row, "finished", True),
                                  number(row, "in_flight"), number(row, "backlog"), number(row, "p99_ms"), None))
        except (KeyError, ValueError, TypeError):
            raise ResultsError(f"{path}:{line}: expected finite numbers in t_s, offered, finished, p99_ms") from None
    return seconds
