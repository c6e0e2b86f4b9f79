"""``dnmf demo``: a small synthetic corpus through the whole pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dnmf.cli._common import JsonOpt, QuietOpt, WorkersOpt, handle_errors, print_json, status
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
    import time

    from dnmf.io.paths import check_output

    t0 = time.perf_counter()
    check_output(folder, option="--folder", what="demo folder")
    audio = folder / "audio"
    if not audio.exists():
        from dnmf.demo import make_corpus

        status(f"writing {n_files} synthetic pieces into {audio}...", quiet)
        make_corpus(audio, n_files=n_files, seconds=seconds)
    cfg = dict(rank=rank, beta="kullback-leibler", epochs=epochs, init="nndsvda")
    ingested, learned, cluster_seconds = _ingest_and_learn(folder, cfg, workers, quiet)
    summary = {
        "folder": str(folder),
        "ingest": ingested.as_dict(),
        "learn": learned.as_dict() if learned else None,
        "cluster_seconds": cluster_seconds,
        "wall_seconds": time.perf_counter() - t0,
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
            typer.echo(f"model store {folder / 'model.zarr'} is up to date with the corpus")
        typer.echo(_totals(summary))
        typer.echo(f"look inside: dnmf info {ingested.store}; dnmf info {folder / 'model.zarr'}")


def _ingest_and_learn(folder: Path, cfg: dict[str, Any], workers: int | None, quiet: bool) -> Any:
    """Ingest the demo folder and learn when there is something new; no cluster when not."""
    import time

    from dnmf.cluster import connect
    from dnmf.io.model import ModelStore
    from dnmf.nmf.config import LearnConfig
    from pipelines.ingest import ingest, prepare
    from pipelines.learn import learn_corpus

    audio, store, model = folder / "audio", folder / "corpus.zarr", folder / "model.zarr"
    if (model / "zarr.json").exists():
        ModelStore.open(model)  # a damaged model is refused, never reported up to date
    if not prepare(audio, store).to_probe and (model / "zarr.json").exists():
        return ingest(audio, store, progress=not quiet), None, 0.0  # finds nothing new
    t0 = time.perf_counter()
    with connect(workers, progress=not quiet) as client:
        cluster_seconds = time.perf_counter() - t0
        ingested = ingest(audio, store, client=client, progress=not quiet)
        learned = None
        if not ingested.nothing_new or not (model / "zarr.json").exists():
            learned = learn_corpus(
                ingested.store, model, config=LearnConfig(**cfg), overwrite=True, client=client,
                progress=not quiet,
            )  # fmt: skip
    return ingested, learned, cluster_seconds


def _totals(summary: dict[str, Any]) -> str:
    """``done in 22.5 s: starting the cluster 3.0 s, ingest 5.2 s, learn 12.1 s``."""
    parts = [("starting the cluster", summary["cluster_seconds"])]
    parts.append(("ingest", summary["ingest"]["wall_seconds"]))
    if summary["learn"]:
        parts.append(("learn", summary["learn"]["wall_seconds"]))
    shown = ", ".join(f"{name} {sec:.1f} s" for name, sec in parts if sec > 0)
    return f"done in {summary['wall_seconds']:.1f} s" + (f": {shown}" if shown else "")
