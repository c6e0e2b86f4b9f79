"""The one exception root of dnmf, and its exit codes.

Every error a user can cause derives from :class:`DnmfError`; each subclass
also inherits the matching builtin (``ValueError``, ``FileNotFoundError``), as
zarr-python does, so ``except ValueError`` keeps working for callers who do not
know dnmf. The CLI turns a :class:`DnmfError` into one sentence on stderr and
its :attr:`exit_code`, never a traceback.
"""

from __future__ import annotations

from typing import Any

#: Exit codes of every ``dnmf`` command (DESIGN.md section 7).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SKIPPED = 3


class DnmfError(Exception):
    """Root of every error dnmf raises on purpose."""

    exit_code: int = EXIT_FAILED


class DnmfUsageError(DnmfError, ValueError):
    """A value given by the user is wrong; the message names it and the fix."""

    exit_code = EXIT_USAGE


class DnmfPathError(DnmfError, FileNotFoundError):
    """A path given by the user does not exist or is not what it should be."""

    exit_code = EXIT_USAGE


class StoreFormatError(DnmfError, ValueError):
    """A Zarr store is not a dnmf store, or of another kind or format version."""

    exit_code = EXIT_USAGE


class StoreDamagedError(StoreFormatError):
    """A store's metadata cannot be read (a corrupt or truncated ``zarr.json``, a missing array)."""


class OutputPathError(DnmfError, OSError):
    """An output path is an existing file, lies under a file, or cannot be written."""

    exit_code = EXIT_USAGE


class StoreMismatchError(DnmfError, ValueError):
    """A store was written with other settings than the ones asked for."""

    exit_code = EXIT_USAGE


class InvalidDataError(DnmfError, ValueError):
    """Data holds NaN, infinite or negative values; the message names where."""

    exit_code = EXIT_USAGE


class StoreLockedError(DnmfError, RuntimeError):
    """Another run holds the store's lock."""

    exit_code = EXIT_USAGE


class MissingExtraError(DnmfError, ImportError):
    """An optional dependency (an extra: ``dnmf[plot]``, ``dnmf[cluster]``) is not installed."""

    exit_code = EXIT_USAGE


class DnmfWarning(UserWarning):
    """Root of dnmf's warnings (turned into errors in the test suite)."""


def describe_validation_error(exc: Any) -> str:
    """One sentence naming the offending value and what is allowed (a pydantic error)."""
    err = exc.errors()[0]
    loc = ".".join(str(part) for part in err.get("loc", ()))
    msg = str(err.get("msg", "is invalid"))
    if msg.startswith("Value error, "):
        return msg.removeprefix("Value error, ")
    value = err.get("input")
    if loc:
        return f"{loc}={value!r} is invalid: {msg[0].lower()}{msg[1:]}"
    return msg
