"""One error path for the whole CLI: bad outputs and damaged stores are one sentence, exit 2.

Every command that writes is given an output that is an existing file, one that
lies under a file, and one that cannot be written; every command that reads a
store is given one with a corrupt ``zarr.json``. None may print a traceback or
exit with anything but 2, and none may write anything.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import zarr
from typer.testing import CliRunner

from dnmf.cli import app
from dnmf.io.store import consolidate
from tests.conftest import tone, write

runner = CliRunner()


def run(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def assert_exit_2(result, *words: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("dnmf: error: "), result.output
    for word in words:
        assert word in result.output, result.output


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, scheduler_address: str) -> Iterator[Path]:
    """Audio, a corpus, a rank-2 model and its activations, made once for the module."""
    root = tmp_path_factory.mktemp("stores")
    write(root / "audio" / "a.wav", tone(22050, 2.0), 22050)
    (root / "pipeline.yaml").write_text(
        f"store: {root / 'pipe'}\ninput: {root / 'audio'}\nlearn:\n  rank: 2\n  epochs: 2\n"
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNMF_SCHEDULER", scheduler_address)
        for args in (
            ["ingest", root / "audio", "-o", root / "corpus.zarr", "-q"],
            ["learn", root / "corpus.zarr", "--rank", "2", "--epochs", "2", "-q"],
            ["export", root / "model.zarr", "-q"],
            ["run", root / "pipeline.yaml", "-q"],
        ):
            result = run(*args)
            assert result.exit_code == 0, result.output
        yield root


def writing_commands(s: Path, out: Path) -> dict[str, list[object]]:
    """Each command that writes, with ``out`` as its output."""
    wav, model = s / "audio" / "a.wav", s / "model.zarr"
    return {
        "ingest": ["ingest", s / "audio", "-o", out, "-q"],
        "learn": ["learn", s / "corpus.zarr", "-o", out, "--rank", "2", "-q"],
        "export": ["export", model, "-o", out, "-q"],
        "transform": ["transform", model, wav, "-o", out, "-q"],
        "transform --overwrite": ["transform", model, wav, "-o", out, "--overwrite", "-q"],
        "separate": ["separate", model, wav, "-o", out, "-q"],
        "plot": ["plot", model, "-o", out],
        "demo": ["demo", "--folder", out, "-q"],
        "run": ["run", s / "pipeline.yaml", "--set", f"store={out}", "-q"],
    }


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot write: mode 0o500, or /proc where root ignores modes."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        (folder / "probe").touch()
    except PermissionError:
        return folder
    (folder / "probe").unlink()  # root: permission bits do not stop writes
    return Path("/proc")


COMMANDS = list(writing_commands(Path("."), Path(".")))


@pytest.mark.parametrize("command", COMMANDS)
def test_output_that_is_an_existing_file(stores: Path, tmp_path: Path, command: str) -> None:
    out = tmp_path / "taken"
    out.write_text("keep me")
    assert_exit_2(run(*writing_commands(stores, out)[command]), str(out), "existing file")
    assert out.read_text() == "keep me"


@pytest.mark.parametrize("command", COMMANDS)
def test_output_under_a_file(stores: Path, tmp_path: Path, command: str) -> None:
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "sub" / "out"
    assert_exit_2(run(*writing_commands(stores, out)[command]), "lies under the file")


@pytest.mark.parametrize("command", COMMANDS)
def test_output_that_cannot_be_written(stores: Path, tmp_path: Path, command: str) -> None:
    folder = unwritable_folder(tmp_path)
    out = folder / "dnmf-out"
    try:
        assert_exit_2(run(*writing_commands(stores, out)[command]), "cannot be written")
        assert not out.exists()
    finally:
        if folder != Path("/proc"):
            folder.chmod(0o700)


CORRUPTIONS = {
    "truncated": '{"zarr_format": 3, "node_ty',
    "empty": "",
    "not an object": "[]",
    "binary": "\x00\x01garbage",
}


def corrupt_copy(src: Path, dst: Path, which: str, content: str) -> Path:
    shutil.copytree(src, dst)
    (dst / which).write_text(content)
    return dst


@pytest.mark.parametrize("content", list(CORRUPTIONS.values()), ids=list(CORRUPTIONS))
@pytest.mark.parametrize("which", ["zarr.json", "array"])
def test_corrupt_metadata_is_one_sentence(
    stores: Path, tmp_path: Path, which: str, content: str, on_cluster: str
) -> None:
    corpus = corrupt_copy(
        stores / "corpus.zarr", tmp_path / "c.zarr", "V/zarr.json" if which == "array" else which,
        content,
    )  # fmt: skip
    model = corrupt_copy(
        stores / "model.zarr", tmp_path / "m.zarr", "W/zarr.json" if which == "array" else which,
        content,
    )  # fmt: skip
    acts = corrupt_copy(
        stores / "activations.zarr", tmp_path / "a.zarr",
        "H/zarr.json" if which == "array" else which, content,
    )  # fmt: skip
    wav = stores / "audio" / "a.wav"
    for args, store in [
        (["info", corpus], corpus),
        (["info", model], model),
        (["info", acts], acts),
        (["learn", corpus, "--rank", "2", "-o", tmp_path / "new.zarr"], corpus),
        (["export", model, "-o", tmp_path / "h.zarr"], model),
        (["transform", model, wav, "-o", tmp_path / "t.zarr"], model),
        (["separate", model, wav, "-o", tmp_path / "parts"], model),
        (["plot", model, "-o", tmp_path / "plots"], model),
        (["plot", acts, "-o", tmp_path / "plots"], acts),
        (["learn", stores / "corpus.zarr", "--rank", "2", "--init", model], model),
    ]:
        assert_exit_2(run(*args), str(store), "damaged")
    for name in ("new.zarr", "h.zarr", "t.zarr", "parts", "plots"):
        assert not (tmp_path / name).exists(), name


def test_export_of_a_model_whose_corpus_is_damaged(
    stores: Path, tmp_path: Path, on_cluster: str
) -> None:
    corpus = corrupt_copy(stores / "corpus.zarr", tmp_path / "c.zarr", "zarr.json", "{")
    model = tmp_path / "m.zarr"
    shutil.copytree(stores / "model.zarr", model)
    g = zarr.open_group(str(model), mode="r+")
    meta = dict(g.attrs["dnmf"])  # type: ignore[arg-type]
    g.attrs["dnmf"] = {**meta, "corpus": {**meta["corpus"], "path": str(corpus)}}  # type: ignore[dict-item]
    consolidate(model)
    assert_exit_2(run("export", model, "-o", tmp_path / "h.zarr"), str(corpus), "damaged")
    assert not (tmp_path / "h.zarr").exists()


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` and its bytes (what a refused command must leave as it was)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("content", list(CORRUPTIONS.values()), ids=list(CORRUPTIONS))
@pytest.mark.parametrize("which", ["zarr.json", "array"])
def test_corrupt_metadata_in_writing_commands(
    stores: Path, tmp_path: Path, which: str, content: str, on_cluster: str
) -> None:
    """ingest appending to a corpus, run on a pipeline folder and demo on a demo folder."""
    array_of = {"corpus": "V", "model": "W", "activations": "H"}

    def spoil(folder: Path, kind: str) -> Path:
        bad = folder / f"{kind}.zarr"
        (bad / (f"{array_of[kind]}/zarr.json" if which == "array" else which)).write_text(content)
        return bad

    cases: list[tuple[list[object], Path, Path]] = []
    corpus = corrupt_copy(
        stores / "corpus.zarr", tmp_path / "c.zarr",
        "V/zarr.json" if which == "array" else which, content,
    )  # fmt: skip
    cases.append((["ingest", stores / "audio", "-o", corpus, "-q"], corpus, corpus))
    for kind in ("corpus", "model", "activations"):
        pipe = tmp_path / f"pipe-{kind}"
        shutil.copytree(stores / "pipe", pipe)
        run_args: list[object] = ["run", stores / "pipeline.yaml", "--set", f"store={pipe}", "-q"]
        cases.append((run_args, spoil(pipe, kind), pipe))
    for kind in ("corpus", "model"):
        demo = tmp_path / f"demo-{kind}"
        shutil.copytree(stores / "audio", demo / "audio")
        for k in ("corpus", "model"):
            shutil.copytree(stores / f"{k}.zarr", demo / f"{k}.zarr")
        demo_args: list[object] = ["demo", "--folder", demo, "--rank", "2", "--epochs", "2", "-q"]
        cases.append((demo_args, spoil(demo, kind), demo))
    for args, store, folder in cases:
        before = snapshot(folder)
        assert_exit_2(run(*args), str(store), "damaged")
        assert snapshot(folder) == before, args


@pytest.mark.parametrize("opener", ["open_corpus", "open_model", "open_activations"])
def test_python_open_functions_raise_a_dnmf_error(
    stores: Path, tmp_path: Path, opener: str
) -> None:
    import dnmf
    from dnmf.errors import StoreDamagedError

    name = {"open_corpus": "corpus", "open_model": "model", "open_activations": "activations"}
    for i, content in enumerate(CORRUPTIONS.values()):
        bad = corrupt_copy(stores / f"{name[opener]}.zarr", tmp_path / f"{i}.zarr", "zarr.json",
                           content)  # fmt: skip
        with pytest.raises(StoreDamagedError, match="is damaged") as info:
            getattr(dnmf, opener)(bad)
        assert isinstance(info.value, dnmf.DnmfError) and isinstance(info.value, ValueError)
        assert str(bad) in str(info.value) and "\n" not in str(info.value)


@pytest.fixture
def on_cluster(monkeypatch: pytest.MonkeyPatch, scheduler_address: str) -> str:
    monkeypatch.setenv("DNMF_SCHEDULER", scheduler_address)
    return scheduler_address


def test_os_errors_elsewhere_are_one_sentence() -> None:
    """An OSError on a path that no check caught first becomes this sentence (exit 2)."""
    from dnmf.cli._common import describe_os_error

    message = describe_os_error(PermissionError(13, "Permission denied", "/x/a.wav"))
    assert message == "cannot use '/x/a.wav': permission denied; check the path and its permissions"
