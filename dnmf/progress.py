"""Progress bars on stderr (rich), silent when asked or when stderr is not a terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Reporter", "announce", "reporter", "stage"]


def announce(line: str) -> None:
    """Print one status line on stderr now (flushed), before any slow import or start."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class Reporter:
    """A bar with a few named counters, advanced as tasks finish; no-op when disabled."""

    def __init__(self, progress: Any | None, task: Any | None) -> None:
        self._progress = progress
        self._task = task

    def update(self, *, advance: float = 0, **fields: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, advance=advance, **fields)


@contextmanager
def reporter(
    description: str, total: float | None, *, enabled: bool, fields: str, **initial: Any
) -> Iterator[Reporter]:
    """Show a bar with ``description``, a count to ``total`` and ``fields``, a rich format string.

    ``fields`` may name values passed to :meth:`Reporter.update`, e.g.
    ``"{task.fields[hours]:.2f} h"``.
    """
    if not enabled:
        yield Reporter(None, None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(fields),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(description, total=total, **initial)
        yield Reporter(progress, task)


@contextmanager
def stage(
    description: str, starting: str, *, enabled: bool, unit: str, total: int
) -> Iterator[Reporter]:
    """A step with no natural count (starting a cluster) shown as a row of its own.

    ``starting`` is printed at once as a plain line, so that even a log file
    has it before the step's first second is over; the row then counts to
    ``total`` (``unit`` beside the count) and keeps the step's time, like the
    other stages' bars. It shows complete when the body ends.
    """
    if not enabled:
        yield Reporter(None, None)
        return
    announce(starting)
    with reporter(description, total, enabled=True, fields=unit) as bar:
        yield bar
        bar.update(completed=total)
