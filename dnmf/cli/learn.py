"""``dnmf learn``: a dictionary from a corpus store (or an audio folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dnmf.cli._common import JsonOpt, QuietOpt, SchedulerOpt, WorkersOpt, handle_errors, print_json
from dnmf.errors import DnmfUsageError


@handle_errors
def learn_command(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT", help="A corpus store, or a folder of audio to ingest first."
        ),
    ],
    rank: Annotated[int, typer.Option("--rank", "-r", help="Number of components.")],
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Model store [default: model.zarr beside the corpus]."),
    ] = None,
    beta: Annotated[
        str,
        typer.Option(
            help="Divergence: itakura-saito (0), kullback-leibler (1), frobenius (2) or any number."
        ),
    ] = "kullback-leibler",
    epochs: Annotated[int, typer.Option(help="Maximum passes over the corpus.")] = 50,
    batch_chunks: Annotated[
        int | None, typer.Option(help="Chunks per W update [default: all, full-batch MU].")
    ] = None,
    inner: Annotated[int, typer.Option(help="H updates per chunk visit.")] = 1,
    forget_factor: Annotated[
        float, typer.Option(help="Forgetting of the minibatch accumulators.")
    ] = 0.7,
    init: Annotated[
        str, typer.Option(help="random, nndsvda, kmeans, or a model store whose W starts the run.")
    ] = "random",
    seed: Annotated[int, typer.Option(help="Seed of the init, initial H and epoch order.")] = 0,
    tol: Annotated[
        float, typer.Option(help="Stop when the epoch loss falls by less than this, relatively.")
    ] = 1e-4,
    alpha_w: Annotated[
        float, typer.Option("--alpha-w", help="Regularisation of the dictionary W.")
    ] = 0.0,
    alpha_h: Annotated[
        float, typer.Option("--alpha-h", help="Regularisation of the activations H.")
    ] = 0.0,
    l1_ratio: Annotated[
        float, typer.Option(help="L1 share of the regularisation (scikit-learn's).")
    ] = 0.0,
    norm: Annotated[str, typer.Option(help="Column normalisation of W: l2, max or none.")] = "l2",
    fixed_components: Annotated[
        str | None, typer.Option(help="Columns of the --init dictionary kept fixed, e.g. 0,1,2.")
    ] = None,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 10,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the model store's last checkpoint.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing model store.")
    ] = False,
    workers: WorkersOpt = None,
    scheduler: SchedulerOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Learn an NMF dictionary W (bin x component) from a corpus, on a Dask cluster.

    Full-batch multiplicative updates by default (the same W as scikit-learn's
    NMF(solver='mu') from the same init); --batch-chunks turns on minibatch
    steps. The same seed and chunking give bitwise the same W for any number
    of workers; --resume continues after a crash and ends where an
    uninterrupted run ends.

    **Examples**

        dnmf learn recordings/ --rank 64

        dnmf learn recordings.dnmf/corpus.zarr --rank 32 --beta itakura-saito --epochs 100

        dnmf learn corpus.zarr --rank 64 --batch-chunks 4 --inner 3 --workers 8 --json

        dnmf learn corpus.zarr --rank 40 --init drums.zarr --fixed-components 0,1,2,3 -o model2.zarr

        dnmf learn corpus.zarr --rank 64 --resume
    """
    from dnmf.learn import LearnConfig
    from pipelines.learn import learn_corpus

    W_init = None
    init_name = init
    if init not in ("random", "nndsvda", "kmeans"):
        W_init = _dictionary_from(init)
        init_name = "custom"
    fixed: tuple[int, ...] = ()
    if fixed_components:
        try:
            fixed = tuple(int(x) for x in fixed_components.split(",") if x.strip())
        except ValueError:
            raise DnmfUsageError(
                f"--fixed-components {fixed_components!r} is not a list of integers; "
                "pass e.g. 0,1,2"
            ) from None
    cfg = LearnConfig.from_options(
        rank=rank, beta=beta, epochs=epochs, batch_chunks=batch_chunks, n_inner=inner,
        forget_factor=forget_factor, init=init_name, seed=seed, tol=tol, alpha_W=alpha_w,
        alpha_H=alpha_h, l1_ratio=l1_ratio, norm=norm, fixed_components=fixed,
        checkpoint_every=checkpoint_every,
    )  # fmt: skip
    result = learn_corpus(
        input_path, output, config=cfg, W_init=W_init, resume=resume, overwrite=overwrite,
        workers=workers, scheduler=scheduler, progress=not quiet,
    )  # fmt: skip
    if json_out:
        print_json(result.as_dict())
    elif not quiet:
        _print_summary(result)
    if result.ingest is not None and result.ingest.get("skipped"):
        raise typer.Exit(3)


def _dictionary_from(path: str) -> Any:
    from pathlib import Path

    from dnmf.model import ModelStore

    if not Path(path).exists():
        raise DnmfUsageError(
            f"--init {path!r} is neither random, nndsvda, kmeans nor an existing model store; "
            "pass one of those"
        )
    return ModelStore.open(path).W


def _print_summary(result: Any) -> None:
    state = "converged" if result.converged else "stopped"
    loss = f"{result.loss:.6g}" if result.loss is not None else "-"
    typer.echo(
        f"learned {result.model}: {result.epochs} epochs ({state}), loss {loss}, "
        f"{result.wall_seconds:.1f} s on {result.workers} workers"
    )
    typer.echo(f"look inside: dnmf info {result.model}")
