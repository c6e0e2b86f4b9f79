"""Fault tolerance of ``dnmf run`` on a real scheduler and worker processes (slow; CI runs them).

A worker process SIGKILLed in the middle of learning costs only its retried
tasks: the job finishes with bitwise the dictionary of an undisturbed run.
The job itself SIGKILLed in the middle of learning leaves a stale lock; the
next run names it, ``--break-lock`` clears it, and that run resumes from the
last checkpoint and ends at bitwise the same dictionary.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from dnmf.io.model import ModelStore
from pipelines.config import load_config
from pipelines.learn import learn_corpus
from pipelines.run import read_run_log
from tests.test_ops import dask_processes, dnmf, dnmf_command
from tests.test_run import audio, small_config, write_config

pytestmark = pytest.mark.slow

VISIT = re.compile(r"-e(\d+)-s\d+-visit-")


def long_config(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """About 12 chunks, 4 steps an epoch, 40 epochs: 160 steps, a wide window to interrupt.

    The window is wide so that a test process starved of CPU for seconds by a
    busy machine still sees the job in the middle of learning.
    """
    audio(tmp_path / "audio", ["a.wav", "b.wav", "c.wav", "sub/d.wav"], seconds=3.0)
    raw = small_config(
        tmp_path,
        learn={"epochs": 40, "batch_chunks": 3, "n_inner": 2, "checkpoint_every": 5},
    )
    return write_config(tmp_path / "c.yaml", raw), raw


def start_run(path: Path, address: str, cwd: Path, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "DNMF_SCHEDULER"}
    return subprocess.Popen(
        [*dnmf_command(), "run", str(path), "--scheduler", address, "-q", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
    )  # fmt: skip


def undisturbed_W(
    store: Path, path: Path, tmp_path: Path, client: Any
) -> tuple[bytes, list[float]]:
    """The dictionary the config learns on the same corpus, on another cluster, uninterrupted."""
    cfg = load_config(path)
    ref = learn_corpus(
        store / "corpus.zarr", tmp_path / "ref.zarr", config=cfg.learn.learn_config(),
        client=client,
    )  # fmt: skip
    return ModelStore.open(tmp_path / "ref.zarr").W.tobytes(), ref.losses


def test_a_worker_killed_in_the_middle_of_learn(tmp_path: Path, cluster_client: Any) -> None:
    path, raw = long_config(tmp_path)
    store = Path(raw["store"])
    with dask_processes(tmp_path / "dask", nanny=False) as procs:
        pids = procs.worker_pids()
        victim = sorted(pids)[0]
        job = start_run(path, procs.address, tmp_path)
        killed_at = None
        deadline = time.time() + 240
        while killed_at is None and job.poll() is None and time.time() < deadline:
            keys = procs.client.processing(workers=[victim]).get(victim, ())
            epochs = [int(m.group(1)) for k in keys if (m := VISIT.search(str(k)))]
            if epochs and max(epochs) >= 1:
                os.kill(pids[victim], signal.SIGKILL)  # while it runs a visit of learn
                killed_at = (max(epochs), keys)
            time.sleep(0.002)
        _, err = job.communicate(timeout=300)
        assert killed_at is not None, f"the job ended before a worker could be killed: {err}"
        assert job.returncode == 0, err
        assert len(procs.client.scheduler_info(n_workers=-1)["workers"]) == 1  # it stayed dead
    log = read_run_log(store)
    learn = next(r for r in log if r["stage"] == "learn")
    assert learn["status"] == "done" and learn["counts"]["epochs"] == 40
    W, losses = undisturbed_W(store, path, tmp_path, cluster_client)
    assert ModelStore.open(store / "model.zarr").W.tobytes() == W
    assert learn["counts"]["loss"] == losses[-1]


def checkpoint_step(model: Path) -> int:
    try:
        meta = json.loads((model / "zarr.json").read_text())["attributes"]["dnmf"]
    except (OSError, ValueError, KeyError):
        return -1  # not there yet, or being rewritten
    return int((meta.get("checkpoint") or {}).get("global_step", -1))


def test_the_job_killed_in_the_middle_resumes_to_the_same_W(
    tmp_path: Path, cluster_client: Any
) -> None:
    path, raw = long_config(tmp_path)
    store = Path(raw["store"])
    with dask_processes(tmp_path / "dask") as procs:
        job = start_run(path, procs.address, tmp_path)
        deadline = time.time() + 240
        while checkpoint_step(store / "model.next.zarr") < 10:
            assert job.poll() is None, job.communicate()
            assert time.time() < deadline, "no checkpoint at step 10 within 240 s"
            time.sleep(0.01)
        job.send_signal(signal.SIGKILL)
        job.communicate(timeout=60)
        assert (store / "run.lock").exists() and (store / "model.next.zarr").exists()

        refused = dnmf("run", path, "--scheduler", procs.address, cwd=tmp_path)
        assert refused.returncode == 2, refused.stderr
        assert "stale run lock" in refused.stderr, refused.stderr
        assert "--break-lock" in refused.stderr

        resumed = dnmf(
            "run", path, "--scheduler", procs.address, "--break-lock", "--json", "-q", cwd=tmp_path
        )
        assert resumed.returncode == 0, resumed.stderr
    stages = {s["stage"]: s for s in json.loads(resumed.stdout)["stages"]}
    assert stages["ingest"]["action"] == "none", stages
    assert stages["learn"]["action"] == "resume", stages
    assert stages["learn"]["counts"]["resumed_from_step"] >= 10
    assert stages["export"]["action"] == "full"
    W, losses = undisturbed_W(store, path, tmp_path, cluster_client)
    model = ModelStore.open(store / "model.zarr")
    assert model.W.tobytes() == W and model.status == "done"
    assert list(model.group["loss"][:]) == losses  # type: ignore[index]
    assert not (store / "model.next.zarr").exists() and not (store / "run.lock").exists()
    log = read_run_log(store)
    assert [(r["stage"], r["action"]) for r in log][:2] == [
        ("ingest", "create"),
        ("ingest", "none"),
    ]
