"""``dnmf demo``: a small synthetic corpus through the whole pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dnmf.cli._common import JsonOpt, QuietOpt, WorkersOpt, handle_errors, print_json
from dnmf.words import count


@handle_errors
def demo_command(
    folder: Annotated[
        Path, typer.Option("--folder", "-o", help="Where to write the demo corpus and stores.")
    ] = Path("dnmf-demo"),
    n_files: Annotated[int, typer.Option(min=1, help="Number of synthetic pieces.")] = 6,
    seconds: Annotated[float, typer.Option(min=1.0, help="Typical length of a piece.")] = 20.0,
    rank: Annotated[int, typer.Option(min=1, help="Components of the dictionary.")] = 16,
    epochs: Annotated[int, typer.Option(min=1, help="Passes of the learner.")] = 40,
    workers: WorkersOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a small synthetic corpus, ingest it and learn a dictionary from it.

    The corpus (harmonic notes and noise drums at several sample rates and
    channel counts) goes to FOLDER/audio, the corpus store to
    FOLDER/corpus.zarr. Running it again finds nothing new.

    **Examples**

        dnmf demo

        dnmf demo --folder /tmp/dnmf-demo --n-files 12 --workers 2
    """
    from dnmf.cluster import connect
    from dnmf.demo import make_corpus
    from dnmf.io.paths import check_output
    from dnmf.nmf.config import LearnConfig
    from pipelines.ingest import ingest
    from pipelines.learn import learn_corpus

    check_output(folder, option="--folder", what="demo folder")
    audio = folder / "audio"
    if not audio.exists():
        make_corpus(audio, n_files=n_files, seconds=seconds)
    with connect(workers) as client:
        ingested = ingest(audio, folder / "corpus.zarr", client=client, progress=not quiet)
        model = folder / "model.zarr"
        learned = None
        if not ingested.nothing_new or not (model / "zarr.json").exists():
            cfg = LearnConfig(rank=rank, beta="kullback-leibler", epochs=epochs, init="nndsvda")
            learned = learn_corpus(
                ingested.store, model, config=cfg, overwrite=True, client=client,
                progress=not quiet,
            )  # fmt: skip
    summary = {
        "folder": str(folder),
        "ingest": ingested.as_dict(),
        "learn": learned.as_dict() if learned else None,
    }
    if json_out:
        print_json(summary)
    elif not quiet:
        typer.echo(
            f"corpus store {ingested.store}: {count(ingested.files, 'file')}; ingested "
            f"{len(ingested.added)} now ({ingested.seconds_added:.0f} s of audio)"
        )
        if learned is not None:
            typer.echo(
                f"model store {learned.model}: rank {rank}, {learned.epochs} epochs, "
                f"KL loss {learned.losses[0]:.4g} -> {learned.losses[-1]:.4g}"
            )
        else:
            typer.echo(f"model store {model} is up to date with the corpus")
        typer.echo(f"look inside: dnmf info {ingested.store}; dnmf info {model}")
