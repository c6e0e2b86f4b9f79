"""Output paths checked before any work: a folder or store path that can be written.

Every command that writes checks its outputs first with :func:`check_output`, so
that a path that is an existing file, lies under a file, or is in a folder that
cannot be written is one sentence and exit code 2 before anything is decoded or
computed, not a traceback after minutes of work.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from dnmf.errors import OutputPathError
from dnmf.words import with_article

__all__ = ["check_output"]


def check_output(path: str | os.PathLike[str], *, option: str = "--output", what: str) -> Path:
    """Refuse an output folder or store ``path`` that cannot be created or written.

    Parameters
    ----------
    path : path
        The folder or Zarr store to write (it may exist, as a folder).
    option : str
        How the user gave the path, for the message (``"--output"``, ``"--folder"``).
    what : str
        What is written there, for the message (``"corpus store"``, ``"folder for the WAVs"``).

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    OutputPathError
        If ``path`` is an existing file, lies under a file, or its nearest existing
        folder cannot be written (checked by creating a temporary file there, since
        permission bits do not stop root).

    Examples
    --------
    >>> check_output("/proc/x.zarr", what="corpus store")  # doctest: +SKIP
    Traceback (most recent call last):
    dnmf.errors.OutputPathError: --output '/proc/x.zarr' cannot be written ...
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputPathError(
            f"{option} {str(p)!r} is an existing file, not {with_article(what)}; pass a path "
            "that is a folder or does not exist yet"
        )
    existing = p
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputPathError(
            f"{option} {str(p)!r} lies under the file {str(existing)!r}, so no {what} can be "
            "made there; pass a path in a folder"
        )
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise OutputPathError(
            f"{option} {str(p)!r} cannot be written ({str(existing)!r}: {reason}); pass a path "
            "in a folder you can write to"
        ) from None
    return p
