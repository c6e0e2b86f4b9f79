"""What every command shares: the compute options, JSON output, and error handling."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from dnmf.errors import DnmfError

F = TypeVar("F", bound=Callable[..., Any])

WorkersOpt = Annotated[
    int | None,
    typer.Option(
        "--workers",
        "-w",
        min=1,
        help="Worker processes of a local cluster [default: one per core].",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option(
        "--scheduler",
        help="Address of a running Dask scheduler to use instead of a local cluster, "
        "e.g. tcp://10.0.0.5:8786 [default: $DNMF_SCHEDULER when --workers is not given].",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar, no summary text.")]


def fail(message: str, code: int) -> typer.Exit:
    """Print ``dnmf: error: message`` on stderr and return the exit to raise."""
    typer.echo(f"dnmf: error: {message}", err=True)
    return typer.Exit(code)


def describe_os_error(exc: OSError) -> str:
    """One sentence for an OSError on a path: the path, the reason, the fix."""
    reason = (exc.strerror or type(exc).__name__).lower()
    path = exc.filename if exc.filename2 is None else f"{exc.filename}' -> '{exc.filename2}"
    return f"cannot use '{path}': {reason}; check the path and its permissions"


def handle_errors(fn: F) -> F:
    """Turn a :class:`DnmfError` into one sentence on stderr and its exit code, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DnmfError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except OSError as exc:
            # A path that could not be read or written where no check caught it first.
            if exc.filename is None:
                raise
            raise fail(describe_os_error(exc), 2) from None
        except KeyboardInterrupt:
            raise fail(
                "interrupted; what was committed is kept, run the command again", 1
            ) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_skipped(skipped: list[dict[str, str]]) -> None:
    """The files an ingest skipped, one line each with its reason, on stderr."""
    if not skipped:
        return
    n = len(skipped)
    typer.echo(f"skipped {n} file{'' if n == 1 else 's'} that could not be ingested:", err=True)
    for s in skipped:
        typer.echo(f"  {s['file']}: {s['error']}", err=True)
