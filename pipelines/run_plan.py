"""The plan of ``dnmf run``: what each stage must do, from small facts the stores tell.

The plans are pure functions of those facts (:func:`plan_ingest`,
:func:`plan_learn`, :func:`plan_export_stage`), property-tested; the facts are
read from the stores without writing anything (:func:`plan_run`, what
``dnmf run --dry-run`` prints). :mod:`pipelines.run` runs the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dnmf.errors import DnmfPathError, StoreMismatchError
from pipelines.config import LearnSection, PipelineConfig

__all__ = [
    "IngestFacts",
    "ModelFacts",
    "StagePlan",
    "dictionary_change",
    "plan_export_stage",
    "plan_ingest",
    "plan_learn",
    "plan_run",
]

#: Learn settings that may differ from the model's without learning again.
RESUMABLE = frozenset({"epochs", "checkpoint_every", "tol"})


# -- plans (pure) ------------------------------------------------------------------------
@dataclass(frozen=True)
class StagePlan:
    """What one stage will do and why; ``action == "none"`` is nothing."""

    stage: str
    action: str
    reason: str

    @property
    def work(self) -> bool:
        return self.action != "none"


@dataclass(frozen=True)
class IngestFacts:
    """The corpus store and the audio folder, in counts."""

    store_exists: bool
    synthesize: int = 0  # demo files to write first (the input folder is missing)
    new: int = 0
    retry: int = 0
    recheck: int = 0
    removed: int = 0


def plan_ingest(f: IngestFacts) -> StagePlan:
    """Create the corpus store, append new files, update the file table, or nothing."""
    demo = f"write {f.synthesize} synthetic demo files, then " if f.synthesize else ""
    if not f.store_exists:
        n = f.new or f.synthesize
        return StagePlan("ingest", "create", f"{demo}ingest {n} files into a new corpus store")
    if f.new or f.retry:
        what = f"{f.new} new files" + (f", {f.retry} skipped files to retry" if f.retry else "")
        return StagePlan("ingest", "append", what)
    if f.recheck or f.removed:
        return StagePlan(
            "ingest", "update",
            f"{f.recheck} files touched, {f.removed} removed: the file table is updated",
        )  # fmt: skip
    return StagePlan("ingest", "none", "no new audio files")


@dataclass(frozen=True)
class ModelFacts:
    """What a model store says about itself (``model.zarr`` or ``model.next.zarr``)."""

    status: str
    config: dict[str, Any]
    learned_with: dict[str, Any]  # the pipeline's learn settings (or config for a plain model)
    corpus_fingerprint: str
    global_step: int = 0

    @classmethod
    def of(cls, meta: dict[str, Any]) -> ModelFacts:
        pipeline = meta.get("pipeline") or {}
        ck = meta.get("checkpoint") or {}
        return cls(
            status=str(meta.get("status")),
            config=dict(meta["config"]),
            learned_with=dict(pipeline.get("learn") or meta["config"]),
            corpus_fingerprint=str(meta["corpus"]["fingerprint"]),
            global_step=int(ck.get("global_step", 0)),
        )


def differing(
    a: dict[str, Any], b: dict[str, Any], *, ignore: frozenset[str] = RESUMABLE
) -> list[str]:
    """Keys whose values differ between two learn configs (``ignore`` aside)."""
    return [k for k in sorted(set(a) | set(b)) if k not in ignore and a.get(k) != b.get(k)]


def plan_learn(
    cfg: LearnSection, *, corpus_fingerprint: str | None, corpus_grows: bool,
    model: ModelFacts | None, staging: ModelFacts | None,
) -> StagePlan:  # fmt: skip
    """Learn, relearn, refine, resume an unfinished model, or nothing.

    ``corpus_fingerprint`` is the corpus as it is now; ``corpus_grows`` says
    that the ingest of this run will add frames first.
    """
    fresh = cfg.learn_config().model_dump(mode="json")
    refine = cfg.refine_config().model_dump(mode="json")
    note = ""
    if staging is not None:
        kind = "refine" if staging.config.get("init") == "custom" else "learn"
        want = refine if kind == "refine" else fresh
        same_corpus = not corpus_grows and staging.corpus_fingerprint == corpus_fingerprint
        if same_corpus and not differing(staging.config, want) and (kind == "learn" or model):
            if staging.status == "done":
                return StagePlan("learn", "promote", "a finished model waits in model.next.zarr")
            return StagePlan(
                "learn", "resume",
                f"an interrupted {kind} left model.next.zarr at step {staging.global_step}",
            )  # fmt: skip
        note = "; the unfinished model.next.zarr (other corpus or settings) is discarded"
    if model is None:
        return StagePlan("learn", "learn", f"no model yet: {cfg.epochs} epochs{note}")
    changed = differing(model.learned_with, fresh)
    if changed:
        k = changed[0]
        was, now = model.learned_with.get(k), fresh.get(k)
        return StagePlan(
            "learn", "relearn", f"learn.{k} changed ({was!r} -> {now!r}): {cfg.epochs} epochs "
            f"from scratch{note}",
        )  # fmt: skip
    if corpus_grows or model.corpus_fingerprint != corpus_fingerprint:
        return StagePlan(
            "learn", "refine",
            f"the corpus grew: {cfg.refine_epochs} epochs over all frames from the current "
            f"dictionary{note}",
        )  # fmt: skip
    return StagePlan("learn", "none", f"the model is up to date with the corpus and config{note}")


def plan_export_stage(
    *, enabled: bool, meta: dict[str, Any] | None, model_fingerprint: str,
    refined_from: str | None, change: float | None, threshold: float, settings: dict[str, Any],
    corpus_frames: int, chunk_frames: int,
) -> tuple[StagePlan, bool]:  # fmt: skip
    """The export stage's plan and whether the frames exported so far are kept.

    They are kept when the model was refined from the dictionary they were
    solved with and moved by at most ``threshold`` (relative Frobenius norm).
    """
    from pipelines.export import plan_export

    if not enabled:
        return StagePlan("export", "none", "export is off (export.enabled: false)"), False
    keep = (
        meta is not None
        and meta.get("model_fingerprint") != model_fingerprint
        and refined_from is not None
        and meta.get("model_fingerprint") == refined_from
        and change is not None
        and change <= threshold
    )
    start, reason = plan_export(
        meta, model_fp=model_fingerprint, settings=settings, corpus_frames=corpus_frames,
        chunk_frames=chunk_frames, keep_existing=keep,
    )  # fmt: skip
    if start >= corpus_frames:
        return StagePlan("export", "none", "the activations are up to date"), False
    if start == 0:
        return StagePlan("export", "full", f"every frame: {reason}"), False
    if keep:
        reason = (
            f"new corpus frames; the dictionary moved by {change:.3g}, at most "
            f"export.reexport_threshold={threshold:g}, so the frames exported before are kept"
        )
    return StagePlan("export", "new-frames", f"frames from {start}: {reason}"), keep


def dictionary_change(W_old: np.ndarray, W_new: np.ndarray) -> float:
    """``|W_new - W_old|_F / |W_old|_F`` (float64)."""
    a = np.asarray(W_old, dtype=np.float64)
    b = np.asarray(W_new, dtype=np.float64)
    norm = float(np.linalg.norm(a))
    return float(np.linalg.norm(b - a) / norm) if norm > 0 else float("inf")


# -- facts (reads only) ------------------------------------------------------------------
def ingest_facts(cfg: PipelineConfig) -> IngestFacts:
    from dnmf.audio.decode import scan
    from pipelines.ingest import diff_files

    root = Path(cfg.input)
    exists = (cfg.corpus_path / "zarr.json").exists()
    if not root.exists():
        if cfg.synthesize is None:
            raise DnmfPathError(
                f"input folder {cfg.input!r} does not exist; set input: to a folder of audio"
            )
        return IngestFacts(store_exists=exists, synthesize=cfg.synthesize.n_files)
    if not root.is_dir():
        raise DnmfPathError(f"input {cfg.input!r} is not a folder; set input: to a folder of audio")
    found = scan(root)
    if not found:
        raise DnmfPathError(
            f"no audio files under input {cfg.input!r}; set input: to a folder that holds audio"
        )
    records = []
    if exists:
        from dnmf.io.corpus import CorpusStore  # Zarr: a new store needs none before the cluster

        corpus = CorpusStore.open(cfg.corpus_path)
        _check_features(cfg, corpus)
        records = corpus.files()
    d = diff_files(records, found)
    return IngestFacts(exists, 0, len(d.new), len(d.retry), len(d.recheck), len(d.removed))


def _check_features(cfg: PipelineConfig, corpus: Any) -> None:
    features = cfg.ingest.features_config()
    diff = corpus.features.differences(features)
    key = diff[0] if diff else None
    if key is None and cfg.ingest.chunk_frames not in (None, corpus.chunk_frames):
        key = "chunk_frames"
    if key is not None:
        have = corpus.chunk_frames if key == "chunk_frames" else getattr(corpus.features, key)
        want = getattr(cfg.ingest, key)
        raise StoreMismatchError(
            f"{str(cfg.corpus_path)!r} was ingested with {key}={have!r}, the config says "
            f"ingest.{key}={want!r}; set ingest.{key}: {have!r}, or point store: at a new folder"
        )


def model_facts(path: Path) -> ModelFacts | None:
    from dnmf.io.store import open_group, read_meta

    if not (path / "zarr.json").exists():
        return None
    meta = read_meta(open_group(path), "model", path)
    return ModelFacts.of(meta)


def corpus_fingerprint(cfg: PipelineConfig) -> str | None:
    from dnmf.io.corpus import CorpusStore

    if not (cfg.corpus_path / "zarr.json").exists():
        return None
    return CorpusStore.open(cfg.corpus_path).fingerprint()


def export_plan_now(cfg: PipelineConfig) -> tuple[StagePlan, bool]:
    from dnmf.io.corpus import CorpusStore
    from dnmf.io.dictionary import dictionary_fingerprint
    from dnmf.io.model import ModelStore
    from dnmf.io.store import open_group, read_meta
    from pipelines.export import export_settings, mask_settings

    model = ModelStore.open(cfg.model_path)
    corpus = CorpusStore.open(cfg.corpus_path)
    meta = None
    if (cfg.activations_path / "zarr.json").exists():
        meta = read_meta(open_group(cfg.activations_path), "activations", cfg.activations_path)
    pipeline = model.meta.get("pipeline") or {}
    return plan_export_stage(
        enabled=cfg.export.enabled, meta=meta, model_fingerprint=dictionary_fingerprint(model.W),
        refined_from=pipeline.get("refined_from"), change=pipeline.get("dictionary_change"),
        threshold=cfg.export.reexport_threshold,
        settings=export_settings(cfg.export.iter, cfg.export.tol, mask_settings(model.config)),
        corpus_frames=corpus.n_frames, chunk_frames=corpus.chunk_frames,
    )  # fmt: skip


def plan_run(cfg: PipelineConfig) -> list[StagePlan]:
    """The plan of every stage, from the stores as they are (reads only, for ``--dry-run``)."""
    ingest = plan_ingest(ingest_facts(cfg))
    grows = ingest.action in ("create", "append")
    learn = plan_learn(
        cfg.learn, corpus_fingerprint=corpus_fingerprint(cfg), corpus_grows=grows,
        model=model_facts(cfg.model_path), staging=model_facts(cfg.staging_path),
    )  # fmt: skip
    if not cfg.export.enabled:
        export = StagePlan("export", "none", "export is off (export.enabled: false)")
    elif learn.work:
        export = StagePlan(
            "export", "after-learn",
            "the new frames, or every frame if the dictionary moves by more than "
            f"export.reexport_threshold={cfg.export.reexport_threshold:g}",
        )  # fmt: skip
    elif not (cfg.model_path / "zarr.json").exists():
        export = StagePlan("export", "none", "no model")
    else:
        export = export_plan_now(cfg)[0]
    plans = [ingest, learn, export]
    upstream = learn.work or export.work
    for name, section in (("plot", cfg.plot), ("separate", cfg.separate)):
        plans.append(plan_extra(cfg, name, section, upstream))
    return plans


def plan_extra(cfg: PipelineConfig, name: str, section: Any, upstream: bool) -> StagePlan:
    if section is None or not section.enabled:
        return StagePlan(name, "none", f"{name} is off")
    out = cfg.under_root(section.out)
    if upstream:
        return StagePlan(name, "run", "the model or the activations change in this run")
    if not out.exists() or not any(out.iterdir()):
        return StagePlan(name, "run", f"{out} holds nothing yet")
    return StagePlan(name, "none", f"{out} is up to date with the model")
