"""Every writing command takes its store's lock (``run.lock`` in the store's folder, the one
``dnmf run`` takes): a second writer refuses with exit 2 naming the holder, no record lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dnmf.cli import app
from pipelines.lock import RunLock
from tests.conftest import tone, write
from tests.test_cli_errors import assert_exit_2

runner = CliRunner()


def run(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def test_a_held_lock_stops_every_writing_command(tmp_path: Path) -> None:
    wav = write(tmp_path / "audio" / "a.wav", tone(22050, 0.5), 22050)
    out = tmp_path / "held"
    out.mkdir()
    model = stub(tmp_path / "model.zarr")  # never opened: the lock is taken first
    commands = {
        "ingest": ["ingest", tmp_path / "audio", "-o", out / "corpus.zarr"],
        "learn": ["learn", stub(tmp_path / "c.zarr"), "--rank", "2", "-o", out / "model.zarr"],
        "export": ["export", model, "-o", out / "activations.zarr"],
        "transform": ["transform", model, wav, "-o", out / "t.zarr"],
        "separate": ["separate", model, wav, "-o", out / "parts"],
    }
    with RunLock(out / "run.lock") as lock:
        lock.acquire()
        for name, args in commands.items():
            result = run(*args, "-q")
            assert_exit_2(result, f"{str(out)!r} is locked by a running", f"pid {os.getpid()}")
            assert not (out / "run.lock.broken").exists(), name
    assert sorted(p.name for p in out.iterdir()) == [], "nothing written"


def stub(path: Path) -> Path:
    """A store that is only its path: the lock is checked before any store is read."""
    path.mkdir()
    (path / "zarr.json").write_text("{}")
    return path


def test_two_ingests_at_once_one_refuses_and_no_record_is_lost(
    tmp_path: Path, scheduler_address: str
) -> None:
    for i in range(3):
        write(tmp_path / "audio" / f"{i}.wav", tone(22050, 1.0, 300.0 + 100 * i), 22050)
    store = tmp_path / "corpus.zarr"
    env = {**os.environ, "DNMF_SCHEDULER": scheduler_address}
    cmd = [sys.executable, "-m", "dnmf", "ingest", str(tmp_path / "audio"), "-o", str(store), "-q"]
    first = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.time() + 60
    while not (tmp_path / "run.lock").exists():
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGSTOP)  # hold it there, alive and holding the lock
    try:
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert second.returncode == 2, second.stderr
    assert "is locked by a running dnmf ingest (pid" in second.stderr, second.stderr
    assert "Traceback" not in second.stderr and len(second.stderr.strip().splitlines()) == 1
    from dnmf.io.corpus import CorpusStore

    corpus = CorpusStore.open(store)
    assert len(corpus.meta["ingest_history"]) == 1 and corpus.n_files == 3
    assert not (tmp_path / "run.lock").exists()  # released


@pytest.fixture(autouse=True)
def _no_cluster_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DNMF_SCHEDULER", raising=False)
