"""A scikit-learn estimator over dnmf's learner: :class:`NMF`.

:class:`NMF` speaks scikit-learn's language: ``X`` has shape
``(n_samples, n_features)`` = frames × bins, ``fit_transform`` returns the
activations ``(n_samples, n_components)`` and ``components_`` is the
dictionary ``(n_components, n_features)``, exactly as
``sklearn.decomposition.NMF`` and ``librosa.decompose.decompose`` expect.
Underneath it runs the learner of ``dnmf learn`` (:func:`dnmf.nmf.learner.learn`),
in this process on a :class:`dnmf.backends.MemoryBackend`, or on the Dask
cluster of the current ``distributed.Client`` through
:class:`dnmf.backends.DaskBackend` when ``X`` is a Dask array. With the
default ``batch_size=None`` it is scikit-learn's ``NMF(solver='mu')``,
iteration for iteration; with ``batch_size`` set it is the minibatch NMF of
DESIGN.md section 3 in steps of ``batch_size`` samples, as scikit-learn's
``MiniBatchNMF``.

Examples
--------
>>> import numpy as np
>>> from dnmf.nmf.estimator import NMF
>>> X = np.random.default_rng(0).random((50, 12))
>>> model = NMF(n_components=3, beta_loss="kullback-leibler", random_state=0, tol=0, max_iter=50)
>>> activations = model.fit_transform(X)
>>> activations.shape, model.components_.shape
((50, 3), (3, 12))
"""

from __future__ import annotations

import time
import warnings
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from pydantic import ValidationError
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

from dnmf.errors import DnmfUsageError, describe_validation_error
from dnmf.nmf.config import LearnConfig
from dnmf.nmf.divergence import beta_name_to_float
from dnmf.nmf.estimator_mask import check_masked_X
from dnmf.nmf.estimator_runs import (
    CHECK_EVERY,
    DaskRun,
    MemoryRun,
    Stream,
    client_for,
    computed,
    fresh_state,
    one_lag,
    online_step,
    run_epochs,
    solve_sklearn,
    start_state_any_rank,
)
from dnmf.nmf.init import scale_for
from dnmf.nmf.state import LearnState

__all__ = ["NMF"]

#: Samples per block of a full-batch fit (a corpus chunk's default): blocks only decide
#: how the statistics are summed and how the activations are seeded.
FULL_BATCH_BLOCK = 8192


