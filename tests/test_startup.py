"""The first seconds of a command: it says at once what it starts; a rerun with nothing to do
starts no cluster. Real processes (``python -m dnmf.cli``), read line by line as they print.

What a command imports before its first line is what it makes its user wait for, so that
is checked here, not the seconds (which depend on the machine): ``import dnmf`` is cheap, and
no command loads Dask, numba, librosa or SciPy before its first line, nor Zarr where it
reads no store first.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
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


#: Libraries that take a quarter of a second or more to import on a busy machine.
HEAVY = ["numpy", "pydantic", "zarr", "numba", "dask", "distributed", "librosa", "scipy",
         "xarray", "sklearn"]  # fmt: skip
#: None of these is imported before any command's first line (nor Zarr, unless it reads a
#: store first: see ``reads``).
NEVER_FIRST = ["dask", "distributed", "numba", "librosa", "scipy", "xarray", "sklearn"]


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DNMF_SCHEDULER"}
    env["PYTHONPATH"] = str(REPO)
    return env


def test_import_dnmf_imports_no_heavy_library() -> None:
    code = f"import sys, dnmf\nprint([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run(
        [sys.executable, "-c", code], env=_clean_env(), capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_the_lazy_public_api_is_whole() -> None:
    import dnmf
    from dnmf import NMF, FeatureConfig, __version__, open_corpus  # noqa: F401

    assert set(dnmf.__all__) <= set(dir(dnmf))
    for name in dnmf.__all__:
        assert getattr(dnmf, name) is not None, name
    assert dnmf.NMF is NMF and dnmf.FeatureConfig().sr == 22050
    assert isinstance(dnmf.__version__, str) and dnmf.open_corpus.__name__ == "open_corpus"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dnmf.nope  # noqa: B018


#: ``dnmf ARGS`` with its announce() replaced: at the first line, print the line and the
#: heavy modules loaded by then as JSON, and stop the process there (no cluster starts).
FIRST_LINE_PROBE = """
import json, os, sys
import dnmf.progress

def first_line(line):
    loaded = [m for m in {heavy!r} if m in sys.modules]
    sys.__stdout__.write(json.dumps({{"line": line, "loaded": loaded}}) + "\\n")
    sys.__stdout__.flush()
    os._exit(0)

dnmf.progress.announce = first_line
sys.argv = ["dnmf", *{args!r}]
from dnmf.cli import main
main()
"""


def first_line_and_imports(args: list[Any], cwd: Path) -> tuple[str, list[str]]:
    code = FIRST_LINE_PROBE.format(heavy=HEAVY, args=[str(a) for a in args])
    p = subprocess.run(
        [sys.executable, "-c", code], env=_clean_env(), cwd=cwd, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    probes = [line for line in p.stdout.splitlines() if line.startswith('{"line": ')]
    assert p.returncode == 0 and probes, f"dnmf {args[0]} said nothing on stderr: {p.stderr}"
    said = json.loads(probes[0])
    return said["line"], said["loaded"]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, scheduler_address: str) -> Iterator[Path]:
    """Audio, a corpus store and a rank-2 model of it, made on the session's cluster."""
    root = tmp_path_factory.mktemp("first")
    write(root / "audio" / "a.wav", tone(22050, 1.0), 22050)
    write(root / "audio" / "b.wav", tone(22050, 1.0, 660.0), 22050)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNMF_SCHEDULER", scheduler_address)
        assert cli("ingest", root / "audio", "-o", root / "corpus.zarr", "-q").exit_code == 0
        learned = cli("learn", root / "corpus.zarr", "--rank", "2", "--epochs", "1", "-q")
        assert learned.exit_code == 0, learned.output
    (root / "pipeline.yaml").write_text(
        f"store: {root / 'pipe'}\ninput: {root / 'audio'}\nlearn:\n  rank: 2\n  epochs: 1\n"
    )
    yield root


CLUSTER = "starting a local cluster of 1 worker..."


#: Each command: its arguments, its first line ({r}: the stores, {t}: a fresh folder), and
#: whether it reads a store before that line (then Zarr may be imported by then).
FIRST_LINES: dict[str, tuple[list[str], str, bool]] = {
    "ingest": (["ingest", "{r}/audio", "-o", "{t}/c.zarr", "-w", "1"], CLUSTER, False),
    "learn FOLDER": (
        ["learn", "{r}/audio", "-o", "{t}/m.zarr", "--rank", "2", "-w", "1"],
        CLUSTER,
        False,
    ),
    "learn": (
        ["learn", "{r}/corpus.zarr", "-o", "{t}/m.zarr", "--rank", "2", "-w", "1"],
        CLUSTER,
        True,
    ),
    "export": (["export", "{r}/model.zarr", "-o", "{t}/h.zarr", "-w", "1"], CLUSTER, True),
    "run": (["run", "{r}/pipeline.yaml", "-w", "1"], CLUSTER, False),
    "rank": (
        ["rank", "{r}/corpus.zarr", "--ranks", "2", "-o", "{t}/rank", "-w", "1"],
        CLUSTER,
        True,
    ),
    "transform": (
        ["transform", "{r}/model.zarr", "{r}/audio/a.wav", "-o", "{t}/t.zarr"],
        "transforming 1 file under {r}/model.zarr...",
        True,
    ),
    "separate": (
        ["separate", "{r}/model.zarr", "{r}/audio/a.wav", "-o", "{t}/parts"],
        "separating {r}/audio/a.wav into 2 sources under {r}/model.zarr...",
        True,
    ),
    "demo": (
        ["demo", "--folder", "{t}/demo", "-w", "1"],
        "writing 6 synthetic pieces into {t}/demo/audio...",
        False,
    ),
}


@pytest.mark.parametrize("name", list(FIRST_LINES))
def test_the_first_line_comes_before_the_slow_imports(
    stores: Path, tmp_path: Path, name: str
) -> None:
    args, first, reads = FIRST_LINES[name]

    def fill(text: str) -> str:
        return text.format(r=stores, t=tmp_path)

    line, loaded = first_line_and_imports([fill(a) for a in args], cwd=tmp_path)
    assert line == fill(first), name
    late = [m for m in loaded if m in NEVER_FIRST or (m == "zarr" and not reads)]
    assert late == [], f"dnmf {name} imported {late} before its first line"
