"""Every file bench reads, every number it takes, every output it writes: checked in one place.

- :func:`read_bytes` / :func:`read_text` / :func:`read_yaml` / :func:`read_json`: the one reader.
  It opens regular files and pipes (``<(...)`` process substitution, a named FIFO) and refuses
  anything else (a directory, a device such as /dev/zero); it reads at most :data:`MAX_BYTES`
  and gives up on a pipe that sends nothing for :data:`PIPE_IDLE_S`, so no input reads forever;
  it decodes UTF-8 strictly; YAML is safe-loaded with bounds on nesting and alias expansion
  (no "billion laughs"), and every string must be encodable text.
- :data:`RANGES` with :func:`check_int` / :func:`check_float`: the range of each numeric option
  and key (seeds are 64-bit, counts have maxima, floats are finite).
- :func:`check_output_dir` / :func:`check_output_file`: an output path that bench can write.

Errors are :class:`bench.errors.BadInput` subclasses (the caller's own, via ``error=``) whose
message names the file, the key and the problem, never a value: it may be a secret.
"""
from __future__ import annotations

import math
import os
import re
import select
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import yaml

from bench.errors import BadInput

MAX_BYTES = 16 * 1024 * 1024  # no workload, properties file, summary or profile comes near this
MAX_HLOG_BYTES = 1024 * 1024 * 1024  # an hour of one-second intervals is a few hundred MB at most
PIPE_IDLE_S = 10.0  # a pipe that sends nothing for this long is not going to
MAX_DEPTH = 64  # YAML nesting
MAX_ALIASES = 1000  # YAML aliases (*name) in one document
MAX_NODES = 200_000  # YAML nodes with every alias expanded (a "billion laughs" expands to 10**9)


def _fail(error: type[BadInput], path: Any, problem: str) -> BadInput:
    return error(f"{path}: {problem}")


def open_checked(path: str | Path, what: str = "file", error: type[BadInput] = BadInput) -> int:
    """A file descriptor of ``path`` opened for reading when it is a regular file or a pipe."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _fail(error, path, f"cannot read {what}: no such file") from None
    except IsADirectoryError:
        raise _fail(error, path, f"is a directory, not a {what}") from None
    except OSError as err:
        raise _fail(error, path, f"cannot read {what}: {err.strerror or type(err).__name__}") from None
    mode = os.fstat(fd).st_mode
    if stat.S_ISREG(mode):
        os.set_blocking(fd, True)
        return fd
    if stat.S_ISFIFO(mode):  # stays non-blocking: a FIFO nobody writes to reads as empty at once
        return fd
    os.close(fd)
    kind = "a directory" if stat.S_ISDIR(mode) else "a device or socket"
    raise _fail(error, path, f"is {kind}, not a regular file: give the {what} as a file (or a pipe)")


def read_bytes(path: str | Path, what: str = "file", error: type[BadInput] = BadInput,
               limit: int = MAX_BYTES) -> bytes:
    """At most ``limit`` bytes of a regular file or a pipe (more: refused, never read on)."""
    fd = open_checked(path, what, error)
    try:
        chunks, size = [], 0
        while True:
            try:
                chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            except BlockingIOError:  # a pipe whose writer has sent nothing yet
                if not select.select([fd], [], [], PIPE_IDLE_S)[0]:
                    raise _fail(error, path, f"the pipe sent nothing for {PIPE_IDLE_S:g} s: "
                                             f"give the {what} as a file") from None
                continue
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _fail(error, path, f"larger than {limit // (1024 * 1024)} MiB: not a {what}")
    except OSError as err:
        raise _fail(error, path, f"cannot read {what}: {err.strerror or type(err).__name__}") from None
    finally:
        os.close(fd)


def decode(data: bytes, path: Any, what: str = "file", error: type[BadInput] = BadInput) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _fail(error, path, f"not UTF-8 text (byte {err.start}): save the {what} as UTF-8") from None


def read_text(path: str | Path, what: str = "file", error: type[BadInput] = BadInput,
              limit: int = MAX_BYTES) -> str:
    text = decode(read_bytes(path, what, error, limit), path, what, error)
    if "\x00" in text:
        raise _fail(error, path, f"holds a NUL character: not a {what}")
    return text


# --- YAML -----------------------------------------------------------------------------------


class _BoundedLoader(yaml.SafeLoader):
    """The safe loader, counting nesting depth and aliases while it composes the node graph."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = 0

    def compose_node(self, parent, index):  # noqa: ANN001 - yaml's signature
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise _Limit(f"more than {MAX_ALIASES} aliases")
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _Limit(f"nested deeper than {MAX_DEPTH} levels")
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Limit(Exception):
    pass


