"""``dnmf plot``: PNGs of the dictionary, activations and loss."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dnmf.cli._common import JsonOpt, handle_errors, print_json


@handle_errors
def plot_command(
    store: Annotated[Path, typer.Argument(help="A model store or an activations store.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the PNGs.")] = Path(
        "plots"
    ),
    file: Annotated[str | None, typer.Option(help="Plot this corpus file's activations.")] = None,
    freq_scale: Annotated[
        str,
        typer.Option(
            help="Frequency axis of the dictionary: log, mel, linear, or auto (log for STFT "
            "features, mel for mel features)."
        ),
    ] = "auto",
    json_out: JsonOpt = False,
) -> None:
    """Write PNGs: the dictionary, one file's activations (both in dB), the loss curve.

    The dictionary is drawn over a log frequency axis for STFT features and a
    mel axis for mel features (--freq-scale chooses another); the loss names
    its beta.

    Needs matplotlib: pip install 'dnmf[plot]'.

    **Examples**

        dnmf plot recordings.dnmf/model.zarr -o plots/

        dnmf plot recordings.dnmf/activations.zarr --file album/track01.flac -o plots/

        dnmf plot model.zarr --freq-scale linear
    """
    from dnmf.io.paths import check_output
    from dnmf.plot import plot_store

    check_output(output, what="folder for the PNGs")

    paths = plot_store(store, output, file=file, freq_scale=freq_scale)
    if json_out:
        print_json({"written": [str(p) for p in paths]})
    else:
        for p in paths:
            typer.echo(str(p))
