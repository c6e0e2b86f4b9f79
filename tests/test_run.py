"""``dnmf run``: configs, incremental runs, the run log, the run lock (real stores and cluster)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
import zarr
from typer.testing import CliRunner

from dnmf.cli import app
from dnmf.io.model import ModelStore
from dnmf.nmf.config import LearnConfig
from pipelines.config import PipelineConfig, load_config, parse_config
from pipelines.learn import learn_corpus
from pipelines.lock import LockInfo, RunLock, read_lock, stale_reason
from pipelines.run import read_run_log, run_pipeline
from pipelines.run_plan import IngestFacts, ModelFacts, plan_export_stage, plan_ingest, plan_learn
from tests.conftest import tone, write

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


def small_config(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    """A tiny pipeline: 8 kHz audio, 64-frame chunks, rank 3."""
    raw: dict[str, Any] = {
        "store": str(tmp_path / "p.dnmf"),
        "input": str(tmp_path / "audio"),
        "ingest": {"sr": 8000, "n_fft": 256, "hop_length": 128, "chunk_frames": 64},
        "learn": {"rank": 3, "epochs": 4, "refine_epochs": 2, "seed": 1, "tol": 0},
        "export": {"iter": 30},
        "cluster": {"kind": "local", "workers": 1},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return raw


def audio(folder: Path, names: list[str], seconds: float = 1.3) -> None:
    for i, name in enumerate(names):
        freq = 300.0 + 170.0 * (hash(name) % 7)
        write(folder / name, tone(8000, seconds + 0.2 * i, freq, seed=i), 8000)


def write_config(path: Path, raw: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


def cli(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def on_cluster(monkeypatch: pytest.MonkeyPatch, scheduler_address: str) -> str:
    """Runs join the session's cluster through DNMF_SCHEDULER (it wins over the config's)."""
    monkeypatch.setenv("DNMF_SCHEDULER", scheduler_address)
    return scheduler_address


# -- configs ------------------------------------------------------------------------------
@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_validates(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, PipelineConfig)
    text = path.read_text()
    assert text.lstrip().startswith("#"), f"{path.name} has no comment at the top"


def test_shipped_configs_cover_the_cluster_kinds() -> None:
    kinds = {p.name: load_config(p).cluster.kind for p in CONFIGS}
    assert {"demo.yaml", "laptop.yaml", "cluster.yaml", "slurm.yaml"} <= set(kinds)
    assert kinds["cluster.yaml"] == "address" and kinds["slurm.yaml"] == "slurm"


def test_demo_config_learns_what_dnmf_demo_learns() -> None:
    cfg = load_config(REPO / "configs" / "demo.yaml")
    demo = LearnConfig(rank=16, beta="kullback-leibler", epochs=40, init="nndsvda")
    assert cfg.learn.learn_config() == demo
    assert cfg.store == "dnmf-demo" and cfg.input == "dnmf-demo/audio"


def test_learn_section_default_init_follows_beta() -> None:
    from pipelines.config import LearnSection

    assert LearnSection(rank=4).init == "nndsvda"
    assert LearnSection(rank=4, beta="itakura-saito").init == "random"
    assert LearnSection(rank=4, beta=0, init="nndsvda").init == "nndsvda"  # a named init stays


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"learn": {"rank": 3, "rnak": 4}}, ["unknown key 'learn.rnak'", "rank, lags, beta"]),
        ({"colour": "red"}, ["unknown key 'colour'", "store, input"]),
        ({"learn": {"rank": 3, "beta": "hellinger"}}, ["learn.beta='hellinger'", "itakura-saito"]),
        ({"cluster": {"kind": "slurmm"}}, ["cluster.kind='slurmm'", "'local', 'address', 'slurm'"]),
        ({"learn": {"rank": 3, "init": "custom"}}, ["learn.init='custom'", "'nndsvda'"]),
        ({"export": {"iter": 0}}, ["export.iter=0", "greater than 0"]),
        ({"cluster": {"kind": "address"}}, ["cluster.kind=address needs cluster.address"]),
        ({"learn": 5}, ["learn=5 must be a section", "rank"]),
    ],
)
def test_config_errors_name_the_key_and_exit_2(
    tmp_path: Path, change: dict[str, Any], words: list[str]
) -> None:
    raw = {"store": "s", "input": "a", "learn": {"rank": 3}}
    raw.update(change)
    result = cli("run", write_config(tmp_path / "c.yaml", raw))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.output.startswith("dnmf: error: ")
    assert len(result.output.strip().splitlines()) == 1
    for word in words:
        assert word in result.output, result.output
    assert not (tmp_path / "s").exists()  # nothing written


def test_set_overrides_and_its_errors(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", {"store": "s", "input": "a", "learn": {"rank": 3}})
    cfg = load_config(path, ["learn.rank=32", "cluster.kind=address", "cluster.address=tcp://h:1"])
    assert cfg.learn.rank == 32 and cfg.cluster.address == "tcp://h:1"
    assert load_config(path, ["export.enabled=false"]).export.enabled is False
    for bad, word in [
        ("learn.rank", "is not key=value"),
        ("learn.rnak=3", "unknown key 'learn.rnak'"),
        ("store.x=1", "store is a value, not a section"),
        ("learn.rank=many", "learn.rank='many'"),
    ]:
        result = cli("run", path, "--set", bad, "--dry-run")
        assert result.exit_code == 2 and word in result.output, result.output
    missing = cli("run", tmp_path / "nope.yaml")
    assert missing.exit_code == 2 and "does not exist" in missing.output
    (tmp_path / "bad.yaml").write_text("store: [unclosed\n")
    broken = cli("run", tmp_path / "bad.yaml")
    assert broken.exit_code == 2 and "not valid YAML at line" in broken.output


# -- plans (pure) ---------------------------------------------------------------------------
def facts(config: dict[str, Any], fp: str = "c1", status: str = "done", **kw: Any) -> ModelFacts:
    return ModelFacts(status, config, config, fp, **kw)


def test_plan_ingest() -> None:
    assert plan_ingest(IngestFacts(False, new=3)).action == "create"
    assert plan_ingest(IngestFacts(False, synthesize=6)).reason.startswith("write 6 synthetic")
    assert plan_ingest(IngestFacts(True, new=2, retry=1)).action == "append"
    assert plan_ingest(IngestFacts(True, removed=1)).action == "update"
    assert not plan_ingest(IngestFacts(True)).work


def test_plan_learn() -> None:
    section = parse_config({"store": "s", "input": "a", "learn": {"rank": 4}}).learn
    fresh = section.learn_config().model_dump(mode="json")
    refine = section.refine_config().model_dump(mode="json")
    kw: dict[str, Any] = {"corpus_fingerprint": "c1", "corpus_grows": False, "staging": None}
    assert plan_learn(section, model=None, **kw).action == "learn"
    assert plan_learn(section, model=facts(fresh), **kw).action == "none"
    longer = {**fresh, "epochs": 99, "tol": 0.5}  # settings that do not change W's meaning
    assert plan_learn(section, model=facts(longer), **kw).action == "none"
    other = plan_learn(section, model=facts({**fresh, "rank": 8}), **kw)
    assert other.action == "relearn" and "learn.rank changed (8 -> 4)" in other.reason
    assert plan_learn(section, model=facts(fresh, "c0"), **kw).action == "refine"
    grows = {**kw, "corpus_grows": True}
    assert plan_learn(section, model=facts(fresh), **grows).action == "refine"
    # An interrupted learn or refine resumes; on another corpus it is discarded.
    running = facts(fresh, status="running", global_step=7)
    plan = plan_learn(section, model=None, **{**kw, "staging": running})
    assert plan.action == "resume" and "step 7" in plan.reason
    staged_refine = facts(refine, status="running")
    assert (
        plan_learn(section, model=facts(fresh, "c0"), **{**kw, "staging": staged_refine}).action
        == "resume"
    )
    stale = plan_learn(section, model=facts(fresh, "c0"), **{**grows, "staging": staged_refine})
    assert stale.action == "refine" and "discarded" in stale.reason
    done = plan_learn(section, model=None, **{**kw, "staging": facts(fresh)})
    assert done.action == "promote"


def test_plan_export_stage() -> None:
    base: dict[str, Any] = {
        "enabled": True, "model_fingerprint": "B", "refined_from": "A", "change": 0.01,
        "threshold": 0.05, "settings": {"iter": 9}, "corpus_frames": 300, "chunk_frames": 64,
    }  # fmt: skip
    meta = {"model_fingerprint": "A", "settings": {"iter": 9}, "n_frames": 200}
    plan, keep = plan_export_stage(meta=meta, **base)
    assert (plan.action, keep) == ("new-frames", True) and "frames from 192" in plan.reason
    plan, keep = plan_export_stage(meta=meta, **{**base, "change": 0.2})
    assert (plan.action, keep) == ("full", False)
    plan, keep = plan_export_stage(meta=meta, **{**base, "refined_from": "Z"})
    assert (plan.action, keep) == ("full", False)
    same = {**meta, "model_fingerprint": "B", "n_frames": 300}
    assert plan_export_stage(meta=same, **base)[0].action == "none"
    assert plan_export_stage(meta=None, **base)[0].action == "full"
    assert plan_export_stage(meta=meta, **{**base, "enabled": False})[0].action == "none"


# -- runs -------------------------------------------------------------------------------------
def W_of(path: Path) -> np.ndarray:
    return ModelStore.open(path).W


@pytest.mark.parametrize(
    "model",
    [{}, pytest.param({"lags": 4, "init": "pitched", "pitches": [60, 67]}, marks=pytest.mark.slow)],
    ids=["lags1", "lags4-pitched"],
)
def test_run_twice_then_new_files_refine_and_export_only_new_frames(
    tmp_path: Path, on_cluster: str, cluster_client: Any, model: dict[str, Any]
) -> None:
    audio(tmp_path / "audio", ["a.wav", "b.wav", "sub/c.wav"])
    raw = small_config(tmp_path, export={"reexport_threshold": 10.0}, learn=model)
    path = write_config(tmp_path / "c.yaml", raw)
    store = Path(raw["store"])

    first = cli("run", path, "--json", "-q")
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert [s["action"] for s in summary["stages"]] == ["create", "learn", "full", "none", "none"]
    assert (store / "model.zarr" / "zarr.json").exists() and not (store / "run.lock").exists()
    assert not (store / "model.next.zarr").exists()
    log = read_run_log(store)
    assert [r["stage"] for r in log] == ["ingest", "learn", "export", "plot", "separate"]
    assert log[0]["counts"]["added"] == 3 and log[1]["counts"]["epochs"] == 4
    assert all(r["status"] == "done" and r["seconds"] >= 0 for r in log)

    # Nothing new: the plan says so (exit 0), the run says so and writes one log record.
    assert cli("run", path, "--dry-run").exit_code == 0
    W1 = W_of(store / "model.zarr")
    H1 = zarr.open_array(str(store / "activations.zarr" / "H"), mode="r")[:]
    again = cli("run", path)
    assert again.exit_code == 0 and "nothing new" in again.stdout
    assert W_of(store / "model.zarr").tobytes() == W1.tobytes()
    assert len(read_run_log(store)) == 6 and read_run_log(store)[-1]["action"] == "none"

    # New files: the plan says append + refine (exit 1); the run ingests only them, refines W
    # from the previous one (bitwise a warm-started learn) and exports only the new frames.
    audio(tmp_path / "audio", ["d.wav", "sub/e.wav"], seconds=2.1)
    dry = cli("run", path, "--dry-run", "--json")
    assert dry.exit_code == 1
    assert [p["action"] for p in json.loads(dry.stdout)["plan"][:2]] == ["append", "refine"]
    cfg = load_config(path)
    frames_before = ModelStore.open(store / "model.zarr").meta["corpus"]["n_frames"]
    result = run_pipeline(cfg, client=cluster_client)
    ingest, learn, export = result.stages[:3]
    assert ingest["counts"]["added"] == 2 and learn["action"] == "refine"
    n_frames = frames_before + ingest["counts"]["frames_added"]
    expected = learn_corpus(
        store / "corpus.zarr", tmp_path / "warm.zarr", config=cfg.learn.refine_config(),
        W_init=W1, client=cluster_client,
    )  # fmt: skip
    assert expected.epochs == 2
    assert W_of(store / "model.zarr").tobytes() == W_of(tmp_path / "warm.zarr").tobytes()
    start = frames_before // 64 * 64
    assert export["action"] == "new-frames" and export["counts"]["kept_existing"]
    assert export["counts"]["frames_exported"] == n_frames - start
    H2 = zarr.open_array(str(store / "activations.zarr" / "H"), mode="r")[:]
    assert H2.shape[1] == n_frames
    assert H2[:, :start].tobytes() == H1[:, :start].tobytes()  # old chunks untouched
    change = learn["counts"]["dictionary_change"]
    assert 0 < change < 10

    # With a threshold below the change, everything is exported again.
    audio(tmp_path / "audio", ["f.wav"], seconds=1.7)
    result = run_pipeline(load_config(path, ["export.reexport_threshold=0"]), client=cluster_client)
    export = result.stages[2]
    assert (
        export["action"] == "full"
        and export["counts"]["frames_exported"]
        == H2.shape[1] + (result.stages[0]["counts"]["frames_added"])
    )


def test_a_failed_stage_is_logged_and_the_store_kept(tmp_path: Path, on_cluster: str) -> None:
    audio(tmp_path / "audio", ["a.wav", "b.wav"])
    raw = small_config(tmp_path, learn={"rank": 3000})
    path = write_config(tmp_path / "c.yaml", raw)
    result = cli("run", path)
    assert result.exit_code == 2 and "rank=3000 is larger than the data allows" in result.output
    store = Path(raw["store"])
    log = read_run_log(store)
    assert [(r["stage"], r["status"]) for r in log] == [("ingest", "done"), ("learn", "failed")]
    assert "rank=3000" in log[-1]["error"]
    assert not (store / "run.lock").exists() and not (store / "model.next.zarr").exists()
    # The corpus was committed; the next run (fixed config) only learns.
    fixed = cli("run", path, "--set", "learn.rank=3", "--dry-run", "--json")
    assert [p["action"] for p in json.loads(fixed.stdout)["plan"][:2]] == ["none", "learn"]


def test_interrupted_promotion_is_finished_by_the_next_run(
    tmp_path: Path, cluster_client: Any
) -> None:
    audio(tmp_path / "audio", ["a.wav", "b.wav"])
    cfg = parse_config(small_config(tmp_path))
    run_pipeline(cfg, client=cluster_client)
    W = W_of(cfg.model_path)
    # A run killed between the two renames of a promotion: model.zarr gone, the new one staged.
    os.replace(cfg.model_path, cfg.staging_path)
    (cfg.root / "model.old.zarr").mkdir()
    assert [p["action"] for p in run_pipeline(cfg, dry_run=True).plan][1] == "promote"
    result = run_pipeline(cfg, client=cluster_client)
    assert not any(r["action"] != "none" for r in result.stages)
    assert W_of(cfg.model_path).tobytes() == W.tobytes()
    assert not (cfg.root / "model.old.zarr").exists() and not cfg.staging_path.exists()


# -- the run lock -----------------------------------------------------------------------------
def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def plant_lock(path: Path, **fields: Any) -> None:
    now = time.time()
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": now, "heartbeat": now,
            "token": "other", "pid_started": None, "command": "dnmf run other.yaml"}  # fmt: skip
    info.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(info))


def test_a_live_lock_refuses_and_break_lock_does_not_break_it(tmp_path: Path) -> None:
    audio(tmp_path / "audio", ["a.wav"])
    raw = small_config(tmp_path)
    path = write_config(tmp_path / "c.yaml", raw)
    lock = Path(raw["store"]) / "run.lock"
    with RunLock(lock) as held:
        held.acquire()
        for extra in ([], ["--break-lock"]):
            result = cli("run", path, *extra)
            assert result.exit_code == 2, result.output
            assert "is locked by a running dnmf run" in result.output
            assert f"pid {os.getpid()}" in result.output and "Traceback" not in result.output
        assert read_lock(lock).token == held.info.token  # type: ignore[union-attr]
        assert not (Path(raw["store"]) / "corpus.zarr").exists()  # nothing written
    assert not lock.exists()
    # Another host's lock with a fresh heartbeat is live too.
    plant_lock(lock, host="elsewhere", pid=1)
    result = cli("run", path, "--break-lock")
    assert result.exit_code == 2 and "on host elsewhere" in result.output


def test_a_stale_lock_is_named_and_break_lock_clears_it(tmp_path: Path, on_cluster: str) -> None:
    audio(tmp_path / "audio", ["a.wav", "b.wav"])
    raw = small_config(tmp_path)
    path = write_config(tmp_path / "c.yaml", raw)
    lock = Path(raw["store"]) / "run.lock"
    pid = dead_pid()
    plant_lock(lock, pid=pid)
    result = cli("run", path)
    assert result.exit_code == 2, result.output
    assert "stale run lock" in result.output and f"pid {pid} no longer runs" in result.output
    assert "--break-lock" in result.output and lock.exists()
    broke = cli("run", path, "--break-lock")
    assert broke.exit_code == 0, broke.output
    assert "cleared the stale run lock" in broke.output and not lock.exists()
    # A lock from another host whose heartbeat is old is stale too.
    plant_lock(lock, host="elsewhere", heartbeat=time.time() - 4000)
    result = cli("run", path)
    assert result.exit_code == 2 and "last heartbeat was 4000 s ago" in result.output


def test_lock_heartbeat_and_pid_reuse(tmp_path: Path) -> None:
    lock = RunLock(tmp_path / "run.lock", heartbeat=0.05, stale_after=1.0)
    lock.acquire()
    first = read_lock(lock.path)
    assert first is not None and first.pid == os.getpid()
    time.sleep(0.3)
    later = read_lock(lock.path)
    assert later is not None and later.heartbeat > first.heartbeat and later.token == first.token
    assert stale_reason(later, stale_after=1.0) is None
    reused = LockInfo(**{**later.__dict__, "pid_started": 1.0})  # the pid now runs another program
    assert "belongs to another process" in (stale_reason(reused, stale_after=1.0) or "")
    # Taken away under the run: it notices before its next stage.
    lock.path.unlink()
    plant_lock(lock.path)
    with pytest.raises(Exception, match="removed or taken by another process"):
        lock.verify()
    lock.release()
    assert read_lock(lock.path).token == "other"  # type: ignore[union-attr]


@pytest.mark.slow
def test_concurrent_runs_one_refuses_and_the_store_is_intact(
    tmp_path: Path, scheduler_address: str, cluster_client: Any
) -> None:
    audio(tmp_path / "audio", ["a.wav", "b.wav", "c.wav"], seconds=3.0)
    raw = small_config(tmp_path, learn={"epochs": 40})
    path = write_config(tmp_path / "c.yaml", raw)
    store = Path(raw["store"])
    env = {**os.environ, "DNMF_SCHEDULER": scheduler_address}
    first = subprocess.Popen(
        [sys.executable, "-m", "dnmf", "run", str(path), "-q"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 60
    while not (store / "run.lock").exists():
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.02)
    # Hold the first run where it is (alive, its lock fresh) so that the second surely meets it.
    os.kill(first.pid, signal.SIGSTOP)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "dnmf", "run", str(path)], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=180)
    assert first.returncode == 0, err
    assert second.returncode == 2 and "is locked by a running dnmf run" in second.stderr
    assert "Traceback" not in second.stderr
    log = read_run_log(store)
    assert len({r["run"] for r in log}) == 1 and all(r["status"] == "done" for r in log)
    # The store is the one an undisturbed run writes.
    ref = run_pipeline(load_config(path, [f"store={tmp_path / 'ref.dnmf'}"]), client=cluster_client)
    assert ref.stages[1]["counts"]["epochs"] == 40
    assert (
        W_of(store / "model.zarr").tobytes() == W_of(tmp_path / "ref.dnmf" / "model.zarr").tobytes()
    )


def test_plot_and_separate_stages_follow_the_model(tmp_path: Path, cluster_client: Any) -> None:
    audio(tmp_path / "audio", ["a.wav", "b.wav"])
    mix = str(tmp_path / "audio" / "a.wav")
    raw = small_config(
        tmp_path,
        plot={"out": "plots"},
        separate={"inputs": [mix], "out": "parts", "groups": {"low": "0", "high": "1-2"}},
    )
    cfg = parse_config(raw)
    first = {s["stage"]: s for s in run_pipeline(cfg, client=cluster_client).stages}
    assert first["plot"]["action"] == "run" and first["separate"]["action"] == "run"
    assert {p.name for p in (cfg.root / "plots").iterdir()} == {
        "dictionary.png", "loss.png", "activations.png",
    }  # fmt: skip
    parts = sorted(p.name for p in (cfg.root / "parts").iterdir())
    assert parts == ["a_high.wav", "a_low.wav"]
    again = run_pipeline(cfg, client=cluster_client)
    assert all(s["action"] == "none" for s in again.stages)
    # A dry run names who holds the lock.
    plant_lock(cfg.lock_path, pid=dead_pid())
    dry = cli("run", write_config(tmp_path / "c.yaml", raw), "--dry-run")
    assert dry.exit_code == 0 and "stale run lock" in dry.output and "--break-lock" in dry.output
