"""``dnmf transform``: activations of audio files outside the corpus, under a model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dnmf.cli._common import JsonOpt, QuietOpt, handle_errors, print_json, store_lock
from dnmf.words import count

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
    with store_lock(output):
        result = transform_files(
            model, audio, output, n_iter=n_iter, tol=tol, overwrite=overwrite, progress=not quiet
        )
    note = resampled_note(result.files, result.sr)
    if note:
        typer.echo(note, err=True)
    if json_out:
        print_json(result.as_dict())
    elif not quiet:
        _print_summary(result)


def _resume(kwargs: dict[str, Any]) -> tuple[list[str], list[str]] | None:
    """After Ctrl-C: the unfinished store is replaced, so --overwrite."""
    return (["--overwrite"], []) if Path(kwargs["output"]).exists() else None


transform_command.resume = _resume  # type: ignore[attr-defined]


def resampled_note(files: list[dict[str, Any]], sr: int) -> str | None:
    """One line naming the files whose sample rate is not the model's, or None.

    Examples
    --------
    >>> resampled_note([{"file": "a.wav", "samplerate": 8000}], 22050)[:25]
    'note: a.wav is at 8000 Hz'
    """
    other = [f for f in files if f["samplerate"] != sr]
    if not other:
        return None

    def one(f: dict[str, Any]) -> str:
        rate = int(f["samplerate"])
        empty = f", nothing above {rate // 2} Hz" if rate < sr else ""
        return f"{f['file']} ({rate} Hz{empty})"

    if len(other) == 1:
        f = other[0]
        rate = int(f["samplerate"])
        tail = f" and holds nothing above {rate // 2} Hz" if rate < sr else ""
        return f"note: {f['file']} is at {rate} Hz, not the model's {sr} Hz; it was resampled{tail}"
    shown = ", ".join(one(f) for f in other[:5]) + (" ..." if len(other) > 5 else "")
    return f"note: {len(other)} files are not at the model's {sr} Hz and were resampled: {shown}"


def _print_summary(result: Any) -> None:
    seconds = sum(f["duration"] for f in result.files)
    typer.echo(
        f"transformed {count(len(result.files), 'file')} ({seconds / 3600:.3f} h of audio, "
        f"{result.n_frames} frames) into {result.store} in {result.wall_seconds:.1f} s"
    )
    typer.echo(f"load it: xarray.open_zarr({result.store!r})")
