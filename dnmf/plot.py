"""PNG figures of a model: the dictionary, one file's activations, the loss curve.

Needs matplotlib (``pip install 'dnmf[plot]'``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from dnmf.errors import DnmfError, DnmfUsageError
from dnmf.words import count

__all__ = ["plot_store"]


class MissingExtraError(DnmfError, ImportError):
    exit_code = 2


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
    store: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, file: str | None = None
) -> list[Path]:
    """Write PNGs for a model or activations store into ``out_dir``; returns their paths.

    From a model store: ``dictionary.png`` and ``loss.png`` (and the
    activations of ``file`` if ``activations.zarr`` lies beside it). From an
    activations store: the same, its model found through its attrs, and
    ``activations.png`` of ``file`` (default: the first file).
    """
    from dnmf import api
    from dnmf.io.store import open_group

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
    written = []

    W = model.W.values
    xlabel = "component"
    if W.ndim == 3:  # NMFD templates side by side, each its lags left to right
        xlabel = f"component x lag ({W.shape[2]} lags each)"
        W = W.reshape(W.shape[0], -1)
    freq = model.frequency.values
    fig, ax = plt.subplots(figsize=(8, 5))
    mesh = ax.pcolormesh(
        np.arange(W.shape[1] + 1) - 0.5, _edges(freq), np.log10(W + 1e-9), shading="flat"
    )
    ax.set(xlabel=xlabel, ylabel="frequency (Hz)", title=f"dictionary W ({model_path.name})")
    fig.colorbar(mesh, ax=ax, label="log10 W")
    written.append(_save(fig, out / "dictionary.png", plt))

    loss = model.loss.values
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(np.arange(1, len(loss) + 1), loss, marker=".")
    ax.set(xlabel="epoch", ylabel="beta-divergence", yscale="log", title="loss")
    written.append(_save(fig, out / "loss.png", plt))

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
        one = acts.dnmf.file(name)
        H = one.H.values
        fig, ax = plt.subplots(figsize=(10, 4))
        t = one.time.values
        t_edges = (
            np.r_[t, t[-1] + (t[1] - t[0] if len(t) > 1 else 1.0)]
            if len(t)
            else np.array([0.0, 1.0])
        )
        mesh = ax.pcolormesh(t_edges, np.arange(H.shape[0] + 1) - 0.5, H, shading="flat")
        ax.set(xlabel="time (s)", ylabel="component", title=f"activations of {name}")
        fig.colorbar(mesh, ax=ax, label="H")
        written.append(_save(fig, out / "activations.png", plt))
    elif file is not None:
        raise DnmfUsageError(f"no activations store beside {str(store)!r}; run dnmf export first")
    return written


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
