"""The one learning config: everything that decides the learned templates.

One model (DESIGN.md section 3): templates ``W (bin, component, lag)`` with
``lags >= 1``; plain NMF is ``lags = 1``. Every init, both penalty families
(scikit-learn's ``alpha_W``/``alpha_H``/``l1_ratio`` and libnmfd's
``sparsity_weight``/``uncorr_weight``), fixed components and ``fix_W``/``fix_H``
apply to any number of lags.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dnmf.errors import DnmfUsageError, describe_validation_error
from dnmf.nmf.divergence import beta_name_to_float

__all__ = ["INITS", "SAMPLE_INITS", "InitName", "LearnConfig"]

InitName = Literal["random", "nndsvda", "kmeans", "uniform", "pitched", "drums", "custom"]
INITS: tuple[str, ...] = ("random", "nndsvda", "kmeans", "uniform", "pitched", "drums")
#: Inits drawn at scikit-learn's scale ``sqrt(mean(V) / (rank · lags))``, whose
#: activations start at that scale too; the others start H so that the mean
#: of Λ matches the mean of V.
SAMPLE_INITS: tuple[str, ...] = ("random", "nndsvda", "kmeans")


class LearnConfig(BaseModel):
    """Everything that decides the learned templates (with the corpus and its chunking).

    Parameters
    ----------
    rank : int
        Number of components.
    lags : int
        Frames per template (T; libnmfd's ``num_template_frames``). 1 is plain
        NMF, ``Λ = W H``; more is convolutive NMF (NMFD),
        ``Λ = Σ_t W[:, :, t] shift(H, t)``.
    beta : float or str
        β-divergence: 0 / 'itakura-saito', 1 / 'kullback-leibler',
        2 / 'frobenius' ('euclidean'), or any number.
    epochs : int
        Maximum number of passes over the corpus (an epoch over a sample of a
        fraction f of the blocks counts as f of a pass).
    schedule : {'fast', 'full'}
        Full batch (``batch_chunks`` None): 'fast' (the default) learns on a
        seeded sample of the blocks that grows (1/8, 1/4, 1/2 of them, then all:
        :func:`dnmf.nmf.plan.sample_blocks`) and extrapolates the dictionary
        with a safeguard (:mod:`dnmf.nmf.accel`), ending with full-data epochs
        that stop on ``tol``; 'full' is plain Lee-Seung multiplicative updates
        on every block every epoch (scikit-learn's ``NMF(solver='mu')``).
    heuristic_mu : bool
        The fast schedule's multiplicative updates at ``0 <= β < 1`` take exponent 1
        (the heuristic updates of Févotte, Bertin & Durrieu 2009) instead of
        γ = 1/(2 - β) (Févotte & Idier's majorization-minimization, monotone but
        short-stepped); the schedule's safeguard catches a step whose loss rises.
        On the 20-minute benchmark corpus at β = 0 (in memory, H refitted) it is
        at 0.991 of scikit-learn's 200-iteration loss after 50 passes, where γ is
        at 1.102 (and 0.988 after 80). False keeps γ. No effect on
        ``schedule='full'`` (scikit-learn's arithmetic), on minibatch or elsewhere.
    batch_chunks : int or None
        Blocks per step; None (the default) is one step per epoch (full batch,
        as ``schedule`` says); a number turns on minibatch (online) updates.
    block_frames : int or None
        Frames per block; must divide the corpus chunk. None: one block per chunk.
    n_inner : int
        Multiplicative updates of a block's H per visit.
    forget_factor : float
        ρ of the online accumulators (minibatch only; full batch uses 0).
    init : {'random', 'nndsvda', 'kmeans', 'uniform', 'pitched', 'drums', 'custom'}
        Templates: seeded random, NNDSVDa or k-means on a sample of frames
        (the same spectrum at every lag), constant, harmonic combs of
        ``pitches``, averaged drum samples from the class folders of
        ``drums``, or a given dictionary (``W_init``). Components beyond the
        informed ones start random.
    h_init : {'random', 'uniform'}
        Activations: seeded per block from ``(seed, block)``, or constant. With
        ``scores`` the score's components start as gates over their notes and
        zero elsewhere (and stay zero there).
    seed : int
        Seeds the init, every block's initial H and every epoch's permutation.
    tol : float
        Stop when the relative decrease of the epoch loss falls below this.
    alpha_W, alpha_H, l1_ratio : float
        Regularisation of W and H with scikit-learn's meaning and scaling (the
        W penalty is scaled by the frames of the step, the H penalty by the
        number of bins).
    sparsity_weight : float
        Added to the H update's denominator (libnmfd's): an absolute L1 on H.
    uncorr_weight : float
        Weight of ``Σ_{t' ≠ t} W_t'`` in the update of ``W_t`` (libnmfd's; no
        effect at ``lags = 1``).
    solver : {'auto', 'mu', 'hals'}
        The updates: multiplicative (every β), or for β = 2 at ``lags = 1``
        HALS, exact coordinate descent (scikit-learn's ``cd`` solver), from the
        same statistics (``V Hᵀ``, ``H Hᵀ``; ``Wᵀ V``, ``Wᵀ W``). 'auto' (the
        default) is HALS where it applies (β = 2, one lag, no score) and MU
        elsewhere; the config records the solver it chose.
    norm : {'l2', 'max', None}
        Normalise each template (all its lags) after each step, H rescaled so
        Λ is unchanged.
    fixed_components : tuple of int
        Components whose templates never change; they need a given or informed init.
    fix_W, fix_H : bool
        Keep all templates, or all activations, as initialised.
    checkpoint_every : int
        Steps between checkpoints (there is always one at an epoch's end).
    sample_frames : int
        Frames sampled for 'nndsvda' and 'kmeans'.
    sample_min_frames : int
        The fewest frames a sample stage of the fast schedule may hold (65536, about
        25 minutes at 22050 Hz and hop 512): a corpus whose 1/8, 1/4 or 1/2 of the
        blocks holds fewer leaves that stage out, so a small corpus is learned on all
        of its blocks from the start.
    pitches : tuple of float
        MIDI pitches of the ``pitched`` templates (one component each).
    pitch_tol_up, pitch_tol_down : float
        Semitones each harmonic band reaches above and below the pitch.
    n_harmonics : int
        Harmonics per comb.
    drums : str or None
        Folder whose subfolders (one per class, e.g. ``kick/``) hold samples.
    scores : str or None
        CSV of notes ``onset, duration, pitch[, file]`` for score-informed activations.
    onset_tol : float
        Seconds a note's gate is widened at both ends.
    mask_store : str or None
        A user mask: path of a Zarr array aligned with V and chunked like it
        (boolean or float weights, 0 = ignore the entry).
    mask_silence : float or None
        Ignore frames whose level is below this many dB (:mod:`dnmf.nmf.mask`).
    mask_boundaries : bool
        At ``lags > 1``, ignore the first ``lags - 1`` frames of every file after
        the first, so that no template straddles two files.
    mask_clipped : bool
        Ignore frames whose window holds a sample at full scale (as the ingest
        recorded them).
    mask_above_bandwidth : bool
        Ignore the bins above each file's effective bandwidth (as the ingest
        estimated it), for that file's frames.
    holdout : float
        Share of entries held out (in small seeded tiles) for ``dnmf rank``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rank: int = Field(gt=0)
    lags: int = Field(1, gt=0)
    beta: float = 1.0
    epochs: int = Field(200, gt=0)
    schedule: Literal["fast", "full"] = "fast"
    heuristic_mu: bool = True
    batch_chunks: int | None = Field(None, gt=0)
    block_frames: int | None = Field(None, gt=0)
    n_inner: int = Field(1, gt=0)
    forget_factor: float = Field(0.7, ge=0.0, le=1.0)
    init: InitName = "random"
    h_init: Literal["random", "uniform"] = "random"
    seed: int = Field(0, ge=0)
    tol: float = Field(1e-4, ge=0.0)
    alpha_W: float = Field(0.0, ge=0.0)
    alpha_H: float = Field(0.0, ge=0.0)
    l1_ratio: float = Field(0.0, ge=0.0, le=1.0)
    sparsity_weight: float = Field(0.0, ge=0.0)
    uncorr_weight: float = Field(0.0, ge=0.0)
    norm: Literal["l2", "max"] | None = "l2"
    solver: Literal["mu", "hals"] = "mu"  # 'auto' is resolved before validation
    fixed_components: tuple[int, ...] = ()
    fix_W: bool = False
    fix_H: bool = False
    checkpoint_every: int = Field(10, gt=0)
    sample_frames: int = Field(20000, gt=0)
    sample_min_frames: int = Field(65536, ge=0)
    pitches: tuple[float, ...] = ()
    pitch_tol_up: float = Field(0.75, ge=0.0)
    pitch_tol_down: float = Field(0.75, ge=0.0)
    n_harmonics: int = Field(25, gt=0)
    drums: str | None = None
    scores: str | None = None
    onset_tol: float = Field(0.025, ge=0.0)
    mask_store: str | None = None
    mask_silence: float | None = None
    mask_boundaries: bool = False
    mask_clipped: bool = False
    mask_above_bandwidth: bool = False
    holdout: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="before")
    @classmethod
    def _auto_solver(cls, values: Any) -> Any:
        """``solver='auto'`` (or left out): HALS for β = 2 at one lag without a score, else MU."""
        if not isinstance(values, dict) or values.get("solver", "auto") != "auto":
            return values
        try:
            beta = beta_name_to_float(values.get("beta", 1.0))
        except (TypeError, ValueError):
            return {**values, "solver": "mu"}  # the beta validator names the bad value
        masked = values.get("mask_silence") is not None or any(  # a level of 0 dB masks too
            values.get(k) for k in ("mask_store", "mask_boundaries", "mask_clipped",
                                    "mask_above_bandwidth", "holdout")
        )  # fmt: skip
        hals = (
            beta == 2.0 and values.get("lags", 1) == 1 and values.get("scores") is None
            and not masked
        )  # fmt: skip
        return {**values, "solver": "hals" if hals else "mu"}

    @field_validator("beta", mode="before")
    @classmethod
    def _beta(cls, value: Any) -> float:
        return beta_name_to_float(value)

    @field_validator("norm", mode="before")
    @classmethod
    def _norm(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.lower() == "none" else value

    @model_validator(mode="after")
    def _consistent(self) -> LearnConfig:
        if self.init == "pitched" and not self.pitches:
            raise ValueError("init='pitched' needs MIDI pitches; pass e.g. --pitches 60,62,64")
        if self.init == "drums" and not self.drums:
            raise ValueError("init='drums' needs a folder of class folders; pass --drums FOLDER")
        if self.fixed_components and self.init in SAMPLE_INITS:
            raise ValueError(
                "fixed components need a given or informed init; pass --init MODEL (a model "
                "store), pitched, drums or uniform"
            )
        if self.solver == "hals" and (self.beta != 2 or self.lags != 1):
            raise ValueError(
                f"solver='hals' is for beta=2 (frobenius) and lags=1, not beta={self.beta:g} and "
                f"lags={self.lags}; pass solver='mu'"
            )
        if self.solver == "hals" and self.masked:
            raise ValueError(
                "solver='hals' does not take a mask (a weighted HALS needs one Gram matrix per "
                "bin); pass solver='mu'"
            )
        if self.fix_W and self.fix_H:
            raise ValueError("fix_W and fix_H together leave nothing to learn; pass one of them")
        return self

    @classmethod
    def from_options(cls, **options: Any) -> LearnConfig:
        """Build from user values; a bad value becomes one sentence naming it."""
        try:
            return cls(**{k: v for k, v in options.items() if v is not None})
        except ValidationError as exc:
            raise DnmfUsageError(describe_validation_error(exc)) from None

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> LearnConfig:
        """The config a model store recorded, including one written before NMF and
        NMFD were one config (its ``model`` key is implied by ``lags``) or before the
        fast schedule (which learned with ``schedule='full'``)."""
        values = {k: v for k, v in attrs.items() if k != "model"}
        values.setdefault("schedule", "full")  # written before there was a fast schedule
        values.setdefault("solver", "mu")
        values.setdefault("heuristic_mu", False)  # written before the fast schedule had it
        return cls(**values)

    @property
    def masked(self) -> bool:
        """Whether the config asks for a mask (:mod:`dnmf.nmf.mask`)."""
        return bool(
            self.mask_store or self.mask_silence is not None or self.holdout > 0
            or (self.mask_boundaries and self.lags > 1) or self.mask_clipped
            or self.mask_above_bandwidth
        )  # fmt: skip

    @property
    def fast_full_batch(self) -> bool:
        """Whether the run is the fast schedule in full batch (extrapolated, three H buffers)."""
        return self.schedule == "fast" and self.batch_chunks is None

    def update_exponent(self) -> float | None:
        """The exponent of the run's multiplicative updates; None: γ of β (the default).

        1 for the fast schedule in full batch at ``0 <= β < 1`` with ``heuristic_mu``.
        """
        mu = self.fast_full_batch and self.solver == "mu" and self.heuristic_mu
        return 1.0 if mu and 0.0 <= self.beta < 1.0 else None

    def penalties(self, n_bins: int, step_frames: int) -> tuple[float, float, float, float]:
        """(l1_W, l2_W, l1_H, l2_H), absolute: scikit-learn's scaling plus libnmfd's sparsity."""
        l1_W = step_frames * self.alpha_W * self.l1_ratio
        l2_W = step_frames * self.alpha_W * (1.0 - self.l1_ratio)
        l1_H = n_bins * self.alpha_H * self.l1_ratio + self.sparsity_weight
        l2_H = n_bins * self.alpha_H * (1.0 - self.l1_ratio)
        return l1_W, l2_W, l1_H, l2_H
