"""The export stage: the activations of every corpus frame under a learned dictionary.

plan     compare the activations store's attrs with the model and corpus: a new
         dictionary means everything, appended corpus files mean the chunks
         from the old end on, nothing new means nothing (pure).
setup    create the store (or resize it) with ``H`` chunked like the corpus ``V``.
run      one task per corpus chunk (on the backend) solves its activations with
         ``W`` fixed, by the solver of transform and separate (the model's penalties
         on H included, and the masks it was learned with: masked entries do not
         pull H), and writes that chunk of ``H``, ``time`` and ``file_index``.
commit   the file table and the attrs (model and corpus fingerprints, extent).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from dnmf.cluster import check_compute_options
from dnmf.errors import StoreMismatchError
from dnmf.io.activations import create_frame_arrays, write_file_table
from dnmf.io.corpus import CorpusStore
from dnmf.io.dictionary import dictionary_fingerprint
from dnmf.io.model import ModelStore
from dnmf.io.records import update_records
from dnmf.io.store import array, consolidate, open_group, read_meta, write_meta

if TYPE_CHECKING:
    from distributed import Client

    from dnmf.nmf.config import LearnConfig
    from dnmf.nmf.mask import MaskSpec

__all__ = [
    "ExportResult",
    "export",
    "export_mask",
    "export_settings",
    "mask_settings",
    "plan_export",
]

KIND = "activations"
#: The file table of an export: the corpus's own columns that select a file's frames.
TABLE = {"file": str, "first_frame": "int64", "n_frames": "int64", "status": str}


def export_chunk(
    start: int, corpus: str, store: str, W: np.ndarray, *, chunk_frames: int, n_frames: int,
    beta: float, n_iter: int, tol: float, l1_reg: float, l2_reg: float, solver: str = "mu",
    mask: MaskSpec | None = None,
) -> tuple[int, float, int, dict[str, dict[str, Any]]]:  # fmt: skip
    """The task of one corpus chunk: solve its activations (the halo of an exact solve
    read around it when the model has several lags, every chunk of V read checked
    against the corpus's records; the window's weights built from ``mask`` here) and
    write that chunk of ``H``, ``time`` and ``file_index`` whole; returns their chunk
    records too."""
    from dnmf.io.blocks import ZarrBlockIO, read_checked
    from dnmf.io.records import chunk_record
    from dnmf.nmf.mask import block_mask
    from dnmf.nmf.solver import solve_block

    stop = min(start + chunk_frames, n_frames)
    W = np.array(W, order="C", copy=True)  # aligned, as in the learner's tasks
    io = ZarrBlockIO(f"{corpus}/V", "", (mask.store or "") if mask is not None else "")

    def weights(V: np.ndarray, lo: int, hi: int) -> np.ndarray | None:
        bm = block_mask(mask, V, lo, hi, io.read_M)
        return None if bm is None else bm.dense(V.shape[0], V.dtype)

    H, loss, iters = solve_block(
        lambda lo, hi: read_checked(f"{corpus}/V", lo, hi), start, stop, n_frames, W,
        beta=beta, n_iter=n_iter, tol=tol, l1_reg=l1_reg, l2_reg=l2_reg, solver=solver,
        weights=None if mask is None else weights,
    )  # fmt: skip
    dst = zarr.open_group(store, mode="r+", zarr_format=3, use_consolidated=False)
    written = {
        "H": np.ascontiguousarray(H, dtype=np.float32),
        "time": read_checked(f"{corpus}/time", start, stop),
        "file_index": read_checked(f"{corpus}/file_index", start, stop),
    }
    array(dst, "H")[:, start:stop] = written["H"]
    for name in ("time", "file_index"):
        array(dst, name)[start:stop] = written[name]
    return start, loss, iters, {name: chunk_record(v) for name, v in written.items()}


def export_settings(n_iter: int, tol: float, mask: dict[str, Any] | None = None) -> dict[str, Any]:
    """The solver settings an activations store records; a change means a full export.

    ``mask`` is :func:`mask_settings` of the model (an unmasked export records none,
    so stores written before masks existed stay up to date)."""
    settings: dict[str, Any] = {"iter": n_iter, "tol": tol, "start": "frame"}
    if mask is not None:
        settings["mask"] = mask
    return settings


def mask_settings(cfg: LearnConfig) -> dict[str, Any] | None:
    """The mask sources of model config ``cfg`` that an export applies (None: none).

    These are the masks of the data (a user mask store, silence, file boundaries,
    clipping, bandwidth); the rank search's held-out tiles are not: every entry a
    model can see is used. Clipping and bandwidth are recorded only where they are
    on, so the settings of an export written before they existed stay the same."""
    masks = cfg.model_copy(update={"holdout": 0.0})
    if not masks.masked:
        return None
    return {
        "store": masks.mask_store,
        "silence_db": masks.mask_silence,
        "boundaries": bool(masks.mask_boundaries and masks.lags > 1),
        **({"clipped": True} if masks.mask_clipped else {}),
        **({"above_bandwidth": True} if masks.mask_above_bandwidth else {}),
    }


def export_mask(cfg: LearnConfig, corpus: CorpusStore) -> MaskSpec | None:
    """The :class:`~dnmf.nmf.mask.MaskSpec` of :func:`mask_settings` on ``corpus``."""
    from pipelines.learn import corpus_mask

    if mask_settings(cfg) is None:
        return None
    return corpus_mask(cfg.model_copy(update={"holdout": 0.0}), corpus)  # type: ignore[no-any-return]


def plan_export(
    meta: dict[str, Any] | None, *, model_fp: str, settings: dict[str, Any], corpus_frames: int,
    chunk_frames: int, keep_existing: bool = False,
) -> tuple[int, str]:  # fmt: skip
    """First frame to export and why (pure). ``corpus_frames`` means nothing to do.

    ``keep_existing`` keeps the frames already exported although the dictionary
    changed (``dnmf run`` decides that a refined dictionary moved too little).
    """
    if meta is None:
        return 0, "new store"
    if meta.get("model_fingerprint") != model_fp and not keep_existing:
        return 0, "the dictionary changed"
    if meta.get("settings") != settings:
        return 0, "the solver settings changed"
    done = int(meta.get("n_frames", 0))
    if done >= corpus_frames:
        return corpus_frames, "nothing new"
    return (done // chunk_frames) * chunk_frames, "new corpus frames"


@dataclass
class ExportResult:
    store: str
    model: str
    corpus: str
    reason: str = ""
    frames_exported: int = 0
    chunks: int = 0
    loss: float = 0.0
    wall_seconds: float = 0.0
    cluster_seconds: float = 0.0
    nothing_new: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def export(
    model_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    n_iter: int = 200,
    tol: float = 1e-4,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Client | None = None,
    progress: bool = False,
    keep_existing: bool = False,
    masks: bool = True,
) -> ExportResult:
    """Solve and store the activations of every frame of the model's corpus.

    Parameters
    ----------
    model_path : path
        A model store written by ``dnmf learn``.
    output : path, optional
        The activations store (default: ``activations.zarr`` beside the model).
    n_iter, tol :
        Multiplicative updates per chunk and the stopping tolerance.
    keep_existing : bool
        Export only frames not exported yet even if the dictionary changed.
    masks : bool
        Apply the masks the model was learned with (:func:`mask_settings`): masked
        entries do not pull H, and the loss counts only what they keep. False
        solves every frame from all of its entries.

    Returns
    -------
    ExportResult
    """
    from dnmf.errors import DnmfUsageError

    check_compute_options(workers, scheduler)
    if n_iter < 1:
        raise DnmfUsageError(f"iter={n_iter} must be at least 1")
    if tol < 0:
        raise DnmfUsageError(f"tol={tol} must not be negative")
    t0 = time.perf_counter()
    model = ModelStore.open(model_path)
    corpus_path = model.meta["corpus"]["path"]
    try:
        corpus = CorpusStore.open(corpus_path)
    except FileNotFoundError:
        raise StoreMismatchError(
            f"the corpus {corpus_path!r} of model {str(model_path)!r} is gone; "
            "move it back or learn the model again"
        ) from None
    if corpus.meta["features"] != model.meta["corpus"]["features"]:
        raise StoreMismatchError(
            f"corpus {corpus_path!r} now has other feature settings than model "
            f"{str(model_path)!r} was learned on; learn the model again"
        )
    store = Path(output) if output is not None else Path(model_path).parent / "activations.zarr"
    corpus.check_values(corpus.v_records(say=_say))
    W = model.templates
    beta = model.config.beta
    mask = export_mask(model.config, corpus) if masks else None
    settings = export_settings(n_iter, tol, mask_settings(model.config) if masks else None)
    model_fp = dictionary_fingerprint(W)
    meta = None
    if (store / "zarr.json").exists():
        meta = read_meta(open_group(store), KIND, store)
    start, reason = plan_export(
        meta, model_fp=model_fp, settings=settings, corpus_frames=corpus.n_frames,
        chunk_frames=corpus.chunk_frames, keep_existing=keep_existing,
    )  # fmt: skip
    result = ExportResult(str(store), str(model_path), corpus_path, reason=reason)
    if start >= corpus.n_frames:
        result.nothing_new = True
        result.wall_seconds = time.perf_counter() - t0
        return result
    rank = W.shape[1]
    if start == 0:
        _create(store, corpus, rank)
    group = zarr.open_group(str(store), mode="r+", zarr_format=3, use_consolidated=False)
    for name in ("time", "file_index"):
        array(group, name).resize((corpus.n_frames,))
    array(group, "H").resize((rank, corpus.n_frames))
    starts = list(range(start, corpus.n_frames, corpus.chunk_frames))
    _, _, l1_H, l2_H = model.config.penalties(corpus.features.n_bins, 1)

    from dnmf.backends import DaskBackend
    from dnmf.cluster import connect
    from dnmf.progress import reporter

    src, dst = str(Path(corpus_path).resolve()), str(store.resolve())
    t_cluster = time.perf_counter()
    with connect(workers, scheduler, client=client, progress=progress, audio=False) as c:
        result.cluster_seconds = 0.0 if client is not None else time.perf_counter() - t_cluster
        backend = DaskBackend(
            c, f"{src}/V", block_frames=corpus.chunk_frames, n_frames=corpus.n_frames
        )
        with reporter("export", len(starts), enabled=progress, fields="chunks") as bar:
            fresh: dict[str, dict[int, dict[str, Any]]] = {}

            def done(out: tuple[int, float, int, dict[str, Any]]) -> None:
                result.loss += out[1]
                for name, rec in out[3].items():
                    fresh.setdefault(name, {})[out[0] // corpus.chunk_frames] = rec
                bar.update(advance=1)

            backend.map_blocks(
                export_chunk, starts, src, dst, W, tag=f"export-{model_fp[:8]}", progress=done,
                chunk_frames=corpus.chunk_frames, n_frames=corpus.n_frames, beta=beta,
                n_iter=n_iter, tol=tol, l1_reg=l1_H, l2_reg=l2_H, solver=model.config.solver,
                mask=mask,
            )  # fmt: skip
    files = corpus.files()
    write_file_table(group, [{name: getattr(r, name) for name in TABLE} for r in files], TABLE)
    update_records(
        group, ["H", "time", "file_index", *TABLE], fresh=fresh,
        keep_below=dict.fromkeys(("H", "time", "file_index"), start // corpus.chunk_frames),
    )  # fmt: skip
    write_meta(
        group,
        {
            "kind": KIND,
            "model": str(Path(model_path).resolve()),
            "model_fingerprint": model_fp,
            "corpus": str(Path(corpus_path).resolve()),
            "corpus_fingerprint": corpus.fingerprint(),
            "beta": beta,
            "settings": settings,
            "n_frames": corpus.n_frames,
            "chunk_frames": corpus.chunk_frames,
        },
    )
    consolidate(store)
    result.frames_exported = corpus.n_frames - start
    result.chunks = len(starts)
    result.wall_seconds = time.perf_counter() - t0
    return result


def _say(line: str) -> None:
    import sys

    print(line, file=sys.stderr)


def _create(store: Path, corpus: CorpusStore, rank: int) -> None:
    store.parent.mkdir(parents=True, exist_ok=True)
    g = zarr.open_group(str(store), mode="w", zarr_format=3)
    create_frame_arrays(g, rank, 0, corpus.chunk_frames)
    write_file_table(g, [], TABLE)
    write_meta(g, {"kind": KIND, "n_frames": 0})
