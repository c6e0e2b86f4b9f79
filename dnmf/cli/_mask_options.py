"""The options of ``dnmf learn`` that say which entries of V count (:mod:`dnmf.nmf.mask`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

PANEL = "Missing and untrusted data (masks, computed per chunk on the workers)"

MaskStoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--mask-store",
        help="A Zarr array aligned with V (bin x frame, chunked like it), bool or float "
        "weights: 0 ignores an entry.",
        rich_help_panel=PANEL,
    ),
]
MaskSilenceOpt = Annotated[
    float | None,
    typer.Option(
        "--mask-silence",
        metavar="DB",
        help="Ignore frames whose level (10 log10 of the mean power over bins) is below DB, "
        "e.g. -80; digital silence is -inf.",
        rich_help_panel=PANEL,
    ),
]
MaskBoundariesOpt = Annotated[
    bool,
    typer.Option(
        "--mask-boundaries",
        help="With --lags N: ignore the first N-1 frames of every file after the first, so "
        "that no template straddles two files.",
        rich_help_panel=PANEL,
    ),
]
MaskClippedOpt = Annotated[
    bool,
    typer.Option(
        "--mask-clipped",
        help="Ignore frames whose window holds a sample at full scale (|x| >= 0.999, any "
        "channel, at the file's own rate), as dnmf ingest counted them.",
        rich_help_panel=PANEL,
    ),
]
MaskAboveBandwidthOpt = Annotated[
    bool,
    typer.Option(
        "--mask-above-bandwidth",
        help="Ignore, for each file's frames, the bins above the file's effective bandwidth "
        "(an MP3's low-pass, a 16 kHz file's 8 kHz), as dnmf ingest estimated it.",
        rich_help_panel=PANEL,
    ),
]


def mask_options(
    mask_store: Path | None, mask_silence: float | None, mask_boundaries: bool,
    mask_clipped: bool = False, mask_above_bandwidth: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """The LearnConfig keys of the mask options (None: not given)."""
    return {
        "mask_store": None if mask_store is None else str(mask_store),
        "mask_silence": mask_silence,
        "mask_boundaries": mask_boundaries or None,
        "mask_clipped": mask_clipped or None,
        "mask_above_bandwidth": mask_above_bandwidth or None,
    }
