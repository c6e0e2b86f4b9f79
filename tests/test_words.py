"""What the command line says: help, summaries and errors in the user's words (issue 14)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dnmf.cli import app
from tests.conftest import tone, write

runner = CliRunner()
COMMANDS = ["ingest", "learn", "export", "transform", "separate", "plot", "run", "info", "demo"]


def run(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "160"})


def one_error(result, *words: str) -> str:  # type: ignore[no-untyped-def]
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dnmf: error: "), result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def on_cluster(monkeypatch: pytest.MonkeyPatch, scheduler_address: str) -> str:
    monkeypatch.setenv("DNMF_SCHEDULER", scheduler_address)
    return scheduler_address


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    from tests.test_learn import write_corpus

    V = np.random.default_rng(0).random((33, 120)).astype(np.float32) + 0.1
    return write_corpus(tmp_path / "c.zarr", V, chunk_frames=100)


def test_ingest_help_gives_the_real_default_store() -> None:
    text = " ".join(run("ingest", "--help").output.split())
    assert "./NAME.dnmf/corpus.zarr, NAME being the corpus folder's name" in text
    assert "./.dnmf" not in text


@pytest.mark.parametrize("command", COMMANDS)
def test_flags_show_no_value_type(command: str) -> None:
    text = run(command, "--help").output
    assert "<bool>" not in text
    assert "<int>" in text or "<path>" in text or "<str>" in text  # other types stay


def test_a_flag_given_a_value_is_refused() -> None:
    assert run("info", "x.zarr", "--json", "true").exit_code == 2


def test_learn_summary_says_the_epoch_limit_was_reached(corpus: Path, on_cluster: str) -> None:
    result = run("learn", corpus, "--rank", "2", "--epochs", "2", "--tol", "0")
    assert result.exit_code == 0, result.output
    assert "2 epochs (epoch limit reached, not converged)" in result.output
    assert re.search(r"on (1 worker|\d+ workers)\b", result.output), result.output
    assert "(stopped)" not in result.output


def test_learn_summary_counts_passes_where_the_fast_schedule_samples(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dnmf.cli.learn import _print_summary
    from pipelines.learn import LearnResult

    kw = {"model": "m.zarr", "corpus": "c.zarr", "loss": 1.0, "workers": 2}
    _print_summary(LearnResult(epochs=86, passes=52.25, **kw), 52)  # type: ignore[arg-type]
    _print_summary(LearnResult(epochs=30, passes=30.0, **kw), 52)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert "52.25 passes over the corpus in 86 epochs (epoch limit reached, not converged)" in out
    assert "30 epochs (stopped before converging)" in out


def test_run_on_a_folder_says_it_is_a_folder(tmp_path: Path) -> None:
    one_error(run("run", tmp_path), "is a folder, not a config file", "YAML")
    one_error(run("run", tmp_path / "none.yaml"), "does not exist")


def test_errors_from_set_name_the_set_not_the_file(tmp_path: Path) -> None:
    config = tmp_path / "p.yaml"
    config.write_text(f"store: {tmp_path / 'pipe'}\ninput: {tmp_path}\nlearn:\n  rank: 2\n")
    text = one_error(run("run", config, "--dry-run", "--set", "learn.rank=abc"))
    assert text.startswith("dnmf: error: --set 'learn.rank=abc': learn.rank='abc'"), text
    assert str(config) not in text
    config.write_text(f"store: {tmp_path / 'pipe'}\ninput: {tmp_path}\nlearn:\n  rank: x\n")
    text = one_error(run("run", config, "--dry-run", "--set", "learn.beta=2"))
    assert text.startswith(f"dnmf: error: {config}: learn.rank='x'"), text
    one_error(run("run", config, "--dry-run", "--set", "learn.rank=3", "--set", "learn.nope=1"),
              "--set 'learn.nope=1'", "unknown key 'learn.nope'")  # fmt: skip


def test_norm_errors_offer_none(tmp_path: Path, corpus: Path) -> None:
    one_error(run("learn", corpus, "--rank", "2", "--norm", "l3"), "l2, max or none")
    config = tmp_path / "p.yaml"
    config.write_text(f"store: {tmp_path}\ninput: {tmp_path}\nlearn:\n  rank: 2\n  norm: l3\n")
    one_error(run("run", config, "--dry-run"), "learn.norm='l3'", "l2, max or none")


@pytest.mark.parametrize(
    ("args", "said", "unsaid"),
    [
        (["--inner", "0"], "--inner 0", "n_inner"),
        (["--alpha-w", "-1"], "--alpha-w -1.0", "alpha_W"),
        (["--fix-w", "--fix-h"], "--fix-w and --fix-h together", "fix_W"),
        (["--forget-factor", "2"], "--forget-factor 2.0", "forget_factor"),
        (["--checkpoint-every", "0"], "--checkpoint-every 0", "checkpoint_every"),
    ],
)
def test_learn_errors_name_the_options(
    corpus: Path, args: list[str], said: str, unsaid: str
) -> None:
    text = one_error(run("learn", corpus, "--rank", "2", *args), said)
    assert unsaid not in text


def test_transform_and_export_name_iter(tmp_path: Path) -> None:
    one_error(run("transform", tmp_path / "m.zarr", tmp_path / "a.wav", "--iter", "0"))
    assert "--iter" in run("export", tmp_path / "m.zarr", "--iter", "0").output


def test_store_kinds_take_their_article(tmp_path: Path, corpus: Path) -> None:
    import dnmf
    from dnmf.errors import StoreFormatError

    with pytest.raises(StoreFormatError, match="not an activations store; pass an activations"):
        dnmf.open_activations(corpus)
    one_error(run("export", corpus), "not a model store; pass a model store")


def test_plot_of_a_file_not_in_the_store_names_the_option(tmp_path: Path, on_cluster: str) -> None:
    write(tmp_path / "audio" / "a.wav", tone(22050, 2.0), 22050)
    assert run("ingest", tmp_path / "audio", "-o", tmp_path / "c.zarr", "-q").exit_code == 0
    assert run("learn", tmp_path / "c.zarr", "--rank", "2", "--epochs", "1", "-q").exit_code == 0
    assert run("export", tmp_path / "model.zarr", "-q").exit_code == 0
    text = one_error(
        run("plot", tmp_path / "model.zarr", "--file", "b.wav", "-o", tmp_path / "p"),
        "--file 'b.wav' is not a file of", "1 file ('a.wav')",
    )  # fmt: skip
    assert "ds.file" not in text


def test_libmpg123_lines_are_dropped_and_the_rest_kept(capfd: pytest.CaptureFixture[str]) -> None:
    import os

    from dnmf.audio.decode import _mpg123_quiet

    with _mpg123_quiet():
        os.write(2, b"[src/libmpg123/layer3.c:INT123_do_layer3():1774] error: part2_3_length\n")
        os.write(2, b"a worker's own log line\n")
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "a worker's own log line\nafter\n"


def test_seeking_into_an_mp3_prints_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    import soundfile as sf

    from dnmf.audio.decode import decoder

    if "MP3" not in sf.available_formats():
        pytest.skip("this libsndfile writes no MP3")
    path = tmp_path / "x.mp3"
    sf.write(path, tone(22050, 3.0), 22050, format="MP3")
    decode = decoder(path)
    for start in range(0, 60000, 7919):  # seeks that made libmpg123 print "error:" lines
        assert len(decode(start, start + 3000)) == 3000
    assert "libmpg123" not in capfd.readouterr().err
