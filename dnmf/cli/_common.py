"""What every command shares: the compute options, JSON output, and error handling."""

from __future__ import annotations

import functools
import json
import re
import sys
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from dnmf.errors import DnmfError, DnmfUsageError

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


def hide_flag_types() -> None:
    """Show no ``<bool>`` beside on/off flags in ``--help``: they take no value.

    typer's rich help prints every option's type, flags included, which reads as
    if ``--json true`` were the way to write them (it is refused). A flag's type
    column is left empty instead; every other option keeps its ``<int>``, ``<path>``.
    """
    from typer.core import TyperOption

    shown = getattr(TyperOption, "display_type_rich", None)
    if shown is None or getattr(shown, "dnmf_hides_flags", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False) and self.metavar is None:
            return None
        return shown(self, ctx)

    display_type_rich.dnmf_hides_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def fail(message: str, code: int) -> typer.Exit:
    """Print ``dnmf: error: message`` on stderr and return the exit to raise."""
    typer.echo(f"dnmf: error: {message}", err=True)
    return typer.Exit(code)


#: Names the library uses for what a command's option sets (config fields, arguments),
#: mapped to the command's parameter: ``n_inner=0`` is ``--inner 0`` on the command line.
INTERNAL_NAMES = {
    "n_inner": "inner",
    "alpha_W": "alpha_w",
    "alpha_H": "alpha_h",
    "fix_W": "fix_w",
    "fix_H": "fix_h",
    "sparsity_weight": "sparsity",
    "uncorr_weight": "uncorr",
    "n_harmonics": "harmonics",
    "pitch_tol_up": "pitch_tol",
    "pitch_tol_down": "pitch_tol",
    "iter": "n_iter",
    "scores": "init_scores",
}


@functools.cache
def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(getattr(fn, "__wrapped__", fn), include_extras=True)
    except Exception:  # an annotation that does not resolve: name nothing
        return {}


def arguments_of(fn: Callable[..., Any]) -> list[str]:
    """The python names of a typer command function's positional arguments, in order."""
    return [
        name
        for name, hint in _hints(fn).items()
        if any(type(i).__name__ == "ArgumentInfo" for i in getattr(hint, "__metadata__", ()))
    ]


@functools.cache
def options_of(fn: Callable[..., Any]) -> dict[str, str]:
    """``{python name: '--long-option'}`` for each option of a typer command function."""
    out: dict[str, str] = {}
    for name, hint in _hints(fn).items():
        for info in getattr(hint, "__metadata__", ()):
            if type(info).__name__ != "OptionInfo":
                continue
            default = getattr(info, "default", None)
            decls = [default] if isinstance(default, str) and default.startswith("-") else []
            decls += list(getattr(info, "param_decls", None) or ())
            longs = [d for d in decls if d.startswith("--")]
            out[name] = longs[0] if longs else "--" + name.replace("_", "-")
    return out


def name_options(message: str, fn: Callable[..., Any]) -> str:
    """``message`` with the library's names for values (``n_inner=0``) in the command's
    own words (``--inner 0``), for the options ``fn`` (a command function) has.

    Examples
    --------
    >>> def cmd(inner: Annotated[int, typer.Option(help="H updates.")] = 1) -> None: ...
    >>> name_options("n_inner=0 is invalid: input should be greater than 0", cmd)
    '--inner 0 is invalid: input should be greater than 0'
    """
    options = options_of(fn)
    names = {**{k: v for k, v in INTERNAL_NAMES.items() if v in options}, **{k: k for k in options}}
    for internal, param in sorted(names.items(), key=lambda kv: -len(kv[0])):
        option = options[param]
        message = re.sub(rf"(?<![\w.'-]){re.escape(internal)}=", option + " ", message)
        if "_" in internal or internal != internal.lower():  # never an English word
            message = re.sub(rf"(?<![\w.'-]){re.escape(internal)}(?![\w=-])", option, message)
    return message


def describe_os_error(exc: OSError) -> str:
    """One sentence for an OSError on a path: the path, the reason, the fix."""
    reason = (exc.strerror or type(exc).__name__).lower()
    path = exc.filename if exc.filename2 is None else f"{exc.filename}' -> '{exc.filename2}"
    return f"cannot use '{path}': {reason}; check the path and its permissions"


def handle_errors(fn: F) -> F:
    """The one error path of every command: no traceback for what a user can cause.

    A :class:`DnmfError` is its sentence on stderr and its exit code (a usage
    error in the command's own option names), an ``OSError`` on a path one
    sentence and exit 2, and Ctrl-C one line naming the command that goes on
    and exit 130 (:mod:`dnmf.cli._interrupt`).
    """
    from dnmf.cli import _interrupt
    from dnmf.cli._interrupt import (
        EXIT_INTERRUPTED,
        command_line,
        ignore_sigint_in_workers,
        interrupted_message,
    )

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with ignore_sigint_in_workers():
                return fn(*args, **kwargs)
        except DnmfUsageError as exc:
            raise fail(name_options(str(exc), fn), exc.exit_code) from None
        except DnmfError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except OSError as exc:
            # A path that could not be read or written where no check caught it first.
            if exc.filename is None:
                raise
            raise fail(describe_os_error(exc), 2) from None
        except KeyboardInterrupt:
            # How to go on: the command as typed, changed by the command's own rule
            # (``learn``: add --resume once a checkpoint is on disk).
            how = getattr(wrapper, "resume", None)
            try:
                change = how(kwargs) if how is not None else None
            except Exception:
                change = None
            typer.echo(interrupted_message(command_line(fn, kwargs), change), err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception:
            # Ctrl-C inside an import (numba's C extensions turn the KeyboardInterrupt
            # into an ImportError) or inside a library's cleanup is still Ctrl-C.
            if not _interrupt.INTERRUPTED:
                raise
            typer.echo(interrupted_message(command_line(fn, kwargs), None), err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None

    return wrapper  # type: ignore[return-value]


def status(line: str, quiet: bool = False) -> None:
    """One line on stderr at once (a command's first words, before its slow imports)."""
    if not quiet:
        from dnmf.progress import announce

        announce(line)


def cluster_note(seconds: float) -> str:
    """``' (3.1 s of it starting the cluster)'``, or nothing when no cluster was started."""
    return f" ({seconds:.1f} s of it starting the cluster)" if seconds > 0 else ""


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


@contextmanager
def store_lock(*outputs: str | Path) -> Iterator[None]:
    """Hold the lock of the folder each output lies in while a single command writes.

    The lock is ``run.lock`` in that folder, the one ``dnmf run`` takes for its
    pipeline folder (:class:`pipelines.lock.RunLock`): a second writer, or a
    ``dnmf run`` of that folder, refuses with exit code 2 naming the holder.
    """
    from pipelines.lock import RunLock

    folders = sorted({Path(p).absolute().parent for p in outputs})
    held: list[RunLock] = []
    try:
        for folder in folders:
            lock = RunLock(folder / "run.lock")
            lock.acquire()
            held.append(lock)
        yield
    finally:
        for lock in reversed(held):
            lock.release()
