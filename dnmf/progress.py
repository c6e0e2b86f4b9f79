"""Progress bars on stderr (rich), silent when asked or when stderr is not a terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["Reporter", "reporter"]


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