def _expanded_size(node: yaml.Node) -> int:
    """Nodes in ``node`` with every alias expanded; _Limit past MAX_NODES or on a recursive alias."""
    sizes: dict[int, int] = {}

    def size(n: yaml.Node, path: frozenset[int], depth: int) -> int:
        if id(n) in path:
            raise _Limit("an alias that refers to itself")
        if id(n) in sizes:
            return sizes[id(n)]
        if depth > MAX_DEPTH:
            raise _Limit(f"nested deeper than {MAX_DEPTH} levels (through aliases)")
        total = 1
        if isinstance(n, yaml.SequenceNode):
            children = n.value
        elif isinstance(n, yaml.MappingNode):
            children = [part for pair in n.value for part in pair]
        else:
            children = []
        inner = path | {id(n)}
        for child in children:
            total += size(child, inner, depth + 1)
            if total > MAX_NODES:
                raise _Limit(f"expands to more than {MAX_NODES} values (aliases)")
        sizes[id(n)] = total
        return total

    return size(node, frozenset(), 0)


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


def _yaml_problem(err: yaml.YAMLError) -> str:
    """yaml's problem without the snippet of the line (it may hold a secret) or quoted text."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    at = f" at line {mark.line + 1}" if mark is not None else ""
    problem = getattr(err, "problem", None) or getattr(err, "context", None) or type(err).__name__
    problem = _QUOTED.sub(lambda m: m[0] if len(m[0]) <= 4 or m[0][1] == "<" else "(text)", str(problem)).replace("\n", " ")
    return f"invalid YAML{at}: {problem}"


def read_yaml(path: str | Path, what: str = "YAML file", error: type[BadInput] = BadInput) -> Any:
    """The YAML document at ``path``, safe-loaded within the bounds above, strings checked."""
    text = read_text(path, what, error)
    return parse_yaml(text, path, error)


def parse_yaml(text: str, where: Any, error: type[BadInput] = BadInput) -> Any:
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        document = loader.construct_document(node)
    except _Limit as err:
        raise _fail(error, where, f"invalid YAML: {err}") from None
    except yaml.YAMLError as err:
        raise _fail(error, where, _yaml_problem(err)) from None
    except (RecursionError, ValueError, TypeError, OverflowError) as err:
        raise _fail(error, where, f"invalid YAML: {type(err).__name__}") from None
    finally:
        loader.dispose()
    check_strings(document, where, error)
    return document


def check_strings(value: Any, where: Any, error: type[BadInput] = BadInput, key: str = "") -> None:
    """Every string in ``value`` (keys too) is text that can be written as UTF-8, without NUL."""
    stack = [(value, key)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            if "\x00" in item or not _encodable(item):
                raise _fail(error, where, f"{at or 'a value'}: holds a character that is not text "
                                          "(a lone surrogate or NUL)")
        elif isinstance(item, Mapping):
            for k, v in item.items():
                name = k if isinstance(k, str) and _encodable(k) and "\x00" not in k and len(k) < 100 else "?"
                if isinstance(k, str) and name == "?":
                    raise _fail(error, where, f"{at + '.' if at else ''}(a key): holds a character that is not text")
                stack.append((v, f"{at}.{name}" if at else str(name)))
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{at}[{i}]") for i, v in enumerate(item))


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# --- JSON -----------------------------------------------------------------------------------


def read_json(path: str | Path, what: str = "JSON file", error: type[BadInput] = BadInput,
              limit: int = MAX_BYTES) -> Any:
    data = read_bytes(path, what, error, limit)
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as err:
        first = str(err).splitlines()[0] if str(err) else "cannot be parsed"
        first = _QUOTED.sub("(text)", first)
        raise _fail(error, path, f"not valid JSON: {first}") from None


# --- numbers --------------------------------------------------------------------------------

# name -> (minimum, maximum) of every integer option and key; floats: finite, and in range.
RANGES: dict[str, tuple[float, float]] = {
    "seed": (0, 2**64 - 1),
    "brokers": (1, 1000),
    "nodes": (1, 3),
    "instances": (1, 1000),
    "instance": (0, 999),
    "partitions": (1, 10_000),
    "replication_factor": (1, 1000),
    "load_workers": (1, 64),
    "min_insync_replicas": (1, 1000),
    "fault.count": (1, 1_000_000),
    "fault.instance": (0, 999),
    "step_retries": (0, 1000),
    "repeat": (1, 1000),
    "port": (1024, 65000),
    "lines": (1, 1_000_000),
    "node": (1, 3),
    "cores": (1, 100_000),
    "alpha": (0.0, 1.0),
    "rate": (0.0, 1_000_000.0),
    "duration_s": (0.0, 366 * 86400.0),
}


def check_int(name: str, value: Any, where: Any = None, error: type[BadInput] = BadInput,
              key: str | None = None) -> int:
    """``value`` as an int within :data:`RANGES`\\[name]; one line naming ``key`` (default ``name``)."""
    low, high = RANGES[name]
    label = key or name
    if isinstance(value, bool) or not isinstance(value, int):
        raise error(f"{where + ': ' if where else ''}{label} must be a whole number from {low:g} to {int(high)}")
    if not low <= value <= high:
        raise error(f"{where + ': ' if where else ''}{label} must be from {low:g} to {int(high)}"
                    + (f", got {value}" if abs(value) < 10**20 else ""))
    return value


def check_float(name: str, value: Any, where: Any = None, error: type[BadInput] = BadInput,
                key: str | None = None, low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float within :data:`RANGES`\\[name]."""
    low, high = RANGES[name]
    label = key or name
    prefix = f"{where}: " if where else ""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise error(f"{prefix}{label} must be a finite number")
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        bounds = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise error(f"{prefix}{label} must be in {bounds}")
    return float(value)


