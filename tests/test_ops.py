"""Operations: a real ``dask scheduler`` + ``dask worker`` processes, Slurm job scripts, docker.

The cluster tests start the scheduler and the workers as subprocesses on
127.0.0.1 (free ports chosen by the scheduler, found through its scheduler
file) and stop them at the end. Here the compose file and the Dockerfile are
checked as files, and every command they run is parsed by the real command
line it names; tests/test_docker.py builds the image and runs the stack (slow).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dnmf.cli import app
from dnmf.io.model import ModelStore
from pipelines.cluster import MissingExtraError, job_script, open_client
from pipelines.config import ClusterSection, load_config, parse_config
from pipelines.learn import learn_corpus
from pipelines.run import read_run_log
from tests.test_run import audio, small_config, write_config

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


# -- a real scheduler and workers -------------------------------------------------------------
@dataclass
class DaskProcesses:
    address: str
    client: Any
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def worker_pids(self) -> dict[str, int]:
        """Worker address -> pid of the process that runs its tasks."""
        return dict(self.client.run(os.getpid))


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextmanager
def dask_processes(
    folder: Path, n_workers: int = 2, *, nanny: bool = True
) -> Iterator[DaskProcesses]:
    """``dask scheduler`` and ``n_workers`` ``dask worker`` processes on 127.0.0.1, then stopped."""
    from distributed import Client

    folder.mkdir(parents=True, exist_ok=True)
    sched_file = folder / "scheduler.json"
    dask = shutil.which("dask") or "dask"
    scheduler = subprocess.Popen(
        [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
         "--scheduler-file", str(sched_file)],
        stdout=subprocess.DEVNULL, stderr=(folder / "scheduler.log").open("wb"), cwd=folder,
    )  # fmt: skip
    procs: list[subprocess.Popen[bytes]] = [scheduler]
    client = None
    try:
        deadline = time.time() + 60
        while not sched_file.exists() or not sched_file.read_text().strip():
            assert scheduler.poll() is None, (folder / "scheduler.log").read_text()
            assert time.time() < deadline, "the scheduler did not start in 60 s"
            time.sleep(0.05)
        time.sleep(0.1)  # the file is written whole, but give it its moment
        address = json.loads(sched_file.read_text())["address"]
        workers = [
            subprocess.Popen(
                [
                    dask,
                    "worker",
                    address,
                    "--host",
                    "127.0.0.1",
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--memory-limit",
                    "0",
                    "--no-dashboard",
                    "--name",
                    f"w{i}",
                    *([] if nanny else ["--no-nanny"]),
                ],
                stdout=subprocess.DEVNULL,
                stderr=(folder / f"worker{i}.log").open("wb"),
                cwd=folder,
            )
            for i in range(n_workers)
        ]
        procs += workers
        client = Client(address, timeout="30s")
        client.wait_for_workers(n_workers, timeout=90)
        yield DaskProcesses(address, client, scheduler, workers)
    finally:
        if client is not None:
            client.close()
        _stop(procs[1:])
        _stop(procs[:1])


def dnmf_command() -> list[str]:
    exe = shutil.which("dnmf")
    return [exe] if exe else [sys.executable, "-m", "dnmf"]


def dnmf(*args: Any, **kw: Any) -> subprocess.CompletedProcess[str]:
    """The ``dnmf`` console command in a process of its own (without $DNMF_SCHEDULER)."""
    env = {k: v for k, v in os.environ.items() if k != "DNMF_SCHEDULER"}
    return subprocess.run(
        [*dnmf_command(), *map(str, args)], capture_output=True, text=True, env=env, timeout=300,
        **kw,
    )  # fmt: skip


@pytest.mark.slow  # the default suite's cluster is a LocalCluster of worker processes
def test_whole_pipeline_on_a_real_scheduler_and_two_worker_processes(
    tmp_path: Path, cluster_client: Any
) -> None:
    audio(tmp_path / "audio", ["a.wav", "b.wav", "sub/c.wav"])
    raw = small_config(tmp_path, learn={"batch_chunks": 2, "epochs": 3})
    path = write_config(tmp_path / "c.yaml", raw)
    with dask_processes(tmp_path / "dask") as procs:
        done = dnmf("run", path, "--scheduler", procs.address, "--json", "-q", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        summary = json.loads(done.stdout)
        assert [s["action"] for s in summary["stages"][:3]] == ["create", "learn", "full"]
        assert summary["stages"][0]["counts"]["workers"] == 2
        again = dnmf("run", path, "--scheduler", procs.address, cwd=tmp_path)
        assert again.returncode == 0 and "nothing new" in again.stdout
        # The workers did the work: both ran tasks of this job.
        counts = procs.client.run(lambda dask_worker: dask_worker.state.executed_count)
        assert len(counts) == 2 and all(n > 0 for n in counts.values())
    # Bitwise the dictionary the same config learns on another cluster (the session's).
    store = Path(raw["store"])
    cfg = load_config(path)
    learn_corpus(
        store / "corpus.zarr", tmp_path / "ref.zarr", config=cfg.learn.learn_config(),
        client=cluster_client,
    )  # fmt: skip
    W = ModelStore.open(store / "model.zarr").W
    assert W.tobytes() == ModelStore.open(tmp_path / "ref.zarr").W.tobytes()
    assert [r["stage"] for r in read_run_log(store)][-1] == "run"


def test_config_cluster_address_and_env_precedence(
    tmp_path: Path, scheduler_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    section = ClusterSection(kind="address", address=scheduler_address)
    monkeypatch.delenv("DNMF_SCHEDULER", raising=False)
    with open_client(section) as client:
        assert client.scheduler.address == scheduler_address
    # $DNMF_SCHEDULER wins over the config; --scheduler wins over both.
    monkeypatch.setenv("DNMF_SCHEDULER", scheduler_address)
    with open_client(ClusterSection(kind="slurm", options={"cores": 1})) as client:
        assert client.scheduler.address == scheduler_address


def cli_run(tmp_path: Path, *args: str) -> Any:
    audio(tmp_path / "audio", ["a.wav"])
    path = write_config(tmp_path / "c.yaml", small_config(tmp_path))
    return runner.invoke(app, ["run", str(path), *args])


# -- Slurm, PBS, Kubernetes ----------------------------------------------------------------------
def test_slurm_job_script_of_the_shipped_config() -> None:
    pytest.importorskip("dask_jobqueue")
    cfg = load_config(REPO / "configs" / "slurm.yaml")
    script = job_script(cfg.cluster)
    lines = script.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    for directive in ("-p normal", "--cpus-per-task=8", "--mem=30G", "-t 04:00:00", "-A my-project",
                      "--exclusive"):  # fmt: skip
        assert f"#SBATCH {directive}" in lines, script
    assert "source ~/venvs/dnmf/bin/activate" in lines
    worker = next(line for line in lines if "distributed.cli.dask_worker" in line)
    args = shlex.split(worker)
    # One thread per worker process (one task at a time), 8 processes per job.
    assert args[args.index("--nthreads") + 1] == "1" and args[args.index("--nworkers") + 1] == "8"
    assert args[3].startswith("tcp://127.0.0.1:") and "--nanny" in args
    assert "--local-directory" in args


def test_jobqueue_options_are_checked_by_name() -> None:
    pytest.importorskip("dask_jobqueue")
    section = ClusterSection(kind="pbs", options={"cores": 2, "memroy": "4GB"})
    with pytest.raises(Exception, match=r"cluster.options.memroy is not an option of .*PBSCluster"):
        job_script(section)


def test_missing_cluster_extra_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DNMF_SCHEDULER", raising=False)
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # as if not installed
    with pytest.raises(MissingExtraError, match=r"pip install 'dnmf\[cluster\]'"):
        job_script(ClusterSection(kind="slurm"))
    result = cli_run(tmp_path, "--set", "cluster.kind=slurm")
    assert result.exit_code == 2 and "needs dask-jobqueue" in result.output
    monkeypatch.setitem(sys.modules, "dask_kubernetes", None)
    monkeypatch.setitem(sys.modules, "dask_kubernetes.operator", None)
    result = cli_run(tmp_path, "--set", "cluster.kind=kubernetes")
    assert result.exit_code == 2 and "needs dask-kubernetes" in result.output
    assert "Traceback" not in result.output


def test_dry_run_of_a_slurm_config_prints_the_job_script(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("dask_jobqueue")
    audio(tmp_path / "audio", ["a.wav"])
    raw = small_config(tmp_path, cluster={"kind": "slurm", "workers": 2,
                                          "options": {"cores": 1, "memory": "1GB"}})  # fmt: skip
    path = write_config(tmp_path / "c.yaml", raw)
    monkeypatch.delenv("DNMF_SCHEDULER", raising=False)
    result = runner.invoke(app, ["run", str(path), "--dry-run"])
    assert result.exit_code == 1, result.output
    assert "each batch job would run:" in result.output and "#SBATCH" in result.output
    assert not Path(raw["store"]).exists()  # a dry run writes nothing


# -- docker ------------------------------------------------------------------------------------
def _click(command: str) -> Any:
    import typer.main

    if command == "dnmf":
        return typer.main.get_command(app)
    from distributed.cli import dask_scheduler, dask_worker

    return {"scheduler": dask_scheduler.main, "worker": dask_worker.main}


def check_command(argv: list[str]) -> None:
    """Parse ``argv`` with the real command line it names; raise on an unknown command/option."""
    head, sub, rest = argv[0], argv[1], argv[2:]
    if head == "dnmf":
        group = _click("dnmf")
        ctx = group.make_context("dnmf", [sub, *rest], resilient_parsing=False)
        name, cmd, args = group.resolve_command(ctx, [sub, *rest])
        assert cmd is not None, f"dnmf has no command {sub!r}"
        cmd.make_context(name, args, parent=ctx)
    elif head == "dask":
        commands = _click("dask")
        assert sub in commands, f"dask has no command {sub!r}"
        assert shutil.which("dask"), "the dask command is not installed"
        commands[sub].make_context(f"dask {sub}", rest)
    else:
        raise AssertionError(f"{argv!r} runs neither dnmf nor dask")


def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())  # type: ignore[no-any-return]


def test_compose_file_services_and_commands() -> None:
    spec = compose()
    services = spec["services"]
    assert {"scheduler", "worker-1", "worker-2", "job"} <= set(services)
    for name, service in services.items():
        check_command(service["command"])
        assert "data:/data" in service["volumes"], name  # one shared data volume
        assert (
            service["build"]["dockerfile"] == "docker/Dockerfile"
            and service["image"] == "dnmf:latest"
        )
    assert "data" in spec["volumes"]
    # The dashboard is published on the loopback only; nothing else is published.
    # (The host port defaults to 8787; DNMF_DASHBOARD_PORT moves it.)
    published = [(n, p) for n, s in services.items() for p in s.get("ports", [])]
    assert published == [("scheduler", "127.0.0.1:${DNMF_DASHBOARD_PORT:-8787}:8787")]
    # docker-compose 1.29 refuses a top-level `name`; docker/.env names the project
    # for it and for docker compose (v2) alike.
    assert "name" not in spec
    env = (REPO / "docker" / ".env").read_text().splitlines()
    assert "COMPOSE_PROJECT_NAME=dnmf" in env
    for worker in ("worker-1", "worker-2"):
        args = services[worker]["command"]
        assert args[2] == "tcp://scheduler:8786" and args[args.index("--nthreads") + 1] == "1"
    job = services["job"]
    assert job["environment"]["DNMF_SCHEDULER"] == "tcp://scheduler:8786"
    config = job["command"][2].replace("/opt/dnmf/", "")
    assert load_config(REPO / config).cluster.address == "tcp://scheduler:8786"


def test_commands_in_the_docker_comments_exist() -> None:
    text = (REPO / "docker" / "compose.yaml").read_text() + (
        REPO / "docker" / "Dockerfile"
    ).read_text()
    lines = [line.lstrip("# ").rstrip("\\ ") for line in text.splitlines()]
    runs = [line for line in lines if line.startswith("dnmf run ")]
    assert runs
    for line in runs:
        argv = shlex.split(line)
        argv[2] = argv[2].replace("/opt/dnmf/", "")
        check_command(argv)
        assert (REPO / argv[2]).exists()


def test_dockerfile() -> None:
    text = (REPO / "docker" / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in text.splitlines() if line and line[0].isupper()]
    # The base image is a build argument whose default is the public image.
    assert instructions[0] == ["ARG", "BASE=python:3.11-slim"]
    assert [rest for op, rest in instructions if op == "FROM"] == ["${BASE} AS build", "${BASE}"]
    assert "libsndfile1" in text and "--no-install-recommends" in text
    users = [rest for op, rest in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    for op, rest in instructions:
        if op == "COPY" and not rest.startswith("--from="):
            for src in rest.split()[:-1]:
                assert (REPO / src).exists(), src
    # The offline install: wheels from docker/wheelhouse, with no package index.
    assert "--no-index --find-links /tmp/wheelhouse" in text
    # At the root, so that the classic builder and docker-compose 1.29 read it too.
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert {"*", "!dnmf/", "!pipelines/", "!configs/", "!docker/wheelhouse/"} <= set(ignore)
    assert not (REPO / "docker" / "Dockerfile.dockerignore").exists()


def test_configs_parse_without_files(tmp_path: Path) -> None:
    # A config that names a folder that does not exist is refused when run, not when read.
    raw = {"store": str(tmp_path / "s"), "input": str(tmp_path / "none"), "learn": {"rank": 2}}
    parse_config(raw)
    result = runner.invoke(app, ["run", str(write_config(tmp_path / "c.yaml", raw))])
    assert (
        result.exit_code == 2
        and "input folder" in result.output
        and "does not exist" in result.output
    )
    assert not (tmp_path / "s" / "corpus.zarr").exists()


def test_jobqueue_scheduler_keeps_few_stream_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler of a slurm/pbs cluster runs in dnmf's process: its streams keep 32 messages."""
    from distributed import LocalCluster

    import pipelines.cluster as pc
    from dnmf.cluster import LOG_KEY, LOG_LENGTH

    seen: list[int] = []

    def fake(section: ClusterSection, **override: Any) -> Any:
        import dask

        seen.append(dask.config.get(LOG_KEY))
        return LocalCluster(n_workers=1, processes=False, dashboard_address=None)

    monkeypatch.setattr(pc, "_jobqueue_cluster", fake)
    monkeypatch.delenv("DNMF_SCHEDULER", raising=False)
    with open_client(ClusterSection(kind="slurm", options={"cores": 1})) as client:
        client.wait_for_workers(1)
        sched = client.cluster.scheduler
        streams = [*sched.stream_comms.values(), *sched.client_comms.values()]
        streams.append(client.scheduler_comm)
        assert seen == [LOG_LENGTH]
        assert {b.recent_message_log.maxlen for b in streams} == {LOG_LENGTH}
