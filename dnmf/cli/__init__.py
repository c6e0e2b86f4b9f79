"""The ``dnmf`` command line (typer). One module per command group."""

from __future__ import annotations

import typer

from dnmf.cli import demo, export, info, ingest, learn, plot, rank, run, separate, transform
from dnmf.cli._common import hide_flag_types

hide_flag_types()

app = typer.Typer(
    name="dnmf",
    help="Distributed NMF for audio corpora: ingest audio into Zarr, learn a dictionary, "
    "export activations.\n\nExit codes: 0 done, 1 failed, 2 bad input or usage, 3 done but "
    "some files were skipped, 130 interrupted.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="markdown",
)
app.command("ingest")(ingest.ingest_command)
app.command("learn")(learn.learn_command)
app.command("export")(export.export_command)
app.command("transform")(transform.transform_command)
app.command("separate")(separate.separate_command)
app.command("plot")(plot.plot_command)
app.command("run")(run.run_command)
app.command("rank")(rank.rank_command)
app.command("info")(info.info_command)
app.command("demo")(demo.demo_command)


def main() -> None:
    """Entry point of the ``dnmf`` console script."""
    from dnmf.cli._interrupt import set_argv

    set_argv()  # so that Ctrl-C can name the command as typed
    app()
