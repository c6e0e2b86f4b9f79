"""dnmf.nmf.estimator.NMF: scikit-learn's estimator checks, parity with NMF(solver='mu')."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.decomposition import NMF as SkNMF
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from dnmf.nmf.estimator import NMF

BETAS = [0.0, 0.5, 1.0, 2.0]

# Reached against scikit-learn after N_ITER full-batch iterations (observed: about 1e-14
# relative in float64 and 3e-5 in float32, the worst with penalties).
N_ITER = 100
TOL64 = {"rtol": 1e-10, "atol": 1e-12}
TOL32 = {"rtol": 1e-4, "atol": 1e-5}


def problem(
    n_samples: int = 40, n_features: int = 12, k: int = 4, *, seed: int = 0, dtype: Any = np.float64
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X (frames x bins) and an initial (W, H) in scikit-learn's orientation."""
    rng = np.random.default_rng(seed)
    X = rng.random((n_samples, n_features)) + 0.05
    W = rng.random((n_samples, k)) + 0.1
    H = rng.random((k, n_features)) + 0.1
    return X.astype(dtype), W.astype(dtype), H.astype(dtype)


def low_rank(n_samples: int = 200, n_features: int = 16, k: int = 3, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random((n_samples, k)) @ rng.random((k, n_features)) + 0.01


def sklearn_mu(X: np.ndarray, W: np.ndarray, H: np.ndarray, **params: Any) -> SkNMF:
    """scikit-learn's MU from copies of (W, H) (it updates the given arrays in place)."""
    params = {"init": "custom", "solver": "mu", "tol": 0.0, "max_iter": N_ITER, **params}
    model = SkNMF(W.shape[1], **params)
    model.W_ = model.fit_transform(X, W=W.copy(), H=H.copy())
    return model


# -- scikit-learn's estimator checks ---------------------------------------------------------

# fit_transform returns the activations of the last epoch; transform solves them anew
# with the dictionary fixed. The checks want both within 0.01 on (30, 3) blobs at rank 3,
# which needs a converged fit: plain MU is not converged there in max_iter epochs, and
# scikit-learn's own NMF(solver='mu') fails these two checks the same way (at rank 1
# both agree, see the first instance, which passes every check).
NOT_CONVERGED = (
    "MU not converged in max_iter epochs at rank 3: fit_transform and transform differ by "
    "more than the check's atol=0.01, as for sklearn's NMF(solver='mu')"
)

# max_iter is kept small: each check fits a few times, and a step costs about 1 ms here.
CHECKED = [
    NMF(n_components=1, random_state=0, max_iter=20, schedule="full", solver="mu"),
    NMF(random_state=0, max_iter=20, schedule="full", solver="mu"),
    NMF(
        n_components=1,
        beta_loss=1,
        batch_size=7,
        max_iter=10,
        norm="l2",
        schedule="full",
        solver="mu",
    ),
]


def expected_failed_checks(estimator: NMF) -> dict[str, str]:
    if estimator.n_components is None:
        return {
            "check_transformer_general": NOT_CONVERGED,
            "check_transformer_data_not_an_array": NOT_CONVERGED,
        }
    return {}


@parametrize_with_checks(CHECKED, expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator: NMF, check: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


# -- parity with scikit-learn's NMF(solver='mu') -------------------------------------------


@pytest.mark.parametrize("beta", BETAS)
def test_full_batch_equals_sklearn_mu(beta: float) -> None:
    X, W, H = problem()
    ref = sklearn_mu(X, W, H, beta_loss=beta)
    model = NMF(
        4, init="custom", tol=0, max_iter=N_ITER, beta_loss=beta, schedule="full", solver="mu"
    )
    activations = model.fit_transform(X, W=W, H=H)
    assert_allclose(model.components_, ref.components_, **TOL64)
    assert_allclose(activations, ref.W_, **TOL64)
    assert_allclose(model.reconstruction_err_, ref.reconstruction_err_, rtol=1e-12)
    assert model.n_iter_ == ref.n_iter_ == N_ITER
    assert activations.dtype == model.components_.dtype == np.float64


@pytest.mark.parametrize("beta", BETAS)
def test_float32_equals_sklearn_mu_and_stays_float32(beta: float) -> None:
    X, W, H = problem(dtype=np.float32)
    ref = sklearn_mu(X, W, H, beta_loss=beta)
    model = NMF(
        4, init="custom", tol=0, max_iter=N_ITER, beta_loss=beta, schedule="full", solver="mu"
    )
    activations = model.fit_transform(X, W=W, H=H)
    assert activations.dtype == model.components_.dtype == np.float32
    assert model.transform(X).dtype == np.float32
    assert_allclose(model.components_, ref.components_, **TOL32)
    assert_allclose(activations, ref.W_, **TOL32)
    assert_allclose(model.reconstruction_err_, ref.reconstruction_err_, rtol=1e-5)


@pytest.mark.parametrize("beta", [1.0, 2.0])
@pytest.mark.parametrize(
    "penalty",
    [
        {"alpha_W": 0.1, "l1_ratio": 0.0},
        {"alpha_W": 0.05, "l1_ratio": 1.0},
        {"alpha_W": 0.1, "alpha_H": 0.02, "l1_ratio": 0.3},
        {"alpha_W": 0.0, "alpha_H": 0.2, "l1_ratio": 0.5},
    ],
)
def test_penalties_equal_sklearn_mu(beta: float, penalty: dict[str, float]) -> None:
    X, W, H = problem()
    ref = sklearn_mu(X, W, H, beta_loss=beta, **penalty)
    model = NMF(
        4,
        init="custom",
        tol=0,
        max_iter=N_ITER,
        beta_loss=beta,
        **penalty,
        schedule="full",
        solver="mu",
    )
    activations = model.fit_transform(X, W=W, H=H)
    assert_allclose(model.components_, ref.components_, **TOL64)
    assert_allclose(activations, ref.W_, **TOL64)
    # transform applies the activations' penalty with scikit-learn's scaling too
    assert_allclose(model.transform(X), sklearn_transform(ref, X), **TOL64)


def sklearn_transform(model: SkNMF, X: np.ndarray) -> np.ndarray:
    """scikit-learn's NMF(solver='mu', tol=0).transform, with its β = 1 L1 quirk undone.

    With β = 1 and ``update_H=False``, ``_multiplicative_update_w`` caches ``H_sum``
    and adds ``l1_reg_W`` to it in place (``denominator`` is a view of it), so its
    transform's L1 penalty grows by ``l1_reg_W`` every iteration (scikit-learn
    1.9). Its update function, called afresh per iteration, is the reference.
    """
    from sklearn.decomposition._nmf import _multiplicative_update_w

    if model._beta_loss != 1 or model.l1_ratio == 0 or model.alpha_W == 0:
        return model.transform(X)
    l1, _, l2, _ = model._compute_regularization(X)
    H = model.components_
    W = np.full((X.shape[0], H.shape[0]), np.sqrt(X.mean() / H.shape[0]))
    for _ in range(model.max_iter):
        W, *_ = _multiplicative_update_w(X, W, H, 1.0, l1, l2, 1.0)
    return W


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_convergence_test_and_transform_equal_sklearn(beta: float) -> None:
    X, W, H = problem()
    ref = sklearn_mu(X, W, H, beta_loss=beta, tol=1e-3, max_iter=1000)
    model = NMF(
        4, init="custom", tol=1e-3, max_iter=1000, beta_loss=beta, schedule="full", solver="mu"
    )
    model.fit(X, W=W, H=H)
    assert model.n_iter_ == ref.n_iter_ < 1000
    assert_allclose(model.components_, ref.components_, **TOL64)
    assert_allclose(model.transform(X), ref.transform(X), **TOL64)


def test_custom_init_leaves_given_factors_alone() -> None:
    X, W, H = problem()
    W0, H0 = W.copy(), H.copy()
    NMF(4, init="custom", max_iter=5, tol=0, schedule="full", solver="mu").fit(X, W=W, H=H)
    assert_array_equal(W, W0)
    assert_array_equal(H, H0)


def test_random_init_draws_sklearns_components() -> None:
    # dnmf's 'random' dictionary is scikit-learn's H drawn from the same int seed
    X, _, _ = problem()
    model = NMF(4, init="random", random_state=3, max_iter=1, tol=0, schedule="full", solver="mu")
    ref = SkNMF(4, init="random", solver="mu", random_state=3, max_iter=1, tol=0)
    from sklearn.decomposition._nmf import _initialize_nmf

    _, H0 = _initialize_nmf(X, 4, init="random", random_state=3)
    from dnmf.nmf.config import LearnConfig
    from dnmf.nmf.init import Informed, initial_templates

    V = np.ascontiguousarray(X.T)
    W0 = initial_templates(
        LearnConfig(rank=4, init="random", seed=3, schedule="full", solver="mu"), V.shape[0],
        float(X.mean()), V.dtype,
        informed=Informed(), sample=lambda: V,
    )  # fmt: skip
    assert_allclose(W0[:, :, 0].T, H0, rtol=1e-12)
    model.fit(X)
    ref.fit(X)
    assert model.components_.shape == ref.components_.shape


# -- invariants ---------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("params", [{}, {"batch_size": 50, "norm": "l2"}])
def test_error_falls_with_max_iter_and_factors_stay_nonnegative(
    beta: float, params: dict[str, Any]
) -> None:
    X = low_rank()
    errors = []
    for max_iter in (2, 10, 50):
        model = NMF(
            3, beta_loss=beta, tol=0, max_iter=max_iter, random_state=0, **params, schedule="full"
        )
        activations = model.fit_transform(X)
        assert (model.components_ >= 0).all() and (activations >= 0).all()
        assert model.n_iter_ == max_iter
        errors.append(model.reconstruction_err_)
    assert errors[0] > errors[1] > errors[2]


def test_reconstruction_error_is_sklearns_definition() -> None:
    from sklearn.decomposition._nmf import _beta_divergence

    X = low_rank()
    for beta in (0.0, 0.5, 1.0, 2.0, 3.0):
        model = NMF(
            3,
            beta_loss=beta,
            tol=0,
            max_iter=20,
            random_state=0,
            norm="l2",
            schedule="full",
            solver="mu",
        )
        activations = model.fit_transform(X)
        expected = _beta_divergence(X, activations, model.components_, beta, square_root=True)
        assert_allclose(model.reconstruction_err_, expected, rtol=1e-10)


def test_transform_of_training_data_is_close_to_fit_transform() -> None:
    X = low_rank()
    model = NMF(3, beta_loss=2, tol=0, max_iter=400, random_state=0, schedule="full", solver="mu")
    activations = model.fit_transform(X)
    again = model.transform(X)
    assert again.shape == activations.shape
    assert np.linalg.norm(again - activations) < 0.05 * np.linalg.norm(activations)
    error = np.linalg.norm(X - model.inverse_transform(again))
    assert error <= 1.05 * model.reconstruction_err_


def test_inverse_transform_shape_and_value() -> None:
    X = low_rank()
    model = NMF(3, max_iter=20, random_state=0, tol=0, schedule="full", solver="mu")
    activations = model.fit_transform(X)
    back = model.inverse_transform(activations)
    assert back.shape == X.shape
    assert_allclose(back, activations @ model.components_)
    assert np.linalg.norm(back - X) == pytest.approx(model.reconstruction_err_)


def test_norm_keeps_the_product_and_gives_unit_atoms() -> None:
    X = low_rank()
    plain = NMF(3, tol=0, max_iter=30, random_state=0, beta_loss=1, schedule="full", solver="mu")
    normed = NMF(
        3, tol=0, max_iter=30, random_state=0, beta_loss=1, norm="l2", schedule="full", solver="mu"
    )
    A, B = plain.fit_transform(X), normed.fit_transform(X)
    assert_allclose(np.linalg.norm(normed.components_, axis=1), 1.0, rtol=1e-12)
    assert_allclose(B @ normed.components_, A @ plain.components_, rtol=1e-8, atol=1e-12)


def test_fixed_components_do_not_move() -> None:
    X, W, H = problem()
    model = NMF(
        4, init="custom", fixed_components=[0, 2], max_iter=20, tol=0, schedule="full", solver="mu"
    )
    model.fit(X, W=W, H=H)
    assert_array_equal(model.components_[[0, 2]], H[[0, 2]])
    assert not np.allclose(model.components_[1], H[1])
    with pytest.raises(ValueError, match="init='custom'"):
        NMF(4, fixed_components=[0], schedule="full", solver="mu").fit(X)
    with pytest.raises(ValueError, match="out of range"):
        NMF(4, init="custom", fixed_components=[4], schedule="full", solver="mu").fit(X, W=W, H=H)


@pytest.mark.parametrize("init", ["random", "nndsvda", "kmeans", None])
def test_inits_run_and_are_seeded(init: str | None) -> None:
    X = low_rank()
    a = (
        NMF(3, init=init, random_state=5, max_iter=10, tol=0, schedule="full", solver="mu")
        .fit(X)
        .components_
    )
    b = (
        NMF(3, init=init, random_state=5, max_iter=10, tol=0, schedule="full", solver="mu")
        .fit(X)
        .components_
    )
    assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("beta", "expected"), [(0, "random"), (0.5, "random"), (1, "nndsvda"), (2, "nndsvda")]
)
def test_default_init_follows_beta(beta: float, expected: str) -> None:
    """init=None: NNDSVDa for beta >= 1, random below (where NNDSVDa measured worse)."""
    X = low_rank() + 0.1
    kw = dict(beta_loss=beta, random_state=5, max_iter=5, tol=0, schedule="full", solver="mu")
    default = NMF(3, init=None, **kw).fit(X).components_
    assert_array_equal(default, NMF(3, init=expected, **kw).fit(X).components_)
    other = "nndsvda" if expected == "random" else "random"
    assert not np.array_equal(default, NMF(3, init=other, **kw).fit(X).components_)


def test_more_components_than_features_as_sklearn() -> None:
    X = low_rank(n_samples=30, n_features=4)
    model = NMF(6, max_iter=10, tol=0, random_state=0, schedule="full", solver="mu")
    assert model.fit_transform(X).shape == (30, 6)


def test_dtypes_and_bad_input() -> None:
    X = (low_rank() * 10).astype(np.int64)
    model = NMF(2, max_iter=5, tol=0, random_state=0, schedule="full", solver="mu")
    assert model.fit_transform(X).dtype == np.float64
    with pytest.raises(ValueError, match="Negative values"):
        NMF(2, schedule="full", solver="mu").fit(-np.ones((5, 4)))
    bad = np.ones((5, 4))
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        NMF(2, schedule="full", solver="mu").fit(bad)
    with pytest.raises(ValueError, match="4 features"):
        model.fit(np.ones((5, 4))).transform(np.ones((5, 3)))
    with pytest.raises(ValueError, match="beta_loss"):
        NMF(2, beta_loss="nope", schedule="full", solver="mu").fit(np.ones((5, 4)))


def test_convergence_warning_as_sklearn() -> None:
    X = low_rank()
    with pytest.warns(ConvergenceWarning, match="Maximum number of iterations 3"):
        NMF(3, max_iter=3, tol=1e-12, random_state=0, schedule="full", solver="mu").fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        NMF(3, max_iter=3, tol=0, random_state=0, schedule="full", solver="mu").fit(
            X
        )  # tol=0: no test, no warning


# -- partial_fit ------------------------------------------------------------------------------


def test_partial_fit_lowers_the_error_over_calls() -> None:
    X = low_rank(n_samples=400)
    batches = np.array_split(X, 8)
    model = NMF(3, beta_loss=1, random_state=0, schedule="full", solver="mu")
    first_pass: list[float] = []
    last_pass: list[float] = []
    for epoch in range(15):
        for batch in batches:
            model.partial_fit(batch)
            (first_pass if epoch == 0 else last_pass).append(model.reconstruction_err_)
        if epoch:
            last_pass = last_pass[-len(batches) :]
    assert model.n_steps_ == 15 * len(batches)
    assert sum(last_pass) < 0.5 * sum(first_pass)
    assert (model.components_ >= 0).all()
    with pytest.raises(ValueError, match="16 features"):
        model.partial_fit(np.ones((4, 5)))


def test_partial_fit_after_fit_continues_and_keeps_float32() -> None:
    X = low_rank().astype(np.float32)
    model = NMF(3, random_state=0, max_iter=20, tol=0, batch_size=50, schedule="full", solver="mu")
    model.fit(X)
    steps = model.n_steps_
    assert steps == 20 * 4
    before = model.components_.copy()
    model.partial_fit(X[:50])
    assert model.n_steps_ == steps + 1
    assert model.components_.dtype == np.float32
    assert not np.array_equal(before, model.components_)


def test_partial_fit_with_rank_above_batch_frames() -> None:
    X = low_rank()
    model = NMF(
        5, init="random", random_state=0, norm="max", beta_loss=0.5, schedule="full", solver="mu"
    )
    model.partial_fit(X[:3])
    model.partial_fit(X[3:6])
    assert model.components_.shape == (5, 16)
    assert_allclose(model.components_.max(axis=1), 1.0)


def test_docstring_examples_run() -> None:
    import doctest

    import dnmf.nmf.estimator

    result = doctest.testmod(dnmf.nmf.estimator, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- librosa and Dask ------------------------------------------------------------------------


def test_librosa_decompose_accepts_it() -> None:
    import librosa

    rng = np.random.default_rng(0)
    S = np.abs(rng.standard_normal((64, 120))).astype(np.float32)  # (bins, frames)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        comps, acts = librosa.decompose.decompose(
            S,
            transformer=NMF(
                n_components=8,
                random_state=0,
                beta_loss=1,
                max_iter=50,
                schedule="full",
                solver="mu",
            ),
        )
    assert comps.shape == (64, 8) and acts.shape == (8, 120)
    assert comps.dtype == acts.dtype == np.float32
    assert np.linalg.norm(comps @ acts - S) < np.linalg.norm(S)


def test_dask_input_without_a_client_is_computed() -> None:
    da = pytest.importorskip("dask.array")
    from distributed import get_client

    try:
        get_client()
        pytest.skip("a distributed client is active; see test_dask_input_runs_on_the_cluster")
    except ValueError:
        pass
    X = low_rank().astype(np.float32)
    a = NMF(3, random_state=0, max_iter=10, tol=0, schedule="full", solver="mu").fit_transform(X)
    b = NMF(3, random_state=0, max_iter=10, tol=0, schedule="full", solver="mu").fit_transform(
        da.from_array(X, chunks=50)
    )
    assert_array_equal(a, b)


@pytest.mark.parametrize(
    "params",
    [
        {"max_iter": 2, "tol": 0, "beta_loss": 1},
        # the convergence test (seeded activations at init) and pending scales of norm
        {"max_iter": 10, "tol": 1e-12, "beta_loss": 2, "norm": "l2", "batch_size": 100},
    ],
)
def test_dask_input_runs_on_the_cluster(cluster_client: Any, params: dict[str, Any]) -> None:
    """On the cluster (DaskBackend), bitwise the result of the same blocks in memory."""
    da = pytest.importorskip("dask.array")
    X = low_rank().astype(np.float32)
    local = NMF(3, random_state=0, **params, schedule="full")
    remote = NMF(3, random_state=0, **params, schedule="full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = local.fit_transform(X)
        b = remote.fit_transform(da.from_array(X, chunks=(50, 16)))
    assert_array_equal(a, b)
    assert_array_equal(local.components_, remote.components_)
    assert remote.reconstruction_err_ == local.reconstruction_err_
    assert remote.n_iter_ == local.n_iter_ == params["max_iter"]
    assert remote.n_features_in_ == 16


# -- what scikit-learn's users expect of the start ------------------------------------------------
def test_partial_fit_on_silence_keeps_the_dictionary_alive() -> None:
    X, _, _ = problem(n_samples=80)
    model = NMF(
        4, init="random", random_state=0, tol=0, max_iter=5, schedule="full", solver="mu"
    ).fit(X)
    before = model.components_.copy()
    model.partial_fit(np.zeros_like(X[:40]))
    # The accumulators start from the dictionary (scikit-learn's A = W, B = 1), so a
    # batch without energy shrinks nothing to zero for good.
    assert (model.components_[before > 0] > 0).all()
    model.partial_fit(X[40:])
    assert np.count_nonzero(model.components_) == np.count_nonzero(before)


def test_a_bin_silent_in_the_first_step_is_learned_later() -> None:
    from dnmf.backends import MemoryBackend
    from dnmf.nmf.config import LearnConfig
    from dnmf.nmf.learner import learn, start_state
    from dnmf.nmf.plan import epoch_steps

    rng = np.random.default_rng(5)
    V = (rng.random((12, 3)) @ rng.random((3, 400)) + 0.1).astype(np.float32)
    cfg = LearnConfig(
        rank=3, epochs=4, batch_chunks=2, tol=0, n_inner=2, schedule="full", solver="mu"
    )
    first = epoch_steps(8, 2, seed=cfg.seed, epoch=0)[0]
    for b in first:
        V[0, b * 50 : (b + 1) * 50] = 0.0  # bin 0 has no energy in the first step
    be = MemoryBackend(V, 50)
    state = learn(cfg, be, start_state(cfg, be))
    assert (state.W[0] > 0).any() and np.isfinite(state.losses).all()


def test_nndsvda_with_more_components_than_the_data_allows_is_refused() -> None:
    X = np.random.default_rng(0).random((6, 10))
    with pytest.raises(ValueError, match=r"init = 'nndsvda' can only be used when n_components"):
        NMF(8, init="nndsvda", schedule="full", solver="mu").fit(X)


@pytest.mark.parametrize("which", ["W", "H"])
def test_custom_factors_full_of_zeros_are_refused(which: str) -> None:
    X = np.random.default_rng(0).random((20, 6))
    W, H = np.random.default_rng(1).random((20, 3)), np.random.default_rng(2).random((3, 6))
    given = {"W": W, "H": H}
    given[which] = np.zeros_like(given[which])
    with pytest.raises(ValueError, match=f"got {which} full of zeros"):
        NMF(3, init="custom", schedule="full", solver="mu").fit(X, **given)


def test_batch_size_means_samples_per_minibatch_step_as_in_sklearn() -> None:
    """A port of ``MiniBatchNMF(batch_size=...)`` gets minibatch steps of that many samples."""
    X = low_rank()  # 200 samples
    full = NMF(3, random_state=0, max_iter=5, tol=0, schedule="full", solver="mu").fit(X)
    mini = NMF(
        3, random_state=0, max_iter=5, tol=0, batch_size=64, schedule="full", solver="mu"
    ).fit(X)
    assert full.n_steps_ == 5 and mini.n_steps_ == 5 * 4  # ceil(200 / 64) steps an epoch
    assert not np.allclose(full.components_, mini.components_)


@pytest.mark.parametrize("solver", ["cd", "hals"])
def test_coordinate_descent_equals_sklearns_cd(solver: str) -> None:
    X, W, H = problem()
    ref = SkNMF(4, solver="cd", beta_loss=2, init="custom", max_iter=N_ITER, tol=0, shuffle=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        acts_ref = ref.fit_transform(X, W=W.copy(), H=H.copy())
    model = NMF(
        4, solver=solver, beta_loss=2, init="custom", max_iter=N_ITER, tol=0, schedule="full"
    )
    acts = model.fit_transform(X, W=W.copy(), H=H.copy())
    assert_allclose(model.components_, ref.components_, **TOL64)
    assert_allclose(acts, acts_ref, **TOL64)
    assert model.transform(X).shape == acts.shape
    with pytest.raises(ValueError, match="solver='hals' is for beta=2"):
        NMF(4, solver=solver, beta_loss=1, schedule="full").fit(X)
