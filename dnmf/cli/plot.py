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
    json_out: JsonOpt = False,
) -> None:
    """Write PNGs: the dictionary (frequency in Hz), one file's activations, the loss curve.

    Needs matplotlib: pip install 'dnmf[plot]'.

    **Examples**

        dnmf plot recordings.dnmf/model.zarr -o plots/

        dnmf plot recordings.dnmf/activations.zarr --file album/track01.flac -o plots/
    """
    from dnmf.io.paths import check_output
    from dnmf.plot import plot_store

    check_output(output, what="folder for the PNGs")

    paths = plot_store(store, output, file=file)
    if json_out:
        print_json({"written": [str(p) for p in paths]})
    else:
        for p in paths:
            typer.echo(str(p))
