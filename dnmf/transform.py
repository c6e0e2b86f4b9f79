"""Activations of audio files outside the corpus, under a learned dictionary.

A file is decoded, mixed to mono, resampled and turned into ``V`` exactly as
ingest does (:class:`dnmf.audio.features.SignalReader` and
:func:`dnmf.audio.features.block_frames` with the model's corpus
:class:`~dnmf.audio.features.FeatureConfig`), then ``H`` is solved with ``W`` fixed
by the one H solver of learning and export (:mod:`dnmf.nmf.solver`: the
model's β and penalties on H, every frame started from its own level).

A long file is solved in blocks of ``block_frames`` frames (each reading the
halo of an exact solve when the model has several lags), so memory stays
bounded by the block. With ``tol=0`` (a fixed number of updates) the result
does not depend on the block size; with ``tol > 0`` each block stops on its own.

:func:`transform_files` writes an activations store laid out as the corpus
store (Zarr format 3, DESIGN.md section 2), so the same selection code works::

    transform.zarr/
      H            (component, frame)  float32, chunks (rank, chunk_frames)
      time         (frame,)            float64, seconds within the frame's file
      file_index   (frame,)            int32, row of the frame's file in the file table
      file         (file,)             str, the audio path as given (the index)
      first_frame, n_frames, status, content_hash, samplerate, channels,
      n_samples, duration, loss, n_iter                        (file,)
      attrs["dnmf"] = {kind: "activations", source: "transform", model,
                       model_fingerprint, beta, settings, features, n_files,
                       n_frames, chunk_frames, ...}

Examples
--------
>>> import xarray as xr  # doctest: +SKIP
>>> transform_files("model.zarr", ["take1.wav", "take2.flac"], "takes.zarr")  # doctest: +SKIP
>>> ds = xr.open_zarr("takes.zarr")  # doctest: +SKIP
>>> row = ds.sel(file="take2.flac")  # doctest: +SKIP
>>> H = ds.H[:, int(row.first_frame) : int(row.first_frame + row.n_frames)]  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from dnmf.audio.decode import Probe
from dnmf.audio.features import FeatureConfig, SignalReader, n_frames_for, n_output_samples
from dnmf.errors import DnmfPathError, DnmfUsageError, StoreFormatError
from dnmf.io.dictionary import Dictionary, ModelLike, load_dictionary
from dnmf.io.store import StorePath

__all__ = [
    "BLOCK_FRAMES",
    "FileActivations",
    "TransformResult",
    "activations_for_file",
    "check_solver",
    "expand_audio_paths",
    "open_audio",
    "solve_in_blocks",
    "transform_files",
]

#: Frames solved at once (the corpus's default chunk: about 33 MB of V at n_fft=2048).
BLOCK_FRAMES = 8192


# --------------------------------------------------------------------------- one file


@dataclass(frozen=True)
class FileActivations:
    """What :func:`activations_for_file` found out about a file besides its activations.

    Attributes
    ----------
    path : str
        The audio file.
    content_hash : str
        BLAKE2b-128 of its bytes.
    samplerate, channels, n_samples : int
        The file's own rate, channel count and length (at its rate).
    n_frames : int
        Frames at the model's settings.
    features : FeatureConfig
        The settings the frames were computed with (the model's corpus).
    loss : float
        β-divergence of the file's frames under ``W H``.
    n_iter : int
        The most updates any block ran.
    """

    path: str
    content_hash: str
    samplerate: int
    channels: int
    n_samples: int
    n_frames: int
    features: FeatureConfig
    loss: float
    n_iter: int

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.n_samples / self.samplerate

    @property
    def times(self) -> np.ndarray:
        """Start of each frame in seconds within the file, as the corpus's ``time``."""
        cfg = self.features
        return np.arange(self.n_frames) * (cfg.hop_length / cfg.sr)


def open_audio(path: StorePath, features: FeatureConfig) -> tuple[Probe, SignalReader, int]:
    """Probe an audio file and make the reader ingest would use for it.

    Returns
    -------
    probe : Probe
        What a full decode found.
    reader : SignalReader
        Mono samples at ``features.sr``, resampled as a whole.
    n_frames : int
        Frames at `features`.

    Raises
    ------
    DnmfPathError
        If `path` does not exist or is a folder.
    DnmfUsageError
        If the file cannot be used: empty, not audio, truncated, NaN, silent, or
        shorter than one frame at the model's settings.
    """
    from dnmf.audio.decode import decoder, probe

    p = Path(path)
    if not p.exists():
        raise DnmfPathError(f"audio file {str(path)!r} does not exist; check the path")
    if p.is_dir():
        raise DnmfPathError(f"{str(path)!r} is a folder; pass an audio file")
    found = probe(p)
    if found.error:
        raise DnmfUsageError(
            f"audio file {str(path)!r} cannot be used ({found.error}); pass a readable, "
            "non-silent audio file (wav, flac, ogg, mp3, aiff, ...)"
        )
    n_out = n_output_samples(found.n_samples, found.samplerate, features.sr)
    n_frames = n_frames_for(n_out, features)
    if n_frames == 0:
        raise DnmfUsageError(
            f"audio file {str(path)!r} is shorter than one frame at the model's settings "
            f"(n_fft={features.n_fft} samples at sr={features.sr}); pass a longer file"
        )
    reader = SignalReader(decoder(p), found.n_samples, found.samplerate, features)
    return found, reader, n_frames


def check_solver(n_iter: int, tol: float) -> None:
    """Refuse an update count below 1 or a negative or non-finite tolerance."""
    if isinstance(n_iter, bool) or not isinstance(n_iter, int | np.integer) or n_iter < 1:
        raise DnmfUsageError(f"iter={n_iter!r} must be a positive integer, e.g. 200")
    if not (isinstance(tol, int | float) and math.isfinite(tol) and tol >= 0):
        raise DnmfUsageError(f"tol={tol!r} must be a finite number >= 0, e.g. 1e-4 (0 runs --iter)")


def solve_in_blocks(
    frames: Any, n_frames: int, d: Dictionary, *, n_iter: int, tol: float, block: int
) -> Iterator[tuple[int, int, np.ndarray, float, int]]:
    """Solve one file's activations block by block, yielding ``(f0, f1, H_block, loss, n_iter)``.

    ``frames(f0, f1)`` returns ``V[:, f0:f1]``; each block reads the window of
    an exact solve (:func:`dnmf.nmf.solver.window_of`). A model learned with
    ``mask_silence`` masks the file's frames below that level here too.
    """
    from dnmf.nmf.mask import block_mask
    from dnmf.nmf.plan import blocks_of
    from dnmf.nmf.solver import solve_block

    if block < 1:
        raise DnmfUsageError(f"block_frames={block} must be a positive integer, e.g. 8192")
    spec = d.mask()

    def weights(V: np.ndarray, lo: int, hi: int) -> np.ndarray | None:
        bm = block_mask(spec, V, lo, hi)
        return None if bm is None else bm.dense(V.shape[0], V.dtype)

    for a, b in blocks_of(n_frames, block):
        H, loss, done = solve_block(
            frames, a, b, n_frames, d.W, beta=d.beta, n_iter=n_iter, tol=tol, l1_reg=d.l1_reg,
            l2_reg=d.l2_reg, solver=d.solver, weights=None if spec is None else weights,
        )  # fmt: skip
        yield a, b, H, loss, done


def _file_blocks(
    opened: tuple[Probe, SignalReader, int],
    d: Dictionary,
    *,
    n_iter: int,
    tol: float,
    block: int,
) -> Iterator[tuple[int, int, np.ndarray, float, int]]:
    from dnmf.audio.features import block_frames

    _, reader, n_frames = opened

    def frames(a: int, b: int) -> np.ndarray:
        return np.ascontiguousarray(block_frames(reader, a, b))

    return solve_in_blocks(frames, n_frames, d, n_iter=n_iter, tol=tol, block=block)


def activations_for_file(
    model: ModelLike | Dictionary,
    path: StorePath,
    *,
    n_iter: int = 200,
    tol: float = 1e-4,
    block_frames: int = BLOCK_FRAMES,
) -> tuple[np.ndarray, FileActivations]:
    """The activations of one audio file under a model's dictionary.

    The file is decoded, mixed to mono, resampled and turned into frames
    exactly as ``dnmf ingest`` does with the model's corpus settings, then
    ``H`` is solved with ``W`` fixed (:func:`dnmf.nmf.solver.solve_window`, β and
    the penalties on H of the model), `block_frames` frames at a time.

    Parameters
    ----------
    model : ModelStore or path
        A model store written by ``dnmf learn``.
    path : path
        The audio file.
    n_iter : int, default=200
        Most multiplicative updates per block.
    tol : float, default=1e-4
        Stop a block when its loss fell by less than this, relative to its
        loss at the start, over 10 updates; 0 runs `n_iter` updates.
    block_frames : int, default=8192
        Frames solved at once (bounds the memory).

    Returns
    -------
    H : ndarray of shape (n_components, n_frames), float32
        The activations.
    info : FileActivations
        The file's rate, channels, length, frames, loss and updates run.

    Raises
    ------
    DnmfError
        If the model store or the file cannot be used (one sentence, exit code 2).

    Examples
    --------
    >>> H, info = activations_for_file("model.zarr", "take.wav")  # doctest: +SKIP
    >>> H.shape == (info.n_frames and H.shape[0], info.n_frames)  # doctest: +SKIP
    True
    """
    check_solver(n_iter, tol)
    d = load_dictionary(model)
    opened = open_audio(path, d.features)
    found, _, n_frames = opened
    H = np.empty((d.rank, n_frames), dtype=np.float32)
    loss, most = 0.0, 0
    for a, b, H_b, loss_b, done in _file_blocks(
        opened, d, n_iter=n_iter, tol=tol, block=block_frames
    ):
        H[:, a:b] = H_b
        loss += loss_b
        most = max(most, done)
    info = FileActivations(
        path=str(path), content_hash=found.content_hash, samplerate=found.samplerate,
        channels=found.channels, n_samples=found.n_samples, n_frames=n_frames,
        features=d.features, loss=loss, n_iter=most,
    )  # fmt: skip
    return H, info


# --------------------------------------------------------------------------- many files → a store


@dataclass
class TransformResult:
    """What :func:`transform_files` did."""

    store: str
    model: str
    files: list[dict[str, Any]] = field(default_factory=list)
    n_frames: int = 0
    sr: int = 0  # the model's sample rate, to which every file was resampled
    loss: float = 0.0
    wall_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def expand_audio_paths(paths: Sequence[StorePath]) -> list[str]:
    """The audio files named by `paths`, folders searched recursively (as ingest does).

    Raises
    ------
    DnmfUsageError
        If no file is given, or a file is named twice.
    """
    from dnmf.audio.decode import scan

    out: list[str] = []
    for p in paths:
        if Path(p).is_dir():
            found = scan(p)
            if not found:
                raise DnmfPathError(
                    f"no audio files under {str(p)!r}; pass audio files or a folder that holds some"
                )
            out.extend((Path(p) / f.path).as_posix() for f in found)
        else:
            out.append(Path(p).as_posix())
    if not out:
        raise DnmfUsageError("no audio files given; pass one or more audio files")
    seen: dict[str, str] = {}
    for name in out:
        key = os.path.realpath(name)
        if key in seen:
            raise DnmfUsageError(
                f"audio file {name!r} is given twice (also as {seen[key]!r}); pass each file once"
            )
        seen[key] = name
    return out


def _prepare_output(store: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an activations store, and that only with `overwrite`."""
    if not store.exists():
        return
    if not overwrite:
        raise DnmfUsageError(
            f"output store {str(store)!r} exists; pass --overwrite to replace it or -o for "
            "another path"
        )
    from dnmf.io.store import open_group, read_meta

    if store.is_dir() and not any(store.iterdir()):
        return
    try:
        read_meta(open_group(store), "activations", store)
    except (StoreFormatError, DnmfPathError):
        raise DnmfUsageError(
            f"{str(store)!r} exists and is not an activations store, so --overwrite will not "
            "replace it; pass -o with another path"
        ) from None
    shutil.rmtree(store)


def transform_files(
    model_path: ModelLike,
    audio_paths: Sequence[StorePath],
    output_store: StorePath,
    *,
    n_iter: int = 200,
    tol: float = 1e-4,
    block_frames: int = BLOCK_FRAMES,
    chunk_frames: int = BLOCK_FRAMES,
    overwrite: bool = False,
    progress: bool = False,
) -> TransformResult:
    """Solve the activations of audio files under a model and write an activations store.

    Every file is checked first (nothing is written if one cannot be used),
    then the store is set up with all frames, then each file is solved
    block by block (:func:`activations_for_file`) and its frames written;
    the file table and the attrs come last and the metadata is consolidated.
    Files are packed back to back in the order given, as in a corpus store.

    Parameters
    ----------
    model_path : ModelStore or path
        A model store written by ``dnmf learn``.
    audio_paths : sequence of path
        Audio files; a folder stands for every audio file under it.
    output_store : path
        The activations store to write.
    n_iter, tol, block_frames :
        As in :func:`activations_for_file`.
    chunk_frames : int, default=8192
        Frames per Zarr chunk of ``H``.
    overwrite : bool, default=False
        Replace an existing activations store at `output_store`.
    progress : bool, default=False
        A line on stderr once the model and paths are checked, then a progress bar.

    Returns
    -------
    TransformResult

    Raises
    ------
    DnmfError
        A bad model, audio file or option (one sentence, exit code 2).

    Examples
    --------
    >>> r = transform_files("model.zarr", ["take.wav"], "take.zarr")  # doctest: +SKIP
    >>> import xarray as xr; xr.open_zarr("take.zarr").H.dims  # doctest: +SKIP
    ('component', 'frame')
    """
    import time

    import zarr

    from dnmf.io.activations import create_frame_arrays, write_file_table
    from dnmf.io.store import array, consolidate, write_meta
    from dnmf.progress import reporter

    t0 = time.perf_counter()
    check_solver(n_iter, tol)
    if chunk_frames < 1:
        raise DnmfUsageError(f"chunk_frames={chunk_frames} must be a positive integer, e.g. 8192")
    d = load_dictionary(model_path)
    names = expand_audio_paths(audio_paths)
    store = Path(output_store)
    _prepare_output(store, overwrite)
    if progress:  # the model and the paths are checked; decoding the files takes the time
        from dnmf.progress import announce
        from dnmf.words import count

        announce(f"transforming {count(len(names), 'file')} under {d.path}...")
    opened = [open_audio(name, d.features) for name in names]  # check them all first
    firsts = np.cumsum([0] + [n for _, _, n in opened]).tolist()
    total = int(firsts[-1])

    # setup: metadata and empty arrays
    store.parent.mkdir(parents=True, exist_ok=True)
    g = zarr.open_group(str(store), mode="w", zarr_format=3)
    cf = int(chunk_frames)
    create_frame_arrays(g, d.rank, total, cf)
    H_arr, time_arr, index_arr = array(g, "H"), array(g, "time"), array(g, "file_index")
    meta: dict[str, Any] = {
        "kind": "activations",
        "source": "transform",
        "status": "running",
        "model": str(Path(d.path).resolve()),
        "model_fingerprint": d.fingerprint,
        "model_corpus_fingerprint": d.meta["corpus"]["fingerprint"],
        "beta": d.beta,
        "settings": {"iter": n_iter, "tol": tol, "block_frames": block_frames},
        "features": d.features.as_attrs(),
        "chunk_frames": cf,
        "n_files": len(names),
        "n_frames": total,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    write_meta(g, meta)

    result = TransformResult(store=str(store), model=d.path, sr=d.features.sr)
    rows: list[dict[str, Any]] = []
    with reporter("transform", len(names), enabled=progress, fields="files") as bar:
        for row, (name, one) in enumerate(zip(names, opened, strict=True)):
            found, _, n_frames = one
            first = int(firsts[row])
            blocks = _file_blocks(one, d, n_iter=n_iter, tol=tol, block=block_frames)
            loss, most = 0.0, 0
            for a, b, H_b, loss_b, done in blocks:
                H_arr[:, first + a : first + b] = H_b
                loss += loss_b
                most = max(most, done)
            cfg = d.features
            time_arr[first : first + n_frames] = np.arange(n_frames) * (cfg.hop_length / cfg.sr)
            index_arr[first : first + n_frames] = np.full(n_frames, row, dtype=np.int32)
            rows.append(
                {
                    "file": name, "first_frame": first, "n_frames": n_frames, "status": "ok",
                    "content_hash": found.content_hash, "samplerate": found.samplerate,
                    "channels": found.channels, "n_samples": found.n_samples,
                    "duration": found.duration, "loss": loss, "n_iter": most,
                }
            )  # fmt: skip
            result.loss += loss
            bar.update(advance=1)

    # commit: the file table, then the attrs that make the store whole
    columns: dict[str, Any] = {
        "file": str, "first_frame": "int64", "n_frames": "int64", "status": str,
        "content_hash": str, "samplerate": "int64", "channels": "int32", "n_samples": "int64",
        "duration": "float64", "loss": "float64", "n_iter": "int64",
    }  # fmt: skip
    write_file_table(g, rows, columns)
    meta.update(status="done", finished=datetime.now(UTC).isoformat(timespec="seconds"))
    write_meta(g, meta)
    consolidate(store)
    result.files = rows
    result.n_frames = total
    result.wall_seconds = time.perf_counter() - t0
    return result
