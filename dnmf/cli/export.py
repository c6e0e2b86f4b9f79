"""``dnmf export``: the activations of every corpus frame under a learned dictionary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dnmf.cli._common import (
    JsonOpt,
    QuietOpt,
    SchedulerOpt,
    WorkersOpt,
    cluster_note,
    handle_errors,
    print_json,
    store_lock,
)


@handle_errors
def export_command(
    model: Annotated[Path, typer.Argument(help="A model store written by dnmf learn.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Activations store [default: activations.zarr beside the model]."
        ),
    ] = None,
    n_iter: Annotated[
        int, typer.Option("--iter", help="Multiplicative updates per chunk at most.")
    ] = 200,
    tol: Annotated[
        float, typer.Option(help="Stop a chunk when its loss falls by less than this.")
    ] = 1e-4,
    masks: Annotated[
        bool,
        typer.Option(
            "--masks/--no-masks",
            help="Apply the masks the model was learned with (a mask store, silence, file "
            "boundaries; not dnmf rank's held-out tiles): masked entries do not pull H.",
        ),
    ] = True,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Solve the activations H (component x frame) of the model's corpus, W fixed.

    H is written chunk for chunk aligned with the corpus V, with the same time
    and file_index coordinates and file table. Running it again exports only
    the frames of newly ingested files, or everything when the dictionary
    changed. A model learned with masks (--mask-store, --mask-silence,
    --mask-boundaries) exports with the same masks unless --no-masks.

    **Examples**

        dnmf export recordings.dnmf/model.zarr

        dnmf export model.zarr -o acts.zarr --iter 500 --tol 1e-5 --json

        dnmf export model.zarr --no-masks        # every entry pulls H
    """
    from dnmf.io.paths import check_output
    from pipelines.export import export

    store = check_output(
        output if output is not None else model.parent / "activations.zarr",
        what="activations store",
    )
    with store_lock(store):
        result = export(
            model, output, n_iter=n_iter, tol=tol, workers=workers, scheduler=scheduler,
            progress=not quiet, masks=masks,
        )  # fmt: skip
    if json_out:
        print_json(result.as_dict())
    elif not quiet:
        if result.nothing_new:
            typer.echo(f"nothing new: {result.store} is up to date with the model and corpus")
        else:
            typer.echo(
                f"exported {result.frames_exported} frames ({result.chunks} chunks, "
                f"{result.reason}) into {result.store} in {result.wall_seconds:.1f} s"
                f"{cluster_note(result.cluster_seconds)}"
            )
