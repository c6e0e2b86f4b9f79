"""The run lock: one ``dnmf run`` at a time writes a pipeline folder.

The lock is a small JSON file, ``run.lock`` in the pipeline folder, created
with ``O_CREAT | O_EXCL`` (only one process can create it) and written whole
in one ``write``. It names its owner (``pid``, ``host``, the process's start
time, the command) and carries a ``heartbeat`` that a thread of the owner
refreshes every few seconds, each time writing a whole new file and
``os.replace``-ing it in, so a reader never sees half a lock.

A lock is **stale** when its owner is known to be gone: on this host its pid
no longer runs (or runs another program: the pid was reused), or, on any
host, its heartbeat is older than ``stale_after`` seconds. A stale lock is
refused like a live one, but named as stale; ``--break-lock`` clears it (and
only a stale one).
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dnmf.errors import StoreLockedError

__all__ = ["LockInfo", "RunLock", "read_lock", "stale_reason"]


@dataclass(frozen=True)
class LockInfo:
    """What a lock file says about its owner."""

    pid: int
    host: str
    started: float
    heartbeat: float
    token: str
    pid_started: float | None = None
    command: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LockInfo:
        return cls(
            pid=int(data["pid"]),
            host=str(data["host"]),
            started=float(data["started"]),
            heartbeat=float(data["heartbeat"]),
            token=str(data["token"]),
            pid_started=(
                float(data["pid_started"]) if data.get("pid_started") is not None else None
            ),
            command=str(data.get("command", "")),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "host": self.host,
            "started": self.started,
            "started_utc": _iso(self.started),
            "heartbeat": self.heartbeat,
            "heartbeat_utc": _iso(self.heartbeat),
            "token": self.token,
            "pid_started": self.pid_started,
            "command": self.command,
        }

    def owner(self) -> str:
        return f"pid {self.pid} on host {self.host}, started {_iso(self.started)}"


#: The commands that take a store's lock (``dnmf run`` for a whole pipeline folder).
WRITERS = ("run", "ingest", "learn", "export", "transform", "separate")


def holder(info: LockInfo) -> str:
    """The command that holds a lock, as a user would type it (``dnmf ingest``)."""
    words = info.command.split()
    for i, word in enumerate(words[1:], start=1):
        if word in WRITERS and Path(words[i - 1]).name in ("dnmf", "-m", "dnmf.cli", "__main__.py"):
            return f"dnmf {word}"
    return "dnmf run"


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


def read_lock(path: str | os.PathLike[str], *, settle: float = 1.0) -> LockInfo | None:
    """The lock at ``path``, or None if there is none.

    A lock file that does not parse is one being created this instant (or
    the remains of a crash in that instant): read again for up to ``settle``
    seconds, then judge it by its modification time.
    """
    p = Path(path)
    deadline = time.monotonic() + settle
    while True:
        try:
            text = p.read_text(encoding="utf-8")
            mtime = p.stat().st_mtime
        except FileNotFoundError:
            return None
        try:
            return LockInfo.from_json(json.loads(text))
        except (ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:
                return LockInfo(
                    pid=-1, host="?", started=mtime, heartbeat=mtime, token="unreadable"
                )
            time.sleep(0.05)


def stale_reason(info: LockInfo, *, stale_after: float, now: float | None = None) -> str | None:
    """Why the lock's owner is gone, or None if it may still be running."""
    now = time.time() if now is None else now
    if info.host == socket.gethostname() and info.pid > 0:
        started = _process_start(info.pid)
        if started is None:
            return f"pid {info.pid} no longer runs on this host"
        if info.pid_started is not None and abs(started - info.pid_started) > 1.0:
            return f"pid {info.pid} now belongs to another process"
    age = now - info.heartbeat
    if age > stale_after:
        return (
            f"its last heartbeat was {age:.0f} s ago, more than "
            f"lock.stale_after_seconds={stale_after:g}"
        )
    return None


