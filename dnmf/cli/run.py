"""``dnmf run``: the whole pipeline (ingest → learn → export) from one YAML config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dnmf.cli._common import (
    JsonOpt,
    QuietOpt,
    SchedulerOpt,
    WorkersOpt,
    handle_errors,
    print_json,
    print_skipped,
)


@handle_errors
def run_command(
    config: Annotated[
        Path,
        typer.Argument(metavar="CONFIG", help="A pipeline config (YAML), e.g. configs/demo.yaml."),
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override a config key, e.g. --set learn.rank=32 (repeatable; YAML values).",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the plan and exit: 1 if there is work to do, 0 if not."
        ),
    ] = False,
    break_lock: Annotated[
        bool,
        typer.Option(
            "--break-lock",
            help="Clear a stale run lock (its run is gone) first; a live lock is never broken.",
        ),
    ] = False,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run the pipeline of a config: ingest new audio, learn or refine the dictionary, export.

    A second run with nothing new does nothing and says so. New files are
    ingested and appended; the dictionary is refined from the current one
    (learn.refine_epochs over old and new frames) and only new frames are
    exported unless the dictionary moved by more than
    export.reexport_threshold. One run at a time holds the store's lock; a
    killed run is resumed by the next one (after --break-lock clears its
    stale lock). The cluster: --scheduler or --workers, else
    $DNMF_SCHEDULER, else the config's cluster section.

    Exit codes: 0 done (or, with --dry-run, nothing to do), 1 failed (or,
    with --dry-run, work to do), 2 bad config or usage, or the store is
    locked, 3 done but some files were skipped.

    **Examples**

        dnmf run configs/demo.yaml

        dnmf run configs/laptop.yaml --set learn.rank=32 --set input=/data/new-recordings

        dnmf run configs/cluster.yaml --dry-run

        dnmf run configs/slurm.yaml --json

        dnmf run configs/laptop.yaml --break-lock
    """
    from pipelines.config import load_config
    from pipelines.run import run_pipeline

    cfg = load_config(config, set_ or [])
    if not dry_run:
        from dnmf.io.paths import check_output

        check_output(cfg.root, option="store", what="pipeline folder")
    log = None if quiet or json_out else (lambda line: typer.echo(line, err=True))
    result = run_pipeline(
        cfg, dry_run=dry_run, break_lock=break_lock, workers=workers, scheduler=scheduler,
        progress=not quiet and not json_out, log=log,
    )  # fmt: skip
    summary = result.as_dict()
    if dry_run:
        from pipelines.cluster import describe_target

        summary["cluster"] = describe_target(cfg.cluster, workers=workers, scheduler=scheduler)
        job = _job_script(cfg, workers, scheduler)
        if job is not None:
            summary["job_script"] = job
    if json_out:
        print_json(summary)
    elif not quiet:
        _print(result, summary.get("job_script"), summary.get("cluster"))
    if dry_run:
        raise typer.Exit(1 if result.work else 0)
    raise typer.Exit(result.exit_code)


def _job_script(cfg: Any, workers: int | None, scheduler: str | None) -> str | None:
    import os

    from dnmf.cluster import SCHEDULER_ENV

    if cfg.cluster.kind not in ("slurm", "pbs") or workers or scheduler:
        return None
    if os.environ.get(SCHEDULER_ENV):
        return None
    from pipelines.cluster import job_script

    return job_script(cfg.cluster)


def _print(result: Any, job_script: str | None, cluster: str | None) -> None:
    echo = typer.echo
    if result.dry_run:
        echo(f"plan for {result.store}:")
        for p in result.plan:
            echo(f"  {p['stage']:<9} {p['action']:<11} {p['reason']}")
        if result.work and cluster:
            echo(f"on {cluster}")
        if result.lock_note:
            echo(result.lock_note)
        if job_script:
            echo("each batch job would run:")
            echo(job_script.rstrip())
        echo("work to do" if result.work else "nothing to do")
        return
    if not result.work:
        echo(f"nothing new: {result.store} is up to date ({result.wall_seconds:.1f} s)")
        return
    if result.cluster_seconds > 0:
        echo(f"{'cluster':<9} {'start':<11} {result.cluster_seconds:.1f} s")
    for s in result.stages:
        if s["action"] == "none":
            continue
        counts = ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
            for k, v in s["counts"].items()
            if v is not None and k not in ("written", "workers") and not k.endswith("fingerprint")
        )
        echo(f"{s['stage']:<9} {s['action']:<11} {s['seconds']:.1f} s  {counts}")
    echo(
        f"done: {result.store} in {result.wall_seconds:.1f} s; run log in {result.store}/runs.zarr"
    )
    print_skipped(result.skipped_files)
