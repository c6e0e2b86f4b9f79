"""The options of ``dnmf learn`` that shape the model (lags, informed inits, penalties),
turned into one :class:`~dnmf.nmf.config.LearnConfig`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dnmf.errors import DnmfUsageError

if TYPE_CHECKING:
    import numpy as np

PANEL = "Templates of several frames (--lags) and informed inits"

LagsOpt = Annotated[
    int | None,
    typer.Option(
        "--lags",
        help="Frames per template: 1 is plain NMF, more is convolutive NMF (NMFD), "
        "e.g. 8 [default: 1].",
        rich_help_panel=PANEL,
    ),
]
PitchesOpt = Annotated[
    str | None,
    typer.Option(
        "--pitches",
        help="MIDI pitches of --init pitched templates, e.g. 60,62,64 or 48-60.",
        rich_help_panel=PANEL,
    ),
]
PitchTolOpt = Annotated[
    float | None,
    typer.Option(
        "--pitch-tol",
        help="Semitones each harmonic band reaches above and below [default: 0.75].",
        rich_help_panel=PANEL,
    ),
]
HarmonicsOpt = Annotated[
    int | None,
    typer.Option("--harmonics", help="Harmonics per comb [default: 25].", rich_help_panel=PANEL),
]
DrumsOpt = Annotated[
    Path | None,
    typer.Option(
        "--drums",
        help="Folder of class folders of drum samples (kick/, snare/, ...) for --init drums.",
        rich_help_panel=PANEL,
    ),
]
ScoresOpt = Annotated[
    Path | None,
    typer.Option(
        "--init-scores",
        help="CSV of notes onset,duration,pitch[,file]: activations start as gates over the "
        "notes and stay zero elsewhere (pitched templates from its pitches by default).",
        rich_help_panel=PANEL,
    ),
]
OnsetTolOpt = Annotated[
    float | None,
    typer.Option(
        "--onset-tol", help="Seconds each note's gate is widened [default: 0.025].",
        rich_help_panel=PANEL,
    ),
]  # fmt: skip
HInitOpt = Annotated[
    str | None,
    typer.Option(
        "--h-init", help="Activations: random (seeded) or uniform [default: random].",
        rich_help_panel=PANEL,
    ),
]  # fmt: skip
SparsityOpt = Annotated[
    float | None,
    typer.Option(
        "--sparsity", help="Sparsity weight on the activations (libnmfd's).",
        rich_help_panel=PANEL,
    ),
]  # fmt: skip
UncorrOpt = Annotated[
    float | None,
    typer.Option(
        "--uncorr", help="Uncorrelatedness weight on the template lags (libnmfd's).",
        rich_help_panel=PANEL,
    ),
]  # fmt: skip
FixWOpt = Annotated[
    bool, typer.Option("--fix-w", help="Keep every template as initialised.", rich_help_panel=PANEL)
]
FixHOpt = Annotated[
    bool,
    typer.Option("--fix-h", help="Keep the activations as initialised.", rich_help_panel=PANEL),
]


def parse_pitches(text: str) -> tuple[float, ...]:
    """MIDI pitches from ``"60,62,64"``, with integer ranges ``"48-52"`` (48 to 52).

    Examples
    --------
    >>> parse_pitches("60, 62.5, 70-72")
    (60.0, 62.5, 70.0, 71.0, 72.0)
    """
    from dnmf.ranges import parse_ranges

    return tuple(
        parse_ranges(
            text, option="--pitches", what="MIDI pitches", example="60,62,64 or 48-60", real=True
        )
    )


def parse_fixed(text: str | None) -> tuple[int, ...]:
    """``--fixed-components 0,1,2`` (ranges allowed) as a tuple of ints."""
    from dnmf.ranges import parse_ranges

    if not text:
        return ()
    return tuple(int(c) for c in parse_ranges(text, option="--fixed-components"))


def _drum_classes(folder: Path) -> list[str]:
    from dnmf.errors import DnmfPathError

    if not folder.is_dir():
        raise DnmfPathError(
            f"--drums {str(folder)!r} is not a folder; pass a folder with one subfolder of "
            "samples per class (kick/, snare/, ...)"
        )
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def learn_config(
    *,
    rank: int | None,
    init: str | None,
    fixed: tuple[int, ...],
    lags: int | None,
    pitches: str | None,
    pitch_tol: float | None,
    harmonics: int | None,
    drums: Path | None,
    scores: Path | None,
    onset_tol: float | None,
    h_init: str | None,
    sparsity: float | None,
    uncorr: float | None,
    fix_w: bool,
    fix_h: bool,
    common: dict[str, Any],
) -> tuple[Any, np.ndarray | None]:
    """The LearnConfig of ``dnmf learn …`` and the given dictionary, if any.

    ``--init`` is one of the named inits or a model store (whose W starts the
    run); ``--init-scores`` alone means pitched templates for the score's
    pitches; without ``--rank`` the rank is that of the given dictionary or the
    number of informed components.
    """
    from dnmf.nmf.config import INITS, LearnConfig
    from dnmf.nmf.informed import read_scores, score_labels
    from dnmf.nmf.init import default_init

    W_init = None
    init_name = init or default_init(common.get("beta"))
    pitch_values = parse_pitches(pitches) if pitches is not None else ()
    labels: list[str] = []
    if scores is not None:
        labels = score_labels(read_scores(scores))
        if init is None and drums is None:
            init_name = "pitched"
        if init_name == "pitched" and not pitch_values:
            named = [lab for lab in labels if not lab.startswith("midi")]
            if named:
                raise DnmfUsageError(
                    f"the score names drum classes ({', '.join(named[:4])}); pass --init drums "
                    "--drums FOLDER with one sample folder per class"
                )
            pitch_values = tuple(float(lab[4:]) for lab in labels)
    if drums is not None and init is None:
        init_name = "drums"
    if init_name not in INITS:
        if not Path(init_name).exists():
            raise DnmfUsageError(
                f"--init {init_name!r} is neither {', '.join(INITS)} nor an existing model store; "
                "pass one of those"
            )
        W_init = dictionary_from(init_name)
        init_name = "custom"
    if init_name == "pitched" and not pitch_values:
        raise DnmfUsageError("--init pitched needs MIDI pitches; pass e.g. --pitches 60,62,64")
    if init_name == "drums" and drums is None:
        raise DnmfUsageError("--init drums needs sample folders; pass --drums FOLDER")
    n_informed = 0
    if init_name == "pitched":
        n_informed = len(pitch_values)
    elif init_name == "drums" and drums is not None:
        n_informed = len(_drum_classes(drums))
    elif labels:
        n_informed = len(labels)
    if rank is None:
        if init_name == "custom" and W_init is not None:
            rank = int(W_init.shape[1])
        elif n_informed:
            rank = n_informed
        else:
            raise DnmfUsageError(
                "--rank is missing; pass the number of components, e.g. --rank 64 (with --init "
                "MODEL, pitched, drums or --init-scores it defaults to the given or informed "
                "components)"
            )
    if pitch_values and init_name != "pitched":
        raise DnmfUsageError(
            f"--pitches is for --init pitched, not --init {init_name}; pass --init pitched"
        )
    cfg = LearnConfig.from_options(
        **common, rank=rank, init=init_name, fixed_components=fixed, lags=lags,
        pitches=pitch_values, pitch_tol_up=pitch_tol, pitch_tol_down=pitch_tol,
        n_harmonics=harmonics, drums=None if drums is None else str(drums.resolve()),
        scores=None if scores is None else str(scores.resolve()), onset_tol=onset_tol,
        h_init=h_init, sparsity_weight=sparsity, uncorr_weight=uncorr, fix_W=fix_w, fix_H=fix_h,
    )  # fmt: skip
    return cfg, W_init


def dictionary_from(path: str) -> Any:
    """The dictionary of a model store, for ``--init MODEL``."""
    from dnmf.io.model import ModelStore

    return ModelStore.open(path).W
