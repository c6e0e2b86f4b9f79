"""The model store: the dictionary, the loss history and the state to resume from.

Layout (Zarr format 3, DESIGN.md section 2)::

    model.zarr/
      W          (bin, component)  float32, the dictionary at the last checkpoint
                 (bin, component, lag) for a model of more than one lag (NMFD)
      frequency  (bin,)            Hz, from the corpus
      loss       (epoch,)          float64, the β-divergence summed over each epoch's visits
      state/H0, state/H1  (component, frame)  the double-buffered activations
                 (and state/H2 under the fast schedule)
      state/slot0, state/slot1     two checkpoint slots: W (bin, component, lag), A, B,
                                   pending, visited, H_crc (buffer, block): the crc32 of
                                   each chunk of the buffers as its visit wrote it
      attrs["dnmf"] = {kind: "model", lags, config, v_mean,
                       corpus: {path, fingerprint, ...},
                       block_frames, status, checkpoint: {slot, epoch, ...}}
      chunks/      the per-chunk records of the root arrays (dnmf.io.records), rewritten
                   with W and loss and the slot at every checkpoint; the buffers
                   state/H*, rewritten by the learner's tasks every epoch, have theirs
                   in the slot's H_crc instead (dnmf.io.buffers)

A checkpoint is written to the slot not in use, then the attrs are switched to
it in one atomic write, so a crash leaves the old checkpoint or the new one
whole. Floats in the attrs are JSON numbers, which round-trip exactly.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from dnmf.errors import StoreMismatchError
from dnmf.io.checked import read_all
from dnmf.io.records import load_records, records_of, update_records
from dnmf.io.store import (
    StorePath,
    array,
    consolidate,
    existing_array,
    open_group,
    read_meta,
    write_meta,
)  # fmt: skip
from dnmf.nmf.config import LearnConfig

if TYPE_CHECKING:
    from dnmf.io.corpus import CorpusStore
    from dnmf.nmf.state import LearnState

__all__ = ["ModelStore"]

#: Settings that may differ between a run and the run it resumes.
RESUMABLE = {"epochs", "checkpoint_every", "tol"}


class ModelStore:
    """A model store on disk (see the module docstring for the layout)."""

    kind = "model"

    def __init__(self, path: StorePath, group: zarr.Group, meta: dict[str, Any]) -> None:
        self.path = str(path)
        self.group = group
        self.meta = meta
        self._slots: dict[int, zarr.Group] = {}
        self._handles: dict[str, Any] = {}  # opened arrays, for the next checkpoint

    @classmethod
    def open(cls, path: StorePath, *, mode: str = "r") -> ModelStore:
        group = open_group(path, mode=mode)
        return cls(path, group, read_meta(group, cls.kind, path))

    @classmethod
    def create(
        cls, path: StorePath, cfg: LearnConfig, corpus: CorpusStore, *, block_frames: int
    ) -> ModelStore:
        """A new model store for learning ``cfg`` on ``corpus`` (replaces what is at ``path``)."""
        from dnmf.io.blocks import create_H_buffers
        from dnmf.nmf.plan import h_buffers

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        n_bins = corpus.features.n_bins
        # A one-lag model keeps W (bin, component) on disk, as plain NMF always has.
        shape = (n_bins, cfg.rank) if cfg.lags == 1 else (n_bins, cfg.rank, cfg.lags)
        group.create_array(
            "W", shape=shape, chunks=shape, dtype="float32",
            dimension_names=("bin", "component", "lag")[: len(shape)], compressors=None,
            attributes={"coordinates": "frequency", "long_name": "dictionary"},
        )  # fmt: skip
        freq = group.create_array(
            "frequency", shape=(n_bins,), chunks=(n_bins,), dtype="float64",
            dimension_names=("bin",), attributes={"units": "Hz"},
        )  # fmt: skip
        freq[:] = array(corpus.group, "frequency")[:]
        group.create_array(
            "loss", shape=(0,), chunks=(4096,), dtype="float64", dimension_names=("epoch",),
            attributes={"long_name": f"beta-divergence (beta={cfg.beta:g}) summed over the epoch"},
        )  # fmt: skip
        create_H_buffers(
            f"{path}/state",
            cfg.rank,
            corpus.n_frames,
            block_frames,
            "float32",
            overwrite=True,
            n_buffers=h_buffers(cfg),
        )
        meta = {
            "kind": cls.kind,
            "lags": cfg.lags,
            "config": cfg.model_dump(mode="json"),
            "corpus": {
                "path": str(Path(corpus.path).resolve()),
                "fingerprint": corpus.fingerprint(),
                "n_frames": corpus.n_frames,
                "n_files": corpus.n_files,
                "features": corpus.meta["features"],
            },
            "block_frames": block_frames,
            "status": "running",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "checkpoint": None,
            "checkpoints_written": 0,
        }
        write_meta(group, meta)
        consolidate(path)
        return cls(path, group, read_meta(group, cls.kind, path))

    # -- what it holds -----------------------------------------------------------
    @property
    def config(self) -> LearnConfig:
        return LearnConfig.from_attrs(self.meta["config"])

    @property
    def lags(self) -> int:
        """Frames per template (1 for a plain NMF model)."""
        return int(self.meta.get("lags", 1))

    @property
    def W(self) -> np.ndarray:
        """The dictionary as stored: (bin, component), or (bin, component, lag) for lags > 1."""
        return read_all(array(self.group, "W"), load_records(self.path, "W"))

    @property
    def templates(self) -> np.ndarray:
        """The dictionary as the learner and the solver see it: (bin, component, lag)."""
        W = self.W
        return W[:, :, np.newaxis] if W.ndim == 2 else W

    @property
    def status(self) -> str:
        return str(self.meta["status"])

    @property
    def H_url(self) -> str:
        return f"{self.path}/state"

    def resume_config(self, cfg: LearnConfig, corpus: CorpusStore) -> LearnConfig:
        """The config to resume with: ``cfg``, where a setting the store's config predates
        goes on as the store learned (e.g. ``heuristic_mu``). Refuses to resume against
        another corpus or with settings that change the result."""
        if corpus.fingerprint() != self.meta["corpus"]["fingerprint"]:
            raise StoreMismatchError(
                f"{self.path!r} was learned on another corpus (or the corpus has changed since: "
                f"{self.meta['corpus']['path']}); resume against that corpus or start a new model"
            )
        if cfg.lags != self.lags:
            raise StoreMismatchError(
                f"{self.path!r} was learned with lags={self.lags}, not {cfg.lags}; resume with "
                "the same settings or start a new model"
            )
        mine = self.meta["config"]
        theirs = cfg.model_dump(mode="json")
        for key in mine:
            if key == "model":  # an older version's name for lags > 1
                continue
            if key not in RESUMABLE and mine[key] != theirs.get(key):
                raise StoreMismatchError(
                    f"{self.path!r} was learned with {key}={mine[key]!r}, not {theirs.get(key)!r}; "
                    f"resume with the same settings or start a new model"
                )
        older = set(LearnConfig.model_fields) - set(mine)
        return cfg.model_copy(update={k: getattr(self.config, k) for k in older}) if older else cfg

    # -- checkpoints -------------------------------------------------------------
    def save_checkpoint(self, state: LearnState) -> None:
        """Write ``state`` to the free slot, then switch the attrs to it."""
        slot = (self.meta["checkpoints_written"] + 1) % 2
        g = self._slots.get(slot)
        if g is None:
            g = self._slots[slot] = self.group.require_group("state").require_group(f"slot{slot}")
        arrays = {"W": state.W, "A": state.A, "B": state.B, "pending": state.pending,
                  "visited": state.visited, "W_prev": state.W_prev,
                  "pending_prev": state.pending_prev, "H_crc": state.H_crc}  # fmt: skip
        written = [name for name, value in arrays.items() if value is not None]
        # The records are taken from the values in memory (what a read-back would check),
        # and arrays of an unchanged shape are rewritten in place: a checkpoint is a few
        # small writes, as the fast schedule writes one after every epoch.
        fresh, h, writes = {}, self._handles, []
        for name in written:
            value, where = np.asarray(arrays[name]), f"state/slot{slot}/{name}"
            arr = existing_array(g, name, value.shape, value.dtype, handles=h, key=where)
            if arr is None:
                arr = g.create_array(
                    name, shape=value.shape, dtype=value.dtype, compressors=None, overwrite=True
                )
            writes.append((arr, value))
            h[where] = arr
            fresh[where] = records_of(arr, value)
        W = np.asarray(state.W[:, :, 0] if state.W.shape[2] == 1 else state.W, dtype=np.float32)
        if "W" not in h:
            h["W"], h["loss"] = array(self.group, "W"), array(self.group, "loss")
        losses = np.asarray(state.losses, dtype=np.float64)
        h["loss"].resize((len(losses),))
        writes += [(h["W"], W), (h["loss"], losses)]
        fresh["W"], fresh["loss"] = records_of(h["W"], W), records_of(h["loss"], losses)
        # All written at once, before the attrs switch to this checkpoint; the other slot
        # keeps its records.
        update_records(self.group, list(fresh), fresh=fresh, handles=h, writes=writes)
        meta = dict(self.meta)
        meta["checkpoints_written"] = self.meta["checkpoints_written"] + 1
        meta["checkpoint"] = {
            "slot": slot,
            "epoch": state.epoch,
            "step_in_epoch": state.step_in_epoch,
            "global_step": state.global_step,
            "epoch_loss": state.epoch_loss,
            "losses": list(state.losses),
            "converged": state.converged,
            "avg": state.avg,
            "has_accumulators": state.A is not None,
            "accel": list(state.accel) if state.accel is not None else None,
            "has_previous": state.pending_prev is not None,
            "has_H_records": state.H_crc is not None,
            "written": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_meta(self.group, meta)
        self.meta = read_meta(self.group, self.kind, self.path)

    def load_checkpoint(self) -> LearnState | None:
        """The state of the last whole checkpoint, or None if there is none."""
        ck = self.meta.get("checkpoint")
        if not ck:
            return None

        def get(name: str) -> np.ndarray:
            return self._slot_array(ck["slot"], name)

        from dnmf.nmf.state import LearnState

        W = get("W")
        return LearnState(
            W=W[:, :, np.newaxis] if W.ndim == 2 else W,  # a one-lag slot of an older version
            A=get("A") if ck["has_accumulators"] else None,
            B=get("B") if ck["has_accumulators"] else None,
            pending=get("pending"),
            visited=get("visited"),
            epoch=ck["epoch"],
            step_in_epoch=ck["step_in_epoch"],
            global_step=ck["global_step"],
            epoch_loss=ck["epoch_loss"],
            losses=list(ck["losses"]),
            converged=ck["converged"],
            avg=ck["avg"],
            W_prev=get("W_prev") if ck.get("accel") is not None else None,
            accel=tuple(ck["accel"]) if ck.get("accel") is not None else None,  # type: ignore[arg-type]
            pending_prev=get("pending_prev") if ck.get("has_previous") else None,
            # a checkpoint of a dnmf that kept no records of the buffers: none (unchecked)
            H_crc=get("H_crc") if ck.get("has_H_records") else None,
        )

    def _slot_array(self, slot: int, name: str) -> np.ndarray:
        """Array ``name`` of checkpoint slot ``slot``, each chunk checked against its record
        (a slot written by a dnmf without slot records is read as it is)."""
        g = zarr.open_group(f"{self.path}/state/slot{slot}", mode="r", zarr_format=3)
        return read_all(array(g, name), load_records(self.path, f"state/slot{slot}/{name}"))

    def finish(self, state: LearnState, *, status: str = "done", **extra: Any) -> None:
        """Record the end of learning (after a final checkpoint) and make it visible."""
        meta = dict(self.meta)
        meta.update(status=status, finished=datetime.now(UTC).isoformat(timespec="seconds"))
        meta.update(extra)
        meta["n_iter"] = state.done_epochs
        meta["converged"] = state.converged
        write_meta(self.group, meta)
        self.meta = read_meta(self.group, self.kind, self.path)
        consolidate(self.path)

    def buffer_chunks(
        self, state: LearnState, cfg: LearnConfig | None = None
    ) -> list[tuple[int, int, int]]:
        """``(buffer, chunk, crc)`` of each activation chunk the checkpoint ``state`` refers
        to that has a record: what a run continued from it with ``cfg`` (default: the
        model's config) reads (:func:`dnmf.nmf.plan.checkpoint_chunks`)."""
        from dnmf.nmf.plan import checkpoint_chunks

        if state.H_crc is None:
            return []
        crc = state.H_crc
        chunks = checkpoint_chunks(cfg or self.config, state, int(self.meta["block_frames"]))
        return [(k, b, int(crc[k, b])) for k, b in chunks if crc[k, b] >= 0]

    def activations(self) -> np.ndarray:
        """H of every corpus frame as the last checkpoint left it, pending scales applied.

        ``(component, frame)``, float64 (the stored float32 activations times the
        float64 scales of the normalisation that have not reached them yet). Each
        block's chunk is read from the buffer that holds its latest activations and
        checked against the checkpoint's record of it (:mod:`dnmf.io.buffers`).
        """
        from dnmf.io.buffers import read_buffer_checked
        from dnmf.nmf.plan import checkpoint_done, read_buffer

        state = self.load_checkpoint()
        if state is None:
            raise StoreMismatchError(
                f"model store {self.path!r} holds no checkpoint yet; learn or resume it first"
            )
        assert state.pending is not None and state.visited is not None
        done = checkpoint_done(self.config, state)
        block = int(self.meta["block_frames"])
        arrays = {k: array(self.group, f"state/H{k}") for k in range(state.n_buffers)}
        n_frames = int(arrays[0].shape[1])
        where = [read_buffer(b, epoch=state.epoch, n_buffers=state.n_buffers, done=done)
                 for b in range(len(state.visited))]  # fmt: skip
        H = np.empty((int(arrays[0].shape[0]), n_frames), dtype=arrays[0].dtype)
        b0 = 0
        for b in range(1, len(where) + 1):  # runs of blocks in one buffer: one read each
            if b < len(where) and where[b] == where[b0]:
                continue
            k = where[b0]
            expect = {}
            if state.H_crc is not None:
                expect = {j: int(state.H_crc[k, j]) for j in range(b0, b) if state.visited[j]}
            a, z = b0 * block, min(b * block, n_frames)
            H[:, a:z] = read_buffer_checked(arrays[k], self.H_url, k, a, z, expect)
            b0 = b
        return H * np.repeat(state.pending, block, axis=0)[:n_frames].T  # type: ignore[no-any-return]
