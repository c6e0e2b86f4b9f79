"""``dnmf separate``: one WAV per component or group of a model, by soft masks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dnmf.cli._common import JsonOpt, QuietOpt, handle_errors, print_json, store_lock
from dnmf.cli.transform import IterOpt, TolOpt
from dnmf.words import count


@handle_errors
def separate_command(
    model: Annotated[Path, typer.Argument(help="A model store learned on STFT features.")],
    audio: Annotated[Path, typer.Argument(help="The audio file to separate (the mixture).")],
    output: Annotated[
        Path,
        typer.Option(
            "-o", "--output", help="Folder for the WAVs, one per source, named like mix_drums.wav."
        ),
    ],
    components: Annotated[
        str | None,
        typer.Option(
            help="Write only these components, e.g. 0,3,5 or 0-3 [default: every component]."
        ),
    ] = None,
    group: Annotated[
        list[str] | None,
        typer.Option(
            "--group",
            "-g",
            help="A named group of components, NAME=INDICES (repeat it); components in no "
            "group go to the group 'rest'.",
        ),
    ] = None,
    alpha: Annotated[
        float,
        typer.Option(
            help="Exponent of the masks Λ^α / Σ Λ^α (1: ratio of model spectrograms; "
            "2 with magnitude features: Wiener)."
        ),
    ] = 1.0,
    n_iter: IterOpt = 200,
    tol: TolOpt = 1e-4,
    subtype: Annotated[
        str, typer.Option(help="WAV sample format: FLOAT, PCM_16, PCM_24, ...")
    ] = "FLOAT",
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Separate an audio file into the components (or groups) of a model.

    The activations of the mixture are solved with the dictionary fixed;
    each source gets the soft mask Λ_s^α / Σ_t Λ_t^α of its model spectrogram
    Λ_s = W[:, s] H[s], applied to the mixture's STFT and inverted with its
    phase. One WAV per source is written at the input's sample rate. With
    every component written (the default) or with --group (the components in
    no group forming 'rest'), the WAVs add up to the mono mixture (below the
    model's Nyquist frequency when the rates differ). Needs a model learned
    on STFT features, not mel.

    **Examples**

        dnmf separate model.zarr mix.wav -o parts/

        dnmf separate model.zarr mix.wav -o parts/ --components 0,3,5

        dnmf separate model.zarr mix.wav -o parts/ --group drums=0-3 --group bass=4,5

        dnmf separate model.zarr mix.flac -o parts/ --group voice=2,7 --alpha 2 --json
    """
    from dnmf.io.dictionary import load_dictionary
    from dnmf.io.paths import check_output
    from dnmf.separate import parse_components, parse_groups, separate, sources_for

    check_output(output, what="folder for the WAVs")

    with store_lock(output):
        d = load_dictionary(model)
        groups = parse_groups(group) if group else None
        chosen = parse_components(components) if components is not None else None
        sources = sources_for(d.rank, groups=groups, components=chosen)
        paths = separate(
            d, audio, output, groups=groups, components=chosen, alpha=alpha, n_iter=n_iter,
            tol=tol, subtype=subtype, progress=not quiet,
        )  # fmt: skip
    if json_out:
        import soundfile as sf

        print_json(
            {
                "input": str(audio),
                "model": str(model),
                "samplerate": sf.info(str(audio)).samplerate,
                "alpha": alpha,
                "outputs": [
                    {"name": name, "components": members, "path": str(path)}
                    for (name, members), path in zip(sources.items(), paths, strict=True)
                ],
            }
        )
    elif not quiet:
        typer.echo(f"wrote {count(len(paths), 'file')} to {output}:")
        for (name, members), path in zip(sources.items(), paths, strict=True):
            typer.echo(f"  {path.name}  ({name}: components {','.join(map(str, members))})")