def finite(value: Any, key: str, where: Any = None, error: type[BadInput] = BadInput) -> float:
    """A finite number (no range of its own)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise error(f"{where + ': ' if where else ''}{key} must be a finite number")
    return float(value)


# --- output paths ---------------------------------------------------------------------------


def _existing_parent_problem(path: Path) -> str | None:
    """Why nothing can be created at ``path`` because of what is above it (a file, a device)."""
    for parent in path.parents:
        try:
            mode = parent.stat().st_mode
        except FileNotFoundError:
            continue
        except OSError as err:
            return f"cannot use {parent}: {err.strerror or type(err).__name__}"
        if not stat.S_ISDIR(mode):
            return f"lies under {parent}, which is not a directory"
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"{parent} is not writable"
        return None
    return None


def _existing_mode(path: Path, option: str, error: type[BadInput]) -> int | None:
    """The mode of an output path that exists; None for a new one whose parents allow it."""
    try:
        return path.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        problem = _existing_parent_problem(path)
        if problem:
            raise error(f"{option} {path}: {problem}") from None
        return None
    except OSError as err:
        raise error(f"{option} {path}: cannot use: {err.strerror or type(err).__name__}") from None


def check_output_dir(path: Path | None, option: str = "--output", error: type[BadInput] = BadInput,
                     must_be_empty: bool = True) -> None:
    """An output directory must be new, or an empty directory, and creatable: not a file, not
    under a file, not a device. Checked before anything runs."""
    if path is None:
        return
    path = Path(path)
    mode = _existing_mode(path, option, error)
    if mode is None:
        return
    if not stat.S_ISDIR(mode):
        kind = "a file" if stat.S_ISREG(mode) else "not a directory (a device?)"
        raise error(f"{option} {path}: exists and is {kind}: choose a new directory")
    if must_be_empty and any(path.iterdir()):
        raise error(f"{option} {path} exists and is not empty: choose a new directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise error(f"{option} {path}: not writable")


def check_output_file(path: Path, option: str = "--output", error: type[BadInput] = BadInput) -> bool:
    """An output file must be creatable, or an existing regular file (the caller decides whether
    it may be replaced); never a directory or a device, never under a file. True if it exists."""
    path = Path(path)
    mode = _existing_mode(path, option, error)
    if mode is None:
        return False
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a device, pipe or socket"
        raise error(f"{option} {path}: is {kind}, not a file bench can write")
    return True


MAX_RATES = 100  # points of one sweep or validation


def rate_list(text: str, option: str = "--rates", error: type[BadInput] = BadInput) -> tuple[float, ...]:
    """Comma-separated orders per second, each finite, > 0 and at most RANGES['rate']'s maximum."""
    parts = [part.strip() for part in str(text).split(",") if part.strip()]
    if len(parts) > MAX_RATES:
        raise error(f"{option}: at most {MAX_RATES} rates")
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        raise error(f"{option}: expected comma-separated numbers, e.g. 500,1000,2000") from None
    if not values:
        raise error(f"{option}: expected comma-separated numbers, e.g. 500,1000,2000")
    for value in values:
        check_float("rate", value, None, error, key=option + " (each rate)", low_open=True)
    return values


def check_regular(path: str | Path, what: str = "file", error: type[BadInput] = BadInput,
                  limit: int = MAX_BYTES) -> None:
    """``path`` is a regular file of at most ``limit`` bytes (for readers that open it themselves)."""
    fd = open_checked(path, what, error)
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        raise _fail(error, path, f"is a pipe, not a regular file: a {what} is read from a result directory")
    if info.st_size > limit:
        raise _fail(error, path, f"larger than {limit // (1024 * 1024)} MiB: not a {what}")
