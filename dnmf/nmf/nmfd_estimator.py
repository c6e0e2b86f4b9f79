"""The convolutive model as a scikit-learn estimator: :class:`NMFD`.

:class:`NMFD` is :class:`dnmf.NMF` with templates of ``lags`` frames: the same
parameters, orientation (``X`` is frames × bins) and learner, with
``Λ = Σ_t W_t shift(H, t)`` (Smaragdis 2004; libnmfd's ``nmfd``) instead of
``W H``. What scikit-learn users of a convolutive model expect of its shapes:

* ``components_`` has shape ``(n_components, n_features, lags)``: row ``r``
  is component ``r``'s template, a spectrogram snippet of ``lags`` frames
  (``components_[r, :, t]`` is its spectrum ``t`` frames after an onset) — the
  plain estimator's ``(n_components, n_features)`` with a lag axis;
* ``fit_transform`` and ``transform`` return the activations
  ``(n_samples, n_components)``, the onsets' strengths per frame;
* ``inverse_transform`` returns the convolutive model ``(n_samples, n_features)``.

It runs the learner in this process (a Dask array is computed first; for
corpora on disk use ``dnmf learn --lags``). Convergence: the learner's own
rule, the relative decrease of the epoch loss below ``tol``.

Examples
--------
>>> import numpy as np
>>> from dnmf.nmf.nmfd_estimator import NMFD
>>> X = np.random.default_rng(0).random((120, 10))
>>> model = NMFD(3, lags=4, beta_loss=1, max_iter=20, random_state=0)
>>> H = model.fit_transform(X)
>>> H.shape, model.components_.shape, model.inverse_transform(H).shape
((120, 3), (3, 10, 4), (120, 10))
"""

from __future__ import annotations

from numbers import Integral
from typing import Any, ClassVar

import numpy as np
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_non_negative

from dnmf.errors import DnmfUsageError
from dnmf.nmf.config import LearnConfig
from dnmf.nmf.estimator import NMF
from dnmf.nmf.estimator_mask import check_masked_X
from dnmf.nmf.estimator_runs import computed
from dnmf.nmf.lags import conv_model
from dnmf.nmf.learner import fit_in_memory, loss_to_error
from dnmf.nmf.masked import masked_values
from dnmf.nmf.model import window_loss
from dnmf.nmf.solver import solve_window

__all__ = ["NMFD"]


