"""``dnmf demo``: a small synthetic corpus through the whole pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dnmf.cli._common import JsonOpt, QuietOpt, WorkersOpt, handle_errors, print_json


@handle_errors
def demo_command(
    folder: Annotated[
        Path, typer.Option("--folder", "-o", help="Where to write the demo corpus and stores.")
    ] = Path("dnmf-demo"),
    n_files: Annotated[int, typer.Option(min=1, help="Number of synthetic pieces.")] = 6,
    seconds: Annotated[float, typer.Option(min=1.0, help="Typical length of a piece.")] = 20.0,
    workers: WorkersOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a small synthetic corpus and run the pipeline on it.

    The corpus (harmonic notes and noise drums at several sample rates and
    channel counts) goes to FOLDER/audio, the corpus store to
    FOLDER/corpus.zarr. Running it again finds nothing new.

    **Examples**

        dnmf demo

        dnmf demo --folder /tmp/dnmf-demo --n-files 12 --workers 2
    """
    from dnmf.demo import make_corpus
    from pipelines.ingest import ingest

    audio = folder / "audio"
    if not audio.exists():
        make_corpus(audio, n_files=n_files, seconds=seconds)
    result = ingest(audio, folder / "corpus.zarr", workers=workers, progress=not quiet)
    summary = {"folder": str(folder), "ingest": result.as_dict()}
    if json_out:
        print_json(summary)
    elif not quiet:
        typer.echo(
            f"corpus store {result.store}: {result.files} files; ingested "
            f"{len(result.added)} now ({result.seconds_added:.0f} s of audio)"
        )
        typer.echo(f"look inside: dnmf info {result.store}")
