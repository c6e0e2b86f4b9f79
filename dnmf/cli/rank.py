"""``dnmf rank``: the held-out loss of every rank asked for, to choose one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dnmf.cli import _learn_options as opts
from dnmf.cli import _mask_options as mopts
from dnmf.cli._common import JsonOpt, QuietOpt, SchedulerOpt, WorkersOpt, handle_errors, print_json


@handle_errors
def rank_command(
    corpus: Annotated[Path, typer.Argument(help="A corpus store.")],
    ranks: Annotated[
        str, typer.Option("--ranks", help="Ranks to try, e.g. 8,16,32,64,128.")
    ] = "8,16,32,64,128",
    holdout: Annotated[
        float,
        typer.Option(help="Share of entries held out, in seeded tiles of 4 bins x 4 frames."),
    ] = 0.1,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", help="Folder of the results [default: rank/ beside the corpus]."
        ),
    ] = None,
    beta: Annotated[
        str,
        typer.Option(help="Divergence: itakura-saito (0), kullback-leibler (1), frobenius (2)."),
    ] = "kullback-leibler",
    epochs: Annotated[int, typer.Option(help="Maximum passes over the corpus, per rank.")] = 50,
    batch_chunks: Annotated[
        int | None, typer.Option(help="Chunks per W update [default: all, full-batch MU].")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the held-out tiles and of each run.")] = 0,
    tol: Annotated[float, typer.Option(help="Each run's relative tolerance.")] = 1e-4,
    lags: opts.LagsOpt = None,
    mask_store: mopts.MaskStoreOpt = None,
    mask_silence: mopts.MaskSilenceOpt = None,
    mask_boundaries: mopts.MaskBoundariesOpt = False,
    mask_clipped: mopts.MaskClippedOpt = False,
    mask_above_bandwidth: mopts.MaskAboveBandwidthOpt = False,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Choose the rank: learn each rank with a seeded share of entries held out, and
    print the β-divergence per held-out entry (and per training entry) of each.

    The held-out entries lie in small tiles, so every chunk keeps most of its
    data; the tiles are the same for every rank. The ranks run one after
    another, each on the whole cluster. The folder gets rank.json, one model
    store per rank and rank.png (held-out and training loss against rank).

    **Examples**

        dnmf rank corpus.zarr --ranks 8,16,32,64,128

        dnmf rank corpus.zarr --ranks 16,32,64 --holdout 0.05 --epochs 30 --json

        dnmf rank corpus.zarr --ranks 4,8,16 --lags 8 --mask-boundaries   # NMFD
    """
    from dnmf.nmf.config import LearnConfig
    from pipelines.rank import parse_ranks, rank_corpus

    rank_list = parse_ranks(ranks)
    cfg = LearnConfig.from_options(
        rank=rank_list[0], beta=beta, epochs=epochs, batch_chunks=batch_chunks, seed=seed, tol=tol,
        lags=lags,
        **mopts.mask_options(
            mask_store, mask_silence, mask_boundaries, mask_clipped, mask_above_bandwidth
        ),
    )  # fmt: skip
    out = output if output is not None else Path(corpus).parent / "rank"
    result = rank_corpus(
        corpus, out, ranks=rank_list, config=cfg, holdout=holdout, workers=workers,
        scheduler=scheduler, progress=not quiet,
    )  # fmt: skip
    if json_out:
        print_json(result.as_dict())
        return
    typer.echo(f"{'rank':>6}  {'held-out':>12}  {'training':>12}   (beta-divergence per entry)")
    for r, h, t in zip(result.ranks, result.heldout_loss, result.train_loss, strict=True):
        mark = "  <- lowest held-out loss" if r == result.best_rank else ""
        typer.echo(f"{r:>6}  {h:>12.6g}  {t:>12.6g}{mark}")
    typer.echo(
        f"results in {result.output}/rank.json" + (f", plot {result.plot}" if result.plot else "")
    )
