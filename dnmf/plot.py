"""PNG figures of a model: the dictionary, one file's activations, the loss curve.

Drawn as a researcher would publish them: the dictionary on a log frequency
axis for STFT features (a mel axis for mel features), both it and the
activations in dB of the features (``20 log10`` of magnitudes, ``10 log10`` of
powers) over a fixed range below their maximum, so that a few peaks do not
wash out the rest, and the loss labelled with its β.

Needs matplotlib (``pip install 'dnmf[plot]'``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dnmf.errors import DnmfUsageError, MissingExtraError
from dnmf.words import count

__all__ = [
    "FREQ_SCALES",
    "activations_figure",
    "dictionary_figure",
    "loss_figure",
    "plot_store",
]

#: Frequency axes of ``dictionary.png``; ``auto`` is ``log`` for STFT, ``mel`` for mel features.
FREQ_SCALES = ("auto", "log", "mel", "linear")

#: Colour range below the maximum, in dB: the dictionary's and the activations'.
DICTIONARY_RANGE_DB = 80.0
ACTIVATIONS_RANGE_DB = 60.0

#: Frequency ticks (Hz) of the log and mel axes, octaves apart.
_FREQ_TICKS = (32, 63, 125, 250, 500, 1000, 2000, 4000, 8000, 16000)

_BETA_NAMES = {0.0: "Itakura-Saito", 1.0: "Kullback-Leibler", 2.0: "Euclidean"}


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtraError(
            "plotting needs matplotlib; install it with: pip install 'dnmf[plot]'"
        ) from None
    return plt


def plot_store(
    store: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    file: str | None = None,
    freq_scale: str = "auto",
) -> list[Path]:
    """Write PNGs for a model or activations store into ``out_dir``; returns their paths.

    From a model store: ``dictionary.png`` and ``loss.png`` (and the
    activations of ``file`` if ``activations.zarr`` lies beside it). From an
    activations store: the same, its model found through its attrs, and
    ``activations.png`` of ``file`` (default: the first file).

    Parameters
    ----------
    store : path
        A model or activations store.
    out_dir : path
        Folder for the PNGs (made if missing).
    file : str, optional
        The corpus file whose activations are drawn.
    freq_scale : {'auto', 'log', 'mel', 'linear'}
        Frequency axis of the dictionary; ``auto`` is ``log`` for STFT features
        and ``mel`` for mel features.
    """
    from dnmf import api
    from dnmf.io.store import open_group

    if freq_scale not in FREQ_SCALES:
        raise DnmfUsageError(
            f"freq_scale={freq_scale!r} is not a frequency axis; pass one of "
            f"{', '.join(FREQ_SCALES)}"
        )
    found = open_group(store).attrs.get("dnmf")
    meta: dict[str, Any] = dict(found) if isinstance(found, dict) else {}
    kind = meta.get("kind")
    if kind == "model":
        model_path, acts_path = Path(store), Path(store).parent / "activations.zarr"
    elif kind == "activations":
        model_path, acts_path = Path(str(meta["model"])), Path(store)
    else:
        raise DnmfUsageError(
            f"{str(store)!r} is neither a model nor an activations store; pass one"
        )
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = api.open_model(model_path)
    written = [
        _save(dictionary_figure(model, freq_scale=freq_scale, name=model_path.name),
              out / "dictionary.png", plt),
        _save(loss_figure(model), out / "loss.png", plt),
    ]  # fmt: skip

    if (acts_path / "zarr.json").exists() and (file is not None or kind == "activations"):
        acts = api.open_activations(acts_path)
        files = [str(f) for f in acts.file.values]
        name = file if file is not None else files[0]
        if name not in files:
            shown = ", ".join(repr(f) for f in files[:3]) + (", ..." if len(files) > 3 else "")
            raise DnmfUsageError(
                f"--file {name!r} is not a file of {str(acts_path)!r}; pass one of its "
                f"{count(len(files), 'file')} ({shown}), as a path relative to the corpus folder"
            )
        power = float(_features(model).get("power", 1.0))
        fig = activations_figure(acts.dnmf.file(name), name=name, power=power)
        written.append(_save(fig, out / "activations.png", plt))
    elif file is not None:
        raise DnmfUsageError(f"no activations store beside {str(store)!r}; run dnmf export first")
    return written


# --------------------------------------------------------------------------- the figures


def _features(model: Any) -> dict[str, Any]:
    meta = model.attrs.get("dnmf", {})
    return dict(meta.get("corpus", {}).get("features", {}))


def to_db(X: np.ndarray, *, power: float, range_db: float) -> tuple[np.ndarray, float, float]:
    """``X`` in dB of the features, and the colour limits ``(max - range_db, max)``.

    Magnitudes (``power=1``) take ``20 log10``, powers (``power=2``) ``10 log10``:
    in general ``(20 / power) log10``, so that one dB means the same in either.
    """
    X = np.asarray(X, dtype=np.float64)
    top = float(X.max()) if X.size else 0.0
    if top <= 0:
        return np.zeros_like(X), -range_db, 0.0
    db = (20.0 / power) * np.log10(np.maximum(X, top * 1e-12) / top)
    return db, -range_db, 0.0


def dictionary_figure(model: Any, *, freq_scale: str = "auto", name: str = "") -> Any:
    """The templates over frequency, in dB re their maximum, on a log (STFT) or mel axis."""
    plt = _pyplot()
    features = _features(model)
    if freq_scale == "auto":
        freq_scale = "mel" if features.get("features") == "mel" else "log"
    W = model.W.values
    xlabel = "component"
    if W.ndim == 3:  # NMFD templates side by side, each its lags left to right
        xlabel = f"component x lag ({W.shape[2]} lags each)"
        W = W.reshape(W.shape[0], -1)
    freq = np.asarray(model.frequency.values, dtype=np.float64)
    edges = _edges(freq)
    if freq_scale in ("log", "mel"):  # the DC bin's lower edge: half way to the first bin
        positive = freq[freq > 0]
        edges[0] = max(edges[0], (positive[0] / 2) if positive.size else 1.0)
    db, vmin, vmax = to_db(W, power=float(features.get("power", 1.0)), range_db=DICTIONARY_RANGE_DB)
    fig, ax = plt.subplots(figsize=(8, 5))
    mesh = ax.pcolormesh(
        np.arange(W.shape[1] + 1) - 0.5, edges, db, shading="flat", vmin=vmin, vmax=vmax,
        cmap="magma",
    )  # fmt: skip
    _frequency_axis(ax, freq_scale, edges)
    ax.set(xlabel=xlabel, title=f"dictionary W{f' ({name})' if name else ''}")
    if W.shape[1] <= 32:
        ax.set_xticks(np.arange(W.shape[1]))
    fig.colorbar(mesh, ax=ax, label="W (dB re max)")
    return fig


def _frequency_axis(ax: Any, scale: str, edges: np.ndarray) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    lo, hi = float(edges[0]), float(edges[-1])
    if scale == "linear":
        ax.set_ylabel("frequency (Hz)")
        ax.set_ylim(lo, hi)
        return
    where: Callable[[Any], Any]
    if scale == "log":
        ax.set_yscale("log")
        lo = max(lo, min(20.0, hi / 100))  # nothing to see below 20 Hz
        where = np.log
    else:  # mel, as librosa's specshow draws it
        import librosa

        def to_mel(f: Any) -> Any:
            return librosa.hz_to_mel(np.maximum(f, 0.0))

        where = to_mel

        ax.set_yscale(
            "function", functions=(where, lambda m: librosa.mel_to_hz(np.maximum(m, 0.0)))
        )
    ax.set_ylim(lo, hi)
    # Octave ticks, from the top down, none closer than 6 % of the axis to the last one.
    span = float(where(hi) - where(lo))
    ticks: list[float] = []
    for t in sorted((t for t in _FREQ_TICKS if lo <= t <= hi), reverse=True):
        if not ticks or float(where(ticks[-1]) - where(t)) >= 0.06 * span:
            ticks.append(t)
    ax.yaxis.set_major_locator(FixedLocator(sorted(ticks)))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(
        FuncFormatter(lambda f, _: f"{f / 1000:g}k" if f >= 1000 else f"{f:g}")
    )
    ax.set_ylabel(f"frequency (Hz, {scale} scale)")


def beta_label(beta: float) -> str:
    """``'β=1 (Kullback-Leibler)'``: the divergence a loss curve measures.

    Examples
    --------
    >>> beta_label(0.0), beta_label(1.5)
    ('β=0 (Itakura-Saito)', 'β=1.5')
    """
    name = _BETA_NAMES.get(float(beta))
    return f"β={beta:g}" + (f" ({name})" if name else "")


def loss_figure(model: Any) -> Any:
    """The loss of each epoch, named by its β."""
    plt = _pyplot()
    loss = np.asarray(model.loss.values, dtype=np.float64)
    beta = float(model.attrs.get("dnmf", {}).get("config", {}).get("beta", float("nan")))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(1, len(loss) + 1), loss, marker=".")
    if loss.size and np.all(loss > 0):
        ax.set_yscale("log")
    ax.set(
        xlabel="epoch",
        ylabel="loss (summed over the corpus)",
        title=f"loss per epoch: β-divergence, {beta_label(beta)}",
    )
    ax.grid(True, which="both", alpha=0.3)
    return fig


def activations_figure(one: Any, *, name: str, power: float = 1.0) -> Any:
    """One file's activations over time, in dB re their maximum."""
    plt = _pyplot()
    H = np.asarray(one.H.values, dtype=np.float64)
    t = np.asarray(one.time.values, dtype=np.float64)
    step = t[1] - t[0] if len(t) > 1 else 1.0
    t_edges = np.r_[t, t[-1] + step] if len(t) else np.array([0.0, 1.0])
    db, vmin, vmax = to_db(H, power=power, range_db=ACTIVATIONS_RANGE_DB)
    fig, ax = plt.subplots(figsize=(10, 4))
    mesh = ax.pcolormesh(
        t_edges, np.arange(H.shape[0] + 1) - 0.5, db, shading="flat", vmin=vmin, vmax=vmax,
        cmap="magma",
    )  # fmt: skip
    ax.set(xlabel="time (s)", ylabel="component", title=f"activations H of {name}")
    if H.shape[0] <= 32:
        ax.set_yticks(np.arange(H.shape[0]))
    fig.colorbar(mesh, ax=ax, label="H (dB re max)")
    return fig


def _edges(centres: np.ndarray) -> np.ndarray:
    if len(centres) < 2:
        return np.array([centres[0] - 0.5, centres[0] + 0.5]) if len(centres) else np.array([0, 1])
    mid = (centres[1:] + centres[:-1]) / 2
    return np.r_[centres[0] - (mid[0] - centres[0]), mid, centres[-1] + (centres[-1] - mid[-1])]


def _save(fig: Any, path: Path, plt: Any) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def rank_figure(result: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Held-out and training loss per entry against rank (``dnmf rank``'s ``rank.json``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ranks = result["ranks"]
    ax.plot(ranks, result["heldout_loss"], "o-", label="held-out entries")
    ax.plot(ranks, result["train_loss"], "s--", label="training entries")
    if result.get("best_rank") is not None:
        ax.axvline(result["best_rank"], color="grey", lw=0.8, ls=":")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, [str(r) for r in ranks])
    ax.set_xlabel("rank")
    ax.set_ylabel(f"{beta_label(result['beta'])} per entry")
    ax.set_title(f"held-out share {result['holdout']:g}: best rank {result.get('best_rank')}")
    ax.legend()
    return _save(fig, Path(path), plt)
