"""Tests of dnmf.nmf.kernels against scikit-learn's MU solver and against invariants."""

from __future__ import annotations

import doctest
import re
import tracemalloc
import warnings
from typing import Any, ClassVar

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.decomposition import NMF, non_negative_factorization
from sklearn.decomposition._nmf import _beta_divergence, _fit_multiplicative_update

from dnmf.errors import DnmfUsageError, InvalidDataError
from dnmf.nmf.divergence import (
    EPSILON,
    beta_divergence,
    beta_name_to_float,
    check_nonnegative,
    gamma,
)
from dnmf.nmf.kernels import chunk_stats, update_H
from dnmf.nmf.update import normalize_W, update_W

BETAS = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]

# Tolerances against scikit-learn after N_ITER full-batch iterations.
N_ITER = 30
TOL64 = {"rtol": 1e-10, "atol": 1e-13}
TOL32 = {"rtol": 1e-4, "atol": 1e-6}


def make_problem(
    n_bins: int = 17,
    n_frames: int = 23,
    k: int = 4,
    *,
    seed: int = 0,
    dtype: Any = np.float64,
    zeros: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    V = rng.random((n_bins, n_frames)) + 0.01
    if zeros:
        V[3] = 0.0  # a silent bin
        V[:, 5] = 0.0  # a silent frame
        V[rng.random(V.shape) < 0.1] = 0.0
        V[0, 0] = 0.5 * EPSILON  # positive but below the floor: not in the loss
    W = rng.random((n_bins, k)) + 0.1
    H = rng.random((k, n_frames)) + 0.1
    return V.astype(dtype), W.astype(dtype), H.astype(dtype)


def dnmf_fit(
    V: np.ndarray,
    W: np.ndarray,
    H: np.ndarray,
    beta: float,
    n_iter: int,
    *,
    l1_W: float = 0.0,
    l2_W: float = 0.0,
    l1_H: float = 0.0,
    l2_H: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Full-batch MU in dnmf orientation; returns W, H and the loss after each H update."""
    losses = []
    for _ in range(n_iter):
        H = update_H(V, W, H, beta=beta, l1_reg=l1_H, l2_reg=l2_H)
        s = chunk_stats(V, W, H, beta=beta, update_h=False)
        losses.append(s.loss)
        W = update_W(W, s.num, s.den, beta=beta, l1_reg=l1_W, l2_reg=l2_W)
    return W, H, losses


def sklearn_fit(
    V: np.ndarray, W: np.ndarray, H: np.ndarray, beta: float, n_iter: int, **reg: float
) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's MU on X = V.T, back in dnmf orientation (W, H)."""
    W_sk, H_sk, _ = _fit_multiplicative_update(
        V.T.copy(), H.T.copy(), W.T.copy(), beta_loss=beta, max_iter=n_iter, tol=0, **reg
    )
    return H_sk.T, W_sk.T


def sk_loss(V: np.ndarray, W: np.ndarray, H: np.ndarray, beta: float) -> float:
    return float(_beta_divergence(V.T, H.T, W.T, beta))


# --------------------------------------------------------------------------- scikit-learn


@pytest.mark.parametrize("zeros", [False, True], ids=["positive", "zeros"])
@pytest.mark.parametrize("beta", BETAS)
def test_full_batch_matches_sklearn_float64(beta: float, zeros: bool) -> None:
    V, W0, H0 = make_problem(zeros=zeros)
    W0[0, 1] = H0[2, 3] = 1e-20  # below scikit-learn's flush to 0 (beta <= 1 for W, < 1 for H)
    W, H, _ = dnmf_fit(V, W0, H0, beta, N_ITER)
    W_ref, H_ref = sklearn_fit(V, W0, H0, beta, N_ITER)
    assert_allclose(W, W_ref, **TOL64)
    assert_allclose(H, H_ref, **TOL64)
    assert_array_equal(W == 0, W_ref == 0)
    assert_array_equal(H == 0, H_ref == 0)
    assert (W[0, 1] == 0) == (beta <= 1)
    assert (H[2, 3] == 0) == (beta < 1)
    assert_allclose(beta_divergence(V, W, H, beta), sk_loss(V, W_ref, H_ref, beta), rtol=1e-10)


@pytest.mark.parametrize("beta", BETAS)
def test_full_batch_matches_sklearn_float32(beta: float) -> None:
    V, W0, H0 = make_problem(dtype=np.float32)
    W, H, _ = dnmf_fit(V, W0, H0, beta, N_ITER)
    W_ref, H_ref = sklearn_fit(V, W0, H0, beta, N_ITER)
    assert W.dtype == H.dtype == np.float32
    assert_allclose(W, W_ref, **TOL32)
    assert_allclose(H, H_ref, **TOL32)


@pytest.mark.parametrize("beta", BETAS)
def test_regularised_fit_matches_sklearn(beta: float) -> None:
    V, W0, H0 = make_problem(seed=1)
    X = V.T
    alpha_W, alpha_H, l1_ratio = 0.01, 0.02, 0.3
    # sklearn's W is our H.T: its (l1_reg_W, l2_reg_W) penalise our H.
    l1_sk_W, l1_sk_H, l2_sk_W, l2_sk_H = NMF(
        alpha_W=alpha_W, alpha_H=alpha_H, l1_ratio=l1_ratio
    )._compute_regularization(X)
    assert min(l1_sk_W, l1_sk_H, l2_sk_W, l2_sk_H) > 0
    W, H, _ = dnmf_fit(
        V, W0, H0, beta, N_ITER, l1_W=l1_sk_H, l2_W=l2_sk_H, l1_H=l1_sk_W, l2_H=l2_sk_W
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter reached with tol=0
        W_sk, H_sk, _ = non_negative_factorization(
            X.copy(),
            H0.T.copy(),
            W0.T.copy(),
            n_components=W0.shape[1],
            init="custom",
            solver="mu",
            beta_loss=beta,
            tol=0,
            max_iter=N_ITER,
            alpha_W=alpha_W,
            alpha_H=alpha_H,
            l1_ratio=l1_ratio,
        )
    unregularised, _, _ = dnmf_fit(V, W0, H0, beta, N_ITER)
    assert not np.allclose(W, unregularised, rtol=1e-3)  # the penalties did something
    assert_allclose(W, H_sk.T, **TOL64)
    assert_allclose(H, W_sk.T, **TOL64)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
def test_update_H_n_iter_matches_sklearn_with_W_fixed(beta: float) -> None:
    V, W, H0 = make_problem(seed=2)
    # scikit-learn's transform path adds l1 to its cached W sums again on every
    # iteration for beta=1; dnmf does not, so compare l2 only there.
    l1 = 0.0 if beta == 1 else 0.05
    H = update_H(V, W, H0, beta=beta, n_iter=7, l1_reg=l1, l2_reg=0.1)
    W_sk, _, _ = _fit_multiplicative_update(
        V.T.copy(),
        H0.T.copy(),
        W.T.copy(),
        beta_loss=beta,
        max_iter=7,
        tol=0,
        l1_reg_W=l1,
        l2_reg_W=0.1,
        update_H=False,
    )
    assert_allclose(H, W_sk.T, **TOL64)


@pytest.mark.parametrize("case", ["positive", "zeros", "dead"])
@pytest.mark.parametrize("beta", [*BETAS, -0.5, 2.5])
def test_beta_divergence_matches_sklearn(beta: float, case: str) -> None:
    V, W, H = make_problem(seed=3, zeros=case != "positive")
    if case == "dead" and beta < 0:
        pytest.skip("sum((W @ H) ** beta) is inf for beta < 0 where W @ H = 0")
    if case == "dead":  # W @ H < EPSILON where V > EPSILON: the floors decide the loss
        W[1] = 0.0
        H[:, 7] = 0.0
        H[:, 8] *= 1e-9
    expected = sk_loss(V, W, H, beta)
    assert_allclose(beta_divergence(V, W, H, beta), expected, rtol=1e-12)
    assert_allclose(beta_divergence(V, W, H, beta, WH=W @ H), expected, rtol=1e-12)
    s = chunk_stats(V, W, H, beta=beta, update_h=False)
    assert_allclose(s.loss, expected, rtol=1e-10)


def test_beta_divergence_float32_accumulates_in_float64() -> None:
    V, W, H = make_problem(300, 400, 5, seed=4, dtype=np.float32)
    for beta in BETAS:
        exact = sk_loss(*(a.astype(np.float64) for a in (V, W, H)), beta)
        assert_allclose(beta_divergence(V, W, H, beta), exact, rtol=1e-5)
        assert_allclose(chunk_stats(V, W, H, beta=beta, update_h=False).loss, exact, rtol=1e-4)


# --------------------------------------------------------------------------- invariants


@settings(deadline=None, max_examples=25)
@given(
    n_bins=st.integers(1, 12),
    n_frames=st.integers(1, 12),
    k=st.integers(1, 4),
    beta=st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0]),
    scale=st.sampled_from([1e-3, 1.0, 1e3]),
    seed=st.integers(0, 2**32 - 1),
)
def test_loss_never_rises(
    n_bins: int, n_frames: int, k: int, beta: float, scale: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    V = rng.random((n_bins, n_frames)) * scale
    if beta >= 1:
        V[rng.random(V.shape) < 0.3] = 0.0
    W = rng.random((n_bins, k)) + 1e-3
    H = rng.random((k, n_frames)) + 1e-3
    losses = [beta_divergence(V, W, H, beta)]
    for _ in range(50):
        H = update_H(V, W, H, beta=beta)
        s = chunk_stats(V, W, H, beta=beta, update_h=False)
        losses.append(s.loss)  # after the H update
        W = update_W(W, s.num, s.den, beta=beta)
        losses.append(beta_divergence(V, W, H, beta))  # after the W update
    rises = np.diff(losses)
    assert rises.max() <= 1e-12 * abs(losses[0]) + 1e-300, losses


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beta", BETAS)
def test_zeros_in_V_give_finite_results(beta: float, dtype: Any) -> None:
    V, W, H = make_problem(dtype=dtype, zeros=True)
    V[:, -1] = 0.0
    V[-1] = 0.0
    W[:, 0] = 0.0  # a dead component too
    with np.errstate(divide="raise", invalid="raise", over="raise"):
        for _ in range(5):
            s = chunk_stats(V, W, H, beta=beta, n_inner=2)
            assert np.isfinite(s.loss)
            for a in (s.H, s.num, s.den):
                assert np.isfinite(a).all()
            W = update_W(W, s.num, s.den, beta=beta)
            H = s.H
            assert np.isfinite(W).all()
            assert np.isfinite(beta_divergence(V, W, H, beta))


@pytest.mark.parametrize("beta", BETAS)
def test_dtype_kept_and_nonnegative(beta: float) -> None:
    V, W, H = make_problem(dtype=np.float32, zeros=True)
    s = chunk_stats(V, W, H, beta=beta, n_inner=3, l1_reg_H=0.1, l2_reg_H=0.1)
    W2 = update_W(W, s.num, s.den, beta=beta, l1_reg=0.1, l2_reg=0.1, fixed=[1])
    W3, H3, scale = normalize_W(W2, s.H)
    H4 = update_H(V, W, H, beta=beta, n_iter=2)
    assert H3 is not None
    for a in (s.H, s.num, s.den, W2, W3, H3, scale, H4):
        assert a.dtype == np.float32
        assert (a >= 0).all()
    assert isinstance(s.loss, float)


@pytest.mark.parametrize("beta", BETAS)
def test_inputs_are_not_modified(beta: float) -> None:
    V, W, H = make_problem(zeros=True)
    copies = [a.copy() for a in (V, W, H)]
    s = chunk_stats(V, W, H, beta=beta, n_inner=2, l1_reg_H=0.1, l2_reg_H=0.1)
    num, den = s.num.copy(), s.den.copy()
    update_W(W, s.num, s.den, beta=beta, l1_reg=0.1, l2_reg=0.1)
    update_H(V, W, H, beta=beta, l1_reg=0.1, l2_reg=0.1)
    for a, b in zip((V, W, H, s.num, s.den), (*copies, num, den), strict=True):
        assert_array_equal(a, b)


@pytest.mark.parametrize("n_chunks", [2, 3])
@pytest.mark.parametrize("beta", BETAS)
def test_chunked_statistics_sum_to_whole(beta: float, n_chunks: int) -> None:
    V, W, H = make_problem(n_frames=31, zeros=True, seed=5)
    kw = {"beta": beta, "n_inner": 3, "l1_reg_H": 0.05, "l2_reg_H": 0.02}
    whole = chunk_stats(V, W, H, **kw)
    bounds = np.array_split(np.arange(V.shape[1]), n_chunks)
    parts = [chunk_stats(V[:, b], W, H[:, b], **kw) for b in bounds]
    assert_allclose(np.concatenate([p.H for p in parts], axis=1), whole.H, rtol=1e-12)
    num = sum(p.num for p in parts)
    den = sum(p.den for p in parts)
    assert_allclose(num, whole.num, rtol=1e-12)
    assert_allclose(den, whole.den, rtol=1e-12)
    assert_allclose(sum(p.loss for p in parts), whole.loss, rtol=1e-10)
    assert_allclose(
        update_W(W, num, den, beta=beta, l2_reg=0.01),
        update_W(W, whole.num, whole.den, beta=beta, l2_reg=0.01),
        rtol=1e-12,
    )


def dense_stats(
    V: np.ndarray, W: np.ndarray, H: np.ndarray, beta: float
) -> tuple[np.ndarray, np.ndarray]:
    """num and den of DESIGN.md section 3, densely, with scikit-learn's floors."""
    L = W @ H
    L_num = np.maximum(L, EPSILON) if beta < 2 else L
    L_den = np.maximum(L, EPSILON) if beta < 1 else L
    return (V * L_num ** (beta - 2)) @ H.T, L_den ** (beta - 1) @ H.T


@pytest.mark.parametrize("beta", BETAS)
def test_cheap_forms_equal_dense_formula(beta: float) -> None:
    V, W, H = make_problem(zeros=True, seed=6)
    W[2] = 0.0  # a zero row of Λ, where the floors matter
    s = chunk_stats(V, W, H, beta=beta, update_h=False)
    num, den = dense_stats(V, W, H, beta)
    assert_allclose(s.num, num, rtol=1e-12)
    if beta == 1:
        assert s.den.shape == (W.shape[1],)
        assert_allclose(np.broadcast_to(s.den, num.shape), den, rtol=1e-12)
    elif beta == 2:
        assert s.den.shape == (W.shape[1], W.shape[1])
        assert_allclose(W @ s.den, den, rtol=1e-12)
    else:
        assert s.den.shape == num.shape
        assert_allclose(s.den, den, rtol=1e-12)
    # and the W update on the cheap forms is the plain dense MU step
    expected = W * (num / np.where(den == 0, EPSILON, den)) ** gamma(beta)
    if beta <= 1:
        expected[expected < np.finfo(np.float64).eps] = 0.0
    assert_allclose(update_W(W, s.num, s.den, beta=beta), expected, rtol=1e-12)


class _CountingArray(np.ndarray):
    """An ndarray that logs the (m, k, n) of every matrix product it takes part in."""

    log: ClassVar[list[tuple[int, int, int]]] = []

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        plain = [np.asarray(x) for x in inputs]
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(np.asarray(o) for o in out)
        if isinstance(kwargs.get("where"), np.ndarray):
            kwargs["where"] = np.asarray(kwargs["where"])
        if ufunc is np.matmul and method == "__call__":
            a, b = (np.atleast_2d(x) for x in plain)
            _CountingArray.log.append((a.shape[0], a.shape[1], b.shape[-1]))
        result = getattr(ufunc, method)(*plain, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return result.view(_CountingArray) if isinstance(result, np.ndarray) else result


@pytest.mark.parametrize(
    ("beta", "update_h", "n_inner", "expected"),
    [
        (1.0, True, 1, 4),
        (1.0, True, 3, 8),
        (1.0, False, 3, 2),
        (2.0, True, 3, 2),
        (2.0, False, 3, 1),
        (0.5, True, 2, 9),
        (3.0, False, 2, 3),
    ],
)
def test_gemm_count(beta: float, update_h: bool, n_inner: int, expected: int) -> None:
    n_bins, n_frames, k = 13, 29, 3
    V, W, H = (a.view(_CountingArray) for a in make_problem(n_bins, n_frames, k))
    _CountingArray.log = []
    s = chunk_stats(V, W, H, beta=beta, n_inner=n_inner, update_h=update_h)
    big = [p for p in _CountingArray.log if sorted(p) == sorted((n_bins, k, n_frames))]
    assert len(big) == expected, _CountingArray.log
    if beta == 2:  # the other products are all of the small k x k x n_frames kind or smaller
        assert all(
            max(p) <= n_frames and sorted(p)[1] <= k for p in _CountingArray.log if p not in big
        )
    plain = chunk_stats(
        *make_problem(n_bins, n_frames, k), beta=beta, n_inner=n_inner, update_h=update_h
    )
    assert_allclose(np.asarray(s.num), plain.num, rtol=1e-14)


# --------------------------------------------------------------------------- W helpers


@pytest.mark.parametrize("beta", BETAS)
def test_fixed_columns_bitwise_unchanged(beta: float) -> None:
    V, W, H = make_problem(seed=7)
    s = chunk_stats(V, W, H, beta=beta)
    free = update_W(W, s.num, s.den, beta=beta, l1_reg=0.1)
    mask = np.array([True, False, True, False])
    for fixed in (mask, np.flatnonzero(mask)):
        new = update_W(W, s.num, s.den, beta=beta, l1_reg=0.1, fixed=fixed)
        assert new[:, mask].tobytes() == W[:, mask].tobytes()
        assert_array_equal(new[:, ~mask], free[:, ~mask])
    assert not np.allclose(free[:, mask], W[:, mask])


@pytest.mark.parametrize("norm", ["l2", "max"])
def test_normalize_W_keeps_WH(norm: Any) -> None:
    _, W, H = make_problem(seed=8)
    W[:, 2] = 0.0
    W2, H2, scale = normalize_W(W, H, norm=norm)
    assert H2 is not None
    assert_allclose(W2 @ H2, W @ H, rtol=1e-13)
    assert_allclose(W2 * scale, W, rtol=1e-15)
    col = np.linalg.norm(W2, axis=0) if norm == "l2" else W2.max(axis=0)
    assert_allclose(col, [1.0, 1.0, 0.0, 1.0], rtol=1e-14)
    assert scale[2] == 1.0
    assert_array_equal(H2[2], H[2])
    W3, H3, ones = normalize_W(W, None, norm=None)
    assert_array_equal(W3, W)
    assert H3 is None
    assert_array_equal(ones, 1.0)
    with pytest.raises(DnmfUsageError, match="norm='l1'"):
        normalize_W(W, norm="l1")  # type: ignore[arg-type]


@pytest.mark.parametrize("beta", [1.0, 2.0, 0.5])
def test_update_W_rejects_den_of_another_beta(beta: float) -> None:
    V, W, H = make_problem(seed=9)
    other = 2.0 if beta != 2 else 1.0
    s = chunk_stats(V, W, H, beta=other, update_h=False)
    with pytest.raises(ValueError, match=f"den of shape {re.escape(str(s.den.shape))}"):
        update_W(W, s.num, s.den, beta=beta)


# --------------------------------------------------------------------------- input checks


@pytest.mark.parametrize(
    ("value", "what"),
    [
        (-0.5, r"a negative value \(-0.5\)"),
        (np.nan, "a NaN"),
        (np.inf, r"an infinite value \(inf\)"),
        (-np.inf, r"an infinite value \(-inf\)"),
    ],
)
def test_check_nonnegative_names_bin_and_frame(value: float, what: str) -> None:
    V = np.ones((40, 50), dtype=np.float32)
    V[3, 17] = value
    V[30, 2] = -1.0  # later in C order: not the first offender
    with pytest.raises(InvalidDataError, match=f"^V has {what} at bin 3, frame 17; NMF needs"):
        check_nonnegative(V)
    with pytest.raises(ValueError, match=f"^V has {what} at bin 3, frame 117 of chunk 2; "):
        check_nonnegative(V, where="V of chunk 2", frame_offset=100)


def test_check_nonnegative_accepts_good_input_without_temporaries() -> None:
    check_nonnegative(np.zeros((0, 5)))
    V = np.random.default_rng(0).random((1025, 8192), dtype=np.float32)
    V[0, 0] = 0.0
    tracemalloc.start()
    try:
        check_nonnegative(V)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < V.nbytes // 100  # no full-size mask on the common path


def test_beta_names() -> None:
    assert beta_name_to_float("itakura-saito") == 0.0
    assert beta_name_to_float("kullback-leibler") == 1.0
    assert beta_name_to_float("frobenius") == beta_name_to_float("euclidean") == 2.0
    assert beta_name_to_float(1.5) == 1.5
    assert beta_name_to_float(np.float32(0.5)) == 0.5
    assert beta_name_to_float(3) == 3.0
    assert beta_name_to_float("1.5") == 1.5
    assert isinstance(beta_name_to_float(2), float)


@pytest.mark.parametrize("bad", ["frobenious", "", float("nan"), float("inf"), True, None, [2]])
def test_bad_beta_is_a_usage_error(bad: Any) -> None:
    with pytest.raises(DnmfUsageError, match="is not a beta-divergence; use 'itakura-saito'"):
        beta_name_to_float(bad)
    with pytest.raises(DnmfUsageError):
        chunk_stats(np.ones((2, 2)), np.ones((2, 1)), np.ones((1, 2)), beta=bad)


def test_gamma() -> None:
    assert [gamma(b) for b in (-1.0, 0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)] == [
        1 / 3,
        0.5,
        1 / 1.5,
        1.0,
        1.0,
        1.0,
        0.5,
        0.25,
    ]


def test_epsilon_is_sklearns() -> None:
    from sklearn.decomposition._nmf import EPSILON as SK_EPSILON

    assert EPSILON == SK_EPSILON
    assert isinstance(EPSILON, float)


@pytest.mark.parametrize(
    "module",
    ["kernels", "divergence", "lags", "model", "update", "solver", "learner", "plan", "init"],
)
def test_docstring_examples(module: str) -> None:
    import importlib

    result = doctest.testmod(
        importlib.import_module(f"dnmf.nmf.{module}"), optionflags=doctest.ELLIPSIS
    )
    assert result.failed == 0
