"""Where a block's weight mask comes from, computed on the worker that visits the block.

A masked run (:mod:`dnmf.nmf.masked`) never holds a mask of the whole corpus:
every visit builds the mask of its own window from a small, picklable
:class:`MaskSpec` that travels with the task (:class:`dnmf.nmf.visit.VisitParams`),
from the block's own V, its frame indices and, for a user mask store or what
the ingest recorded, a read of the same frames of that store or of the corpus
(:mod:`dnmf.io.corpus_frames`). The sources multiply:

* ``store``: a Zarr array aligned with V (``(n_bins, n_frames)``, boolean or
  float weights; read through :meth:`BlockIO.read_M`);
* ``silence_db``: frames whose level is below a threshold, in dB of the mean
  power over bins (``10 log10 mean_f V^(2/power)``, librosa's ``power_to_db``
  with ``ref=1``): digital silence is ``-inf``;
* ``boundaries``: for NMFD, the first ``lags - 1`` frames of every file after the
  first, so that no scored frame's model reaches back into the previous file
  (a template never straddles two files);
* ``clipped``: frames whose window holds a sample at full scale, from the
  corpus's per-frame ``clipped`` counts (:func:`dnmf.audio.quality.clipped_counts`);
* ``bandwidth``: the bins above each file's effective bandwidth, for that file's
  frames, from the file table's ``bandwidth`` (:func:`dnmf.audio.quality.bandwidth`)
  and the block's ``file_index``: a bin whose centre frequency is above it has
  weight 0;
* ``holdout``: the rank search's held-out tiles (:class:`Holdout`); the training
  weights are 0 there, the evaluation weights (``heldout=True``) 1 there only.

A mask that is all ones on a block is no mask there: the block takes the
unmasked kernels, so a run whose mask removes nothing is bitwise an unmasked
run. Frame masks at one lag take the unmasked kernels on the kept frames.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

__all__ = [
    "BlockMask",
    "Holdout",
    "MaskSpec",
    "block_mask",
    "mask_counts",
    "source_counts",
    "spec_of",
]


@dataclass(frozen=True, eq=False)
class BlockMask:
    """The weights of one window: per frame (``frames (n,)``), per entry
    (``entries (n_bins, n)``), or both (their product)."""

    frames: np.ndarray | None = None
    entries: np.ndarray | None = None

    def kept_frames(self) -> np.ndarray | None:
        """The boolean frames kept, where the mask is a 0/1 frame mask; else None."""
        if self.entries is not None or self.frames is None:
            return None
        f = self.frames
        return f > 0 if bool(np.all((f == 0) | (f == 1))) else None

    def dense(self, n_bins: int, dtype: Any) -> np.ndarray:
        """The weights as an ``(n_bins, n)`` array of ``dtype``."""
        if self.entries is None:
            assert self.frames is not None
            return np.ascontiguousarray(
                np.broadcast_to(self.frames.astype(dtype)[None, :], (n_bins, self.frames.size))
            )
        M = np.array(self.entries, dtype=dtype, order="C", copy=True)
        if self.frames is not None:
            M *= self.frames.astype(dtype)[None, :]
        return M


@dataclass(frozen=True)
class Holdout:
    """A seeded share of entries held out in tiles of ``bins × frames``.

    Tile ``(i, j)`` (bins ``i·bins …``, frames ``j·frames …``) is held out when a
    hash of ``(seed, i, j)`` falls below ``share``: a function of the tile's
    place alone, so any window computes the same tiles, with no state.

    Examples
    --------
    >>> h = Holdout(share=0.2, seed=1)
    >>> m = h.held(64, np.arange(0, 4096))
    >>> bool(abs(m.mean() - 0.2) < 0.03), m.shape
    (True, (64, 4096))
    """

    share: float
    seed: int = 0
    #: 4 x 4, measured on rendered audio (benchmarks/mask_heldout.py): tiles of 8 bins x
    #: 16 frames can hold out the whole support of a low, short component (a kick drum),
    #: whose activations there then grow unchecked (1 or 2 seeds of 5, held-out KL 7-99x
    #: that of a model fitted to zeros); 4 x 4 tiles gave 0.13-0.22x in every seed.
    bins: int = 4
    frames: int = 4

    def held(self, n_bins: int, frame_idx: np.ndarray) -> np.ndarray:
        """Boolean ``(n_bins, len(frame_idx))``: True where an entry is held out."""
        # One hash per tile, then spread over its entries (rows, then whole-row gathers).
        i_tile, i_of = np.unique(np.arange(n_bins) // self.bins, return_inverse=True)
        j_tile, j_of = np.unique(np.asarray(frame_idx) // self.frames, return_inverse=True)
        i, j = i_tile.astype(np.uint64), j_tile.astype(np.uint64)
        with np.errstate(over="ignore"):
            h = _mix(np.array([self.seed], dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15))
            x = _mix(h ^ _mix(i[:, None] + np.uint64(0x484F4C44)) ^ j[None, :])
        u = (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)
        return np.take(np.take(u < self.share, i_of, axis=0), j_of, axis=1)


def _mix(x: Any) -> Any:
    """splitmix64's finaliser, on uint64 arrays (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = np.asarray(x, dtype=np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


