"""What solving activations needs from a model store, read once: :class:`Dictionary`.

Export, transform and separate all solve with the templates, β, penalties on
H and feature settings read here, so they cannot disagree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnmf.audio.features import FeatureConfig
from dnmf.errors import DnmfUsageError
from dnmf.io.model import ModelStore
from dnmf.io.store import StorePath

__all__ = ["Dictionary", "ModelLike", "dictionary_fingerprint", "load_dictionary"]

ModelLike = ModelStore | StorePath


def dictionary_fingerprint(W: np.ndarray) -> str:
    """BLAKE2b-128 hex digest of the bytes of ``W`` (C order): which dictionary solved H."""
    return hashlib.blake2b(np.ascontiguousarray(W).tobytes(), digest_size=16).hexdigest()


@dataclass(frozen=True, eq=False)
class Dictionary:
    """What solving activations needs from a model store, read once.

    Attributes
    ----------
    path : str
        The model store.
    W : ndarray of shape (n_bins, n_components, n_lags)
        The templates, float32 (``n_lags = 1`` for plain NMF).
    beta : float
        β the model was learned with.
    l1_reg, l2_reg : float
        The model's penalties on H (``alpha_H``, ``l1_ratio``, ``sparsity_weight``),
        absolute (:meth:`dnmf.nmf.config.LearnConfig.penalties`).
    features : FeatureConfig
        The feature settings of the model's corpus.
    meta : dict
        The model store's ``dnmf`` attrs.
    solver : {'mu', 'hals'}
        The model's updates, which solving uses too.
    silence_db : float or None
        The model's ``mask_silence``: the frames of a file below this level (dB of
        the mean power over bins) are masked when its activations are solved
        (:mod:`dnmf.nmf.mask`), as they were when the model learned. The other
        sources of a corpus's mask (a mask store, file boundaries) have no meaning
        for another file.
    """

    path: str
    W: np.ndarray
    beta: float
    l1_reg: float
    l2_reg: float
    features: FeatureConfig
    meta: dict[str, Any] = field(repr=False)
    solver: str = "mu"
    silence_db: float | None = None

    def mask(self) -> Any:
        """The :class:`~dnmf.nmf.mask.MaskSpec` of a file's frames (None: unmasked)."""
        from dnmf.nmf.mask import MaskSpec

        if self.silence_db is None:
            return None
        return MaskSpec(silence_db=self.silence_db, power=float(self.features.power))

    @property
    def rank(self) -> int:
        return int(self.W.shape[1])

    @property
    def fingerprint(self) -> str:
        return dictionary_fingerprint(self.W)


def load_dictionary(model: ModelLike | Dictionary) -> Dictionary:
    """Read the dictionary, β, penalties and feature settings of a model store.

    Raises
    ------
    DnmfPathError, StoreFormatError
        If `model` is not a model store.
    DnmfUsageError
        If the store holds no dictionary yet, or a broken one.
    """
    if isinstance(model, Dictionary):
        return model
    store = model if isinstance(model, ModelStore) else ModelStore.open(model)
    name = store.path
    if not store.meta.get("checkpoint"):
        raise DnmfUsageError(
            f"model store {name!r} holds no dictionary yet (dnmf learn stopped before its first "
            "checkpoint); finish it with dnmf learn --resume or learn it again"
        )
    W = store.templates
    features = FeatureConfig(**store.meta["corpus"]["features"])
    if W.shape[0] != features.n_bins or not np.isfinite(W).all() or (W < 0).any():
        raise DnmfUsageError(
            f"model store {name!r} holds a damaged dictionary (shape {W.shape}, expected "
            f"{features.n_bins} bins, nonnegative and finite); learn the model again"
        )
    cfg = store.config
    _, _, l1, l2 = cfg.penalties(features.n_bins, 1)
    return Dictionary(
        name, W, cfg.beta, l1, l2, features, dict(store.meta), cfg.solver, cfg.mask_silence
    )
