"""``dnmf transform``: activations of audio files outside the corpus, under a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dnmf.cli._common import JsonOpt, QuietOpt, handle_errors, print_json

IterOpt = Annotated[
    int, typer.Option("--iter", help="Most multiplicative updates of H per block of frames.")
]
TolOpt = Annotated[
    float,
    typer.Option(
        help="Stop when the loss falls by less than this over 10 updates, relative to its "
        "start (0: always run --iter)."
    ),
]


@handle_errors
def transform_command(
    model: Annotated[Path, typer.Argument(help="A model store written by dnmf learn.")],
    audio: Annotated[
        list[Path],
        typer.Argument(help="Audio files (a folder stands for every audio file under it)."),
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="The activations store to write.")
    ] = Path("transform.zarr"),
    n_iter: IterOpt = 200,
    tol: TolOpt = 1e-4,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing activations store.")
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Activations H (component x frame) of audio files under a learned dictionary.

    Each file is decoded, mixed to mono, resampled and turned into frames
    exactly as dnmf ingest did for the model's corpus, then H is solved with
    the dictionary fixed (the model's beta), 8192 frames at a time. The store
    is laid out as a corpus store: H with time and file_index on frame, and a
    file table along file indexed by the paths as given, so
    xarray.open_zarr(STORE).sel(file=PATH) selects one file. A file that
    cannot be used stops the command before anything is written (exit 2).

    **Examples**

        dnmf transform recordings.dnmf/model.zarr take1.wav take2.flac -o takes.zarr

        dnmf transform model.zarr new_recordings/ -o new.zarr --iter 500 --tol 0

        dnmf transform model.zarr take.wav --overwrite --json
    """
    from dnmf.io.paths import check_output
    from dnmf.transform import transform_files

    check_output(output, what="activations store")

    result = transform_files(
        model, audio, output, n_iter=n_iter, tol=tol, overwrite=overwrite, progress=not quiet
    )
    if json_out:
        print_json(result.as_dict())
    elif not quiet:
        _print_summary(result)


def _print_summary(result: Any) -> None:
    seconds = sum(f["duration"] for f in result.files)
    typer.echo(
        f"transformed {len(result.files)} files ({seconds / 3600:.3f} h of audio, "
        f"{result.n_frames} frames) into {result.store} in {result.wall_seconds:.1f} s"
    )
    typer.echo(f"load it: xarray.open_zarr({result.store!r})")
