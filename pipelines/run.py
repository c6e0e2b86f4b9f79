"""``dnmf run CONFIG``: the stages ingest → learn → export (→ plot, separate) from one config.

The pipeline folder (the config's ``store``) holds::

    corpus.zarr        the spectrogram store (stage ingest)
    model.zarr         the dictionary (stage learn); always a finished model
    model.next.zarr    a model being learned; replaces model.zarr whole when done
    activations.zarr   H of every corpus frame (stage export)
    runs.zarr          the run log: attrs["dnmf"]["runs"], one JSON record per stage
    run.lock           the run lock while a run holds the folder (pipelines.lock)

Each stage is planned from what the stores say (pure functions of small
facts, :func:`plan_ingest`, :func:`plan_learn`, :func:`plan_export_stage`),
then runs the same stage function the single commands run
(:func:`pipelines.ingest.ingest`, :func:`pipelines.learn.learn_corpus`,
:func:`pipelines.export.export`), then commits and appends its record to the
run log. So a second run with nothing new does nothing; new files are
appended; the dictionary is refined from the current one (``refine_epochs``
over old and new frames) and only new frames are exported unless the
dictionary moved by more than ``export.reexport_threshold``.

A killed run leaves the stores as their last commit left them: the next run
discards uncommitted corpus frames, resumes ``model.next.zarr`` from its last
checkpoint (bitwise where an uninterrupted run ends) and redoes an
unfinished export.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dnmf.errors import EXIT_OK, EXIT_SKIPPED, DnmfPathError, StoreMismatchError
from pipelines.config import LearnSection, PipelineConfig

if TYPE_CHECKING:
    from distributed import Client

    from pipelines.lock import RunLock

__all__ = [
    "ModelFacts",
    "RunResult",
    "StagePlan",
    "StageRecord",
    "dictionary_change",
    "plan_export_stage",
    "plan_ingest",
    "plan_learn",
    "plan_run",
    "read_run_log",
    "run_pipeline",
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
def _ingest_facts(cfg: PipelineConfig) -> IngestFacts:
    from dnmf.audio.decode import scan
    from dnmf.io.corpus import CorpusStore
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


def _model_facts(path: Path) -> ModelFacts | None:
    from dnmf.io.store import open_group, read_meta

    if not (path / "zarr.json").exists():
        return None
    meta = read_meta(open_group(path), "model", path)
    return ModelFacts.of(meta)


def _corpus_fingerprint(cfg: PipelineConfig) -> str | None:
    from dnmf.io.corpus import CorpusStore

    if not (cfg.corpus_path / "zarr.json").exists():
        return None
    return CorpusStore.open(cfg.corpus_path).fingerprint()


def _export_plan_now(cfg: PipelineConfig) -> tuple[StagePlan, bool]:
    from dnmf.io.corpus import CorpusStore
    from dnmf.io.dictionary import dictionary_fingerprint
    from dnmf.io.model import ModelStore
    from dnmf.io.store import open_group, read_meta
    from pipelines.export import export_settings

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
        settings=export_settings(cfg.export.iter, cfg.export.tol),
        corpus_frames=corpus.n_frames, chunk_frames=corpus.chunk_frames,
    )  # fmt: skip


def plan_run(cfg: PipelineConfig) -> list[StagePlan]:
    """The plan of every stage, from the stores as they are (reads only, for ``--dry-run``)."""
    ingest = plan_ingest(_ingest_facts(cfg))
    grows = ingest.action in ("create", "append")
    learn = plan_learn(
        cfg.learn, corpus_fingerprint=_corpus_fingerprint(cfg), corpus_grows=grows,
        model=_model_facts(cfg.model_path), staging=_model_facts(cfg.staging_path),
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
        export = _export_plan_now(cfg)[0]
    plans = [ingest, learn, export]
    upstream = learn.work or export.work
    for name, section in (("plot", cfg.plot), ("separate", cfg.separate)):
        plans.append(_plan_extra(cfg, name, section, upstream))
    return plans


def _plan_extra(cfg: PipelineConfig, name: str, section: Any, upstream: bool) -> StagePlan:
    if section is None or not section.enabled:
        return StagePlan(name, "none", f"{name} is off")
    out = cfg.under_root(section.out)
    if upstream:
        return StagePlan(name, "run", "the model or the activations change in this run")
    if not out.exists() or not any(out.iterdir()):
        return StagePlan(name, "run", f"{out} holds nothing yet")
    return StagePlan(name, "none", f"{out} is up to date with the model")


# -- the run log ---------------------------------------------------------------------------
@dataclass
class StageRecord:
    """One record of the run log."""

    run: str
    stage: str
    action: str
    reason: str
    status: str = "done"  # done | failed
    started: str = ""
    seconds: float = 0.0
    counts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    config: str = ""  # fingerprint of the whole config the run used


RUNS_KIND = "runs"


def config_fingerprint(cfg: PipelineConfig) -> str:
    """BLAKE2b-64 of the validated config (defaults filled in), as JSON with sorted keys."""
    import hashlib
    import json

    text = json.dumps(cfg.model_dump(mode="json"), sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _append_record(cfg: PipelineConfig, record: StageRecord) -> None:
    import zarr

    from dnmf.io.store import read_meta, write_meta

    path = cfg.runs_path
    if (path / "zarr.json").exists():
        group = zarr.open_group(str(path), mode="r+", zarr_format=3)
        meta = read_meta(group, RUNS_KIND, path)
    else:
        group = zarr.open_group(str(path), mode="w", zarr_format=3)
        meta = {"kind": RUNS_KIND, "runs": []}
    meta["runs"] = [*meta.get("runs", []), asdict(record)]
    write_meta(group, meta)


def read_run_log(store: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The run log of a pipeline folder (oldest first); empty if it has none."""
    from dnmf.io.store import open_group, read_meta

    path = Path(store) / "runs.zarr"
    if not (path / "zarr.json").exists():
        return []
    return list(read_meta(open_group(path), RUNS_KIND, path).get("runs", []))


