"""Nonsense that used to be accepted: a β that overflows float32, files shorter than one
frame, and a sample rate other than the model's in transform (now reported)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from dnmf.cli import app
from dnmf.errors import DnmfUsageError
from dnmf.nmf.config import LearnConfig
from dnmf.nmf.kernels import beta_name_to_float
from tests.conftest import tone, write

runner = CliRunner()


def run(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def on_cluster(monkeypatch: pytest.MonkeyPatch, scheduler_address: str) -> str:
    monkeypatch.setenv("DNMF_SCHEDULER", scheduler_address)
    return scheduler_address


@pytest.mark.parametrize("beta", [-2, -0.5, 0, "itakura-saito", 1.5, 3, 5, "5"])
def test_betas_that_stay_finite_are_taken(beta: object) -> None:
    assert -2 <= beta_name_to_float(beta) <= 5  # type: ignore[arg-type]


@pytest.mark.parametrize("beta", [1e9, 5.5, 7, -2.5, -5, "-1e3"])
def test_betas_that_overflow_float32_are_refused(beta: object) -> None:
    with pytest.raises(DnmfUsageError, match=r"outside \[-2, 5\].*overflow.*pass a beta from -2"):
        beta_name_to_float(beta)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="overflow"):  # pydantic's, as for every config key
        LearnConfig(rank=2, beta=beta)


def test_overflowing_beta_on_the_command_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.test_learn import write_corpus

    store = write_corpus(tmp_path / "c.zarr", np.ones((33, 120), np.float32), chunk_frames=100)
    result = run("learn", store, "--rank", "2", "--beta", "1e9", "-o", tmp_path / "m.zarr")
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [
        "dnmf: error: --beta 1e+09 is outside [-2, 5], where the updates' float32 powers of the "
        "model spectrogram (Λ^(β-2), Λ^β) would overflow to inf; pass a beta from -2 to 5"
    ]
    assert not (tmp_path / "m.zarr").exists()


def test_files_shorter_than_one_frame_are_skipped(tmp_path, on_cluster: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "corpus"
    write(root / "one_sample.wav", tone(22050, 1 / 22050), 22050)
    write(root / "thousand.wav", tone(22050, 1000 / 22050), 22050)
    write(root / "almost.wav", tone(22050, 2047 / 22050), 22050)
    write(root / "resampled_short.wav", tone(44100, 3000 / 44100), 44100)  # 1500 at 22050
    write(root / "exactly_one.wav", tone(22050, 2048 / 22050), 22050)
    write(root / "long.wav", tone(22050, 1.0), 22050)
    result = run("ingest", root, "-o", tmp_path / "c.zarr")
    assert result.exit_code == 3, result.output
    assert "skipped 4 files" in result.output
    short = ["almost.wav", "one_sample.wav", "resampled_short.wav", "thousand.wav"]
    for name in short:
        assert f"  {name}: shorter than one frame (" in result.output, result.output
    assert "1000 samples at 22050 Hz; one frame is n_fft=2048 samples at sr=22050" in (
        result.output
    )
    from dnmf.io.corpus import CorpusStore

    rows = {r.file: r for r in CorpusStore.open(tmp_path / "c.zarr").files()}
    assert sorted(n for n, r in rows.items() if r.status == "skipped") == short
    assert all(rows[n].n_frames == 0 for n in short)
    assert rows["exactly_one.wav"].n_frames == 5 and rows["long.wav"].status == "ok"


def test_transform_reports_another_sample_rate(tmp_path, on_cluster: str) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "corpus"
    write(root / "a.wav", tone(22050, 2.0), 22050)
    assert run("ingest", root, "-o", tmp_path / "c.zarr", "-q").exit_code == 0
    learned = run("learn", tmp_path / "c.zarr", "--rank", "2", "--epochs", "2", "-q")
    assert learned.exit_code == 0, learned.output
    model = tmp_path / "model.zarr"
    same = run("transform", model, root / "a.wav", "-o", tmp_path / "t1.zarr", "-q")
    assert same.exit_code == 0 and same.stderr == "", same.output
    low = write(tmp_path / "phone.wav", tone(8000, 2.0), 8000)
    result = run("transform", model, low, "-o", tmp_path / "t2.zarr", "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"note: {low.as_posix()} is at 8000 Hz, not the model's 22050 Hz; it was resampled "
        "and holds nothing above 4000 Hz"
    ]
    assert result.stdout == ""
