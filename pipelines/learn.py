"""The learn stage: a corpus store (or an audio folder) becomes a model store.

plan     the corpus is checked and, for an audio folder, ingested first; the
         blocks and the steps of every epoch follow from the config (pure).
setup    the model store is created (or opened to resume).
run      one task per block per step on the cluster (:mod:`dnmf.backends`), each
         reading its block's halo when lags > 1,
         a checkpoint every few steps and at every epoch's end.
commit   the final W, loss history and status go into the store's attrs.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dnmf.cluster import check_compute_options
from dnmf.errors import (
    DnmfError,
    DnmfPathError,
    DnmfUsageError,
    StoreDamagedError,
    StoreFormatError,
)
from dnmf.nmf.config import LearnConfig

if TYPE_CHECKING:  # the stores (Zarr) and the learner are imported where they are used:
    # ``dnmf learn FOLDER`` says that it starts a cluster before importing them.
    from distributed import Client

    from dnmf.io.corpus import CorpusStore
    from dnmf.io.model import ModelStore
    from dnmf.nmf.init import Informed
    from dnmf.nmf.learner import Progress
    from dnmf.nmf.state import LearnState

__all__ = ["LearnResult", "learn_corpus", "resolve_corpus"]


@dataclass
class LearnResult:
    """What one learn run did; ``as_dict`` is the ``--json`` summary."""

    model: str
    corpus: str
    epochs: int = 0
    passes: float = 0.0
    """Passes over the corpus (``--epochs`` counts these): an epoch on a sample of the
    chunks (the fast schedule's start) counts as its share."""
    steps: int = 0
    loss: float | None = None
    losses: list[float] = field(default_factory=list)
    converged: bool = False
    resumed_from_step: int | None = None
    wall_seconds: float = 0.0
    cluster_seconds: float = 0.0
    """Of ``wall_seconds``, the time it took to start (or join) the cluster."""
    frames_per_second: float = 0.0
    workers: int = 0
    dashboard: str | None = None
    ingest: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_corpus(
    input_path: str | os.PathLike[str], *, workers: int | None, scheduler: str | None,
    client: Client | None, progress: bool,
) -> tuple[Path, dict[str, Any] | None]:  # fmt: skip
    """The corpus store for INPUT: itself, or an audio folder ingested with default features."""
    path = Path(input_path)
    if (path / "zarr.json").exists():
        return path, None
    if not path.exists():
        raise DnmfPathError(
            f"{str(input_path)!r} does not exist; pass a corpus store or a folder of audio"
        )
    if not path.is_dir():
        raise DnmfPathError(
            f"{str(input_path)!r} is neither a corpus store nor a folder of audio; pass one"
        )
    from pipelines.ingest import default_store, ingest

    store = default_store(path)
    result = ingest(
        path, store, workers=workers, scheduler=scheduler, client=client, progress=progress
    )
    return store, result.as_dict()


def _is_audio_folder(input_path: str | os.PathLike[str]) -> bool:
    """Whether INPUT is a folder to ingest first (see :func:`resolve_corpus`), not a store."""
    path = Path(input_path)
    return path.is_dir() and not (path / "zarr.json").exists()


def learn_corpus(
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    config: LearnConfig,
    W_init: np.ndarray | None = None,
    resume: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Client | None = None,
    progress: bool = False,
    on_step: Any = None,
) -> LearnResult:
    """Learn templates from a corpus store (or an audio folder, ingested first).

    Parameters
    ----------
    input_path : path
        A corpus store, or a folder of audio ingested into ``./<dirname>.dnmf/``.
    output : path, optional
        The model store (default: ``model.zarr`` beside the corpus store).
    config : LearnConfig
        Any number of lags; the informed inits (pitched combs on the corpus's
        frequencies, drum samples with its feature settings, the score's notes
        on its frames) are read here.
    W_init : ndarray of shape (n_bins, rank) or (n_bins, rank, lags), optional
        The dictionary for ``init='custom'`` (a 2-D one is the same spectrum
        at every lag).
    resume : bool
        Continue the model store's last checkpoint; ends bitwise where an
        uninterrupted run ends.
    overwrite : bool
        Replace an existing model store.
    workers, scheduler, client :
        Where to compute (:func:`dnmf.cluster.connect`).
    progress : bool
        A progress bar on stderr.
    on_step : callable, optional
        Called with each step's :class:`~dnmf.nmf.learner.Progress`, after its
        checkpoint (an exception it raises stops the run there).

    Returns
    -------
    LearnResult
    """
    from dnmf.cluster import connect

    check_compute_options(workers, scheduler)
    if client is None and _is_audio_folder(input_path):  # one cluster for ingest and learning
        t_cluster = time.perf_counter()
        with connect(workers, scheduler, progress=progress) as shared:
            seconds = time.perf_counter() - t_cluster
            result = learn_corpus(
                input_path, output, config=config, W_init=W_init, resume=resume,
                overwrite=overwrite, client=shared, progress=progress, on_step=on_step,
            )  # fmt: skip
        result.cluster_seconds = seconds
        return result
    from dnmf.backends import DaskBackend
    from dnmf.io.model import ModelStore
    from dnmf.io.store import write_meta
    from dnmf.nmf.informed import prepare_informed
    from dnmf.nmf.init import h_init_of
    from dnmf.nmf.learner import check_config, start_state

    t0 = time.perf_counter()
    corpus_path, ingested = resolve_corpus(
        input_path, workers=workers, scheduler=scheduler, client=client, progress=progress
    )
    corpus, model_path, block_frames = open_for_learning(corpus_path, output, config.block_frames)
    informed = prepare_informed(config, corpus)
    check_config(config, corpus.features.n_bins, corpus.n_frames, informed)
    mask = corpus_mask(config, corpus)
    state: LearnState | None = None
    if resume:
        model = ModelStore.open(model_path, mode="r+")
        config = model.resume_config(config, corpus)
        state = model.load_checkpoint()
        model.meta["config"] = config.model_dump(mode="json")  # epochs may grow
    elif (model_path / "zarr.json").exists() and not overwrite:
        raise DnmfUsageError(
            f"model store {str(model_path)!r} exists; pass --resume to continue it, "
            "--overwrite to replace it, or -o for another path"
        )
    result = LearnResult(model=str(model_path), corpus=str(corpus_path), ingest=ingested)
    t_cluster = time.perf_counter()
    with connect(workers, scheduler, client=client, progress=progress, audio=False) as c:
        result.cluster_seconds = 0.0 if client is not None else time.perf_counter() - t_cluster
        result.workers = len(c.scheduler_info(n_workers=-1).get("workers", {}))
        result.dashboard = _dashboard(c)
        mean = None  # a masked run's mean and checks skip masked entries: a pass over V
        if state is None and not config.masked:  # checked and averaged from the records
            mean = corpus_mean(corpus, map=cluster_map(c))
        if not resume:
            model = ModelStore.create(model_path, config, corpus, block_frames=block_frames)
            _write_axes(model, config, corpus, informed)
        backend = DaskBackend(
            c, f"{corpus_path}/V", model.H_url, block_frames=block_frames,
            n_frames=corpus.n_frames, mask=mask,
        )  # fmt: skip
        if state is None:
            try:
                state = start_state(config, backend, informed=informed, W_init=W_init, mean=mean)
            except DnmfError:
                if not resume:  # the store was made for this run and holds nothing yet
                    shutil.rmtree(model_path, ignore_errors=True)
                raise
            meta = dict(model.meta)
            meta["v_mean"] = mean  # the corpus's mean entry, for the activations' start
            if backend.mask is not None:  # what each mask removes, for dnmf info
                meta["mask"] = count_masked(backend)
            write_meta(model.group, meta)
            model.meta = meta
        else:
            result.resumed_from_step = state.global_step
            check_buffers(model, state, config, backend)  # before anything is written
        h_init = h_init_of(config, informed)
        try:
            _run_learning(config, backend, model, result, state, h_init, progress, on_step, t0)
        except StoreDamagedError:
            if not resume:  # a damaged corpus chunk: the model learned from it is not kept
                shutil.rmtree(model_path, ignore_errors=True)
            raise
    return result


def _run_learning(
    config: LearnConfig, backend: Any, model: ModelStore, result: LearnResult, state: LearnState,
    h_init: Any, progress: bool, on_step: Any, t0: float,
) -> None:  # fmt: skip
    from dnmf.nmf.learner import learn, passes_kw, stage_kw
    from dnmf.nmf.plan import h_buffers, passes_done

    ranges, fast = backend.blocks(), h_buffers(config) == 3
    n_blocks, kw = len(ranges), stage_kw(config, ranges)
    run_epochs(
        lambda s, report: learn(
            config, backend, s, h_init=h_init, on_step=report, checkpoint=model.save_checkpoint
        ),
        state, model, result, epochs=config.epochs, progress=progress, on_step=on_step, t0=t0,
        passes=lambda e: passes_done(n_blocks, e, fast=fast, **passes_kw(kw)),
    )  # fmt: skip


#: Activation chunks checked per task by :func:`check_buffers`.
CHECK_BATCH = 64


def check_buffers(model: ModelStore, state: LearnState, config: LearnConfig, backend: Any) -> None:
    """Read and check, where they lie, every activation chunk the checkpoint ``state``
    refers to and has a record of (what the resumed run reads; :mod:`dnmf.io.buffers`),
    so that a damaged one stops ``--resume`` before its first step writes anything."""
    from uuid import uuid4

    from dnmf.io.buffers import check_chunks_task, damaged_error

    items = model.buffer_chunks(state, config)
    if not items:  # no records (a dnmf that kept none), or nothing visited yet
        return
    batches = [items[i : i + CHECK_BATCH] for i in range(0, len(items), CHECK_BATCH)]
    found = backend.map_blocks(check_chunks_task, batches, backend.H_url,
                               tag=f"check-H-{backend.token}-{uuid4().hex[:8]}")  # fmt: skip
    damaged = [sentence for part in found for sentence in part]
    if damaged:
        raise damaged_error(damaged)


def corpus_mean(corpus: CorpusStore, *, map: Any = None) -> float:
    """mean(V) over the committed frames, from the per-chunk records (no pass over V),
    after refusing NaN, infinite or negative values the records count.

    The chunk sums are added in the fixed tree of the learner's reductions, so with
    one block per chunk the mean is bitwise the one a pass over the blocks takes.
    """
    import sys

    from dnmf.nmf.plan import tree_sum

    rec = corpus.v_records(map=map, say=lambda line: print(line, file=sys.stderr))
    corpus.check_values(rec)
    assert rec.stats is not None
    n = -(-corpus.n_frames // corpus.chunk_frames)
    parts = [(float(rec.stats["sum"][j]), float(rec.count(j))) for j in range(n)]
    total, count = tree_sum(parts, lambda a, b: (a[0] + b[0], a[1] + b[1]))
    return float(total / max(count, 1.0))


def cluster_map(client: Client) -> Callable[[Any, list[Any]], list[Any]]:
    """``map(fn, items)`` as tasks on ``client`` (reading back chunk records where they lie)."""
    return lambda fn, items: list(client.gather(client.map(fn, items, pure=False)))


def corpus_mask(config: LearnConfig, corpus: CorpusStore) -> Any:
    """The :class:`dnmf.nmf.mask.MaskSpec` of a run on ``corpus`` (None: unmasked), its
    user mask store checked against V, the corpus checked to hold what the ingest
    records for the masks of clipping and bandwidth."""
    from dnmf.io.blocks import absolute
    from dnmf.nmf.mask import spec_of

    if not config.masked:
        return None
    if config.mask_store:
        check_mask_store(config.mask_store, corpus)
    for wanted, name, what in (
        (config.mask_clipped, "clipped", "--mask-clipped needs its per-frame clipping counts"),
        (config.mask_above_bandwidth, "bandwidth",
         "--mask-above-bandwidth needs its files' bandwidths"),
    ):  # fmt: skip
        if wanted and not corpus.has(name):
            raise StoreFormatError(
                f"corpus {corpus.path!r} was ingested by an older dnmf and {what}; re-ingest "
                "it with dnmf ingest --rebuild"
            )
    starts = [f.first_frame for f in corpus.files() if f.n_frames > 0]
    return spec_of(
        config, power=corpus.features.power, file_starts=starts, corpus=absolute(corpus.path)
    )


def count_masked(backend: Any) -> dict[str, float]:
    """Entries each mask source of a Dask backend's run removes, over the corpus."""
    from dnmf.backends import mask_count_task

    parts = backend.map_blocks(
        mask_count_task, backend.blocks(), backend.V_url, backend.mask,
        tag=f"mask-count-{backend.token}",
    )  # fmt: skip
    total: dict[str, float] = {}
    for part in parts:
        for key, value in part.items():
            total[key] = total.get(key, 0.0) + value
    return total


def check_mask_store(url: str, corpus: CorpusStore) -> None:
    """A user mask store must be a Zarr array of V's shape, chunked like V along frames."""
    from dnmf.io.blocks import open_array

    try:
        M = open_array(url)
    except Exception as exc:  # zarr raises several kinds
        raise DnmfUsageError(
            f"mask store {url!r} cannot be opened as a Zarr array ({exc}); pass the path of "
            "an array aligned with V, e.g. mask.zarr"
        ) from None
    shape = (corpus.features.n_bins, corpus.n_frames)
    if tuple(M.shape[:1]) != shape[:1] or M.shape[1] < shape[1]:
        raise DnmfUsageError(
            f"mask store {url!r} has shape {tuple(M.shape)}; it must be aligned with V, "
            f"shape {shape}"
        )
    if M.dtype.kind not in "buif":
        raise DnmfUsageError(f"mask store {url!r} has dtype {M.dtype}; pass bool or float weights")


def _write_axes(
    model: ModelStore, cfg: LearnConfig, corpus: CorpusStore, informed: Informed
) -> None:
    """Component names (informed inits) and lag times (lags > 1) beside W, as coordinates."""
    from dnmf.io.records import update_records
    from dnmf.io.store import read_meta, write_meta

    g = model.group
    coords = ["frequency"]
    meta = dict(model.meta)
    if informed.labels:
        labels = list(informed.labels) + [""] * (cfg.rank - len(informed.labels))
        lab = g.create_array(
            "label", shape=(cfg.rank,), chunks=(max(cfg.rank, 1),), dtype=str,
            dimension_names=("component",), fill_value="",
            attributes={"long_name": "component name (pitch or drum class)"},
        )  # fmt: skip
        lab[:] = np.array(labels, dtype=str)
        coords.append("label")
        meta["labels"] = labels
    if cfg.lags > 1:  # the lag axis of W (bin, component, lag)
        feats = corpus.features
        lag = g.create_array(
            "lag_time", shape=(cfg.lags,), chunks=(cfg.lags,), dtype="float64",
            dimension_names=("lag",),
            attributes={"units": "s", "long_name": "time within template"},
        )  # fmt: skip
        lag[:] = np.arange(cfg.lags) * (feats.hop_length / feats.sr)
        coords.append("lag_time")
    g["W"].attrs["coordinates"] = " ".join(coords)
    update_records(g, [n for n in ("label", "lag_time") if n in g])
    write_meta(g, meta)
    model.meta = read_meta(g, model.kind, model.path)


def open_for_learning(
    corpus_path: Path, output: str | os.PathLike[str] | None, block_frames: int | None
) -> tuple[CorpusStore, Path, int]:
    """The corpus (refused when empty), the model path and the block size, checked."""
    from dnmf.io.corpus import CorpusStore

    corpus = CorpusStore.open(corpus_path)
    if corpus.n_frames == 0:
        raise DnmfUsageError(
            f"corpus {str(corpus_path)!r} holds no frames; ingest audio into it first"
        )
    model_path = Path(output) if output is not None else corpus_path.parent / "model.zarr"
    block_frames = block_frames or corpus.chunk_frames
    if corpus.chunk_frames % block_frames:
        raise DnmfUsageError(
            f"block_frames={block_frames} does not divide the corpus chunk of "
            f"{corpus.chunk_frames} frames; pass a divisor of {corpus.chunk_frames}"
        )
    return corpus, model_path, block_frames


def run_epochs(
    run: Callable[[LearnState, Callable[[Progress], None]], LearnState],
    state: LearnState,
    model: ModelStore,
    result: LearnResult,
    *,
    epochs: int,
    progress: bool,
    on_step: Callable[[Progress], None] | None,
    t0: float,
    passes: Callable[[int], float] = float,
) -> LearnState:
    """Run a learner (``run(state, report)``) under a progress bar and fill ``result``.

    The dashboard line, the bar (passes over the corpus, as ``epochs`` counts them;
    loss, frames/s), the caller's ``on_step``, the final status and the figures.
    ``passes(e)`` is how many passes the first ``e`` epochs make.
    """
    import sys

    from dnmf.progress import reporter

    if progress and result.dashboard:
        print(f"dashboard: {result.dashboard}", file=sys.stderr)
    start_steps = state.global_step
    frames_done = 0
    with reporter(
        "learn", epochs, enabled=progress,
        fields="epochs  loss {task.fields[loss]}  {task.fields[fps]:.0f} frames/s",
        loss="-", fps=0.0,
    ) as bar:  # fmt: skip
        bar.update(advance=passes(state.done_epochs))

        def report(p: Progress) -> None:
            nonlocal frames_done
            frames_done += p.frames
            fps = p.frames / p.seconds if p.seconds > 0 else 0.0
            loss = f"{p.loss:.6g}" if p.loss is not None else "-"
            bar.update(
                advance=passes(p.epoch + 1) - passes(p.epoch) if p.epoch_done else 0,
                fps=fps,
                **({"loss": loss} if p.loss is not None else {}),
            )
            if on_step is not None:
                on_step(p)

        state = run(state, report)
    result.passes = passes(state.done_epochs)
    if state.converged or result.passes >= epochs - 1e-9:
        model.finish(state, status="done")
    result.epochs = state.done_epochs
    result.steps = state.global_step - start_steps
    result.losses = list(state.losses)
    result.loss = state.losses[-1] if state.losses else None
    result.converged = state.converged
    result.wall_seconds = time.perf_counter() - t0
    result.frames_per_second = frames_done / result.wall_seconds if result.wall_seconds else 0.0
    return state


def _dashboard(client: Client) -> str | None:
    try:
        return str(client.dashboard_link)
    except Exception:  # no dashboard on a remote scheduler without bokeh
        return None


def reconstruction_error(result: LearnResult, beta: float) -> float | None:
    from dnmf.nmf.learner import loss_to_error

    return loss_to_error(result.loss, beta) if result.loss is not None else None
