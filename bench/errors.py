"""The one error base of bench: every error a user can fix derives from :class:`BenchError`.

Its message is one line that names the file, the key and the problem, never a value that could
be a secret. The CLI group (:mod:`bench.cli.errors`) maps the base to an exit code once:
:class:`BadInput` (a file, option or key the user gave) exits 2, :class:`BadEnvironment`
(something about the machine the user must fix: a broker, a port, a cache directory) exits 1.
Commands do not catch these themselves.
"""
from __future__ import annotations


class BenchError(Exception):
    """An error the user can fix; ``str(error)`` is shown as is, as one line."""

    exit_code = 2


class BadInput(BenchError, ValueError):
    """A file, option, key or environment value the user gave that bench cannot use: exit 2."""

    exit_code = 2


class BadEnvironment(BenchError, RuntimeError):
    """The machine is not as bench needs it (a broker, a port, a cache directory): exit 1."""

    exit_code = 1
