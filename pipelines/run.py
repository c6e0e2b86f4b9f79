"""``dnmf run CONFIG``: the stages ingest → learn → export (→ plot, separate) from one config.

The pipeline folder (the config's ``store``) holds::

    corpus.zarr        the spectrogram store (stage ingest)
    model.zarr         the dictionary (stage learn); always a finished model
    model.next.zarr    a model being learned; replaces model.zarr whole when done
    activations.zarr   H of every corpus frame (stage export)
    runs.zarr          the run log: attrs["dnmf"]["runs"], one JSON record per stage
    run.lock           the run lock while a run holds the folder (pipelines.lock)

Each stage is planned from what the stores say (pure functions of small
facts, :mod:`pipelines.run_plan`),
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

from dnmf.errors import EXIT_OK, EXIT_SKIPPED, DnmfPathError
from pipelines.config import PipelineConfig
from pipelines.run_plan import (
    StagePlan,
    corpus_fingerprint,
    dictionary_change,
    export_plan_now,
    ingest_facts,
    model_facts,
    plan_extra,
    plan_ingest,
    plan_learn,
    plan_run,
)

if TYPE_CHECKING:
    from distributed import Client

    from pipelines.lock import RunLock

__all__ = [
    "RunResult",
    "StageRecord",
    "read_run_log",
    "run_pipeline",
]


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
    cluster_seconds: float = 0.0
    """Of ``wall_seconds``, the time it took to start (or join) the cluster; 0 when none was."""

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
            if not clients:  # started on first use, and timed on its own
                t = time.perf_counter()
                clients.append(
                    stack.enter_context(
                        open_client(
                            cfg.cluster, workers=workers, scheduler=scheduler, progress=progress
                        )
                    )
                )
                result.cluster_seconds = time.perf_counter() - t
            return clients[0]

        def before(plan: StagePlan) -> StagePlan:
            """Start the cluster before a stage that needs it: its seconds leave the start out."""
            if plan.work and plan.action != "promote":
                get_client()
            return plan

        stage = _Stage(cfg, run_id, result, lock, say)
        with stage.run(before(plan_ingest(ingest_facts(cfg)))) as (plan, counts):
            if plan.work:
                counts.update(_run_ingest(cfg, plan, get_client(), progress))
                result.skipped_files = counts.pop("skipped_files", [])
        learn_plan = plan_learn(
            cfg.learn, corpus_fingerprint=corpus_fingerprint(cfg), corpus_grows=False,
            model=model_facts(cfg.model_path), staging=model_facts(cfg.staging_path),
        )  # fmt: skip
        with stage.run(before(learn_plan)) as (plan, counts):
            if plan.work:
                counts.update(_run_learn(cfg, plan, get_client, progress))
        export_plan, keep = (
            export_plan_now(cfg)
            if cfg.export.enabled and (cfg.model_path / "zarr.json").exists()
            else (StagePlan("export", "none", "export is off (export.enabled: false)"), False)
        )
        with stage.run(before(export_plan)) as (plan, counts):
            if plan.work:
                counts.update(_run_export(cfg, keep, get_client(), progress))
        upstream = any(r["action"] != "none" for r in result.stages[1:])
        with stage.run(plan_extra(cfg, "plot", cfg.plot, upstream)) as (plan, counts):
            if plan.work:
                counts.update(_run_plot(cfg))
        with stage.run(plan_extra(cfg, "separate", cfg.separate, upstream)) as (plan, counts):
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
        staged = model_facts(cfg.staging_path)
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
