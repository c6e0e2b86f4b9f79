"""Activations under fixed NMFD templates: export, transform and separate for convolutive models.

With the templates fixed, the activations of a long spectrogram are coupled
only through the ``T - 1`` frames a template spans, and after ``j`` updates
a frame's activations depend on the data no more than ``j (T - 1)`` frames
away (:func:`dnmf.nmf.lags.halo`). So a chunk ``[a, z)`` is solved *exactly* as
the whole spectrogram would be by solving a window reaching
``(n_iter + 1)(T - 1)`` frames before it and ``n_iter (T - 1)`` after it, from
the same start everywhere, and keeping the chunk's frames
(:func:`solve_window`): one task per chunk, no exchange between tasks.

The start is a constant, ``avg = mean(V) / Σ_{r,t} mean_f W[f, r, t]`` (the
mean of Λ then matches that of V); the mean is the corpus's (recorded by
``dnmf learn``) for export, the file's for transform and separate. With
``tol > 0`` each chunk stops on its own, as the plain export does (after
``j`` updates its frames equal a whole-spectrogram solve stopped at ``j``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from dnmf.nmf.kernels import beta_divergence
from dnmf.nmf.lags import halo, shifted_stack, stack_templates, update_H_conv

if TYPE_CHECKING:
    from dnmf.io.corpus import CorpusStore
    from dnmf.io.model import ModelStore
    from dnmf.transform import Dictionary

__all__ = [
    "activation_scale",
    "export_chunk_conv",
    "export_task",
    "model_spectrogram",
    "solve_in_blocks_conv",
    "solve_window",
    "window_of",
]


def activation_scale(mean: float, W: np.ndarray) -> float:
    """``mean / Σ_{r,t} mean_f W[f, r, t]``: the constant the activations start from."""
    mass = float(np.asarray(W, dtype=np.float64).mean(axis=0).sum())
    return mean / mass if mass > 0 else 0.0


def window_of(start: int, stop: int, n_frames: int, lags: int, n_iter: int) -> tuple[int, int]:
    """The frames ``[lo, hi)`` a solve of ``[start, stop)`` with `n_iter` updates reads."""
    before, after = halo(lags, n_iter)
    return max(0, start - before), min(n_frames, stop + after)


def _window_loss(
    V: np.ndarray, Ws: np.ndarray, H: np.ndarray, start: int, stop: int, lags: int, beta: float
) -> float:
    k = H.shape[0]
    lo = max(0, start - (lags - 1))
    H_ext = np.zeros((k, stop - start + lags - 1), dtype=H.dtype)
    H_ext[:, lo - (start - (lags - 1)) :] = H[:, lo:stop]
    Hs = shifted_stack(H_ext, lags)
    Vc = np.ascontiguousarray(V[:, start:stop])
    return beta_divergence(Vc, Ws, Hs, beta, WH=Ws @ Hs)


def solve_window(
    V: np.ndarray,
    W: np.ndarray,
    *,
    start: int,
    stop: int,
    beta: float,
    n_iter: int = 200,
    tol: float = 1e-4,
    avg: float,
    l1_reg: float = 0.0,
    check_every: int = 10,
) -> tuple[np.ndarray, float, int]:
    """Activations of the frames ``[start, stop)`` of a window, templates fixed.

    Every frame of the window starts at ``avg``; then up to `n_iter`
    multiplicative updates (:func:`dnmf.nmf.lags.update_H_conv`), the loss of
    ``[start, stop)`` checked every `check_every` updates and the solve stopped
    when it fell by less than ``tol`` times its first value since the last
    check (scikit-learn's rule, as :func:`dnmf.transform.solve_activations`).
    With a window as :func:`window_of` gives, the result equals a
    whole-spectrogram solve on those frames.

    Parameters
    ----------
    V : ndarray of shape (n_bins, n_window)
    W : ndarray of shape (n_bins, n_components, n_lags)
    start, stop : int
        The frames wanted, within the window.
    beta : float
    n_iter : int, default=200
    tol : float, default=1e-4
    avg : float
        The start value (:func:`activation_scale`).
    l1_reg : float, default=0.0
        The model's ``sparsity_weight``.
    check_every : int, default=10

    Returns
    -------
    H : ndarray of shape (n_components, stop - start)
    loss : float
        β-divergence of the frames ``[start, stop)``.
    n_iter : int
        Updates run.
    """
    T = W.shape[2]
    H = np.full((W.shape[1], V.shape[1]), avg, dtype=V.dtype)
    Ws = stack_templates(W).astype(V.dtype, copy=False)
    if stop <= start:
        return H[:, start:stop], 0.0, 0
    first = previous = loss = _window_loss(V, Ws, H, start, stop, T, beta)
    done = 0
    while done < n_iter:
        step = min(check_every, n_iter - done)
        H = update_H_conv(V, W, H, beta=beta, n_iter=step, l1_reg=l1_reg)
        done += step
        loss = _window_loss(V, Ws, H, start, stop, T, beta)
        if tol > 0 and first > 0 and (previous - loss) / first < tol:
            break
        previous = loss
    return np.ascontiguousarray(H[:, start:stop]), float(loss), done


# --------------------------------------------------------------------------- export


def export_chunk_conv(
    corpus: str, store: str, start: int, stop: int, W: np.ndarray, beta: float, n_iter: int,
    tol: float, *, n_frames: int, avg: float, l1_reg: float,
) -> tuple[int, float, int]:  # fmt: skip
    """The export task of one corpus chunk for an NMFD model (a drop-in for the plain one)."""
    import zarr

    from dnmf.cluster import one_blas_thread
    from dnmf.io.store import array

    W = np.array(W, order="C", copy=True)
    lo, hi = window_of(start, stop, n_frames, W.shape[2], n_iter)
    src = zarr.open_group(corpus, mode="r", zarr_format=3, use_consolidated=False)
    V = np.asarray(array(src, "V")[:, lo:hi])
    with one_blas_thread():
        H, loss, iters = solve_window(
            V, W, start=start - lo, stop=stop - lo, beta=beta, n_iter=n_iter, tol=tol, avg=avg,
            l1_reg=l1_reg,
        )  # fmt: skip
    dst = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
    array(dst, "H")[:, start:stop] = H
    array(dst, "time")[start:stop] = array(src, "time")[start:stop]
    array(dst, "file_index")[start:stop] = array(src, "file_index")[start:stop]
    return start, loss, iters


def export_task(
    model: ModelStore, corpus: CorpusStore
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The export task of an NMFD model and the keyword arguments it needs beyond the plain ones."""
    from dnmf.errors import DnmfUsageError

    mean = model.meta.get("v_mean")
    if mean is None:
        raise DnmfUsageError(
            f"model store {model.path!r} does not record its corpus's mean (it was written "
            "before dnmf learn finished setting it up); learn the model again"
        )
    cfg = model.config
    return export_chunk_conv, {
        "n_frames": corpus.n_frames,
        "avg": activation_scale(float(mean), model.W),
        "l1_reg": float(getattr(cfg, "sparsity_weight", 0.0)),
    }


# --------------------------------------------------------------------------- files


def solve_in_blocks_conv(
    frames: Callable[[int, int], np.ndarray], n_frames: int, d: Dictionary, *, n_iter: int,
    tol: float, block: int,
) -> Iterator[tuple[int, int, np.ndarray, float, int]]:  # fmt: skip
    """:func:`dnmf.transform.solve_in_blocks` for an NMFD model: blocks with exact halos.

    ``frames(f0, f1)`` returns ``V[:, f0:f1]`` of the file. The start value
    comes from the whole file's mean (a first pass when there are several
    blocks); each block reads the halo of :func:`window_of`.
    """
    from dnmf.errors import DnmfUsageError

    if block < 1:
        raise DnmfUsageError(f"block_frames={block} must be a positive integer, e.g. 8192")
    ranges = [(a, min(a + block, n_frames)) for a in range(0, n_frames, block)]
    whole = frames(0, n_frames) if len(ranges) == 1 else None
    if whole is not None:
        total = float(whole.sum(dtype=np.float64))
    else:
        total = sum(float(frames(a, b).sum(dtype=np.float64)) for a, b in ranges)
    mean = max(total, 0.0) / (d.features.n_bins * max(n_frames, 1))
    avg = activation_scale(mean, d.W)
    l1 = float(d.meta.get("config", {}).get("sparsity_weight", 0.0))
    T = d.W.shape[2]
    for a, b in ranges:
        lo, hi = window_of(a, b, n_frames, T, n_iter)
        V = whole if whole is not None else frames(lo, hi)
        H, loss, done = solve_window(
            V, d.W, start=a - lo, stop=b - lo, beta=d.beta, n_iter=n_iter, tol=tol, avg=avg,
            l1_reg=l1,
        )  # fmt: skip
        yield a, b, H, loss, done


def model_spectrogram(W: np.ndarray, H: np.ndarray) -> np.ndarray:
    """Λ of a plain (``W @ H``) or convolutive model."""
    if W.ndim == 3:
        from dnmf.nmf.lags import conv_model

        return conv_model(W, H)
    return W @ H
