"""Ctrl-C: one line naming the command that resumes, exit 130, and no worker tracebacks.

A terminal sends SIGINT to the whole foreground process group, so the worker
processes of a local cluster got it too and each printed its traceback. Worker
processes dnmf starts load this module as a Dask preload (``dask_setup``) and
ignore SIGINT; the client alone stops, closes the cluster and says how to go on.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["EXIT_INTERRUPTED", "ignore_sigint_in_workers", "interrupted_message"]

#: 128 + SIGINT, as a shell reports a command stopped by Ctrl-C.
EXIT_INTERRUPTED = 130

#: The command line as typed (``sys.argv[1:]``), set by the console entry point.
ARGV: list[str] | None = None

MODULE = __name__


#: Set once this process has taken Ctrl-C: an exception after it is the interrupt's.
INTERRUPTED = False


def dask_setup(worker: Any) -> None:
    """Dask preload: a worker leaves SIGINT to the client that started it.

    The tasks the client cancels as it stops are expected then; the worker's
    warning for each ("... ended with CancelledError") is dropped too.
    """
    import logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in ("distributed.worker.state_machine", "distributed.worker"):
        logging.getLogger(name).addFilter(_not_teardown)


#: What a local worker logs while the client that owns its scheduler stops.
_TEARDOWN = ("ended with CancelledError", "Failed to communicate with scheduler")


def _not_teardown(record: Any) -> bool:
    message = record.getMessage()
    return not any(text in message for text in _TEARDOWN)


@contextlib.contextmanager
def ignore_sigint_in_workers() -> Iterator[None]:
    """Add this module to the preloads of every local worker started inside, and on
    Ctrl-C silence this process's Dask logs before the cluster is closed.

    Nothing here imports Dask (:func:`dnmf.cluster.worker_preload`): a command says
    its first line before it pays for that.

    The scheduler of a local cluster lives in this process; while it is shut down
    by the interrupt it logs each worker connection it finds closed. Those lines
    say nothing the one line printed afterwards does not.
    """
    from dnmf.cluster import worker_preload  # not Dask: the first line comes before it

    with contextlib.ExitStack() as stack:
        stack.enter_context(worker_preload(MODULE))
        stack.enter_context(_quiet_dask_on_sigint())
        stack.enter_context(_children_start_with_sigint_blocked())
        yield


@contextlib.contextmanager
def _children_start_with_sigint_blocked() -> Iterator[None]:
    """Processes spawned meanwhile (a local cluster's workers) start with SIGINT blocked.

    A terminal's Ctrl-C reaches every process of its foreground group; a worker
    still importing when it came died with a traceback and left the cluster
    half-made, before its preload could ignore the signal. The block is set in
    the thread that spawns, around ``multiprocessing``'s one spawning call: a
    child starts with its parent thread's signal mask.
    """
    import multiprocessing.util as mp_util

    original = getattr(mp_util, "spawnv_passfds", None)
    if original is None or not hasattr(signal, "pthread_sigmask"):
        yield
        return

    def spawnv_passfds(path: Any, args: Any, passfds: Any) -> Any:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return original(path, args, passfds)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    mp_util.spawnv_passfds = spawnv_passfds  # type: ignore[assignment]
    try:
        yield
    finally:
        mp_util.spawnv_passfds = original  # type: ignore[assignment]


def _in_cluster_setup(frame: Any) -> bool:
    """Whether the main thread is starting or closing a cluster or client (Dask's code),
    or is in a callback whose exceptions Python ignores (a finaliser, a gc callback)."""
    if frame is not None and (
        frame.f_code.co_name in ("__del__", "_gc_callback")
        or frame.f_code.co_filename.replace("\\", "/").endswith("/distributed/gc.py")
    ):
        return True
    while frame is not None:
        path = frame.f_code.co_filename.replace("\\", "/")
        if "/distributed/deploy/" in path:
            return True
        if path.endswith("/distributed/client.py") and frame.f_code.co_name in (
            "__init__", "__exit__", "close",
        ):  # fmt: skip
            return True
        frame = frame.f_back
    return False


def _silence_and_interrupt(signum: int, frame: Any) -> None:
    """SIGINT: silence Dask's logs, then KeyboardInterrupt, though not while a cluster
    starts or closes (half a LocalCluster left behind logs tracebacks at exit): then
    the signal is sent again a moment later, until the cluster is whole or gone."""
    import logging
    import os
    import threading

    if _in_cluster_setup(frame):

        def resend() -> None:  # only while this handler is still the one in place
            if signal.getsignal(signal.SIGINT) is _silence_and_interrupt:
                os.kill(os.getpid(), signal.SIGINT)

        again = threading.Timer(0.2, resend)
        again.daemon = True
        again.start()
        return
    global INTERRUPTED
    INTERRUPTED = True
    logging.getLogger("distributed").setLevel(logging.CRITICAL + 1)  # none at all
    raise KeyboardInterrupt


@contextlib.contextmanager
def _quiet_dask_on_sigint() -> Iterator[None]:
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield  # someone else's handler (or SIGINT ignored): leave it
        return
    signal.signal(signal.SIGINT, _silence_and_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def command_line(fn: Callable[..., Any], kwargs: dict[str, Any]) -> list[str]:
    """The command's words: as typed when run from a shell, else rebuilt from its values."""
    if ARGV is not None:
        return list(ARGV)
    from dnmf.cli._common import arguments_of, options_of

    name = getattr(fn, "__name__", "").removesuffix("_command")
    words = [name]
    for param in arguments_of(fn):
        value = kwargs.get(param)
        words += [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]
    defaults = _defaults(fn)
    for param, option in options_of(fn).items():
        value = kwargs.get(param)
        if value is None or value == defaults.get(param):
            continue
        if value is True:
            words.append(option)
        elif value is not False:
            for v in value if isinstance(value, list | tuple) else [value]:
                words += [option, str(v)]
    return words


def _defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    import inspect

    sig = inspect.signature(getattr(fn, "__wrapped__", fn))
    return {k: p.default for k, p in sig.parameters.items() if p.default is not p.empty}


def interrupted_message(words: list[str], resume: tuple[list[str], list[str]] | None) -> str:
    """The one line printed on Ctrl-C: what is kept and the exact command that goes on.

    ``resume`` is (words to add, words to drop) to the command as typed.

    Examples
    --------
    >>> interrupted_message(["learn", "c.zarr", "--overwrite"], (["--resume"], ["--overwrite"]))
    'dnmf: interrupted; what was committed is kept; continue with: dnmf learn c.zarr --resume'
    """
    add, drop = resume or ([], [])
    kept = [w for w in words if w not in drop]
    kept += [w for w in add if w not in kept]
    again = shlex.join(["dnmf", *kept])
    return f"dnmf: interrupted; what was committed is kept; continue with: {again}"


def set_argv() -> None:
    """Remember the command line as typed (called by :func:`dnmf.cli.main`)."""
    global ARGV
    ARGV = sys.argv[1:]
