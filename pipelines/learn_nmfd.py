"""The learn stage for convolutive models (NMFD): a corpus store becomes a model store.

The stages of :mod:`pipelines.learn` with :mod:`dnmf.nmf.nmfd_learner`'s learner:

plan     the corpus is checked (an audio folder is ingested first); the
         informed inits are read (pitched combs on the corpus's frequencies,
         drum samples with its feature settings, the score's notes on its frames).
setup    the model store is created with ``W (bin, component, lag)``, a
         ``label (component)`` and a ``lag_time (lag)`` array (or opened to resume).
run      one task per block per step, each reading its block's halo.
commit   the final templates, loss history and status go into the store.
"""

from __future__ import annotations

import os
import shutil
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from dnmf.cluster import check_compute_options
from dnmf.errors import DnmfError, DnmfUsageError
from dnmf.io.corpus import CorpusStore
from dnmf.io.model import ModelStore
from dnmf.nmf.learner import LearnState
from dnmf.nmf.nmfd_learner import (
    Informed,
    NMFDConfig,
    check_config,
    h_init_of,
    learn_nmfd,
    start_state_nmfd,
)
from pipelines.learn import (
    LearnResult,
    _dashboard,
    open_for_learning,
    resolve_corpus,
    run_epochs,
)

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["learn_nmfd_corpus"]


def _write_axes(
    model: ModelStore, cfg: NMFDConfig, corpus: CorpusStore, informed: Informed
) -> None:
    """Component names and lag times beside W (so xarray shows them as coordinates)."""
    from dnmf.io.store import write_meta

    g = model.group
    labels = list(informed.labels) + [""] * (cfg.rank - len(informed.labels))
    lab = g.create_array(
        "label", shape=(cfg.rank,), chunks=(max(cfg.rank, 1),), dtype=str,
        dimension_names=("component",), fill_value="",
        attributes={"long_name": "component name (pitch or drum class)"},
    )  # fmt: skip
    lab[:] = np.array(labels, dtype=str)
    feats = corpus.features
    lag = g.create_array(
        "lag_time", shape=(cfg.lags,), chunks=(cfg.lags,), dtype="float64",
        dimension_names=("lag",), attributes={"units": "s", "long_name": "time within template"},
    )  # fmt: skip
    lag[:] = np.arange(cfg.lags) * (feats.hop_length / feats.sr)
    W = model.group["W"]
    W.attrs["coordinates"] = "frequency label lag_time"
    meta = dict(model.meta)
    meta["labels"] = labels
    write_meta(g, meta)
    from dnmf.io.store import read_meta

    model.meta = read_meta(g, model.kind, model.path)


def learn_nmfd_corpus(
    input_path: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    config: NMFDConfig,
    W_init: np.ndarray | None = None,
    resume: bool = False,
    overwrite: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Client | None = None,
    progress: bool = False,
    on_step: Any = None,
    stop_after_steps: int | None = None,
) -> LearnResult:
    """Learn convolutive templates from a corpus store (or an audio folder, ingested first).

    Parameters are those of :func:`pipelines.learn.learn_corpus`; ``config``
    is an :class:`~dnmf.nmf.nmfd_learner.NMFDConfig` and ``W_init`` (for
    ``init='custom'``) has shape ``(n_bins, rank, lags)`` (or ``(n_bins,
    rank)``: a plain dictionary, the same spectrum at every lag).

    Returns
    -------
    LearnResult
    """
    from dnmf.backends import DaskBackend
    from dnmf.cluster import connect
    from dnmf.io.store import write_meta
    from dnmf.nmf.informed import prepare_informed

    check_compute_options(workers, scheduler)
    t0 = time.perf_counter()
    corpus_path, ingested = resolve_corpus(
        input_path, workers=workers, scheduler=scheduler, client=client, progress=progress
    )
    corpus, model_path, block_frames = open_for_learning(corpus_path, output, config.block_frames)
    informed = prepare_informed(config, corpus)
    check_config(config, corpus.features.n_bins, corpus.n_frames, informed)
    state: LearnState | None = None
    if resume:
        model = ModelStore.open(model_path, mode="r+")
        if not model.is_nmfd:
            raise DnmfUsageError(
                f"{str(model_path)!r} holds a plain NMF model; resume it without --model nmfd"
            )
        model.check_resumable(config, corpus)
        state = model.load_checkpoint()
        model.meta["config"] = config.model_dump(mode="json")
    elif (model_path / "zarr.json").exists() and not overwrite:
        raise DnmfUsageError(
            f"model store {str(model_path)!r} exists; pass --resume to continue it, "
            "--overwrite to replace it, or -o for another path"
        )
    result = LearnResult(model=str(model_path), corpus=str(corpus_path), ingest=ingested)
    with connect(workers, scheduler, client=client) as c:
        result.workers = len(c.scheduler_info(n_workers=-1).get("workers", {}))
        result.dashboard = _dashboard(c)
        if not resume:
            model = ModelStore.create(model_path, config, corpus, block_frames=block_frames)
            _write_axes(model, config, corpus, informed)
        backend = DaskBackend(
            c, f"{corpus_path}/V", model.H_url, block_frames=block_frames, n_frames=corpus.n_frames
        )
        if state is None:
            try:
                total, count = backend.summary()
                mean = total / max(count, 1.0)
                state = start_state_nmfd(
                    config, backend, informed=informed, W_init=W_init, mean=mean
                )
            except DnmfError:
                if not resume:
                    shutil.rmtree(model_path, ignore_errors=True)
                raise
            meta = dict(model.meta)
            meta["v_mean"] = mean  # the activations' scale for export
            write_meta(model.group, meta)
            model.meta = meta
        else:
            result.resumed_from_step = state.global_step
        run_epochs(
            lambda s, report: learn_nmfd(
                config, backend, s, h_init=h_init_of(config, informed), on_step=report,
                checkpoint=model.save_checkpoint, stop_after_steps=stop_after_steps,
            ),
            state, model, result, epochs=config.epochs, progress=progress, on_step=on_step, t0=t0,
        )  # fmt: skip
    return result
