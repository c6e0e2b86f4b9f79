"""``dnmf learn``: a dictionary from a corpus store (or an audio folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dnmf.cli import _learn_options as opts
from dnmf.cli import _mask_options as mopts
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
from dnmf.errors import DnmfUsageError
from dnmf.words import count


@handle_errors
def learn_command(
    input_path: Annotated[
        Path,
        typer.Argument(
            metavar="INPUT", help="A corpus store, or a folder of audio to ingest first."
        ),
    ],
    rank: Annotated[
        int | None,
        typer.Option(
            "--rank",
            "-r",
            help="Number of components [with --init MODEL or an informed init: that model's, "
            "or one per pitch, drum class or score component].",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Model store [default: model.zarr beside the corpus]."),
    ] = None,
    beta: Annotated[
        str,
        typer.Option(
            help="Divergence: itakura-saito (0), kullback-leibler (1), frobenius (2) or a "
            "number from -2 to 5."
        ),
    ] = "kullback-leibler",
    epochs: Annotated[int, typer.Option(help="Maximum passes over the corpus.")] = 200,
    schedule: Annotated[
        str,
        typer.Option(
            help="fast (a growing sample of the chunks, then all, with safeguarded "
            "extrapolation) or full (plain Lee-Seung MU, scikit-learn's NMF(solver='mu'))."
        ),
    ] = "fast",
    batch_chunks: Annotated[
        int | None,
        typer.Option(help="Chunks per W update: minibatch steps [default: all, full batch]."),
    ] = None,
    inner: Annotated[int, typer.Option(help="H updates per chunk visit.")] = 1,
    forget_factor: Annotated[
        float, typer.Option(help="Forgetting of the minibatch accumulators.")
    ] = 0.7,
    init: Annotated[
        str | None,
        typer.Option(
            help="random, nndsvda, kmeans, uniform, pitched, drums, or a model store whose W "
            "starts the run [default: nndsvda; random for --beta below 1]."
        ),
    ] = None,
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
    solver: Annotated[
        str,
        typer.Option(
            help="auto, mu (multiplicative updates, every beta) or hals (beta 2, one lag: "
            "exact coordinate descent, scikit-learn's cd solver); auto is hals where it applies."
        ),
    ] = "auto",
    fixed_components: Annotated[
        str | None,
        typer.Option(help="Components of the --init dictionary kept fixed, e.g. 0,1,2 or 0-3."),
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
    lags: opts.LagsOpt = None,
    pitches: opts.PitchesOpt = None,
    pitch_tol: opts.PitchTolOpt = None,
    harmonics: opts.HarmonicsOpt = None,
    drums: opts.DrumsOpt = None,
    init_scores: opts.ScoresOpt = None,
    onset_tol: opts.OnsetTolOpt = None,
    h_init: opts.HInitOpt = None,
    sparsity: opts.SparsityOpt = None,
    uncorr: opts.UncorrOpt = None,
    fix_w: opts.FixWOpt = False,
    fix_h: opts.FixHOpt = False,
    mask_store: mopts.MaskStoreOpt = None,
    mask_silence: mopts.MaskSilenceOpt = None,
    mask_boundaries: mopts.MaskBoundariesOpt = False,
    mask_clipped: mopts.MaskClippedOpt = False,
    mask_above_bandwidth: mopts.MaskAboveBandwidthOpt = False,
) -> None:
    """Learn an NMF dictionary W (bin x component) from a corpus, on a Dask cluster.

    By default the fast schedule: epochs on a seeded sample of the chunks that
    grows to all of them, with safeguarded extrapolation, HALS for frobenius,
    stopping when the loss falls by less than --tol. --schedule full is plain
    full-batch multiplicative updates (the same W as scikit-learn's
    NMF(solver='mu') from the same init); --batch-chunks turns on minibatch
    steps. The same seed and chunking give bitwise the same W for any number
    of workers; --resume continues after a crash and ends where an
    uninterrupted run ends. With --lags N each component is a template of N
    frames (W is bin x component x lag; convolutive NMF, as libnmfd's nmfd, for
    any beta); every option works for any number of lags.

    **Examples**

        dnmf learn recordings/ --rank 64

        dnmf learn recordings.dnmf/corpus.zarr --rank 32 --beta itakura-saito --epochs 100

        dnmf learn corpus.zarr --rank 64 --batch-chunks 4 --inner 3 --workers 8 --json

        dnmf learn corpus.zarr --rank 64 --schedule full --epochs 200 --tol 0

        dnmf learn corpus.zarr --rank 40 --init drums.zarr --fixed-components 0-3 -o model2.zarr

        dnmf learn corpus.zarr --rank 64 --resume

        dnmf learn corpus.zarr --lags 8 --init pitched --pitches 60,62,64

        dnmf learn corpus.zarr --lags 8 --init-scores notes.csv

        dnmf learn corpus.zarr --lags 12 --init drums --drums samples/ --rank 5

        dnmf learn corpus.zarr --rank 64 --mask-silence -80 --mask-store mask.zarr

        dnmf learn corpus.zarr --rank 64 --mask-clipped --mask-above-bandwidth
    """
    if norm.strip().lower() not in ("l2", "max", "none"):
        raise DnmfUsageError(f"--norm {norm!r} is not a normalisation; pass l2, max or none")
    cfg, W_init = opts.learn_config(
        rank=rank, init=init, fixed=opts.parse_fixed(fixed_components), lags=lags,
        pitches=pitches, pitch_tol=pitch_tol, harmonics=harmonics, drums=drums,
        scores=init_scores, onset_tol=onset_tol, h_init=h_init, sparsity=sparsity,
        uncorr=uncorr, fix_w=fix_w, fix_h=fix_h,
        common=dict(
            beta=beta, epochs=epochs, schedule=schedule, batch_chunks=batch_chunks, n_inner=inner,
            forget_factor=forget_factor, seed=seed, tol=tol, alpha_W=alpha_w, alpha_H=alpha_h,
            l1_ratio=l1_ratio, norm=norm, checkpoint_every=checkpoint_every, solver=solver,
            **mopts.mask_options(mask_store, mask_silence, mask_boundaries, mask_clipped,
                                 mask_above_bandwidth),
        ),
    )  # fmt: skip
    _run(cfg, W_init, input_path, output, resume, overwrite, workers, scheduler, json_out, quiet)


def _run(
    cfg: Any, W_init: Any, input_path: Path, output: Path | None, resume: bool, overwrite: bool,
    workers: int | None, scheduler: str | None, json_out: bool, quiet: bool,
) -> None:  # fmt: skip
    from pipelines.learn import learn_corpus

    with store_lock(*_check_outputs(input_path, output)):
        result = learn_corpus(
            input_path, output, config=cfg, W_init=W_init, resume=resume, overwrite=overwrite,
            workers=workers, scheduler=scheduler, progress=not quiet,
        )  # fmt: skip
    if json_out:
        print_json(result.as_dict())
    elif not quiet:
        _print_summary(result, cfg.epochs)
    if result.ingest is not None and result.ingest.get("skipped"):
        raise typer.Exit(3)


def _resume(kwargs: dict[str, Any]) -> tuple[list[str], list[str]] | None:
    """After Ctrl-C: --resume once the model store holds a checkpoint, else start over."""
    from dnmf.io.model import ModelStore
    from pipelines.ingest import default_store

    input_path, output = Path(kwargs["input_path"]), kwargs.get("output")
    corpus = input_path
    if not (input_path / "zarr.json").exists() and input_path.is_dir():
        corpus = default_store(input_path)
    model = Path(output) if output is not None else corpus.parent / "model.zarr"
    if not (model / "zarr.json").exists():
        return None
    if ModelStore.open(model).meta.get("checkpoint"):
        return (["--resume"], ["--overwrite"])
    return (["--overwrite"], ["--resume"])


learn_command.resume = _resume  # type: ignore[attr-defined]


def _check_outputs(input_path: Path, output: Path | None) -> list[Path]:
    """The stores learn will write (the corpus too when INPUT is an audio folder), checked."""
    from dnmf.io.paths import check_output
    from pipelines.ingest import default_store

    corpus, out = input_path, []
    if not (input_path / "zarr.json").exists() and input_path.is_dir():
        corpus = check_output(default_store(input_path), what="corpus store")
        out.append(corpus)
    model = output if output is not None else corpus.parent / "model.zarr"
    return [*out, check_output(model, what="model store")]


def _print_summary(result: Any, max_epochs: int) -> None:
    if result.converged:
        state = "converged"
    elif result.passes >= max_epochs - 1e-9:
        state = "epoch limit reached, not converged"
    else:
        state = "stopped before converging"
    loss = f"{result.loss:.6g}" if result.loss is not None else "-"
    done = f"{result.epochs} epochs"
    if abs(result.passes - result.epochs) > 1e-9:  # the fast schedule's sample epochs
        done = f"{result.passes:g} passes over the corpus in {result.epochs} epochs"
    typer.echo(
        f"learned {result.model}: {done} ({state}), loss {loss}, "
        f"{result.wall_seconds:.1f} s{cluster_note(result.cluster_seconds)} on "
        f"{count(result.workers, 'worker')}"
    )
    typer.echo(f"look inside: dnmf info {result.model}")