class RunLock:
    """The lock of one pipeline folder, held for the duration of a ``with`` block.

    Parameters
    ----------
    path : path
        The lock file (``<store>/run.lock``).
    heartbeat : float
        Seconds between heartbeats.
    stale_after : float
        Seconds without a heartbeat after which the lock counts as stale.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, heartbeat: float = 10.0, stale_after: float = 300.0
    ) -> None:
        self.path = Path(path)
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self.info: LockInfo | None = None
        self.broken: str | None = None  # set when another process took the lock away
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- taking it ---------------------------------------------------------------------
    def acquire(self, *, break_stale: bool = False) -> str | None:
        """Take the lock; returns a note on the stale lock broken, if any.

        Raises
        ------
        StoreLockedError
            Another run holds it (live), or it is stale and ``break_stale`` is false.
        """
        note = None
        for _ in range(3):
            if self._create():
                self._start_heartbeat()
                return note
            other = read_lock(self.path)
            if other is None:
                continue  # released in the meantime: try again
            reason = stale_reason(other, stale_after=self.stale_after)
            if reason is None:
                beat = time.time() - other.heartbeat
                hint = (
                    "wait for it to finish or stop it"
                    if not break_stale
                    else "--break-lock clears only a stale lock; stop that run first"
                )
                raise StoreLockedError(
                    f"{str(self.path.parent)!r} is locked by a running {holder(other)} "
                    f"({other.owner()}, "
                    f"heartbeat {beat:.0f} s ago); {hint}"
                )
            if not break_stale:
                raise StoreLockedError(
                    f"{str(self.path.parent)!r} has a stale run lock ({other.owner()}: {reason}); "
                    f"if no run uses the store, clear it with --break-lock"
                )
            if self._remove_if(other):
                note = f"cleared the stale run lock of {other.owner()} ({reason})"
        raise StoreLockedError(
            f"{str(self.path.parent)!r}: another run took the lock while this one cleared a "
            "stale one; try again"
        )

    def _create(self) -> bool:
        now = time.time()
        info = LockInfo(
            pid=os.getpid(),
            host=socket.gethostname(),
            started=now,
            heartbeat=now,
            token=uuid.uuid4().hex,
            pid_started=_process_start(os.getpid()),
            command=" ".join(sys.argv)[:500],
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(info.to_json(), indent=1).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.info = info
        return True

    def _remove_if(self, stale: LockInfo) -> bool:
        """Remove the lock file if it still is ``stale`` (not one just taken by another run)."""
        aside = self.path.with_name(f"{self.path.name}.broken-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        moved = read_lock(aside, settle=0.0)
        if moved is not None and moved.token != stale.token:
            # Another run took the lock between our read and the rename: give it back.
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            os.unlink(aside)
            return False
        os.unlink(aside)
        return True

    # -- holding it --------------------------------------------------------------------
    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="dnmf-run-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self.touch()
            except OSError:
                pass  # a full disk or a gone folder: verify() reports at the next stage

    def touch(self) -> None:
        """Refresh the heartbeat (a whole new file, replaced in at once)."""
        if self.info is None or self.broken:
            return
        current = read_lock(self.path, settle=0.0)
        if current is None or current.token != self.info.token:
            self.broken = (
                f"the run lock of {str(self.path.parent)!r} was removed or taken by another "
                f"process ({current.owner() if current else 'none now'}) while this run held it"
            )
            return
        info = dataclasses.replace(self.info, heartbeat=time.time())
        tmp = self.path.with_name(f"{self.path.name}.{info.token[:8]}.tmp")
        tmp.write_text(json.dumps(info.to_json(), indent=1), encoding="utf-8")
        os.replace(tmp, self.path)
        self.info = info

    def verify(self) -> None:
        """Raise if the lock is no longer this run's (checked between stages)."""
        if self.broken is None and self.info is not None:
            current = read_lock(self.path, settle=0.0)
            if current is None or current.token != self.info.token:
                self.broken = (
                    f"the run lock of {str(self.path.parent)!r} was removed or taken by another "
                    "process while this run held it"
                )
        if self.broken:
            raise StoreLockedError(f"{self.broken}; stopping before the next stage")

    def release(self) -> None:
        """Stop the heartbeat and remove the lock, if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.info is None:
            return
        current = read_lock(self.path, settle=0.0)
        if current is not None and current.token == self.info.token:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
        self.info = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
