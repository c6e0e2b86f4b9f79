"""The command line through typer's CliRunner: exit codes, messages, --json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dnmf.cli import app
from tests.test_ingest import bad_files

runner = CliRunner()


@pytest.fixture
def on_cluster(monkeypatch: pytest.MonkeyPatch, scheduler_address: str) -> str:
    """Commands join the session's cluster through DNMF_SCHEDULER, as a user's job would."""
    monkeypatch.setenv("DNMF_SCHEDULER", scheduler_address)
    return scheduler_address


def run(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


def assert_one_sentence_error(result, code: int, *words: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in result.output, result.output


def test_ingest_json_then_nothing_new(mixed_corpus: Path, tmp_path: Path, on_cluster: str) -> None:
    store = tmp_path / "c.zarr"
    result = run("ingest", mixed_corpus, "-o", store, "--json", "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["added"] == ["a.wav", "c.wav", "e.aiff", "sub/b.flac", "sub/deeper/d.ogg"]
    assert summary["exit_code"] == 0 and summary["frames_added"] > 0
    again = run("ingest", mixed_corpus, "-o", store)
    assert again.exit_code == 0 and "nothing new" in again.stdout


def test_default_store_is_next_to_the_working_directory(
    mixed_corpus: Path, tmp_path: Path, on_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run("ingest", mixed_corpus, "-q").exit_code == 0
    assert (tmp_path / "corpus.dnmf" / "corpus.zarr" / "V").is_dir()


def test_skipped_files_exit_3_and_are_listed(tmp_path: Path, on_cluster: str) -> None:
    bad_files(tmp_path / "corpus")
    result = run("ingest", tmp_path / "corpus", "-o", tmp_path / "c.zarr")
    assert result.exit_code == 3, result.output
    assert "skipped 6 files" in result.output and "truncated.flac" in result.output
    info = run("info", tmp_path / "c.zarr", "--json")
    assert info.exit_code == 0
    data = json.loads(info.stdout)
    assert data["files_by_status"] == {"ok": 1, "skipped": 6}
    assert {s["file"] for s in data["skipped"]} >= {"empty.wav", "silent.flac"}
    text = run("info", tmp_path / "c.zarr")
    assert "skipped    text.wav: not decodable" in text.stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--sr", "0"], ["--sr 0"]),
        (["--features", "cqt"], ["--features 'cqt'", "stft"]),
        (["--hop-length", "4096"], ["--hop-length 4096", "--n-fft 2048"]),
        (["--chunk-frames", "0"], ["--chunk-frames 0"]),
        (["--workers", "2", "--scheduler", "tcp://127.0.0.1:9"], ["not both"]),
    ],
)
def test_bad_option_values_exit_2(
    mixed_corpus: Path, tmp_path: Path, args: list[str], words: list[str]
) -> None:
    result = run("ingest", mixed_corpus, "-o", tmp_path / "c.zarr", *args)
    assert_one_sentence_error(result, 2, *words)
    assert not (tmp_path / "c.zarr").exists()


def test_bad_paths_exit_2(tmp_path: Path) -> None:
    assert_one_sentence_error(run("ingest", tmp_path / "missing"), 2, "does not exist")
    (tmp_path / "empty").mkdir()
    assert_one_sentence_error(run("ingest", tmp_path / "empty"), 2, "no audio files")
    assert_one_sentence_error(run("info", tmp_path / "empty"), 2, "not a dnmf store")
    assert_one_sentence_error(run("info", tmp_path / "nothing.zarr"), 2, "does not exist")


def test_other_settings_refused_naming_the_setting(
    mixed_corpus: Path, tmp_path: Path, on_cluster: str
) -> None:
    store = tmp_path / "c.zarr"
    assert run("ingest", mixed_corpus, "-o", store, "-q", "--n-fft", "1024").exit_code == 0
    result = run("ingest", mixed_corpus, "-o", store)
    assert_one_sentence_error(result, 2, "n_fft=1024", "--rebuild")
    assert run("ingest", mixed_corpus, "-o", store, "-q", "--rebuild").exit_code == 0


def test_unreachable_scheduler_is_one_sentence(
    mixed_corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DNMF_CONNECT_TIMEOUT", "2")
    result = run(
        "ingest", mixed_corpus, "-o", tmp_path / "c.zarr", "--scheduler", "tcp://127.0.0.1:9"
    )
    assert_one_sentence_error(result, 2, "cannot reach the Dask scheduler", "tcp://127.0.0.1:9")


def test_help_ends_with_examples() -> None:
    for command in ("ingest", "info", "demo"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Examples" in result.output


def test_demo_runs_twice(tmp_path: Path, on_cluster: str) -> None:
    folder = tmp_path / "demo"
    first = run("demo", "--folder", folder, "--n-files", "3", "--seconds", "3", "--json", "-q")
    assert first.exit_code == 0, first.output
    assert len(json.loads(first.stdout)["ingest"]["added"]) == 3
    second = run("demo", "--folder", folder, "--json", "-q")
    assert json.loads(second.stdout)["ingest"]["nothing_new"] is True


def test_learn_from_an_audio_folder_json_and_info(
    mixed_corpus: Path, tmp_path: Path, on_cluster: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("learn", mixed_corpus, "--rank", "4", "--epochs", "5", "--json", "-q")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["epochs"] == 5 and len(summary["losses"]) == 5
    assert summary["ingest"]["added"]  # the folder was ingested first
    model = tmp_path / "corpus.dnmf" / "model.zarr"
    assert Path(summary["model"]) == Path("corpus.dnmf/model.zarr") and model.is_dir()
    info = json.loads(run("info", model, "--json").stdout)
    assert info["kind"] == "model" and info["rank"] == 4 and info["status"] == "done"
    assert "status     done" in run("info", model).stdout
    again = run("learn", "corpus.dnmf/corpus.zarr", "--rank", "4")
    assert_one_sentence_error(again, 2, "exists", "--resume")
    more = run(
        "learn",
        "corpus.dnmf/corpus.zarr",
        "--rank",
        "4",
        "--epochs",
        "7",
        "--resume",
        "--json",
        "-q",
    )
    assert more.exit_code == 0 and json.loads(more.stdout)["epochs"] == 7


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--rank", "0"], ["--rank 0"]),
        (["--rank", "4", "--beta", "hellinger"], ["--beta 'hellinger'"]),
        (["--rank", "4", "--norm", "l3"], ["--norm 'l3'", "l2, max or none"]),
        (["--rank", "4", "--l1-ratio", "2"], ["--l1-ratio 2.0"]),
        (["--rank", "4", "--init", "nowhere.zarr"], ["--init 'nowhere.zarr'"]),
        (["--rank", "4", "--fixed-components", "a,b"], ["--fixed-components 'a,b'"]),
        (["--rank", "4", "--fixed-components", "1"], ["fixed components need a given or informed"]),
        (["--rank", "5000"], ["--rank 5000 is larger than the data allows"]),
        (["--rank", "4", "--solver", "hals"], ["--solver 'hals' is for --beta 2"]),
        (["--rank", "4", "--solver", "als"], ["--solver 'als'"]),
    ],
)
def test_learn_bad_values_exit_2(
    tmp_path: Path, on_cluster: str, args: list[str], words: list[str]
) -> None:
    import numpy as np

    from tests.test_learn import write_corpus

    store = write_corpus(tmp_path / "c.zarr", np.ones((33, 120), np.float32), chunk_frames=100)
    result = run("learn", store, "-o", tmp_path / "m.zarr", *args)
    assert_one_sentence_error(result, 2, *words)
    assert not (tmp_path / "m.zarr").exists()


def test_learn_on_a_path_that_is_no_corpus(tmp_path: Path) -> None:
    assert_one_sentence_error(run("learn", tmp_path / "nope", "--rank", "2"), 2, "does not exist")
    (tmp_path / "file.wav").write_text("x")
    assert_one_sentence_error(
        run("learn", tmp_path / "file.wav", "--rank", "2"), 2, "neither a corpus store"
    )
