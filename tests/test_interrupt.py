"""Ctrl-C: one line that names the command to go on with, exit 130, no worker tracebacks."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dnmf.cli import app
from dnmf.cli._interrupt import EXIT_INTERRUPTED, command_line, interrupted_message
from dnmf.cli.learn import learn_command
from dnmf.cli.transform import transform_command

ROOT = Path(__file__).resolve().parents[1]


def test_the_message_is_one_line_with_the_command() -> None:
    words = ["learn", "my corpus.zarr", "--rank", "8", "--overwrite"]
    message = interrupted_message(words, (["--resume"], ["--overwrite"]))
    assert message == (
        "dnmf: interrupted; what was committed is kept; continue with: "
        "dnmf learn 'my corpus.zarr' --rank 8 --resume"
    )
    assert interrupted_message(["ingest", "rec/"], None).endswith("continue with: dnmf ingest rec/")


def test_the_command_is_rebuilt_from_its_values_when_not_typed(tmp_path: Path) -> None:
    kwargs = {"input_path": tmp_path / "c.zarr", "rank": 8, "epochs": 200, "beta": "1.5",
              "overwrite": True, "json_out": False, "output": None}  # fmt: skip
    words = command_line(learn_command, kwargs)
    assert words == ["learn", str(tmp_path / "c.zarr"), "--rank", "8", "--beta", "1.5",
                     "--overwrite"]  # fmt: skip


def test_learn_resumes_from_a_checkpoint_and_starts_over_without_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_address: str
) -> None:
    from tests.test_learn import write_corpus

    monkeypatch.setenv("DNMF_SCHEDULER", scheduler_address)
    V = np.random.default_rng(0).random((33, 120)).astype(np.float32) + 0.1
    corpus = write_corpus(tmp_path / "c.zarr", V, chunk_frames=100)
    kwargs = {"input_path": corpus, "output": None}
    rule = learn_command.resume  # type: ignore[attr-defined]
    assert rule(kwargs) is None  # no model store yet: the same command
    result = CliRunner().invoke(app, ["learn", str(corpus), "--rank", "2", "--epochs", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert rule(kwargs) == (["--resume"], ["--overwrite"])
    assert transform_command.resume({"output": tmp_path / "c.zarr"}) == (["--overwrite"], [])  # type: ignore[attr-defined]
    assert transform_command.resume({"output": tmp_path / "none.zarr"}) is None  # type: ignore[attr-defined]


def _checkpointed(model: Path) -> int:
    """Epochs in the model store once it holds a checkpoint, else 0."""
    try:
        meta = json.loads((model / "zarr.json").read_text())["attributes"]["dnmf"]
    except (OSError, ValueError, KeyError):
        return 0
    if not meta.get("checkpoint"):
        return 0
    return int(json.loads((model / "loss" / "zarr.json").read_text())["shape"][0])


@pytest.mark.slow
def test_ctrl_c_during_learn_on_a_local_cluster(tmp_path: Path) -> None:
    """SIGINT to the whole process group, as a terminal sends it; then the named command."""
    from tests.test_learn import write_corpus

    V = np.random.default_rng(0).random((257, 40000)).astype(np.float32) + 0.01
    corpus = write_corpus(tmp_path / "c.zarr", V, chunk_frames=2000)
    model = tmp_path / "m.zarr"
    env = {k: v for k, v in os.environ.items() if k != "DNMF_SCHEDULER"}
    env["PYTHONPATH"] = str(ROOT)
    args = ["learn", str(corpus), "--rank", "8", "--epochs", "1000", "--tol", "0",
            "--workers", "2", "--checkpoint-every", "1", "-o", str(model), "-q"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "dnmf", *args], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while not _checkpointed(model) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _checkpointed(model), "no checkpoint within 180 s"
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)  # the client, the nannies and the workers
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert out == ""
    lines = err.strip().splitlines()
    assert "Traceback" not in err and len(lines) == 1, err
    prefix = "dnmf: interrupted; what was committed is kept; continue with: "
    assert lines[0].startswith(prefix), err
    again = shlex.split(lines[0].removeprefix(prefix))
    assert again == ["dnmf", *args, "--resume"]

    # The named command goes on from the checkpoint (here to one epoch more).
    done = _checkpointed(model)
    again[again.index("--epochs") + 1] = str(done + 1)
    rerun = subprocess.run(
        [sys.executable, "-m", "dnmf", *again[1:], "--json"], env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["resumed_from_step"] is not None and summary["epochs"] == done + 1


@pytest.mark.timing  # flaky: 3 failure modes seen in 6 CI-like runs (see the closing note)
@pytest.mark.parametrize("after", [1.0, 2.5, 4.0, 5.5])
def test_ctrl_c_at_any_moment_of_an_ingest(tmp_path: Path, after: float) -> None:
    """While the local cluster starts (workers still importing), works, or closes."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    (tmp_path / "audio").mkdir()
    for i in range(8):
        y = (0.1 * rng.standard_normal(44100 * 30)).astype(np.float32)
        sf.write(tmp_path / "audio" / f"{i}.wav", y, 44100)
    env = {k: v for k, v in os.environ.items() if k != "DNMF_SCHEDULER"}
    env["PYTHONPATH"] = str(ROOT)
    args = ["ingest", str(tmp_path / "audio"), "-o", str(tmp_path / "c.zarr"), "--workers", "2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dnmf", *args], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        time.sleep(after)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Traceback" not in err and "ERROR" not in err, err
    if proc.returncode == 0:  # it was done before the signal came
        return
    if proc.returncode == -signal.SIGINT:  # done, and the signal came as Python shut down
        assert "8/8 files" in err, err
        return
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert err.strip().splitlines()[-1] == (
        "dnmf: interrupted; what was committed is kept; continue with: dnmf " + shlex.join(args)
    )