class NMFD(NMF):
    """Convolutive NMF (NMFD) with a scikit-learn API: templates of ``lags`` frames.

    Parameters are those of :class:`dnmf.NMF` (``n_components``, ``beta_loss``,
    ``tol``, ``max_iter``, ``random_state``, ``alpha_W``, ``alpha_H``,
    ``l1_ratio``, ``batch_size``, ``forget_factor``, ``n_inner``, ``norm``,
    ``fixed_components``, ``verbose``), plus:

    Parameters
    ----------
    lags : int, default=8
        Frames per template.
    init : {'random', 'uniform', 'custom'} or None, default=None
        Templates: seeded random (None), constant, or the ``H`` passed to
        ``fit`` (shape ``(n_components, n_features, lags)``, or
        ``(n_components, n_features)``: the same spectrum at every lag).
    beta_loss : float or str, default='kullback-leibler'
        As :class:`dnmf.NMF`; KL is the default of audio NMFD (libnmfd's).
    norm : {'l2', 'max'} or None, default='l2'
        Each template (all its lags) normalised after each step.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features, lags)
        The templates.
    n_components_, n_iter_, n_steps_, reconstruction_err_, n_features_in_
        As :class:`dnmf.NMF`.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        **NMF._parameter_constraints,
        "lags": [Interval(Integral, 1, None, closed="left")],
        "init": [StrOptions({"random", "uniform", "custom"}), None],
    }

    def __init__(
        self,
        n_components: int | str | None = None,
        *,
        lags: int = 8,
        init: str | None = None,
        beta_loss: float | str = "kullback-leibler",
        tol: float = 1e-4,
        max_iter: int = 200,
        random_state: Any = None,
        alpha_W: float = 0.0,
        alpha_H: float | str = "same",
        l1_ratio: float = 0.0,
        batch_size: int | None = None,
        forget_factor: float = 0.7,
        n_inner: int = 1,
        norm: str | None = "l2",
        fixed_components: Any = None,
        verbose: int = 0,
        solver: str = "auto",
        schedule: str = "fast",
    ) -> None:
        super().__init__(
            n_components, init=init, beta_loss=beta_loss, tol=tol, max_iter=max_iter,
            random_state=random_state, alpha_W=alpha_W, alpha_H=alpha_H, l1_ratio=l1_ratio,
            batch_size=batch_size, forget_factor=forget_factor, n_inner=n_inner, norm=norm,
            fixed_components=fixed_components, verbose=verbose, solver=solver,
            schedule=schedule,
        )  # fmt: skip
        self.lags = lags

    def _templates(self, dtype: Any) -> np.ndarray:
        """``components_`` as dnmf's templates ``W (n_bins, k, lags)``."""
        return np.ascontiguousarray(np.asarray(self.components_).transpose(1, 0, 2), dtype=dtype)

    def _given(self, X: np.ndarray, rank: int, W: Any, H: Any) -> tuple[Any, Any]:
        """dnmf's (W_init, H_init) from scikit-learn's H (templates) and W (activations)."""
        if self.init != "custom":
            return None, None
        if H is None:
            raise DnmfUsageError(
                "init='custom' needs the initial templates; pass H of shape "
                f"({rank}, {X.shape[1]}, {self.lags}) to fit"
            )
        T = np.asarray(H, dtype=X.dtype)
        if T.ndim == 2:
            T = np.repeat(T[:, :, None], self.lags, axis=2) / self.lags
        if T.shape != (rank, X.shape[1], self.lags):
            raise DnmfUsageError(
                f"init='custom' got H of shape {np.shape(H)}; expected "
                f"({rank}, {X.shape[1]}, {self.lags}) for X of shape {X.shape}"
            )
        out_H = None
        if W is not None:
            A = check_array(W, dtype=X.dtype, input_name="W")
            if A.shape != (X.shape[0], rank):
                raise DnmfUsageError(
                    f"init='custom' got W of shape {A.shape}; expected {(X.shape[0], rank)}"
                )
            check_non_negative(A, "NMFD (input W)")
            out_H = np.ascontiguousarray(A.T)
        check_non_negative(T, "NMFD (input H)")
        return np.ascontiguousarray(T.transpose(1, 0, 2)), out_H

    def fit_transform(
        self, X: Any, y: Any = None, W: Any = None, H: Any = None, *, mask: Any = None
    ) -> np.ndarray:
        """Learn the templates from X and return the activations of X.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Nonnegative data, frames × bins.
        y : Ignored
        W : array-like of shape (n_samples, n_components), optional
            Initial activations with ``init='custom'``.
        H : array-like of shape (n_components, n_features, lags), optional
            Initial templates with ``init='custom'``.
        mask : array-like of shape (n_samples, n_features) or (n_samples,), optional
            Weights of the entries, 0 = missing (see :meth:`dnmf.NMF.fit`).

        Returns
        -------
        ndarray of shape (n_samples, n_components)
        """
        self._validate_params()
        M = None
        if mask is None:
            X, V = self._check_X(computed(X), reset=True)
        else:
            X, V, M = check_masked_X(self, computed(X), mask, reset=True)
        rank = self._rank(X, W, H)
        W_init, H_init = self._given(X, rank, W, H)
        block = self.batch_size or V.shape[1]
        base = self._config(rank, self.init or "random", self._seed(), block)
        solver = {"auto": "auto", "mu": "mu"}.get(self.solver, "hals")  # 'auto' sees the lags
        cfg = LearnConfig(
            **{**base.model_dump(), "lags": self.lags, "tol": self.tol, "solver": solver}
        )
        r = fit_in_memory(V, cfg, W_init=W_init, H_init=H_init, block_frames=block, M=M)
        self.components_ = np.ascontiguousarray(r.state.W.transpose(1, 0, 2))
        self.n_components_ = rank
        self.n_iter_ = len(r.losses)
        self.n_steps_ = r.state.global_step
        self.reconstruction_err_ = loss_to_error(
            window_loss(
                V if M is None else masked_values(V, M.astype(V.dtype)), r.state.W, r.H, start=0,
                stop=V.shape[1], beta=cfg.beta, M=None if M is None else M.astype(V.dtype),
            ),
            cfg.beta,
        )  # fmt: skip
        self._warn_max_iter(self.n_iter_ if not r.state.converged else -1)
        return self._from_dnmf(r.H)

    def partial_fit(self, X: Any, y: Any = None, W: Any = None, H: Any = None) -> NMFD:
        raise NotImplementedError(
            "NMFD has no partial_fit yet; fit it, or use dnmf learn --lags on a corpus"
        )

    def transform(self, X: Any, *, mask: Any = None) -> np.ndarray:
        """Activations of X with the templates fixed (the solver of ``dnmf transform``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        mask : array-like of shape (n_samples, n_features) or (n_samples,), optional
            Weights of the entries: masked entries do not pull the activations.

        Returns
        -------
        ndarray of shape (n_samples, n_components)
        """
        check_is_fitted(self)
        M = None
        if mask is None:
            X, V = self._check_X(computed(X), reset=False)
        else:
            X, V, M = check_masked_X(self, computed(X), mask, reset=False)
        W = self._templates(V.dtype)
        cfg = self._config(W.shape[1], "custom", 0, V.shape[1])
        _, _, l1_H, l2_H = cfg.penalties(V.shape[0], 1)
        H, _, n_iter = solve_window(
            V, W, start=0, stop=V.shape[1], beta=cfg.beta, n_iter=self.max_iter, tol=self.tol,
            l1_reg=l1_H, l2_reg=l2_H, M=M,
        )  # fmt: skip
        self._warn_max_iter(n_iter)
        return self._from_dnmf(H)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """The convolutive model of activations ``X (n_samples, n_components)``.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        A = check_array(X, dtype=[np.float64, np.float32])
        W = self._templates(A.dtype)
        return np.ascontiguousarray(conv_model(W, np.ascontiguousarray(A.T)).T)
