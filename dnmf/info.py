"""Summaries of dnmf stores, for ``dnmf info`` and for scripts."""

from __future__ import annotations

from collections import Counter
from typing import Any

from dnmf.io.store import StorePath, open_group

__all__ = ["describe"]


def describe(path: StorePath) -> dict[str, Any]:
    """A JSON-ready summary of the dnmf store at ``path``, whatever its kind."""
    from dnmf.errors import StoreFormatError
    from dnmf.io.corpus import CorpusStore

    group = open_group(path)
    meta = group.attrs.get("dnmf")
    kind = meta.get("kind") if isinstance(meta, dict) else None
    if kind == "corpus":
        return _describe_corpus(CorpusStore.open(path))
    if kind == "model":
        from dnmf.io.model import ModelStore

        return _describe_model(ModelStore.open(path))
    if kind == "activations":
        return _describe_activations(path, dict(meta))  # type: ignore[arg-type]
    raise StoreFormatError(
        f"{str(path)!r} is not a dnmf store; pass a store written by dnmf ingest, learn or export"
    )


def _describe_activations(path: StorePath, meta: dict[str, Any]) -> dict[str, Any]:
    from dnmf.io.store import array

    group = open_group(path)
    return {
        "store": str(path),
        "kind": "activations",
        "format_version": meta["format_version"],
        "dnmf_version": meta["dnmf_version"],
        "model": meta.get("model"),
        "corpus": meta.get("corpus"),
        "components": int(array(group, "H").shape[0]),
        "frames": int(meta.get("n_frames", 0)),
        "files": int(array(group, "file").shape[0]),
        "settings": meta.get("settings"),
    }


def _describe_model(model: Any) -> dict[str, Any]:
    losses = [float(x) for x in model.group["loss"][:]]
    ck = model.meta.get("checkpoint") or {}
    return {
        "store": model.path,
        "kind": "model",
        "format_version": model.meta["format_version"],
        "dnmf_version": model.meta["dnmf_version"],
        "status": model.status,
        "lags": model.meta.get("lags", 1),
        "rank": model.meta["config"]["rank"],
        "bins": int(model.group["W"].shape[0]),
        "config": model.meta["config"],
        "corpus": model.meta["corpus"],
        "epochs": len(losses),
        "loss": losses[-1] if losses else None,
        "losses": losses,
        "converged": model.meta.get("converged", False),
        "checkpoint_step": ck.get("global_step"),
        "mask": model.meta.get("mask"),
    }


def _values(corpus: Any) -> dict[str, Any]:
    """mean, min, max and non-finite count of V, from its chunk records (never a pass over V
    but once for a store of an older dnmf, which then gets them recorded)."""
    import sys

    import numpy as np

    if corpus.n_frames == 0:
        return {"v_mean": None, "v_min": None, "v_max": None, "nonfinite": 0}
    st = corpus.v_records(say=lambda line: print(line, file=sys.stderr)).stats
    n = corpus.n_frames * corpus.features.n_bins
    return {
        "v_mean": float(np.sum(st["sum"]) / n),
        "v_min": float(np.nanmin(st["min"])),
        "v_max": float(np.nanmax(st["max"])),
        "nonfinite": int(np.sum(st["nonfinite"])),
    }


def _describe_corpus(corpus: Any) -> dict[str, Any]:
    files = corpus.files()
    status = Counter(r.status for r in files)
    seconds = sum(r.duration for r in files if r.n_frames)
    return {
        "store": corpus.path,
        "kind": "corpus",
        "format_version": corpus.meta["format_version"],
        "dnmf_version": corpus.meta["dnmf_version"],
        "source": corpus.meta.get("source"),
        "files": len(files),
        "files_by_status": dict(sorted(status.items())),
        "frames": corpus.n_frames,
        "bins": corpus.features.n_bins,
        "chunk_frames": corpus.chunk_frames,
        "chunks": -(-corpus.n_frames // corpus.chunk_frames),
        "hours": seconds / 3600,
        "features": corpus.meta["features"],
        **_values(corpus),
        "ingest_runs": len(corpus.meta.get("ingest_history", [])),
        "last_ingest": (corpus.meta.get("ingest_history") or [None])[-1],
        "skipped": [{"file": r.file, "error": r.error} for r in files if r.status == "skipped"],
        "changed": [r.file for r in files if r.status == "changed"],
        "removed": [r.file for r in files if r.status == "removed"],
    }