class NMF(TransformerMixin, ClassNamePrefixFeaturesOutMixin, BaseEstimator):
    """Nonnegative matrix factorization ``X ≈ activations @ components_`` by dnmf's learner.

    The objective and the updates are those of scikit-learn's
    ``NMF(solver='mu')``: the β-divergence ``d(X | W_sk H_sk)`` plus
    scikit-learn's L1/L2 penalties, minimised by multiplicative updates with
    the exponent γ(β) of Févotte & Idier (2011). With the defaults
    (``batch_size=None``, ``norm=None``) an epoch is one Lee-Seung iteration,
    and from the same initial factors (``init='custom'``) the result is
    scikit-learn's to rounding. With ``batch_size`` set, an epoch is a pass of
    minibatch steps of that many samples with online accumulators (Lefèvre,
    Bach & Févotte 2011; scikit-learn's ``MiniBatchNMF(batch_size=...)``), as
    ``dnmf learn --batch-chunks 1`` runs on a corpus.

    ``X`` is (n_samples, n_features) = (frames, bins): the transpose of
    librosa's spectrogram ``S``. ``librosa.decompose.decompose(S,
    transformer=NMF(...))`` transposes for you.

    Parameters
    ----------
    n_components : int, 'auto' or None, default=None
        Number of components. None: ``n_features``; 'auto': the rank of the
        ``W``/``H`` given with ``init='custom'``, else ``n_features``. A rank
        above ``min(n_samples, n_features)`` is allowed, as in scikit-learn
        (``dnmf learn`` refuses it).
    init : {'random', 'nndsvda', 'kmeans', 'custom'} or None, default=None
        Initial dictionary. None: 'nndsvda' if ``n_components <= min(n_samples,
        n_features)`` and β >= 1, else 'random' (scikit-learn's rule, with
        'random' for β < 1, where NNDSVDa measured worse). 'random' draws the
        components exactly as scikit-learn draws its ``H`` from the same int
        seed; 'nndsvda' (on up to 20000 sampled frames) and 'kmeans' (k-means
        centroids of those frames) set the components only. Unless given, the
        activations start from ``avg * |N(0, 1)|`` seeded per block, with
        ``avg = sqrt(mean(X) / n_components)``. 'custom' takes ``H`` and
        optionally ``W`` passed to ``fit``.
    beta_loss : float or {'frobenius', 'kullback-leibler', 'itakura-saito'}, default='frobenius'
        β of the divergence ('euclidean' is an alias of 'frobenius'). Zeros in
        ``X`` are allowed for every β (scikit-learn refuses them for β <= 0):
        dnmf's kernels floor them as scikit-learn's loss does.
    tol : float, default=1e-4
        scikit-learn's criterion: every 10 epochs, stop when the decrease of
        the error since the last check, relative to the error at init, is
        below ``tol``. 0 runs ``max_iter`` epochs.
    max_iter : int, default=200
        Maximum number of epochs (passes over ``X``); also the maximum
        number of iterations of :meth:`transform`.
    random_state : int, RandomState instance or None, default=None
        Seeds the init, every block's initial activations and the order of
        minibatch steps. An int is dnmf's seed itself; otherwise a seed is
        drawn from ``check_random_state(random_state)``.
    alpha_W : float, default=0.0
        Penalty on the activations (scikit-learn's ``W``), scaled by
        ``n_features`` as in scikit-learn.
    alpha_H : float or 'same', default='same'
        Penalty on the components (scikit-learn's ``H``), scaled by the frames
        of each step (``n_samples`` in full batch, as in scikit-learn); 'same'
        takes ``alpha_W``.
    l1_ratio : float, default=0.0
        Mix of L1 (1) and L2 (0) in both penalties.
    batch_size : int or None, default=None
        Samples (frames) per minibatch step, as scikit-learn's
        ``MiniBatchNMF``: each epoch visits the samples in blocks of
        ``batch_size`` (the last one shorter), one block per step, in a seeded
        order, each step updating that block's activations and then the
        dictionary through the online accumulators. None: one step per epoch
        over all samples, exact full-batch MU (the learner's blocks are then
        all of X in memory, or the chunks along samples of a Dask array, which
        only changes how the statistics are summed).
    forget_factor : float, default=0.7
        Forgetting of the online accumulators, per pass over the data (per
        call of :meth:`partial_fit`), as scikit-learn's ``MiniBatchNMF``.
    n_inner : int, default=1
        Updates of a block's activations per visit.
    norm : {'l2', 'max'} or None, default=None
        Normalise the atoms (rows of ``components_``) after each step; the
        activations are rescaled so the product is unchanged. None keeps
        scikit-learn parity.
    fixed_components : array-like of int or None, default=None
        Rows of ``components_`` that never change (semi-supervised NMF); needs
        ``init='custom'``.
    verbose : int, default=0
        Print the error at every convergence check.
    solver : {'auto', 'mu', 'cd', 'hals'}, default='auto'
        Multiplicative updates (every β), or for β = 2 coordinate descent:
        ``'cd'`` and ``'hals'`` are the same HALS sweeps, scikit-learn's
        ``NMF(solver='cd', shuffle=False)`` from the same init. ``'auto'`` is
        HALS for β = 2 (scikit-learn's default solver there) and MU otherwise.
    schedule : {'fast', 'full'}, default='fast'
        Full batch (``batch_size=None``): ``'fast'`` learns on a growing sample
        of the blocks first and extrapolates both factors with a safeguard
        (:mod:`dnmf.nmf.accel`); ``'full'`` is plain Lee-Seung multiplicative
        updates, scikit-learn's ``NMF(solver='mu')`` to rounding from the same
        init.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The dictionary, one atom per row (dnmf's ``W.T``).
    n_components_ : int
        Number of components.
    reconstruction_err_ : float
        ``sqrt(2 * d(X | activations @ components_))``, as scikit-learn's
        ``_beta_divergence(..., square_root=True)`` (the Frobenius norm of
        the residual for β = 2); after :meth:`partial_fit`, that of its batch.
    n_iter_ : int
        Epochs run by the last :meth:`fit`.
    n_steps_ : int
        Dictionary updates so far (minibatch steps, or epochs in full batch).
    n_features_in_ : int
        Number of features seen during fit.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of the features, when ``X`` has string column names.

    See Also
    --------
    dnmf.nmf.learner.learn : the learner this estimator runs.
    sklearn.decomposition.NMF : the reference of the full-batch results.

    Notes
    -----
    A Dask array ``X`` is learned on the cluster of the current
    ``distributed.Client``: it is written once, as ``V = X.T``, to a temporary
    Zarr store that the workers read (so the workers must share this
    machine's file system, as a ``LocalCluster``'s do), and removed after the
    fit. Without a client, or in :meth:`partial_fit` and :meth:`transform`, a
    Dask array is computed into memory. For corpora on disk, use ``dnmf
    learn``.

    Examples
    --------
    >>> import numpy as np
    >>> from dnmf.nmf.estimator import NMF
    >>> X = np.abs(np.random.default_rng(0).standard_normal((40, 6)))
    >>> model = NMF(n_components=2, beta_loss=1, max_iter=100, tol=0, random_state=0)
    >>> W = model.fit_transform(X)
    >>> bool(np.allclose(model.inverse_transform(W), W @ model.components_))
    True
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None, StrOptions({"auto"})],
        "init": [StrOptions({"random", "nndsvda", "kmeans", "custom"}), None],
        "beta_loss": [
            StrOptions({"frobenius", "euclidean", "kullback-leibler", "itakura-saito"}),
            Real,
        ],
        "tol": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "random_state": ["random_state"],
        "alpha_W": [Interval(Real, 0, None, closed="left")],
        "alpha_H": [Interval(Real, 0, None, closed="left"), StrOptions({"same"})],
        "l1_ratio": [Interval(Real, 0, 1, closed="both")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "forget_factor": [Interval(Real, 0, 1, closed="both")],
        "n_inner": [Interval(Integral, 1, None, closed="left")],
        "norm": [StrOptions({"l2", "max"}), None],
        "solver": [StrOptions({"auto", "mu", "cd", "hals"})],
        "schedule": [StrOptions({"fast", "full"})],
        "fixed_components": ["array-like", None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_components: int | str | None = None,
        *,
        init: str | None = None,
        beta_loss: float | str = "frobenius",
        tol: float = 1e-4,
        max_iter: int = 200,
        random_state: Any = None,
        alpha_W: float = 0.0,
        alpha_H: float | str = "same",
        l1_ratio: float = 0.0,
        batch_size: int | None = None,
        forget_factor: float = 0.7,
        n_inner: int = 1,
        norm: str | None = None,
        fixed_components: Any = None,
        verbose: int = 0,
        solver: str = "auto",
        schedule: str = "fast",
    ) -> None:
        self.n_components = n_components
        self.init = init
        self.beta_loss = beta_loss
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.alpha_W = alpha_W
        self.alpha_H = alpha_H
        self.l1_ratio = l1_ratio
        self.batch_size = batch_size
        self.forget_factor = forget_factor
        self.n_inner = n_inner
        self.norm = norm
        self.fixed_components = fixed_components
        self.verbose = verbose
        self.solver = solver
        self.schedule = schedule

    # -- scikit-learn plumbing ---------------------------------------------------------
    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.requires_fit = True
        return tags

    @property
    def _n_features_out(self) -> int:
        """Number of transformed output features (for ``get_feature_names_out``)."""
        return int(self.components_.shape[0])

    # -- the one turn between orientations ---------------------------------------------
    #
    # scikit-learn:  X (n_samples, n_features) ≈ W_sk (n_samples, k) @ H_sk (k, n_features)
    # dnmf:          V (n_bins, n_frames)      ≈ W (n_bins, k)        @ H (k, n_frames)
    #
    #     V = X.T,   W = H_sk.T = components_.T,   H = W_sk.T = activations.T
    #
    # so scikit-learn's alpha_W penalises dnmf's H and its alpha_H dnmf's W
    # (see _config). Data cross here in _check_X (and DaskRun for a Dask X);
    # factors in _to_dnmf and _from_dnmf. Nothing else in this module transposes.
    @staticmethod
    def _to_dnmf(factor: Any, dtype: Any) -> np.ndarray:
        """scikit-learn's factor (W_sk or H_sk) as dnmf's (H or W): transposed, contiguous."""
        return np.ascontiguousarray(np.asarray(factor).T, dtype=dtype)

    @staticmethod
    def _from_dnmf(factor: np.ndarray) -> np.ndarray:
        """dnmf's factor (W or H) as scikit-learn's (H_sk or W_sk): transposed, contiguous."""
        return np.ascontiguousarray(factor.T)

    def _check_X(self, X: Any, *, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        """Validate X (float32 kept, other dtypes to float64) and return it with ``V = X.T``.

        V is made C-contiguous once here (a copy of X), so the learner reads
        its blocks without copying them on every visit.
        """
        X = validate_data(
            self, computed(X), reset=reset, dtype=[np.float64, np.float32],
            ensure_non_negative=True,
        )  # fmt: skip
        return X, np.ascontiguousarray(X.T)

    # -- parameters ----------------------------------------------------------------------
    def _rank(self, X: Any, W: Any, H: Any) -> int:
        if isinstance(self.n_components, Integral):
            return int(self.n_components)
        if self.n_components == "auto" and self.init == "custom":
            if H is not None:
                return int(np.shape(H)[0])
            if W is not None:
                return int(np.shape(W)[1])
        return int(X.shape[1])

    def _init_name(self, rank: int, X: Any) -> str:
        if self.init is not None:
            return str(self.init)
        if rank > min(X.shape):
            return "random"
        from dnmf.nmf.init import default_init

        return default_init(self.beta_loss)

    def _seed(self) -> int:
        rs = self.random_state
        if isinstance(rs, Integral) and not isinstance(rs, bool):
            return int(rs)
        return int(check_random_state(rs).randint(np.iinfo(np.int32).max))

    def _fixed(self, rank: int, init: str) -> tuple[int, ...]:
        if self.fixed_components is None:
            return ()
        fixed = tuple(int(c) for c in np.atleast_1d(np.asarray(self.fixed_components)))
        bad = [c for c in fixed if not 0 <= c < rank]
        if bad:
            raise DnmfUsageError(
                f"fixed_components contains {bad[0]}, out of range for n_components={rank}; "
                f"pass indices from 0 to {rank - 1}"
            )
        if fixed and init != "custom":
            raise DnmfUsageError(
                "fixed_components needs given components; pass init='custom' and H to fit"
            )
        return fixed

    def _config(self, rank: int, init: str, seed: int, block_frames: int) -> LearnConfig:
        """The learner's config, scikit-learn's penalty names turned to dnmf's."""
        alpha_components = self.alpha_W if self.alpha_H == "same" else self.alpha_H
        try:
            return LearnConfig(
                rank=rank,
                beta=beta_name_to_float(self.beta_loss),
                epochs=self.max_iter,
                batch_chunks=None if self.batch_size is None else 1,
                block_frames=block_frames,
                n_inner=self.n_inner,
                forget_factor=self.forget_factor,
                init=init,  # type: ignore[arg-type]
                seed=seed,
                tol=0.0,  # convergence is decided here, by scikit-learn's rule
                alpha_W=float(alpha_components),  # dnmf's W = scikit-learn's H
                alpha_H=float(self.alpha_W),  # dnmf's H = scikit-learn's W
                l1_ratio=self.l1_ratio,
                norm=self.norm,  # type: ignore[arg-type]
                solver={"auto": "auto", "mu": "mu"}.get(self.solver, "hals"),
                schedule=self.schedule,  # type: ignore[arg-type]
                fixed_components=self._fixed(rank, init),
            )
        except ValidationError as exc:
            raise DnmfUsageError(describe_validation_error(exc)) from None

    def _custom_factors(
        self, X: Any, rank: int, W: Any, H: Any
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """dnmf's (H_init, W_init) from scikit-learn's custom W and H, checked, in X's dtype."""
        if self.init != "custom":
            if W is not None or H is not None:
                warnings.warn(
                    "When init!='custom', provided W or H are ignored. Set init='custom' to use "
                    "them as initialization.",
                    RuntimeWarning,
                    stacklevel=3,
                )
            return None, None
        if H is None:
            raise DnmfUsageError(
                "init='custom' needs the initial components; pass H of shape "
                f"({rank}, {X.shape[1]}) to fit"
            )
        out: list[np.ndarray | None] = []
        for name, A, shape in (("W", W, (X.shape[0], rank)), ("H", H, (rank, X.shape[1]))):
            if A is None:
                out.append(None)
                continue
            A = check_array(A, dtype=X.dtype, input_name=name)
            if A.shape != shape:
                raise DnmfUsageError(
                    f"init='custom' got {name} of shape {A.shape}; expected {shape} for X of "
                    f"shape {X.shape} and n_components={rank}"
                )
            check_non_negative(A, f"NMF (input {name})")
            if not A.any():
                raise DnmfUsageError(
                    f"init='custom' got {name} full of zeros, which multiplicative updates never "
                    f"move; pass a {name} with positive entries"
                )
            out.append(self._to_dnmf(A, X.dtype))
        return out[0], out[1]

    def _warn_max_iter(self, n_iter: int) -> None:
        if n_iter == self.max_iter and self.tol > 0:
            warnings.warn(
                f"Maximum number of iterations {self.max_iter} reached. Increase it to improve "
                "convergence.",
                ConvergenceWarning,
                stacklevel=3,
            )

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, W: Any = None, H: Any = None, *, mask: Any = None) -> NMF:
        """Learn the dictionary from X.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            Nonnegative data, frames × bins.
        y : Ignored
        W : array-like of shape (n_samples, n_components), optional
            Initial activations with ``init='custom'``.
        H : array-like of shape (n_components, n_features), optional
            Initial components with ``init='custom'``.
        mask : array-like of shape (n_samples, n_features) or (n_samples,), optional
            Weights of the entries of X, 0 = missing (bool or float >= 0): the
            loss becomes ``Σ mask ⊙ d_β(X | W H)`` and X may hold anything (NaN
            included) where the mask is 0. One weight per sample weights whole
            frames. Named ``mask``, not ``sample_weight``: it weights entries,
            and scikit-learn's ``sample_weight`` means one weight per sample with
            repetition semantics (:mod:`dnmf.nmf.estimator_mask`). NumPy X only.

        Returns
        -------
        self : NMF
        """
        self.fit_transform(X, W=W, H=H, mask=mask)
        return self

    def fit_transform(
        self, X: Any, y: Any = None, W: Any = None, H: Any = None, *, mask: Any = None
    ) -> np.ndarray:
        """Learn the dictionary from X and return the activations of X.

        Parameters
        ----------
        X : array-like or dask array of shape (n_samples, n_features)
            Nonnegative data, frames × bins.
        y : Ignored
        W : array-like of shape (n_samples, n_components), optional
            Initial activations with ``init='custom'``.
        H : array-like of shape (n_components, n_features), optional
            Initial components with ``init='custom'``.
        mask : array-like of shape (n_samples, n_features) or (n_samples,), optional
            Weights of the entries (see :meth:`fit`).

        Returns
        -------
        ndarray of shape (n_samples, n_components)
            The activations as the last epoch left them, in X's dtype.
        """
        self._validate_params()
        client = client_for(X)
        M = None
        if client is not None:
            if mask is not None:
                raise DnmfUsageError(
                    "mask= is for a NumPy X; compute the Dask array first, or learn the corpus "
                    "with dnmf learn --mask-store"
                )
            X = self._check_dask_X(X)
        elif mask is not None:
            X, V, M = check_masked_X(self, computed(X), mask, reset=True)
        else:
            X, V = self._check_X(X, reset=True)
        rank = self._rank(X, W, H)
        init = self._init_name(rank, X)
        H_init, W_init = self._custom_factors(X, rank, W, H)
        # Blocks of batch_size samples, or of FULL_BATCH_BLOCK in full batch: the same
        # blocks (and so the same seeded activations and sums) in memory and on a cluster.
        block_frames = self.batch_size or FULL_BATCH_BLOCK
        cfg = self._config(rank, init, self._seed(), block_frames)
        if M is not None and cfg.solver == "hals":  # a weighted HALS needs a Gram per bin
            cfg = cfg.model_copy(update={"solver": "mu"})
        if client is not None:
            run: MemoryRun | DaskRun = DaskRun(client, X, block_frames, rank)
        else:
            run = MemoryRun(V, block_frames, M=M)
        try:
            state = start_state_any_rank(cfg, run.backend, W_init)
            if H_init is not None:
                run.write_initial(H_init)
                state.visited[:] = True  # type: ignore[index]
            n_iter = self._run(cfg, run, state)
            H_final = run.activations(state)
            error = run.error(one_lag(state), state.latest_buffer, state.pending, None, cfg.beta)
        finally:
            run.close()
        self._warn_max_iter(n_iter)
        self.reconstruction_err_ = error
        self.components_ = self._from_dnmf(one_lag(state))
        self.n_components_ = rank
        self.n_iter_ = n_iter
        self.n_steps_ = state.global_step
        self._stream = Stream(cfg, state.W, state.A, state.B)
        return self._from_dnmf(H_final)

    def _run(self, cfg: LearnConfig, run: MemoryRun | DaskRun, state: LearnState) -> int:
        """Epochs until ``max_iter`` or scikit-learn's convergence test; returns the epochs run."""
        beta, t0 = cfg.beta, time.perf_counter()
        error_at_init = previous = 0.0
        if self.tol > 0:
            seeded = None if state.visited.all() else (cfg.seed, state.avg)  # type: ignore[union-attr]
            error_at_init = previous = run.error(one_lag(state), 0, None, seeded, beta)
        n_iter = 0
        while n_iter < self.max_iter:
            target = min(self.max_iter, n_iter + CHECK_EVERY) if self.tol > 0 else self.max_iter
            run_epochs(cfg, run.backend, state, target)
            n_iter = state.done_epochs
            if self.tol > 0 and n_iter % CHECK_EVERY == 0:
                error = run.error(one_lag(state), state.latest_buffer, state.pending, None, beta)
                if self.verbose:
                    print(
                        f"Epoch {n_iter:02d} reached after {time.perf_counter() - t0:.3f} "
                        f"seconds, error: {error:f}"
                    )
                if error_at_init == 0 or (previous - error) / error_at_init < self.tol:
                    break
                previous = error
        if self.verbose and (self.tol == 0 or n_iter % CHECK_EVERY):
            print(f"Epoch {n_iter:02d} reached after {time.perf_counter() - t0:.3f} seconds.")
        return n_iter

    def _check_dask_X(self, X: Any) -> Any:
        """validate_data for a Dask array, without computing it (values are checked per block)."""
        if X.ndim != 2:
            raise ValueError(f"Expected a 2D array, got a {X.ndim}D Dask array instead")
        if any(np.isnan(c) for c in X.shape):
            raise ValueError(
                "X is a Dask array of unknown shape; call X.compute_chunk_sizes() first"
            )
        self.n_features_in_ = int(X.shape[1])
        if hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        if X.shape[0] < 1 or X.shape[1] < 1:
            raise ValueError(f"Found array with shape {X.shape}; NMF needs at least 1 x 1")
        return X if X.dtype in (np.float32, np.float64) else X.astype(np.float64)

    def partial_fit(self, X: Any, y: Any = None, W: Any = None, H: Any = None) -> NMF:
        """One minibatch step of the dictionary on the frames of X.

        The online accumulators of the learner (:func:`dnmf.nmf.update.online_update`)
        are kept across calls and forget ``forget_factor`` per call, as
        scikit-learn's ``MiniBatchNMF.partial_fit``: a stream of batches is
        learned as ``dnmf learn`` learns a corpus, step by step. The first call
        on an unfitted estimator initialises from its batch; after :meth:`fit`
        the steps continue from the fitted dictionary. As in
        ``MiniBatchNMF.partial_fit``, the batch's activations are first solved
        with the dictionary fixed (as :meth:`transform`, with ``max_iter`` and
        ``tol``); then one step updates them (``n_inner`` times) and the
        dictionary. ``batch_size`` cuts X into blocks whose statistics are
        summed for the one step.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of nonnegative frames.
        y : Ignored
        W, H : array-like, optional
            Initial activations and components with ``init='custom'`` (first call).

        Returns
        -------
        self : NMF
        """
        first = not hasattr(self, "_stream")
        if first:
            self._validate_params()
        X, V = self._check_X(X, reset=first)
        block_frames = self.batch_size or V.shape[1]
        run = MemoryRun(V, block_frames)
        if first:
            rank = self._rank(X, W, H)
            init = self._init_name(rank, X)
            H_init, W_init = self._custom_factors(X, rank, W, H)
            cfg = self._config(rank, init, self._seed(), block_frames)
            state = start_state_any_rank(cfg, run.backend, W_init)
            if H_init is not None:
                run.write_initial(H_init)
                state.visited[:] = True  # type: ignore[index]
            stream = Stream(cfg, state.W, None, None)
            steps = 0
        else:
            stream = self._stream
            steps = int(self.n_steps_)
            # a new seed per step: each batch's activations start from new draws
            seed = int(np.random.SeedSequence([stream.cfg.seed, steps]).generate_state(1)[0])
            cfg = stream.cfg.model_copy(update={"seed": seed % 2**31})
            total, count = run.backend.summary()
            avg = scale_for(total / max(count, 1.0), cfg.rank)
            state = fresh_state(cfg, run.backend, stream.W.astype(V.dtype), avg)
        if not state.visited.all():  # type: ignore[union-attr]
            # as MiniBatchNMF.partial_fit: the batch's activations are first solved with
            # the dictionary fixed (as transform does), then the step updates both
            _, _, l1_H, l2_H = cfg.penalties(V.shape[0], 1)
            H0 = np.full((cfg.rank, V.shape[1]), np.sqrt(X.mean() / cfg.rank), dtype=V.dtype)
            H0, _ = solve_sklearn(
                V, one_lag(state), H0, beta=cfg.beta, max_iter=self.max_iter, tol=self.tol,
                l1=l1_H, l2=l2_H, solver=cfg.solver,
            )  # fmt: skip
            run.write_initial(H0)
            state.visited[:] = True  # type: ignore[index]
        state.A, state.B = stream.A, stream.B
        online_step(cfg, run.backend, state, rho=self.forget_factor)

        self.components_ = self._from_dnmf(one_lag(state))
        self.n_components_ = cfg.rank
        self.n_steps_ = steps + 1
        self.reconstruction_err_ = run.error(
            one_lag(state), state.latest_buffer, state.pending, None, cfg.beta
        )
        self._stream = Stream(stream.cfg, state.W, state.A, state.B)
        return self

    # -- using the dictionary ------------------------------------------------------------------
    def transform(self, X: Any, *, mask: Any = None) -> np.ndarray:
        """Activations of X with the dictionary fixed.

        As scikit-learn's ``NMF(solver='mu').transform``: start from
        ``sqrt(mean(X) / n_components)`` everywhere, run up to ``max_iter``
        multiplicative updates (:func:`dnmf.nmf.kernels.update_H`) with the
        convergence test every 10.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Nonnegative data, frames × bins.
        mask : array-like of shape (n_samples, n_features) or (n_samples,), optional
            Weights of the entries (see :meth:`fit`): masked entries do not pull
            the activations; the start is the mean of the kept entries.

        Returns
        -------
        ndarray of shape (n_samples, n_components)
            The activations, in X's dtype.
        """
        check_is_fitted(self)
        M = None
        if mask is None:
            X, V = self._check_X(X, reset=False)
            mean = float(X.mean())
        else:
            X, V, M = check_masked_X(self, computed(X), mask, reset=False)
            mean = float(np.sum(np.where(M > 0, V, 0), dtype=np.float64)) / max(
                1, int(np.count_nonzero(M))
            )
        W = self._to_dnmf(self.components_, V.dtype)
        k = W.shape[1]
        cfg = self._config(k, "custom", 0, V.shape[1])
        _, _, l1_H, l2_H = cfg.penalties(V.shape[0], 1)
        H = np.full((k, V.shape[1]), np.sqrt(mean / k), dtype=V.dtype)
        H, n_iter = solve_sklearn(
            V,
            W,
            H,
            beta=cfg.beta,
            max_iter=self.max_iter,
            tol=self.tol,
            l1=l1_H,
            l2=l2_H,
            solver=cfg.solver,
            M=M,
        )
        self._warn_max_iter(n_iter)
        return self._from_dnmf(H)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Data from activations: ``X @ components_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Activations.

        Returns
        -------
        ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        X = check_array(X, dtype=[np.float64, np.float32])
        return X @ self.components_  # type: ignore[no-any-return]
