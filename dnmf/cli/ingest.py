"""``dnmf ingest``: an audio folder becomes a chunked Zarr spectrogram store."""

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
    print_skipped,
    store_lock,
)
from dnmf.words import count


@handle_errors
def ingest_command(
    corpus_dir: Annotated[
        Path, typer.Argument(help="Folder of audio files, searched recursively.")
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Corpus store [default: ./NAME.dnmf/corpus.zarr, NAME being the corpus "
            "folder's name].",
        ),
    ] = None,
    sr: Annotated[int, typer.Option(help="Sample rate to resample to (Hz).")] = 22050,
    n_fft: Annotated[int, typer.Option(help="FFT size in samples.")] = 2048,
    hop_length: Annotated[int, typer.Option(help="Samples between frames.")] = 512,
    features: Annotated[str, typer.Option(help="'stft' or 'mel'.")] = "stft",
    n_mels: Annotated[int, typer.Option(help="Mel bands, with --features mel.")] = 128,
    power: Annotated[
        float, typer.Option(help="Exponent of the magnitude (1 = magnitude, 2 = power).")
    ] = 1.0,
    chunk_frames: Annotated[
        int | None, typer.Option(help="Frames per Zarr chunk of a new store [default: 8192].")
    ] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Start the store over.")] = False,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Ingest a folder of audio into a corpus store; re-running appends only new files.

    Files are decoded with soundfile, mixed to mono, resampled to --sr and
    turned into |STFT|**power (or a mel spectrogram) with librosa, in parallel
    on a Dask cluster. Files that cannot be read are recorded and skipped
    (exit code 3).

    **Examples**

        dnmf ingest recordings/

        dnmf ingest recordings/ -o /data/rec.zarr --sr 16000 --n-fft 1024 --hop-length 256

        dnmf ingest recordings/ --features mel --n-mels 96 --workers 8 --json

        dnmf ingest recordings/ --scheduler tcp://10.0.0.5:8786
    """
    from dnmf.audio.features import FeatureConfig
    from dnmf.io.paths import check_output
    from pipelines.ingest import default_store, ingest

    store = check_output(
        output if output is not None else default_store(corpus_dir), what="corpus store"
    )
    cfg = FeatureConfig.from_options(
        sr=sr, n_fft=n_fft, hop_length=hop_length, features=features, n_mels=n_mels, power=power
    )
    with store_lock(store):
        result = ingest(
            corpus_dir, output, features=cfg, chunk_frames=chunk_frames, rebuild=rebuild,
            workers=workers, scheduler=scheduler, progress=not quiet,
        )  # fmt: skip
    if json_out:
        print_json(result.as_dict())
    elif not quiet:
        _print_summary(result)
    raise typer.Exit(result.exit_code)


def _print_summary(result) -> None:  # type: ignore[no-untyped-def]
    echo = typer.echo
    if result.nothing_new:
        echo(f"nothing new: all {count(result.files, 'file')} are already in {result.store}")
    else:
        echo(
            f"ingested {count(len(result.added), 'file')} ({result.seconds_added / 3600:.3f} h "
            "of audio, "
            f"{result.frames_added} frames) into {result.store} in {result.wall_seconds:.1f} s"
            f"{cluster_note(result.cluster_seconds)}, {result.realtime_factor:.0f}x realtime on "
            f"{count(result.workers, 'worker')}"
        )
    for name, what in (("changed", "changed since ingest"), ("removed", "removed from the folder")):
        files = getattr(result, name)
        if files:
            echo(
                f"{count(len(files), 'file')} {what} (recorded; --rebuild re-ingests): "
                + ", ".join(files[:5])
                + (" ..." if len(files) > 5 else "")
            )
    print_skipped(result.skipped)