@dataclass(frozen=True)
class MaskSpec:
    """Where a run's masks come from (see the module docstring); small and picklable.

    Attributes
    ----------
    store : str or None
        The user mask: a Zarr array aligned with V (its URL on the workers), or
        ``"memory"`` for an array held by an in-process backend.
    silence_db : float or None
        Frames below this level (dB) get weight 0.
    power : float
        The exponent of the spectrogram (``V = |STFT|^power``), for the level.
    file_starts : tuple of int
        First frames of the files after the first (for ``boundary``).
    boundary : int
        Frames masked at the start of each of those files (``lags - 1``).
    holdout : Holdout or None
    heldout : bool
        The evaluation mask: weight 1 on the held-out tiles only (and the other
        sources still apply).
    corpus : str or None
        The corpus store (its path or URL on the workers), for ``clipped`` and
        ``bandwidth``.
    clipped : bool
        Frames with a sample at full scale get weight 0.
    bandwidth : bool
        Bins above the bandwidth of a frame's file get weight 0.
    """

    store: str | None = None
    silence_db: float | None = None
    power: float = 1.0
    file_starts: tuple[int, ...] = ()
    boundary: int = 0
    holdout: Holdout | None = None
    heldout: bool = False
    corpus: str | None = None
    clipped: bool = False
    bandwidth: bool = False

    def evaluation(self) -> MaskSpec:
        """The held-out entries' mask of this run."""
        return replace(self, heldout=True)

    def training(self) -> MaskSpec:
        return replace(self, heldout=False)


def frame_weights(spec: MaskSpec, V: np.ndarray, frame_idx: np.ndarray) -> np.ndarray | None:
    """The per-frame part of the mask (0/1), or None where it keeps every frame."""
    keep: np.ndarray | None = None
    if spec.silence_db is not None:
        if spec.power == 1:  # |STFT|: the mean square, one pass, no float64 copy
            power = np.einsum("ij,ij->j", V, V) / V.shape[0]
        elif spec.power == 2:
            power = V.mean(axis=0, dtype=np.float64)
        else:
            power = np.mean(np.asarray(V, dtype=np.float64) ** (2.0 / spec.power), axis=0)
        with np.errstate(divide="ignore"):
            level = 10.0 * np.log10(np.asarray(power, dtype=np.float64))
        keep = level >= spec.silence_db
    if spec.boundary > 0 and spec.file_starts:
        starts = np.asarray(spec.file_starts, dtype=np.int64)
        # The file start at or before each frame, and how far into that file it is.
        pos = np.searchsorted(starts, frame_idx, side="right") - 1
        inside = pos >= 0
        near = np.zeros(frame_idx.size, dtype=bool)
        near[inside] = frame_idx[inside] - starts[pos[inside]] < spec.boundary
        keep = ~near if keep is None else keep & ~near
    if spec.clipped:
        clean = _corpus_frames(spec, "clipped", frame_idx) == 0
        keep = clean if keep is None else keep & clean
    if keep is None or bool(keep.all()):
        return None
    return keep.astype(np.float64)


def _corpus_frames(spec: MaskSpec, name: str, frame_idx: np.ndarray) -> np.ndarray:
    """The corpus's per-frame array ``name`` on the (consecutive) frames ``frame_idx``."""
    from dnmf.io.corpus_frames import frame_values

    assert spec.corpus is not None, f"the {name!r} mask reads the corpus store"
    return frame_values(spec.corpus, name, int(frame_idx[0]), int(frame_idx[-1]) + 1)


def band_weights(spec: MaskSpec, n_bins: int, frame_idx: np.ndarray) -> np.ndarray | None:
    """Boolean ``(n_bins, n)``: False on the bins above the bandwidth of each frame's file;
    None where every frame's file keeps every bin."""
    from dnmf.io.corpus_frames import cutoff_bins

    assert spec.corpus is not None
    cut = cutoff_bins(spec.corpus)[_corpus_frames(spec, "file_index", frame_idx)]
    if bool((cut >= n_bins).all()):
        return None
    return np.arange(n_bins)[:, None] < cut[None, :]  # type: ignore[no-any-return]


