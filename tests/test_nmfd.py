"""Convolutive NMF (NMFD): kernels, the chunked learner against a whole-matrix reference,
invariants, the cluster, informed inits, export, separation and libnmfd."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import zarr

from dnmf.errors import DnmfUsageError
from dnmf.nmf.config import LearnConfig
from dnmf.nmf.divergence import gamma
from dnmf.nmf.init import Informed
from dnmf.nmf.lags import (
    beta_divergence_conv,
    chunk_stats_conv,
    conv_model,
    halo,
    shift,
    update_H_conv,
)
from dnmf.nmf.learner import fit_in_memory
from dnmf.nmf.update import update_templates
from tests.test_learn import write_corpus

# --------------------------------------------------------------------------- a reference


def reference_nmfd(
    V: np.ndarray, W: np.ndarray, H: np.ndarray, *, beta: float, n_iter: int, n_inner: int = 1
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """NMFD on the whole matrix, written out with shift operators (as libnmfd writes it).

    Per iteration: ``n_inner`` MU of H with W fixed, then one MU of every W_t with
    H fixed; the floors of scikit-learn (Λ at float32 eps before negative powers,
    zero denominators at eps, the float64-eps flush). No normalisation. Returns
    W, H and the loss of each iteration (with the updated H and the old W).
    """
    eps, flush = float(np.finfo(np.float32).eps), float(np.finfo(np.float64).eps)
    g = gamma(beta)
    T = W.shape[2]
    W, H = W.copy(), H.copy()

    def model(W: np.ndarray, H: np.ndarray) -> np.ndarray:
        return sum(W[:, :, t] @ shift(H, t) for t in range(T))

    def factors(L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if beta == 1:
            return V / np.maximum(L, eps), np.ones_like(V)
        if beta == 2:
            return V, L
        Lf = np.maximum(L, eps)
        return V * (Lf if beta < 2 else L) ** (beta - 2), (Lf if beta < 1 else L) ** (beta - 1)

    losses = []
    for _ in range(n_iter):
        for _ in range(n_inner):
            Q, P = factors(model(W, H))
            num = sum(W[:, :, t].T @ shift(Q, -t) for t in range(T))
            den = sum(W[:, :, t].T @ shift(P, -t) for t in range(T))
            den[den == 0] = eps
            H = H * (num / den) ** g
            if beta < 1:
                H[H < flush] = 0
        L = model(W, H)
        losses.append(beta_divergence_conv(V, W, H, beta))
        Q, P = factors(L)
        W_new = W.copy()
        for t in range(T):
            num, den = Q @ shift(H, t).T, P @ shift(H, t).T
            den[den == 0] = eps
            W_new[:, :, t] = W[:, :, t] * (num / den) ** g
        if beta <= 1:
            W_new[W_new < flush] = 0
        W = W_new
    return W, H, losses


def synthetic(seed: int = 0, *, n_bins: int = 40, rank: int = 3, lags: int = 6, n: int = 600):
    """V = conv_model(W, H) + 1e-3 for random templates and sparse activations."""
    rng = np.random.default_rng(seed)
    W = rng.random((n_bins, rank, lags)) ** 3
    H = (rng.random((rank, n)) < 0.03) * (0.5 + rng.random((rank, n)))
    return conv_model(W, H) + 1e-3, W, H


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.reshape(-1), b.reshape(-1)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# --------------------------------------------------------------------------- kernels


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
@pytest.mark.parametrize("n_inner", [0, 1, 2])
def test_chunk_window_equals_the_whole_spectrogram(beta: float, n_inner: int) -> None:
    rng = np.random.default_rng(0)
    V = rng.random((7, 120)) ** 2
    V[:, 50] = 0.0  # a silent frame
    V[3] = 0.0  # a silent bin
    W, H = rng.random((7, 3, 4)), rng.random((3, 120))
    H_all = update_H_conv(V, W, H, beta=beta, n_iter=n_inner)
    whole = chunk_stats_conv(V, W, H_all, start=0, stop=120, beta=beta, update_h=False)
    parts = []
    for a, z in [(0, 30), (30, 47), (47, 120)]:
        before, after = halo(4, n_inner)
        lo, hi = max(0, a - before), min(120, z + after)
        s = chunk_stats_conv(
            V[:, lo:hi], W, H[:, lo:hi], start=a - lo, stop=z - lo, beta=beta, n_inner=n_inner
        )
        np.testing.assert_allclose(s.H, H_all[:, a:z], rtol=1e-12)
        parts.append(s)
    np.testing.assert_allclose(sum(p.num for p in parts), whole.num, rtol=1e-12)
    np.testing.assert_allclose(sum(p.den for p in parts), whole.den, rtol=1e-12)
    assert sum(p.loss for p in parts) == pytest.approx(whole.loss, rel=1e-12)
    # One frame of halo too few and the chunk is no longer the whole's.
    a, z = 47, 120
    lo = a - halo(4, n_inner)[0] + 1
    short = chunk_stats_conv(
        V[:, lo:], W, H[:, lo:], start=a - lo, stop=z - lo, beta=beta, n_inner=n_inner
    )
    assert not np.allclose(short.num, parts[-1].num, rtol=1e-9)


def test_zeros_never_give_nan_and_stay_zero() -> None:
    V = np.zeros((5, 40), np.float32)
    V[2, 10:20] = 1.0
    W = np.random.default_rng(0).random((5, 2, 3)).astype(np.float32)
    W[:, 1, :] = 0.0  # a dead template
    H = np.ones((2, 40), np.float32)
    H[0, 30:] = 0.0
    for beta in (0.0, 0.5, 1.0, 2.0):
        H2 = update_H_conv(V, W, H, beta=beta, n_iter=3)
        s = chunk_stats_conv(V, W, H2, start=0, stop=40, beta=beta, update_h=False)
        W2 = update_templates(W, s.num, s.den, beta=beta)
        assert np.isfinite(H2).all() and np.isfinite(W2).all() and np.isfinite(s.loss)
        assert (H2[0, 30:] == 0).all() and (W2[:, 1, :] == 0).all()
        assert H2.dtype == W2.dtype == np.float32


# --------------------------------------------------------------------------- the learner


@pytest.mark.parametrize(("beta", "n_inner"), [(0.0, 1), (1.0, 1), (1.0, 2), (1.5, 1), (2.0, 2)])
def test_chunked_learner_equals_whole_matrix_nmfd(beta: float, n_inner: int) -> None:
    V, _, _ = synthetic(1, n_bins=12, rank=3, lags=5, n=300)
    rng = np.random.default_rng(2)
    W0, H0 = rng.random((12, 3, 5)), rng.random((3, 300))
    W_ref, H_ref, losses = reference_nmfd(V, W0, H0, beta=beta, n_iter=12, n_inner=n_inner)
    cfg = LearnConfig(
        rank=3,
        lags=5,
        epochs=12,
        beta=beta,
        n_inner=n_inner,
        init="custom",
        norm=None,
        tol=0,
        schedule="full",
        solver="mu",
    )
    for block in (300, 40, 3):  # one block; halos within a neighbour; halos over several
        r = fit_in_memory(V, cfg, W_init=W0, H_init=H0, block_frames=block)
        np.testing.assert_allclose(r.W, W_ref, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(r.H, H_ref, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(r.losses, losses, rtol=1e-9)


def test_known_templates_are_recovered() -> None:
    V, W_true, _ = synthetic(0)
    V = V.astype(np.float32)
    runs = [
        fit_in_memory(
            V,
            LearnConfig(
                rank=3,
                lags=6,
                epochs=300,
                tol=0,
                seed=s,
                h_init="uniform",
                schedule="full",
                solver="mu",
            ),
            block_frames=200,
        )
        for s in range(3)
    ]
    best = min(runs, key=lambda r: r.losses[-1])  # the best of three restarts
    assert best.losses[-1] < 1e-3 * best.losses[0]
    for j in range(3):
        assert max(cosine(best.W[:, i], W_true[:, j]) for i in range(3)) > 0.999


def test_minibatch_lowers_the_loss_and_regularisers_act() -> None:
    V, _, _ = synthetic(4, n=400)
    V = V.astype(np.float32)
    base = LearnConfig(
        rank=3, lags=6, epochs=15, batch_chunks=2, n_inner=2, tol=0, schedule="full", solver="mu"
    )
    r = fit_in_memory(V, base, block_frames=100)
    assert r.losses[-1] < 0.5 * r.losses[0]
    sparse = fit_in_memory(V, base.model_copy(update={"sparsity_weight": 5.0}), block_frames=100)
    assert np.abs(sparse.H).sum() < np.abs(r.H).sum()
    spread = fit_in_memory(V, base.model_copy(update={"uncorr_weight": 1.0}), block_frames=100)
    assert not np.array_equal(spread.W, r.W) and np.isfinite(spread.W).all()


def test_fixed_templates_and_fixed_activations_stay() -> None:
    V, W_true, H_true = synthetic(5, n=300)
    rng = np.random.default_rng(0)
    W0 = (rng.random(W_true.shape) + 0.1).astype(np.float32)
    V = V.astype(np.float32)
    cfg = LearnConfig(
        rank=3,
        lags=6,
        epochs=10,
        init="custom",
        fixed_components=(0, 2),
        tol=0,
        schedule="full",
        solver="mu",
    )
    r = fit_in_memory(V, cfg, W_init=W0, block_frames=100)
    assert r.W[:, [0, 2]].tobytes() == W0[:, [0, 2]].tobytes()
    assert not np.array_equal(r.W[:, 1], W0[:, 1])
    fix_w = fit_in_memory(
        V,
        cfg.model_copy(update={"fix_W": True, "fixed_components": ()}),
        W_init=W0,
        block_frames=100,
    )
    assert fix_w.W.tobytes() == W0.tobytes() and fix_w.losses[-1] < fix_w.losses[0]
    H0 = (H_true + 0.01).astype(np.float32)
    fix_h = fit_in_memory(
        V,
        cfg.model_copy(update={"fix_H": True, "fixed_components": ()}),
        W_init=W0,
        H_init=H0,
        block_frames=100,
    )
    assert fix_h.H.tobytes() == H0.tobytes() and fix_h.losses[-1] < fix_h.losses[0]


def test_bad_configs_say_what_to_do() -> None:
    with pytest.raises(DnmfUsageError, match="lags=0"):
        LearnConfig.from_options(rank=2, lags=0)
    with pytest.raises(DnmfUsageError, match="needs MIDI pitches"):
        LearnConfig.from_options(rank=2, init="pitched")
    with pytest.raises(DnmfUsageError, match="fixed components need a given or informed init"):
        LearnConfig.from_options(rank=2, fixed_components=(0,))
    V = np.ones((5, 10), np.float32)
    with pytest.raises(DnmfUsageError, match="lags=12 is longer than the corpus"):
        fit_in_memory(V, LearnConfig(rank=2, lags=12, schedule="full", solver="mu"))
    with pytest.raises(DnmfUsageError, match="smaller than the 3 informed components"):
        fit_in_memory(
            V,
            LearnConfig(rank=2, lags=2, schedule="full", solver="mu"),
            informed=Informed(labels=("a", "b", "c")),
        )


# --------------------------------------------------------------------------- libnmfd


def libnmfd_nmfd(V: np.ndarray, W0: np.ndarray, H0: np.ndarray, n_iter: int, **kw):  # type: ignore[no-untyped-def]
    nmfconv = pytest.importorskip(
        "libnmfd.core.nmfconv", reason="libnmfd (pip install --no-deps libnmfd tqdm)"
    )
    real = nmfconv.tnrange
    nmfconv.tnrange = lambda n, desc=None: range(n)  # its notebook progress bar needs Jupyter
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            k, T = W0.shape[1], W0.shape[2]
            _, H, _, _, tensor_W = nmfconv.nmfd(
                V,
                num_comp=k,
                num_frames=V.shape[1],
                num_iter=n_iter,
                num_template_frames=T,
                init_W=[W0[:, r, :].copy() for r in range(k)],
                init_H=H0.copy(),
                **kw,
            )
    finally:
        nmfconv.tnrange = real
    return tensor_W, H * V.sum()  # libnmfd works on V / sum(V)


def test_agrees_with_libnmfd_from_the_same_init() -> None:
    V, W_true, _ = synthetic(0)
    rng = np.random.default_rng(0)
    W0 = rng.random(W_true.shape) + 0.1
    W0 /= W0.sum(axis=0, keepdims=True) * W0.shape[2]  # unit sum per template, as libnmfd's
    H0 = np.ones((3, V.shape[1])) * V.sum()
    # Templates fixed: libnmfd's averaged H update equals the MU when every lag of a
    # template has the same mass; they differ only near the end, where libnmfd counts
    # lags past the last frame (its all-ones J), and that reaches T - 1 frames further in
    # per update. After one update they agree to 2e-14; libnmfd's 2**-52 added to Λ and to
    # its denominators leaves up to 1e-8 (relative) in the smallest activations after 20.
    n = 20
    lib_W, lib_H = libnmfd_nmfd(V, W0, H0 / V.sum(), n, fix_W=True)
    cfg = LearnConfig(
        rank=3,
        lags=6,
        epochs=n,
        init="custom",
        norm=None,
        tol=0,
        fix_W=True,
        schedule="full",
        solver="mu",
    )
    ours = fit_in_memory(V, cfg, W_init=W0, H_init=H0, block_frames=256)
    inside = V.shape[1] - (n + 1) * 5
    np.testing.assert_allclose(ours.H[:, :inside], lib_H[:, :inside], rtol=2e-8, atol=0)
    # Everything learned: other update orders (libnmfd updates W first, from the same Λ,
    # and rescales templates without H), the same templates and about the same loss.
    lib_W, lib_H = libnmfd_nmfd(V, W0, H0 / V.sum(), 100)
    cfg = LearnConfig(
        rank=3, lags=6, epochs=100, init="custom", norm=None, tol=0, schedule="full", solver="mu"
    )
    ours = fit_in_memory(V, cfg, W_init=W0, H_init=H0, block_frames=256)
    for r in range(3):
        assert cosine(ours.W[:, r], lib_W[:, r]) > 0.9999
        assert max(cosine(ours.W[:, r], W_true[:, j]) for j in range(3)) > 0.9999
    start = beta_divergence_conv(V, W0, H0, 1)  # 7.0e6
    mine = beta_divergence_conv(V, ours.W, ours.H, 1)
    theirs = beta_divergence_conv(V, lib_W, lib_H, 1)
    assert mine < 1e-6 * start and theirs < 1e-6 * start  # 0.556 and 0.614
    assert abs(mine - theirs) < 1e-7 * start


# --------------------------------------------------------------------------- on the cluster


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, np.ndarray]:
    V, _, _ = synthetic(6, n_bins=33, rank=3, lags=4, n=700)
    V = V.astype(np.float32)
    return write_corpus(tmp_path / "corpus.zarr", V, chunk_frames=100), V


def test_model_store_and_export(corpus, tmp_path: Path, cluster_client) -> None:  # type: ignore[no-untyped-def]
    import dnmf
    from dnmf.nmf.solver import solve_window
    from pipelines.export import export
    from pipelines.learn import learn_corpus

    path, V = corpus
    cfg = LearnConfig(rank=3, lags=4, epochs=4, schedule="full", solver="mu")
    learn_corpus(path, tmp_path / "m.zarr", config=cfg, client=cluster_client)
    model = dnmf.open_model(tmp_path / "m.zarr")
    assert model.W.dims == ("bin", "component", "lag") and model.W.shape == (33, 3, 4)
    assert model.attrs["dnmf"]["lags"] == 4
    np.testing.assert_allclose(model.lag_time, np.arange(4) * 16 / 22050)
    export(tmp_path / "m.zarr", tmp_path / "acts.zarr", n_iter=6, tol=0, client=cluster_client)
    H = dnmf.open_activations(tmp_path / "acts.zarr").H.values
    # Each chunk solved on its window equals a solve of the whole corpus at once.
    W = model.W.values
    H_whole, _, _ = solve_window(V, W, start=0, stop=V.shape[1], beta=1.0, n_iter=6, tol=0)
    np.testing.assert_allclose(H, H_whole, rtol=2e-5, atol=1e-6 * H_whole.max())


# --------------------------------------------------------------------------- informed inits


def test_pitched_combs_sit_on_the_harmonics() -> None:
    import librosa

    from dnmf.nmf.informed import midi_to_hz, pitched_templates

    freq = librosa.fft_frequencies(sr=22050, n_fft=4096)
    W = pitched_templates(
        freq, [57, 64], lags=3, n_harmonics=10, pitch_tol_up=0.5, pitch_tol_down=0.5
    )
    assert W.shape == (len(freq), 2, 3) and (W[:, :, 0] == W[:, :, 2]).all()
    for r, p in enumerate([57, 64]):
        for h in (1, 2, 5):
            k = int(np.argmin(np.abs(freq - h * midi_to_hz(p))))
            assert W[k, r, 0] == pytest.approx(1 / h)
        far = np.abs(freq - 1.5 * midi_to_hz(p)).argmin()  # between the first two harmonics
        assert W[far, r, 0] == 0
    with pytest.raises(DnmfUsageError, match="pitch 130"):
        pitched_templates(freq, [130], lags=2)
    with pytest.raises(DnmfUsageError, match="given twice"):
        pitched_templates(freq, [60, 60], lags=2)


def test_drum_templates_average_the_samples_at_their_onsets(tmp_path: Path) -> None:
    from dnmf.audio.features import FeatureConfig
    from dnmf.nmf.informed import drum_templates
    from tests.conftest import write

    sr = 16000
    t = np.arange(sr // 2) / sr
    for i, delay in enumerate([0.0, 0.1]):  # two kicks, the second after some silence
        y = np.zeros(len(t), np.float32)
        n0 = int(delay * sr)
        y[n0:] = np.sin(2 * np.pi * 60 * t[: len(t) - n0]) * np.exp(-t[: len(t) - n0] * 20)
        write(tmp_path / "drums" / "kick" / f"k{i}.wav", y, sr)
    rng = np.random.default_rng(0)
    write(tmp_path / "drums" / "hat" / "h.wav", (rng.standard_normal(sr // 4) * 0.1), sr)
    feats = FeatureConfig(sr=sr, n_fft=512, hop_length=128)
    W, classes = drum_templates(tmp_path / "drums", feats, lags=5)
    assert classes == ["hat", "kick"] and W.shape == (257, 2, 5)
    kick = W[:, 1]
    assert kick[:6].sum() > 0.5 * kick.sum()  # low frequencies
    assert kick[:, 0].sum() > kick[:, 4].sum()  # decays over the lags: aligned at the onset
    (tmp_path / "empty" / "snare").mkdir(parents=True)
    with pytest.raises(DnmfUsageError, match="holds no audio files"):
        drum_templates(tmp_path / "empty", feats, lags=5)


def test_score_csv_rows_are_checked(tmp_path: Path) -> None:
    from dnmf.nmf.informed import read_scores, score_intervals, score_labels

    good = tmp_path / "notes.csv"
    good.write_text("pitch,onset,duration\n# a comment\n64,1.0,0.5\n60,0.0,0.25\n\n60,2,1\n")
    notes = read_scores(good)
    assert score_labels(notes) == ["midi60", "midi64"]
    spans = score_intervals(
        notes, ["midi60", "midi64"], {"a.wav": (100, 200)}, hop_length=512, sr=22050, onset_tol=0.0
    )
    # 512 / 22050 s a frame: 0 .. 0.25 s is frames 0 .. 11, 2 .. 3 s frames 86 .. 129
    assert spans == (((100, 112), (186, 230)), ((143, 166),))
    for text, words in [
        ("onset,duration,pitch\n0.5,-1,60\n", "line 2: duration='-1'"),
        ("onset,duration,pitch\nx,1,60\n", "line 2: onset='x'"),
        ("onset,duration,pitch\n0,1,200\n", "line 2: pitch '200' is not a MIDI pitch"),
        ("onset,duration,note\n0,1,60\n", "lacks 'pitch'"),
        ("0,1\n", "line 1 has 2 fields"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_text(text)
        with pytest.raises(DnmfUsageError, match=words):
            read_scores(bad)
    with pytest.raises(DnmfUsageError, match="names no file and the corpus holds 2 files"):
        score_intervals(notes, ["midi60", "midi64"], {"a": (0, 9), "b": (9, 9)}, hop_length=1, sr=1)
    with pytest.raises(DnmfUsageError, match="pitch 64 has no component"):
        score_intervals(notes, ["midi60"], {"a": (0, 9)}, hop_length=1, sr=1)


def test_score_informed_zeros_stay_zero(corpus, tmp_path: Path, cluster_client) -> None:  # type: ignore[no-untyped-def]
    from dnmf.io.model import ModelStore
    from pipelines.learn import learn_corpus

    path, _ = corpus  # 700 frames at hop 16 / sr 22050
    dt = 16 / 22050
    notes = tmp_path / "notes.csv"
    notes.write_text(f"onset,duration,pitch\n{50 * dt},{30 * dt},60\n{400 * dt},{100 * dt},72\n")
    cfg = LearnConfig(
        rank=3,
        lags=4,
        epochs=5,
        init="pitched",
        pitches=(60, 72),
        scores=str(notes),
        onset_tol=0.0,
        schedule="full",
        solver="mu",
    )
    learn_corpus(path, tmp_path / "m.zarr", config=cfg, client=cluster_client)
    model = ModelStore.open(tmp_path / "m.zarr")
    H = np.asarray(zarr.open_array(f"{tmp_path}/m.zarr/state/H{5 % 2}", mode="r")[:])
    gate = np.zeros((2, 700), bool)
    gate[0, 50:81] = True
    gate[1, 400:501] = True
    assert (H[:2][~gate] == 0).all() and (H[:2][gate] > 0).all()
    assert (H[2] > 0).mean() > 0.5  # the free component is not gated
    assert list(zarr.open_array(f"{tmp_path}/m.zarr/label", mode="r")[:]) == [
        "midi60",
        "midi72",
        "",
    ]
    assert model.meta["labels"][:2] == ["midi60", "midi72"]


# --------------------------------------------------------------------------- separation and CLI


@pytest.fixture(scope="module")
def audio_model(tmp_path_factory: pytest.TempPathFactory, cluster_client: object) -> Path:
    """An NMFD model (lags 4) of a low tone and a high noise band, on STFT features."""
    from pipelines.ingest import ingest
    from pipelines.learn import learn_corpus
    from tests.conftest import write
    from tests.test_transform import FEATURES, SR, high_source, low_source

    root = tmp_path_factory.mktemp("nmfd_model")
    write(root / "audio" / "low.wav", low_source(SR, SR), SR)
    write(root / "audio" / "high.wav", high_source(SR, SR), SR)
    ingest(root / "audio", root / "corpus.zarr", features=FEATURES, client=cluster_client)
    cfg = LearnConfig(rank=2, lags=4, epochs=20, schedule="full", solver="mu")
    learn_corpus(root / "corpus.zarr", root / "model.zarr", config=cfg, client=cluster_client)
    return root / "model.zarr"


def test_separation_parts_add_up_to_the_mixture(audio_model: Path, tmp_path: Path) -> None:
    import soundfile as sf

    from dnmf.separate import separate
    from tests.conftest import write
    from tests.test_transform import SR, high_source, low_source

    n = int(1.2 * SR)
    mix = write(
        tmp_path / "mix.wav", low_source(n, SR) + high_source(n, SR, seed=5), SR, subtype="FLOAT"
    )
    paths = separate(audio_model, mix, tmp_path / "out", alpha=2.0)
    y, _ = sf.read(mix, dtype="float32")
    parts = [sf.read(p, dtype="float32")[0] for p in paths]
    assert len(parts) == 2 and all(len(p) == len(y) for p in parts)
    np.testing.assert_allclose(np.sum(parts, axis=0), y, rtol=0, atol=1e-5)
    # Each part is mostly one source: the components did separate the two.
    assert max(np.sum(p**2) for p in parts) < 0.95 * np.sum(y**2)


def test_cli_learns_nmfd_and_refuses_bad_input(
    audio_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheduler_address: str
) -> None:
    import json

    from tests.test_cli import assert_one_sentence_error, run

    monkeypatch.setenv("DNMF_SCHEDULER", scheduler_address)
    corpus = audio_model.parent / "corpus.zarr"
    out = tmp_path / "m.zarr"
    result = run(
        "learn",
        corpus,
        "--lags",
        "3",
        "--init",
        "pitched",
        "--pitches",
        "57,69",
        "--epochs",
        "2",
        "-o",
        out,
        "--json",
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["epochs"] == 2
    W = zarr.open_array(f"{out}/W", mode="r")
    assert W.shape == (513, 2, 3)
    info = json.loads(run("info", out, "--json").stdout)
    assert (info["lags"], info["rank"]) == (3, 2)
    assert run("plot", out, "-o", tmp_path / "plots").exit_code == 0
    assert (tmp_path / "plots" / "dictionary.png").exists()
    notes = tmp_path / "notes.csv"
    notes.write_text("onset,duration,pitch,file\n0.1,0.3,57,low.wav\n")
    result = run(
        "learn",
        corpus,
        "--lags",
        "3",
        "--init-scores",
        notes,
        "--epochs",
        "1",
        "-o",
        tmp_path / "s.zarr",
        "-q",
    )
    assert result.exit_code == 0, result.output
    assert zarr.open_array(f"{tmp_path}/s.zarr/W", mode="r").shape == (513, 1, 3)
    bad = tmp_path / "bad.csv"
    bad.write_text("onset,duration,pitch\n0.1,zero,57\n")
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_text("onset,duration,pitch,file\n0.1,0.3,57,nope.wav\n")
    for args, words in [
        (["--rank", "2", "--lags", "0"], ["--lags 0"]),
        (["--lags", "4"], ["--rank is missing"]),
        (
            ["--lags", "4", "--rank", "2", "--init", "nndsvda", "--fixed-components", "0"],
            ["fixed components need a given or informed init"],
        ),
        (["--init", "pitched", "--pitches", "60,x"], ["--pitches '60,x'"]),
        (["--init", "pitched", "--pitches", "200"], ["pitch 200.0 is not a MIDI pitch"]),
        (["--init", "pitched"], ["needs MIDI pitches"]),
        (["--init", "bogus"], ["--init 'bogus' is neither"]),
        (["--init-scores", bad], ["bad.csv line 2: duration='zero'"]),
        (["--init-scores", elsewhere], ["file 'nope.wav' is not in the corpus"]),
    ]:
        res = run("learn", corpus, *args, "-o", tmp_path / "x.zarr", "-q")
        assert_one_sentence_error(res, 2, *words)


# --------------------------------------------------------------------------- the estimator


def test_nmfd_estimator_fits_transforms_and_inverts() -> None:
    from sklearn.base import clone

    import dnmf

    V, _, _ = synthetic(3, n_bins=16, rank=2, lags=4, n=240)
    X = np.ascontiguousarray(V.T)  # frames x bins, scikit-learn's orientation
    model = dnmf.NMFD(2, lags=4, max_iter=150, tol=0, random_state=1)
    assert clone(model).get_params()["lags"] == 4
    H = model.fit_transform(X)
    assert H.shape == (240, 2) and model.components_.shape == (2, 16, 4)
    assert (H >= 0).all() and (model.components_ >= 0).all() and model.n_iter_ == 150
    rel = np.linalg.norm(model.inverse_transform(H) - X) / np.linalg.norm(X)
    assert rel < 0.02, rel
    # transform is the fit with the templates frozen: it explains X as well as the fit did.
    again = model.transform(X)
    rel2 = np.linalg.norm(model.inverse_transform(again) - X) / np.linalg.norm(X)
    assert rel2 < 1.5 * rel + 1e-3
    # lags=1 is plain NMF: the same dictionary as dnmf.NMF from the same start.
    W0 = np.random.default_rng(1).random((2, 16)) + 0.1
    H0 = np.random.default_rng(2).random((240, 2)) + 0.1
    one = dnmf.NMFD(2, lags=1, init="custom", max_iter=20, tol=0, norm=None, beta_loss=1)
    ref = dnmf.NMF(2, init="custom", max_iter=20, tol=0, beta_loss=1)
    one.fit(X, W=H0, H=W0)
    ref.fit(X, W=H0, H=W0)
    np.testing.assert_allclose(one.components_[:, :, 0], ref.components_, rtol=1e-10)
