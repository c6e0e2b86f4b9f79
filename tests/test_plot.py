"""Figures a researcher would publish: log or mel frequency, dB colour ranges, the loss's β."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from dnmf.cli import app
from tests.conftest import tone, write

pytest.importorskip("matplotlib")
runner = CliRunner()


def run(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, scheduler_address: str) -> Iterator[Path]:
    """An STFT and a mel model of two tones, each with its activations."""
    root = tmp_path_factory.mktemp("plots")
    write(root / "audio" / "a.wav", tone(22050, 2.0, 440) + tone(22050, 2.0, 1320, seed=1), 22050)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNMF_SCHEDULER", scheduler_address)
        for features in ("stft", "mel"):
            d = root / features
            for args in (
                ["ingest", root / "audio", "-o", d / "corpus.zarr", "--features", features],
                ["learn", d / "corpus.zarr", "--rank", "3", "--epochs", "5"],
                ["export", d / "model.zarr"],
            ):
                result = run(*args, "-q")
                assert result.exit_code == 0, result.output
        yield root


def _dictionary_axis(models: Path, features: str, scale: str) -> tuple[str, str]:
    import matplotlib.pyplot as plt

    import dnmf
    from dnmf.plot import dictionary_figure

    fig = dictionary_figure(dnmf.open_model(models / features / "model.zarr"), freq_scale=scale)
    ax = fig.axes[0]
    found = (ax.get_yscale(), ax.get_ylabel())
    assert fig.axes[1].get_ylabel() == "W (dB re max)"
    assert ax.collections[0].get_clim() == (-80.0, 0.0)
    plt.close(fig)
    return found


@pytest.mark.parametrize(
    ("features", "scale", "expected"),
    [
        ("stft", "auto", ("log", "frequency (Hz, log scale)")),
        ("mel", "auto", ("function", "frequency (Hz, mel scale)")),
        ("stft", "linear", ("linear", "frequency (Hz)")),
        ("stft", "mel", ("function", "frequency (Hz, mel scale)")),
    ],
)
def test_dictionary_frequency_axis(
    models: Path, features: str, scale: str, expected: tuple
) -> None:  # type: ignore[type-arg]
    assert _dictionary_axis(models, features, scale) == expected


def test_log_axis_starts_at_20_hz_with_octave_ticks(models: Path) -> None:
    import matplotlib.pyplot as plt

    import dnmf
    from dnmf.plot import dictionary_figure

    fig = dictionary_figure(dnmf.open_model(models / "stft" / "model.zarr"))
    ax = fig.axes[0]
    assert ax.get_ylim()[0] == pytest.approx(20.0)
    assert ax.get_ylim()[1] == pytest.approx(22050 / 2 + 22050 / 2048 / 2)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[:3] == ["32", "63", "125"] and labels[-1] == "8k"
    plt.close(fig)


def test_loss_names_its_beta(models: Path) -> None:
    import matplotlib.pyplot as plt

    import dnmf
    from dnmf.plot import loss_figure

    fig = loss_figure(dnmf.open_model(models / "stft" / "model.zarr"))
    assert "β=1 (Kullback-Leibler)" in fig.axes[0].get_title()
    plt.close(fig)


def test_activations_are_in_db_over_60_db(models: Path) -> None:
    import matplotlib.pyplot as plt

    import dnmf
    from dnmf.plot import activations_figure, to_db

    one = dnmf.open_activations(models / "stft" / "activations.zarr").dnmf.file("a.wav")
    fig = activations_figure(one, name="a.wav")
    mesh = fig.axes[0].collections[0]
    assert mesh.get_clim() == (-60.0, 0.0) and fig.axes[1].get_ylabel() == "H (dB re max)"
    plt.close(fig)
    db, lo, hi = to_db(np.array([[1.0, 0.1], [0.01, 0.0]]), power=1.0, range_db=60)
    assert np.allclose(db[0], [0.0, -20.0]) and db[1, 0] == pytest.approx(-40.0)
    assert (lo, hi) == (-60, 0)
    assert to_db(np.array([1.0, 0.1]), power=2.0, range_db=60)[0][1] == pytest.approx(-10.0)


def test_plot_command_writes_the_figures(models: Path, tmp_path: Path) -> None:
    from PIL import Image

    result = run("plot", models / "mel" / "activations.zarr", "-o", tmp_path / "p")
    assert result.exit_code == 0, result.output
    for name in ("dictionary.png", "loss.png", "activations.png"):
        with Image.open(tmp_path / "p" / name) as im:
            assert im.size[0] > 300 and len(np.unique(np.asarray(im.convert("L")))) > 10
    bad = run("plot", models / "stft" / "model.zarr", "--freq-scale", "bark", "-o", tmp_path / "q")
    assert bad.exit_code == 2 and "--freq-scale 'bark'" in bad.output, bad.output
    assert "log, mel, linear" in bad.output