# -- the run -------------------------------------------------------------------------------
@dataclass
class RunResult:
    """What one ``dnmf run`` did (or, with ``dry_run``, would do)."""

    store: str
    run: str
    dry_run: bool = False
    plan: list[dict[str, Any]] = field(default_factory=list)
    stages: list[dict[str, Any]] = field(default_factory=list)
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    lock_note: str | None = None
    wall_seconds: float = 0.0

    @property
    def work(self) -> bool:
        return any(p["action"] != "none" for p in self.plan)

    @property
    def exit_code(self) -> int:
        return EXIT_SKIPPED if self.skipped_files else EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(work=self.work, exit_code=self.exit_code)
        return d


def run_pipeline(
    cfg: PipelineConfig,
    *,
    dry_run: bool = False,
    break_lock: bool = False,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Client | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> RunResult:
    """Run (or, with ``dry_run``, plan) the pipeline of ``cfg``.

    Parameters
    ----------
    cfg : PipelineConfig
    dry_run : bool
        Plan only; nothing is written and no cluster is started.
    break_lock : bool
        Clear a stale run lock (never a live one) before running.
    workers, scheduler, client :
        Where to compute; by default the config's ``cluster:`` section
        (:func:`pipelines.cluster.open_client`).
    progress : bool
        Progress bars on stderr.
    log : callable, optional
        Called with one line as each stage starts.

    Returns
    -------
    RunResult

    Examples
    --------
    >>> from pipelines.config import load_config
    >>> result = run_pipeline(load_config("configs/demo.yaml"))  # doctest: +SKIP
    >>> [s["action"] for s in result.stages]  # doctest: +SKIP
    ['create', 'learn', 'full', 'none', 'none']
    """
    from pipelines.cluster import open_client
    from pipelines.lock import RunLock

    t0 = time.perf_counter()
    say = log or (lambda _line: None)
    run_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    result = RunResult(store=cfg.store, run=run_id, dry_run=dry_run)
    if cfg.root.exists() and not cfg.root.is_dir():
        raise DnmfPathError(
            f"store {cfg.store!r} is a file, not a folder; set store: to a folder for the stores"
        )
    if dry_run:
        result.plan = [asdict(p) for p in plan_run(cfg)]
        result.lock_note = _lock_note(cfg)
        result.wall_seconds = time.perf_counter() - t0
        return result

    cfg.root.mkdir(parents=True, exist_ok=True)
    lock = RunLock(
        cfg.lock_path, heartbeat=cfg.lock.heartbeat_seconds,
        stale_after=cfg.lock.stale_after_seconds,
    )  # fmt: skip
    result.lock_note = lock.acquire(break_stale=break_lock)
    if result.lock_note:
        say(result.lock_note)
    with lock, ExitStack() as stack:
        _recover_promotion(cfg)
        clients: list[Client] = []

        def get_client() -> Client:
            if client is not None:
                return client
            if not clients:
                clients.append(
                    stack.enter_context(
                        open_client(cfg.cluster, workers=workers, scheduler=scheduler)
                    )
                )
            return clients[0]

        stage = _Stage(cfg, run_id, result, lock, say)
        with stage.run(plan_ingest(_ingest_facts(cfg))) as (plan, counts):
            if plan.work:
                counts.update(_run_ingest(cfg, plan, get_client(), progress))
                result.skipped_files = counts.pop("skipped_files", [])
        with stage.run(
            plan_learn(
                cfg.learn, corpus_fingerprint=_corpus_fingerprint(cfg), corpus_grows=False,
                model=_model_facts(cfg.model_path), staging=_model_facts(cfg.staging_path),
            )
        ) as (plan, counts):  # fmt: skip
            if plan.work:
                counts.update(_run_learn(cfg, plan, get_client, progress))
        export_plan, keep = (
            _export_plan_now(cfg)
            if cfg.export.enabled and (cfg.model_path / "zarr.json").exists()
            else (StagePlan("export", "none", "export is off (export.enabled: false)"), False)
        )
        with stage.run(export_plan) as (plan, counts):
            if plan.work:
                counts.update(_run_export(cfg, keep, get_client(), progress))
        upstream = any(r["action"] != "none" for r in result.stages[1:])
        with stage.run(_plan_extra(cfg, "plot", cfg.plot, upstream)) as (plan, counts):
            if plan.work:
                counts.update(_run_plot(cfg))
        with stage.run(_plan_extra(cfg, "separate", cfg.separate, upstream)) as (plan, counts):
            if plan.work:
                counts.update(_run_separate(cfg))
        stage.finish(time.perf_counter() - t0)
    result.wall_seconds = time.perf_counter() - t0
    return result


def _lock_note(cfg: PipelineConfig) -> str | None:
    """Who holds the store's lock now, if anyone (for ``--dry-run``)."""
    from pipelines.lock import read_lock, stale_reason

    info = read_lock(cfg.lock_path, settle=0.2)
    if info is None:
        return None
    reason = stale_reason(info, stale_after=cfg.lock.stale_after_seconds)
    if reason is None:
        return f"the store is locked by a running dnmf run ({info.owner()}); a run now would refuse"
    return f"the store has a stale run lock ({info.owner()}: {reason}); run with --break-lock"


class _Stage:
    """Runs one stage under the lock and appends its record to the run log, failed or not."""

    def __init__(
        self, cfg: PipelineConfig, run_id: str, result: RunResult, lock: RunLock,
        say: Callable[[str], None],
    ) -> None:  # fmt: skip
        self.cfg, self.run_id, self.result, self.lock, self.say = cfg, run_id, result, lock, say
        self.pending: list[StageRecord] = []

    @contextmanager
    def run(self, plan: StagePlan) -> Iterator[tuple[StagePlan, dict[str, Any]]]:
        self.lock.verify()
        self.result.plan.append(asdict(plan))
        if plan.work:
            self.say(f"{plan.stage}: {plan.action} ({plan.reason})")
        started = datetime.now(UTC).isoformat(timespec="seconds")
        t0 = time.perf_counter()
        counts: dict[str, Any] = {}
        record = StageRecord(
            self.run_id, plan.stage, plan.action, plan.reason, started=started, counts=counts,
            config=config_fingerprint(self.cfg),
        )  # fmt: skip
        try:
            yield plan, counts
        except BaseException as exc:
            record.status = "failed"
            record.error = f"{type(exc).__name__}: {exc}"
            record.seconds = round(time.perf_counter() - t0, 3)
            try:
                self.flush()
                _append_record(self.cfg, record)
            except Exception:  # the log must never hide the error itself
                pass
            raise
        record.seconds = round(time.perf_counter() - t0, 3)
        self.result.stages.append(asdict(record))
        # A run with nothing to do logs one line (see finish), not one per idle stage.
        self.pending.append(record)
        if plan.work:
            self.flush()

    def flush(self) -> None:
        for record in self.pending:
            _append_record(self.cfg, record)
        self.pending = []

    def finish(self, seconds: float) -> None:
        """Write what is left of the log: the idle stages, or one record for an idle run."""
        if any(r.action != "none" for r in self.pending) or len(self.pending) < len(
            self.result.stages
        ):
            self.flush()
            return
        stages = ", ".join(f"{r.stage}: {r.reason}" for r in self.pending)
        started = self.pending[0].started if self.pending else ""
        self.pending = []
        _append_record(
            self.cfg,
            StageRecord(
                self.run_id, "run", "none", f"nothing new ({stages})", started=started,
                seconds=round(seconds, 3), config=config_fingerprint(self.cfg),
            ),
        )  # fmt: skip


# -- the stages ----------------------------------------------------------------------------
def _run_ingest(
    cfg: PipelineConfig, plan: StagePlan, client: Client, progress: bool
) -> dict[str, Any]:
    from pipelines.ingest import ingest

    counts: dict[str, Any] = {}
    if not Path(cfg.input).exists() and cfg.synthesize is not None:
        from dnmf.demo import make_corpus

        s = cfg.synthesize
        made = make_corpus(cfg.input, n_files=s.n_files, seconds=s.seconds, seed=s.seed)
        counts["synthesized"] = len(made)
    r = ingest(
        cfg.input, cfg.corpus_path, features=cfg.ingest.features_config(),
        chunk_frames=cfg.ingest.chunk_frames, client=client, progress=progress,
    )  # fmt: skip
    counts.update(
        files=r.files, added=len(r.added), frames_added=r.frames_added,
        seconds_added=round(r.seconds_added, 3), changed=len(r.changed), removed=len(r.removed),
        skipped=len(r.skipped), skipped_files=r.skipped, workers=r.workers,
    )  # fmt: skip
    from dnmf.io.corpus import CorpusStore

    counts["corpus_fingerprint"] = CorpusStore.open(cfg.corpus_path).fingerprint()
    return counts


def _run_learn(
    cfg: PipelineConfig, plan: StagePlan, get_client: Callable[[], Client], progress: bool
) -> dict[str, Any]:
    from dnmf.io.dictionary import dictionary_fingerprint
    from dnmf.io.model import ModelStore
    from dnmf.io.store import consolidate, read_meta, write_meta
    from pipelines.learn import learn_corpus

    staging = cfg.staging_path
    W_old = ModelStore.open(cfg.model_path).W if (cfg.model_path / "zarr.json").exists() else None
    counts: dict[str, Any] = {}
    refine = plan.action == "refine"
    if plan.action in ("resume", "promote"):
        refine = ModelStore.open(staging).meta["config"].get("init") == "custom"
    if not refine:
        W_old = None  # learned from scratch: nothing to compare with
    if plan.action != "promote":
        config = cfg.learn.refine_config() if refine else cfg.learn.learn_config()
        resume = plan.action == "resume"
        if not resume and staging.exists():
            shutil.rmtree(staging)
        r = learn_corpus(
            cfg.corpus_path, staging, config=config, W_init=W_old, resume=resume,
            overwrite=True, client=get_client(), progress=progress,
        )  # fmt: skip
        counts.update(
            epochs=r.epochs, steps=r.steps, loss=r.loss, converged=r.converged,
            resumed_from_step=r.resumed_from_step, workers=r.workers,
        )  # fmt: skip
    model = ModelStore.open(staging, mode="r+")
    meta = read_meta(model.group, "model", staging)
    W_new = model.W
    change = dictionary_change(W_old, W_new) if W_old is not None else None
    meta["pipeline"] = {
        "learn": cfg.learn.learn_config().model_dump(mode="json"),
        "refined_from": dictionary_fingerprint(W_old) if W_old is not None else None,
        "dictionary_change": change,
    }
    write_meta(model.group, meta)
    consolidate(staging)
    _promote(cfg)
    counts.update(
        refined=W_old is not None, dictionary_change=change,
        dictionary_fingerprint=dictionary_fingerprint(W_new),
    )  # fmt: skip
    return counts


def _promote(cfg: PipelineConfig) -> None:
    """``model.next.zarr`` becomes ``model.zarr`` (two renames; see :func:`_recover_promotion`)."""
    old = cfg.root / "model.old.zarr"
    if old.exists():
        shutil.rmtree(old)
    if cfg.model_path.exists():
        os.replace(cfg.model_path, old)
    os.replace(cfg.staging_path, cfg.model_path)
    shutil.rmtree(old, ignore_errors=True)


def _recover_promotion(cfg: PipelineConfig) -> None:
    """Finish a promotion a killed run left between its two renames."""
    old = cfg.root / "model.old.zarr"
    if not old.exists():
        return
    if not cfg.model_path.exists():
        staged = _model_facts(cfg.staging_path)
        if staged is not None and staged.status == "done":
            os.replace(cfg.staging_path, cfg.model_path)
        else:
            os.replace(old, cfg.model_path)
    shutil.rmtree(old, ignore_errors=True)


def _run_export(cfg: PipelineConfig, keep: bool, client: Client, progress: bool) -> dict[str, Any]:
    from pipelines.export import export

    r = export(
        cfg.model_path, cfg.activations_path, n_iter=cfg.export.iter, tol=cfg.export.tol,
        keep_existing=keep, client=client, progress=progress,
    )  # fmt: skip
    return {"frames_exported": r.frames_exported, "chunks": r.chunks, "kept_existing": keep}


def _run_plot(cfg: PipelineConfig) -> dict[str, Any]:
    from dnmf.plot import plot_store

    assert cfg.plot is not None
    store = (
        cfg.activations_path if (cfg.activations_path / "zarr.json").exists() else cfg.model_path
    )
    paths = plot_store(store, cfg.under_root(cfg.plot.out), file=cfg.plot.file)
    return {"written": [str(p) for p in paths]}


def _run_separate(cfg: PipelineConfig) -> dict[str, Any]:
    from dnmf.io.dictionary import load_dictionary
    from dnmf.separate import parse_groups, separate

    s = cfg.separate
    assert s is not None
    d = load_dictionary(str(cfg.model_path))
    groups = parse_groups([f"{k}={v}" for k, v in s.groups.items()]) if s.groups else None
    written: list[str] = []
    for audio in s.inputs:
        paths = separate(d, audio, cfg.under_root(s.out), groups=groups, alpha=s.alpha)
        written += [str(p) for p in paths]
    return {"inputs": len(s.inputs), "written": written}
