"""The first seconds of a command: it says at once what it starts; a rerun with nothing to do
starts no cluster. Real processes (``python -m dnmf.cli``), read line by line as they print."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import tone, write
from tests.test_run import audio, cli, small_config, write_config

REPO = Path(__file__).resolve().parents[1]


def dnmf(
    *args: Any, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[str]:
    """``dnmf ARGS`` in a new process (in ``cwd``), stdout and stderr piped."""
    full = {k: v for k, v in os.environ.items() if k != "DNMF_SCHEDULER"}
    full.update(PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.Popen(
        [sys.executable, "-m", "dnmf.cli", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full, cwd=cwd,
    )  # fmt: skip


def first_line_then_rest(p: subprocess.Popen[str]) -> tuple[str, bool, str, str]:
    """The first stderr line, whether the process was still running when it came, the rest."""
    assert p.stderr is not None
    first = p.stderr.readline().rstrip("\n")
    running = p.poll() is None
    out, err = p.communicate(timeout=300)
    return first, running, err, out


def test_ingest_says_first_that_it_starts_a_cluster_and_a_rerun_starts_none(
    tmp_path: Path,
) -> None:
    corpus = tmp_path / "corpus"
    write(corpus / "a.wav", tone(22050, 2.0), 22050)
    write(corpus / "b.flac", tone(44100, 1.0, 330, channels=2), 44100)
    store = tmp_path / "c.zarr"

    p = dnmf("ingest", corpus, "-o", store, "--workers", "1")
    first, running, err, out = first_line_then_rest(p)
    assert p.returncode == 0, err
    assert first == "starting a local cluster of 1 worker...", err
    assert running  # said before the cluster was up, not at the end
    rows = [line.split()[0] for line in err.splitlines() if line.strip()]
    assert rows == ["cluster", "ingest"], err  # the start is a stage of its own
    assert "1/1 workers" in err
    assert "s of it starting the cluster" in out, out  # and counted in the total

    again = dnmf("ingest", corpus, "-o", store, "--workers", "1")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0 and out.startswith("nothing new"), (out, err)
    assert "cluster" not in err and "starting" not in err, err


def test_demo_and_run_reruns_with_nothing_to_do_start_no_cluster(
    tmp_path: Path, scheduler_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"DNMF_SCHEDULER": scheduler_address}  # the first runs join the session's cluster
    monkeypatch.setenv("DNMF_SCHEDULER", scheduler_address)
    folder = tmp_path / "demo"
    args = ("demo", "--folder", folder, "--n-files", "2", "--seconds", "2", "--epochs", "2")
    p = dnmf(*args, env=env)
    first, _, err, out = first_line_then_rest(p)
    assert p.returncode == 0, err
    assert first == f"writing 2 synthetic pieces into {folder / 'audio'}...", err
    assert f"joining the Dask scheduler at {scheduler_address}..." in err
    assert out.count("done in") == 1

    again = dnmf(*args, env=env)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0 and "is up to date with the corpus" in out, (out, err)
    assert "joining" not in err and "starting" not in err, err

    audio(tmp_path / "audio", ["a.wav", "b.wav"])
    config = write_config(tmp_path / "c.yaml", small_config(tmp_path))
    assert cli("run", config, "-q").exit_code == 0  # in this process, on the session's cluster
    rerun = dnmf("run", config, env=env)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0 and out.startswith("nothing new"), (out, err)
    assert "joining" not in err and "starting" not in err and "cluster" not in out, (out, err)


def test_learn_on_an_audio_folder_starts_one_cluster_for_ingest_and_learning(
    tmp_path: Path,
) -> None:
    write(tmp_path / "audio" / "a.wav", tone(22050, 1.0), 22050)
    write(tmp_path / "audio" / "b.wav", tone(22050, 1.0, 660.0), 22050)
    model = tmp_path / "model.zarr"
    p = dnmf("learn", tmp_path / "audio", "-o", model, "--rank", "2", "--epochs", "1",
             "--workers", "1", cwd=tmp_path)  # fmt: skip
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert err.count("starting a local cluster") == 1, err
    assert (tmp_path / "audio.dnmf" / "corpus.zarr" / "zarr.json").exists()
    assert (model / "zarr.json").exists()
