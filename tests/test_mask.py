"""Masked β-NMF: weights in the kernels and the learner, against a dense weighted reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from dnmf.backends import MemoryBackend
from dnmf.nmf.config import LearnConfig
from dnmf.nmf.divergence import gamma
from dnmf.nmf.kernels import chunk_stats
from dnmf.nmf.lags import shift
from dnmf.nmf.learner import fit_in_memory
from dnmf.nmf.mask import BlockMask, Holdout, MaskSpec, block_mask
from dnmf.nmf.masked import chunk_stats_masked, masked_values, weighted_loss
from dnmf.nmf.model import window_stats

EPS, FLUSH = float(np.finfo(np.float32).eps), float(np.finfo(np.float64).eps)


def weighted_reference(
    V: np.ndarray, M: np.ndarray, W: np.ndarray, H: np.ndarray, *, beta: float, n_iter: int
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Whole-matrix weighted MU in float64, written out: per iteration one update of H with
    W fixed, the loss ``Σ M d_β`` with that H, then one update of every W_t.

    num = Σ_t W_tᵀ shift(M V Λ^(β-2), -t), den = Σ_t W_tᵀ shift(M Λ^(β-1), -t) for H;
    (M V Λ^(β-2)) shift(H, t)ᵀ over (M Λ^(β-1)) shift(H, t)ᵀ for W_t; scikit-learn's
    floors (Λ at float32 eps before a negative power, a zero denominator at eps, the
    float64-eps flush). No normalisation.
    """
    g = gamma(beta)
    T = W.shape[2]
    V = np.where(M > 0, V, 0.0)
    W, H = W.copy(), H.copy()

    def model(W: np.ndarray, H: np.ndarray) -> np.ndarray:
        return sum(W[:, :, t] @ shift(H, t) for t in range(T))  # type: ignore[return-value]

    def factors(L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Lf = np.maximum(L, EPS)
        if beta == 1:
            return M * V / Lf, M
        if beta == 2:
            return M * V, M * L
        return M * V * (Lf if beta < 2 else L) ** (beta - 2), M * (Lf if beta < 1 else L) ** (
            beta - 1
        )

    def loss(L: np.ndarray) -> float:
        if beta == 2:
            return 0.5 * float(np.sum(M * (V - L) ** 2))
        keep = (V > EPS) & (M > 0)
        x, y, w = V[keep], np.maximum(L[keep], EPS), M[keep]
        if beta == 1:
            return float(np.sum(w * (x * np.log(x / y) - x)) + np.sum(M * L))
        return float(np.sum(w * (x / y - np.log(x / y))) - M.sum())  # β = 0

    losses = []
    for _ in range(n_iter):
        Q, P = factors(model(W, H))
        num = sum(W[:, :, t].T @ shift(Q, -t) for t in range(T))
        den = sum(W[:, :, t].T @ shift(P, -t) for t in range(T))
        den[den == 0] = EPS  # type: ignore[index]
        H = H * (num / den) ** g
        if beta < 1:
            H[H < FLUSH] = 0
        L = model(W, H)
        losses.append(loss(L))
        Q, P = factors(L)
        W_new = W.copy()
        for t in range(T):
            num_t, den_t = Q @ shift(H, t).T, P @ shift(H, t).T
            if beta == 1:
                den_t[den_t == 0] = 1.0
            den_t[den_t == 0] = EPS
            W_new[:, :, t] = W[:, :, t] * (num_t / den_t) ** g
        if beta <= 1:
            W_new[W_new < FLUSH] = 0
        W = W_new
    return W, H, losses


def data(seed: int = 0, n_bins: int = 14, n: int = 240, share: float = 0.3):
    rng = np.random.default_rng(seed)
    V = rng.random((n_bins, 3)) @ rng.random((3, n)) + 0.05
    M = (rng.random(V.shape) > share).astype(np.float64)
    M[:, 50:60] = 0.0  # whole frames masked
    M[3] *= 0.5  # fractional weights
    return V, M


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("lags", [1, 4])
def test_masked_learner_equals_a_dense_weighted_reference(beta: float, lags: int) -> None:
    V, M = data(1)
    rng = np.random.default_rng(2)
    W0, H0 = rng.random((V.shape[0], 3, lags)) + 0.1, rng.random((3, V.shape[1])) + 0.1
    W_ref, H_ref, losses = weighted_reference(V, M, W0, H0, beta=beta, n_iter=8)
    cfg = LearnConfig(
        rank=3,
        lags=lags,
        epochs=8,
        beta=beta,
        init="custom",
        norm=None,
        tol=0,
        schedule="full",
        solver="mu",
    )
    for block in (240, 37):
        r = fit_in_memory(V, cfg, W_init=W0, H_init=H0, block_frames=block, M=M)
        W = r.W if lags > 1 else r.W[:, :, None]
        np.testing.assert_allclose(W, W_ref, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(r.H, H_ref, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(r.losses, losses, rtol=1e-9)


@pytest.mark.parametrize("lags", [1, 4])
@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("beta", [0.0, 1.0, 1.5, 2.0])
def test_masked_values_change_no_bit(lags: int, batch: int | None, beta: float) -> None:
    V, M = data(3)
    V, M = V.astype(np.float32), M > 0
    cfg = LearnConfig(
        rank=3,
        lags=lags,
        beta=beta,
        epochs=4,
        tol=0,
        batch_chunks=batch,
        schedule="full",
        solver="mu",
    )
    a = fit_in_memory(V, cfg, block_frames=48, M=M)
    for junk in (np.nan, np.inf, -5.0, 1e30):
        V2 = V.copy()
        V2[~M] = junk
        b = fit_in_memory(V2, cfg, block_frames=48, M=M)
        assert a.W.tobytes() == b.W.tobytes() and a.H.tobytes() == b.H.tobytes()
        assert a.losses == b.losses


@pytest.mark.parametrize("lags", [1, 4])
@pytest.mark.parametrize("batch", [None, 2])
@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_a_mask_of_ones_is_no_mask_bitwise(lags: int, batch: int | None, beta: float) -> None:
    V, _ = data(4)
    V = V.astype(np.float32)
    cfg = LearnConfig(
        rank=3,
        lags=lags,
        beta=beta,
        epochs=4,
        tol=0,
        batch_chunks=batch,
        schedule="full",
        solver="mu",
    )
    plain = fit_in_memory(V, cfg, block_frames=48)
    for ones in (np.ones(V.shape, dtype=bool), np.ones(V.shape, dtype=np.float32)):
        masked = fit_in_memory(V, cfg, block_frames=48, M=ones)
        assert plain.W.tobytes() == masked.W.tobytes() and plain.H.tobytes() == masked.H.tobytes()
        assert plain.losses == masked.losses


@pytest.mark.parametrize("beta", [0.0, 1.0, 1.5, 2.0])
def test_the_weighted_kernel_at_ones_is_the_unmasked_one_to_rounding(beta: float) -> None:
    """The weighted kernels themselves (not the all-ones shortcut): the same numbers up to
    float64 rounding, not bitwise (β = 1 sums ``Wᵀ 1`` by a product where the unmasked
    kernel takes column sums; β = 2 forms ``(Λ) Hᵀ`` where it takes ``W (H Hᵀ)``)."""
    V, _ = data(5)
    rng = np.random.default_rng(6)
    W, H = rng.random((V.shape[0], 3)), rng.random((3, V.shape[1]))
    ones = np.ones_like(V)
    a = chunk_stats(V, W, H, beta=beta, n_inner=3)
    b = chunk_stats_masked(V, W, H, ones, beta=beta, n_inner=3)
    if beta == 1:
        den_a = np.broadcast_to(a.den, b.den.shape)
    else:
        den_a = W @ a.den if beta == 2 else a.den
    np.testing.assert_allclose(b.H, a.H, rtol=1e-12)
    np.testing.assert_allclose(b.num, a.num, rtol=1e-12)
    np.testing.assert_allclose(b.den, den_a, rtol=1e-12)
    assert b.loss == pytest.approx(a.loss, rel=1e-10)


def test_frame_masks_take_the_unmasked_kernel_on_the_kept_frames() -> None:
    V, _ = data(7)
    V = V.astype(np.float32)
    rng = np.random.default_rng(8)
    W = rng.random((V.shape[0], 3, 1)).astype(np.float32)
    H = rng.random((3, V.shape[1])).astype(np.float32)
    frames = np.ones(V.shape[1])
    frames[10:30] = 0
    s = window_stats(V, W, H, start=0, stop=V.shape[1], beta=1, mask=BlockMask(frames=frames))
    keep = frames > 0
    ref = chunk_stats(
        np.ascontiguousarray(V[:, keep]), W[:, :, 0], np.ascontiguousarray(H[:, keep]), beta=1
    )
    assert s.num.tobytes() == ref.num.tobytes() and s.loss == ref.loss
    assert s.den.cheap.tobytes() == ref.den.tobytes()  # type: ignore[attr-defined]
    assert (s.H[:, ~keep] == 0).all()
    # ... and equal the dense weighted kernel on the same weights, to rounding
    M = np.broadcast_to(frames[None, :], V.shape).astype(np.float64)
    d = chunk_stats_masked(masked_values(V.astype(np.float64), M), W[:, :, 0].astype(np.float64),
                           H.astype(np.float64), M, beta=1)  # fmt: skip
    np.testing.assert_allclose(d.num, s.num, rtol=2e-5)
    assert d.loss == pytest.approx(s.loss, rel=1e-5)


def test_weighted_loss_is_the_divergence_at_ones_and_ignores_masked_entries() -> None:
    from dnmf.nmf.divergence import beta_divergence

    V, M = data(9)
    rng = np.random.default_rng(10)
    W, H = rng.random((V.shape[0], 3)), rng.random((3, V.shape[1]))
    for beta in (0.0, 0.5, 1.0, 2.0, 3.0):
        ones = weighted_loss(V, W @ H, np.ones_like(V), beta)
        assert ones == pytest.approx(beta_divergence(V, W, H, beta), rel=1e-12)
        V2 = np.where(M > 0, V, 7.0)
        assert weighted_loss(V, W @ H, M, beta) == weighted_loss(V2, W @ H, M, beta)


def test_block_masks_from_sources() -> None:
    V = np.ones((16, 100), dtype=np.float32)
    V[:, 20:30] = 0  # digital silence
    spec = MaskSpec(silence_db=-80.0)
    bm = block_mask(spec, V, 0, 100)
    assert (
        bm is not None and bm.entries is None and (bm.frames == (np.arange(100) // 10 != 2)).all()
    )  # type: ignore[union-attr]
    assert block_mask(spec, V[:, 40:], 40, 100) is None  # nothing removed: no mask
    b = block_mask(MaskSpec(file_starts=(30, 70), boundary=3), V, 0, 100)
    assert b is not None and np.flatnonzero(b.frames == 0).tolist() == [30, 31, 32, 70, 71, 72]  # type: ignore[union-attr]
    # held-out tiles: the same entries from any window, training and evaluation complementary
    h = MaskSpec(holdout=Holdout(share=0.25, seed=4))
    V = np.ones((64, 2000), dtype=np.float32)
    whole = block_mask(h, V, 0, 2000).entries  # type: ignore[union-attr]
    part = block_mask(h, V[:, 333:777], 333, 777).entries  # type: ignore[union-attr]
    assert (whole[:, 333:777] == part).all() and 0.2 < 1 - whole.mean() < 0.3
    other = block_mask(MaskSpec(holdout=Holdout(share=0.25, seed=5)), V, 0, 2000).entries  # type: ignore[union-attr]
    assert 0.5 < (other == whole).mean() < 0.7  # another seed, other tiles
    held = block_mask(h.evaluation(), V, 0, 2000).entries  # type: ignore[union-attr]
    assert (held == ~whole).all()


# -- the cluster ----------------------------------------------------------------------------
def test_stored_mask_on_one_and_two_workers_is_bitwise_memory(
    tmp_path: Path, cluster_client: object
) -> None:
    from dnmf.cluster import connect
    from dnmf.io.model import ModelStore
    from pipelines.learn import learn_corpus
    from tests.test_learn import write_corpus

    rng = np.random.default_rng(11)
    V = (rng.random((33, 4)) @ rng.random((4, 700)) + 0.01).astype(np.float32)
    M = rng.random(V.shape) > 0.2
    M[:, 100:200] = True  # a block the mask keeps whole
    V_bad = V.copy()
    V_bad[~M] = np.nan  # the masked entries are garbage
    corpus = write_corpus(tmp_path / "corpus.zarr", V_bad, chunk_frames=100)
    mask_url = str(tmp_path / "mask.zarr")
    z = zarr.create_array(mask_url, shape=M.shape, chunks=(33, 100), dtype=bool,
                          dimension_names=("bin", "frame"), zarr_format=3)  # fmt: skip
    z[:] = M
    for lags in (1, 4):
        cfg = LearnConfig(rank=4, lags=lags, epochs=4, batch_chunks=3, tol=0, seed=3,
                          mask_store=mask_url, mask_silence=-200.0, schedule="full",
                          solver="mu")  # fmt: skip
        mem = fit_in_memory(V, cfg.model_copy(update={"mask_store": None}), block_frames=100, M=M)
        two = learn_corpus(corpus, tmp_path / f"two{lags}.zarr", config=cfg, client=cluster_client)
        with connect(workers=1, processes=False) as c1:
            learn_corpus(corpus, tmp_path / f"one{lags}.zarr", config=cfg, client=c1)
        Ws = [ModelStore.open(tmp_path / f"{n}{lags}.zarr").W for n in ("one", "two")]
        mem_W = mem.W if lags > 1 else mem.W[:, :, None]
        assert all(W.reshape(mem_W.shape).tobytes() == mem_W.tobytes() for W in Ws)
        assert two.losses == mem.losses


def test_memory_backend_summary_ignores_masked_entries() -> None:
    V, M = data(12)
    V2 = np.where(M > 0, V, np.nan)
    total, count = MemoryBackend(V2, 50, M=M).summary()
    assert count == np.count_nonzero(M) and total == pytest.approx(V[M > 0].sum())


# -- the estimators ---------------------------------------------------------------------------
def low_rank(seed: int = 13, n: int = 300, bins: int = 40, rank: int = 4):
    rng = np.random.default_rng(seed)
    X = rng.random((n, rank)) @ rng.random((rank, bins)) + 0.01
    keep = rng.random(X.shape) > 0.2
    return X, keep


@pytest.mark.parametrize("cls", ["NMF", "NMFD"])
def test_estimators_take_a_mask_and_ignore_what_it_hides(cls: str) -> None:
    import dnmf

    X, keep = low_rank()
    est = getattr(dnmf, cls)
    kw = {"lags": 3} if cls == "NMFD" else {}
    make = lambda: est(n_components=4, max_iter=60, tol=0, random_state=0, solver="mu", **kw)  # noqa: E731
    X_nan = np.where(keep, X, np.nan)
    a, b = make(), make()
    Ha = a.fit_transform(np.where(keep, X, 0.0), mask=keep)
    Hb = b.fit_transform(X_nan, mask=keep)
    assert a.components_.tobytes() == b.components_.tobytes() and Ha.tobytes() == Hb.tobytes()
    assert a.reconstruction_err_ == b.reconstruction_err_
    # transform: masked entries do not pull the activations
    Ta, Tb = a.transform(X, mask=keep), a.transform(X_nan, mask=keep)
    assert Ta.tobytes() == Tb.tobytes()
    # a mask of ones is no mask; per-sample weights are frame masks
    plain, ones = make(), make()
    plain.fit(X)
    ones.fit(X, mask=np.ones(X.shape[0]))
    assert plain.components_.tobytes() == ones.components_.tobytes()
    with pytest.raises(ValueError, match="mask has shape"):
        make().fit(X, mask=keep[:, :3])


def test_a_masked_fit_reconstructs_the_hidden_entries_better_than_zeros() -> None:
    import dnmf

    X, keep = low_rank(14)
    zeros = np.where(keep, X, 0.0)

    def hidden_error(model: object, H: np.ndarray) -> float:
        R = H @ model.components_  # type: ignore[attr-defined]
        return float(np.abs(R - X)[~keep].mean() / X[~keep].mean())

    m = dnmf.NMF(n_components=4, beta_loss=1, max_iter=200, tol=0, random_state=0)
    z = dnmf.NMF(n_components=4, beta_loss=1, max_iter=200, tol=0, random_state=0)
    err_masked = hidden_error(m, m.fit_transform(zeros, mask=keep))
    err_zeros = hidden_error(z, z.fit_transform(zeros))
    assert err_masked < 0.05 < 0.5 * err_zeros


def test_learn_cli_masks_silence_and_a_store_and_info_counts_them(
    tmp_path: Path, scheduler_address: str
) -> None:
    import json

    from tests.test_cli import run
    from tests.test_learn import write_corpus

    rng = np.random.default_rng(15)
    V = (rng.random((17, 3)) @ rng.random((3, 400)) + 0.01).astype(np.float32)
    V[:, 120:150] = 0.0  # digital silence: 30 frames
    corpus = write_corpus(tmp_path / "corpus.zarr", V, chunk_frames=100)
    M = np.ones(V.shape, dtype=bool)
    M[:5, 300:340] = False  # 200 entries of the user's
    z = zarr.create_array(tmp_path / "mask.zarr", shape=M.shape, chunks=(17, 100), dtype=bool,
                          dimension_names=("bin", "frame"), zarr_format=3)  # fmt: skip
    z[:] = M
    out = tmp_path / "m.zarr"
    args = ["learn", corpus, "--rank", "3", "--epochs", "3", "-o", out, "--scheduler",
            scheduler_address, "--mask-silence", "-100", "--mask-store", tmp_path / "mask.zarr",
            "--json", "--quiet"]  # fmt: skip
    result = run(*args)
    assert result.exit_code == 0, result.output
    info = json.loads(run("info", out, "--json").stdout)
    assert info["mask"] == {"store": 200.0, "silence": 30 * 17.0, "all": 710.0, "entries": V.size}
    text = run("info", out).stdout
    assert "510 entries removed by silence" in text and "710 entries masked in all" in text
    bad = run("learn", corpus, "--rank", "3", "-o", tmp_path / "m2.zarr", "--mask-store",
              tmp_path / "nothing.zarr", "--scheduler", scheduler_address)  # fmt: skip
    assert bad.exit_code == 2 and "mask store" in bad.output


# -- dnmf rank --------------------------------------------------------------------------------
def known_rank(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    W, H = rng.random((32, 4)) ** 2, rng.gamma(0.5, 1, (4, 800))
    return (rng.poisson(20 * W @ H) / 20).astype(np.float32)  # rank 4, Poisson noise


@pytest.mark.parametrize("seed", [0, 1])
def test_held_out_loss_is_lowest_at_the_true_rank(seed: int) -> None:
    """The rank search's arithmetic in process (the learner and the scoring dnmf rank runs)."""
    from dnmf.rank import split_losses

    V = known_rank(seed)
    spec = MaskSpec(holdout=Holdout(share=0.1, seed=seed))
    held, train = [], []
    for rank in (2, 4, 8):
        r = fit_in_memory(
            V,
            LearnConfig(rank=rank, epochs=60, tol=0, schedule="full", solver="mu"),
            block_frames=800,
            mask=spec,
        )
        t, h, n_t, n_h = split_losses(V, r.W, r.H, spec, 0, 1.0)
        held.append(h / n_h)
        train.append(t / n_t)
    assert int(np.argmin(held)) == 1 and train == sorted(train, reverse=True)


def test_rank_cli_writes_results_and_refuses_bad_ranks(
    tmp_path: Path, scheduler_address: str
) -> None:
    import json

    from tests.test_cli import run
    from tests.test_learn import write_corpus

    corpus = write_corpus(tmp_path / "corpus.zarr", known_rank(), chunk_frames=400)
    out = tmp_path / "rank"
    result = run("rank", corpus, "--ranks", "4,2", "--epochs", "3", "-o", out, "--scheduler",
                 scheduler_address, "--json", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["ranks"] == [2, 4] and r["best_rank"] in (2, 4)
    assert json.loads((out / "rank.json").read_text())["heldout_loss"] == r["heldout_loss"]
    assert (out / "rank2.zarr").is_dir() and (out / "rank4.zarr").is_dir()
    text = run("rank", corpus, "--ranks", "2", "--epochs", "2", "-o", out, "--scheduler",
               scheduler_address, "--quiet")  # fmt: skip
    assert text.exit_code == 0 and "lowest held-out loss" in text.stdout
    bad = run("rank", corpus, "--ranks", "4,x")
    assert bad.exit_code == 2 and "--ranks" in bad.output


@pytest.mark.slow
def test_rank_finds_the_true_rank_by_held_out_loss(tmp_path: Path, scheduler_address: str) -> None:
    import json

    from tests.test_cli import run
    from tests.test_learn import write_corpus

    V = known_rank()
    corpus = write_corpus(tmp_path / "corpus.zarr", V, chunk_frames=800)
    out = tmp_path / "rank"
    result = run("rank", corpus, "--ranks", "8,2,4", "--epochs", "60", "--tol", "0", "-o",
                 out, "--scheduler", scheduler_address, "--json", "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    r = json.loads(result.stdout)
    assert r["best_rank"] == 4 and r["ranks"] == [2, 4, 8]
    assert r["train_loss"] == sorted(r["train_loss"], reverse=True)  # training loss only falls
    assert json.loads((out / "rank.json").read_text())["heldout_loss"] == r["heldout_loss"]
    assert 0.05 < r["heldout_entries"] / V.size < 0.15
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert r["plot"] is None
    else:
        assert (out / "rank.png").stat().st_size > 0
    bad = run("rank", corpus, "--ranks", "4,x")
    assert bad.exit_code == 2 and "--ranks" in bad.output


def test_export_applies_the_models_masks_and_records_them(
    tmp_path: Path, cluster_client: object
) -> None:
    import dnmf
    from dnmf.nmf.solver import solve_window
    from pipelines.export import export
    from pipelines.learn import learn_corpus
    from tests.test_learn import write_corpus

    rng = np.random.default_rng(21)
    V = (rng.random((17, 3)) @ rng.random((3, 300)) + 0.01).astype(np.float32)
    V[:, 40:60] = 0.0  # digital silence
    corpus = write_corpus(tmp_path / "corpus.zarr", V, chunk_frames=100)
    M = rng.random(V.shape) > 0.3
    z = zarr.create_array(tmp_path / "mask.zarr", shape=M.shape, chunks=(17, 100), dtype=bool,
                          dimension_names=("bin", "frame"), zarr_format=3)  # fmt: skip
    z[:] = M
    cfg = LearnConfig(rank=3, epochs=5, mask_store=str(tmp_path / "mask.zarr"), mask_silence=-100.0)
    model = tmp_path / "m.zarr"
    learn_corpus(corpus, model, config=cfg, client=cluster_client)
    W = dnmf.open_model(model).W.values.astype(np.float32)[:, :, None]

    masked = export(model, tmp_path / "a.zarr", n_iter=30, tol=0, client=cluster_client)
    H = dnmf.open_activations(masked.store).H.values
    weights = M.astype(np.float32)
    weights[:, 40:60] = 0.0  # the silent frames
    for start in (0, 100, 200):  # each chunk is the direct weighted solve of its frames
        ref, _, _ = solve_window(V[:, start : start + 100], W, start=0, stop=100, beta=1.0,
                                 n_iter=30, tol=0, l1_reg=0.0, l2_reg=0.0,
                                 M=weights[:, start : start + 100])  # fmt: skip
        np.testing.assert_allclose(H[:, start : start + 100], ref, rtol=1e-5, atol=1e-7)
    meta = zarr.open_group(masked.store, mode="r").attrs["dnmf"]
    assert meta["settings"]["mask"] == {"store": cfg.mask_store, "silence_db": -100.0,
                                        "boundaries": False}  # fmt: skip
    # Without the masks the silent frames are solved (to nothing) and the rest differs.
    plain = export(model, tmp_path / "a.zarr", n_iter=30, tol=0, client=cluster_client, masks=False)
    assert plain.reason == "the solver settings changed" and plain.frames_exported == 300
    H_plain = dnmf.open_activations(plain.store).H.values
    assert not np.allclose(H_plain[:, 100:], H[:, 100:], rtol=1e-3)
    again = export(model, tmp_path / "a.zarr", n_iter=30, tol=0, client=cluster_client, masks=False)
    assert again.nothing_new


def test_transform_and_separate_mask_silence_as_the_model_learned(
    tmp_path: Path, cluster_client: object
) -> None:
    import dnmf
    from dnmf.audio.features import FeatureConfig
    from dnmf.separate import separate
    from dnmf.transform import activations_for_file
    from pipelines.export import export
    from pipelines.ingest import ingest
    from pipelines.learn import learn_corpus
    from tests.conftest import tone, write

    hiss = 1e-5 * np.random.default_rng(3).standard_normal(8000).astype(np.float32)  # about -100 dB
    y = np.concatenate([tone(8000, 1.0, 440.0), hiss, tone(8000, 1.0, 660.0)])
    audio = write(tmp_path / "audio" / "a.wav", y, 8000)
    store = tmp_path / "c.zarr"
    features = FeatureConfig(sr=8000, n_fft=256, hop_length=128)
    ingest(audio.parent, store, features=features, chunk_frames=64, client=cluster_client)
    model = tmp_path / "m.zarr"
    cfg = LearnConfig(rank=3, epochs=10, mask_silence=-60.0)
    learn_corpus(store, model, config=cfg, client=cluster_client)
    acts = dnmf.open_activations(export(model, n_iter=40, tol=0, client=cluster_client).store)
    H, _ = activations_for_file(model, audio, n_iter=40, tol=0)
    exported = acts.dnmf.file("a.wav").H.values
    np.testing.assert_allclose(H, exported, rtol=1e-4, atol=1e-6 * float(exported.max()))
    V = dnmf.open_corpus(store).V.values
    silent = np.flatnonzero(10 * np.log10((V.astype(np.float64) ** 2).mean(axis=0)) < -60)
    assert silent.size > 30 and not H[:, silent].any()  # masked frames pull nothing
    unmasked = LearnConfig(rank=3, epochs=10)
    learn_corpus(store, tmp_path / "m2.zarr", config=unmasked, client=cluster_client)
    H2, _ = activations_for_file(tmp_path / "m2.zarr", audio, n_iter=40, tol=0)
    assert H2[:, silent].all(axis=0).any()  # without the mask the hiss is fitted
    parts = separate(model, audio, tmp_path / "parts", n_iter=40, tol=0)
    assert len(parts) == 3
    import soundfile as sf

    total = sum(sf.read(p, dtype="float64")[0] for p in parts)
    assert np.isfinite(total).all()
    np.testing.assert_allclose(total, y, atol=1e-3)  # the parts still add up to the mixture


@pytest.mark.parametrize("lags", [1, 3])
def test_rank_scores_the_model_it_learned_for_any_lags(
    tmp_path: Path, cluster_client: object, lags: int
) -> None:
    """rank.json's losses are those of the learned model's own W and H (the buffer the
    last epoch wrote, its pending scales, and for lags > 1 the frames before each
    block), recomputed here over the whole corpus at once."""
    import json

    from dnmf.io.blocks import open_array
    from dnmf.io.model import ModelStore
    from dnmf.nmf.lags import conv_model
    from dnmf.nmf.mask import Holdout
    from dnmf.nmf.masked import weighted_loss
    from pipelines.rank import rank_corpus
    from tests.test_learn import write_corpus

    V = known_rank()[:, :600]
    corpus = write_corpus(tmp_path / "corpus.zarr", V, chunk_frames=200)
    cfg = LearnConfig(rank=2, epochs=8, lags=lags, seed=3)
    result = rank_corpus(corpus, tmp_path / "rank", ranks=[3], config=cfg, holdout=0.2,
                         client=cluster_client)  # fmt: skip
    model = ModelStore.open(tmp_path / "rank" / "rank3.zarr")
    state = model.load_checkpoint()
    assert state is not None and state.pending is not None
    H = np.asarray(open_array(f"{model.H_url}/H{state.latest_buffer}")[:], dtype=np.float64)
    for b in range(3):
        H[:, 200 * b : 200 * (b + 1)] *= state.pending[b][:, None]
    L = conv_model(state.W.astype(np.float64), H)
    held = Holdout(share=0.2, seed=3).held(V.shape[0], np.arange(V.shape[1]))
    V64 = V.astype(np.float64)
    for key, part in (("heldout_loss", held), ("train_loss", ~held)):
        M = part.astype(np.float64)
        expect = weighted_loss(np.where(part, V64, 0), L.copy(), M, 1.0) / M.sum()
        got = json.loads((tmp_path / "rank" / "rank.json").read_text())[key][0]
        assert got == getattr(result, key)[0]
        np.testing.assert_allclose(got, expect, rtol=1e-4)