def block_mask(
    spec: MaskSpec | None, V: np.ndarray, lo: int, hi: int, read_M: Any = None
) -> BlockMask | None:
    """The mask of the frames ``[lo, hi)`` whose data are ``V (n_bins, hi - lo)``; None
    where it keeps every entry with weight 1 (the block then runs unmasked).

    ``read_M(lo, hi)`` reads the user mask store's frames (``spec.store``).
    """
    if spec is None:
        return None
    idx = np.arange(lo, hi)
    entries: np.ndarray | None = None
    if spec.store is not None:
        assert read_M is not None, "a stored mask needs a BlockIO that reads it"
        stored = np.asarray(read_M(lo, hi))
        if stored.dtype != bool or not bool(stored.all()):
            entries = stored
    # The level of a frame is that of the entries the user mask keeps.
    if entries is not None and spec.silence_db is not None:
        V = np.where(entries > 0, V, V.dtype.type(0))
    frames = frame_weights(spec, V, idx)
    band = band_weights(spec, V.shape[0], idx) if spec.bandwidth else None
    if band is not None:
        entries = band if entries is None else entries * band
    if spec.holdout is not None:
        held = spec.holdout.held(V.shape[0], idx)
        part = held if spec.heldout else ~held
        entries = part if entries is None else entries * part
    elif spec.heldout:
        entries = np.zeros(V.shape, dtype=bool)
    if entries is not None:
        if entries.dtype == bool:
            if bool(entries.all()):
                entries = None
        elif bool(np.all(entries == 1)):
            entries = None
    if frames is None and entries is None:
        return None
    return BlockMask(frames=frames, entries=entries)


def mask_counts(mask: BlockMask | None, n_bins: int, n: int) -> tuple[float, float]:
    """(entries removed, total weight removed) of one block's mask: weight ``1 - M``."""
    if mask is None:
        return 0.0, 0.0
    M = mask.dense(n_bins, np.float64)
    return float(np.count_nonzero(M == 0)), float(np.sum(1.0 - M))


def source_counts(spec: MaskSpec, V: np.ndarray, lo: int, read_M: Any = None) -> dict[str, float]:
    """Entries of the frames ``[lo, lo + n)`` each source removes (weight 0), and all together.

    Keys: ``store``, ``silence``, ``boundaries``, ``clipped``, ``bandwidth``,
    ``holdout`` (those the spec has), ``all`` (the union: entries no source keeps)
    and ``entries``.
    """
    hi = lo + V.shape[1]
    one = MaskSpec(power=spec.power)
    parts = {
        "store": replace(one, store=spec.store) if spec.store else None,
        "silence": replace(one, silence_db=spec.silence_db)
        if spec.silence_db is not None
        else None,
        "boundaries": replace(one, file_starts=spec.file_starts, boundary=spec.boundary)
        if spec.boundary and spec.file_starts
        else None,
        "clipped": replace(one, corpus=spec.corpus, clipped=True) if spec.clipped else None,
        "bandwidth": replace(one, corpus=spec.corpus, bandwidth=True) if spec.bandwidth else None,
        "holdout": replace(one, holdout=spec.holdout) if spec.holdout else None,
    }
    out: dict[str, float] = {}
    for name, part in parts.items():
        if part is not None:
            out[name] = mask_counts(block_mask(part, V, lo, hi, read_M), V.shape[0], V.shape[1])[0]
    out["all"] = mask_counts(block_mask(spec.training(), V, lo, hi, read_M), *V.shape)[0]
    out["entries"] = float(V.size)
    return out


def spec_of(
    cfg: Any, *, power: float = 1.0, file_starts: Any = (), store: str | None = None,
    corpus: str | None = None,
) -> MaskSpec | None:  # fmt: skip
    """The mask of a run with :class:`~dnmf.nmf.config.LearnConfig` ``cfg`` (None: unmasked).

    ``power`` is the corpus spectrogram's exponent, ``file_starts`` the first
    frame of every file with frames (in frame order), ``store`` the user mask's
    URL (default ``cfg.mask_store``), ``corpus`` the corpus store's (for
    ``mask_clipped`` and ``mask_above_bandwidth``).
    """
    if not cfg.masked:
        return None
    starts = tuple(int(s) for s in sorted(file_starts) if int(s) > 0)
    return MaskSpec(
        store=store if store is not None else cfg.mask_store,
        silence_db=cfg.mask_silence,
        power=float(power),
        file_starts=starts if cfg.mask_boundaries and cfg.lags > 1 else (),
        boundary=cfg.lags - 1 if cfg.mask_boundaries else 0,
        holdout=Holdout(share=cfg.holdout, seed=cfg.seed) if cfg.holdout > 0 else None,
        corpus=corpus if cfg.mask_clipped or cfg.mask_above_bandwidth else None,
        clipped=cfg.mask_clipped,
        bandwidth=cfg.mask_above_bandwidth,
    )
