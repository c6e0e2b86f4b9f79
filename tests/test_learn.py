"""The learner: scikit-learn parity, invariants, determinism across workers, resume."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from sklearn.decomposition import NMF
from sklearn.decomposition._nmf import _initialize_nmf

from dnmf.audio.features import FeatureConfig
from dnmf.backends import MemoryBackend
from dnmf.errors import DnmfUsageError, InvalidDataError, StoreFormatError, StoreMismatchError
from dnmf.io.corpus import CorpusStore
from dnmf.io.model import ModelStore
from dnmf.nmf.config import LearnConfig
from dnmf.nmf.init import ArrayH
from dnmf.nmf.learner import learn, start_state
from dnmf.nmf.plan import epoch_steps, plan_visits, tree_sum
from dnmf.nmf.visit import VisitParams, visit_block
from pipelines.learn import learn_corpus


def memory_fit(V, cfg, *, W0=None, H0=None, block=64):  # type: ignore[no-untyped-def]
    be = MemoryBackend(V, block)
    h_init = None if H0 is None else ArrayH(H0)
    state = learn(cfg, be, start_state(cfg, be, W_init=W0), h_init=h_init)
    return state, be


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0])
def test_full_batch_equals_sklearn_mu(beta: float) -> None:
    rng = np.random.default_rng(0)
    X = rng.random((300, 40)) ** 2  # frames x bins, scikit-learn's orientation
    W_sk, H_sk = _initialize_nmf(X, 5, init="random", random_state=0)
    ref = NMF(5, solver="mu", beta_loss=beta, init="custom", max_iter=30, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acts = ref.fit_transform(X, W=W_sk.copy(), H=H_sk.copy())
    cfg = LearnConfig(
        rank=5, beta=beta, epochs=30, init="custom", norm=None, tol=0, schedule="full", solver="mu"
    )
    state, be = memory_fit(X.T.copy(), cfg, W0=H_sk.T.copy(), H0=W_sk.T.copy())
    np.testing.assert_allclose(state.W[:, :, 0], ref.components_.T, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(be.activations(state.latest_buffer), acts.T, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 1.0, 1.5, 2.0])
@pytest.mark.parametrize("norm", [None, "l2"])
@pytest.mark.parametrize("lags", [1, 6])
def test_loss_never_rises_in_full_batch(beta: float, norm: str | None, lags: int) -> None:
    V = (np.random.default_rng(1).random((30, 200)) ** 2).astype(np.float32)
    V[:, 5] = 0.0  # a silent frame
    cfg = LearnConfig(
        rank=4, lags=lags, beta=beta, epochs=40, norm=norm, tol=0, schedule="full", solver="mu"
    )
    state, _ = memory_fit(V, cfg)
    losses = np.array(state.losses)
    assert (np.diff(losses) <= 1e-5 * losses[0]).all(), losses
    assert state.W.dtype == np.float32 and (state.W >= 0).all()
    assert np.isfinite(losses).all()


def test_exact_low_rank_product_is_recovered() -> None:
    rng = np.random.default_rng(2)
    V = rng.random((20, 3)) @ rng.random((3, 400))
    cfg = LearnConfig(
        rank=3, beta=2, epochs=2000, tol=0, init="nndsvda", schedule="full", solver="mu"
    )
    state, be = memory_fit(V, cfg, block=100)
    H = be.activations(state.latest_buffer) * np.repeat(state.pending, 100, axis=0)[:400].T
    assert np.linalg.norm(state.W[:, :, 0] @ H - V) / np.linalg.norm(V) < 5e-3


def test_minibatch_lowers_the_loss_and_fixed_components_stay() -> None:
    rng = np.random.default_rng(3)
    V = (rng.random((25, 3)) @ rng.random((3, 1000))).astype(np.float32)
    W0 = rng.random((25, 5)).astype(np.float32)
    cfg = LearnConfig(
        rank=5, beta=1, epochs=15, batch_chunks=2, n_inner=3, init="custom",
        fixed_components=(0, 3), tol=0, schedule="full", solver="mu")  # fmt: skip
    state, _ = memory_fit(V, cfg, W0=W0, block=100)
    assert state.losses[-1] < 0.5 * state.losses[0]
    assert state.W[:, [0, 3], 0].tobytes() == W0[:, [0, 3]].tobytes()
    assert not np.array_equal(state.W[:, 1, 0], W0[:, 1])


def test_epoch_steps_are_a_seeded_partition() -> None:
    steps = epoch_steps(10, 3, seed=1, epoch=4)
    assert sorted(b for s in steps for b in s) == list(range(10))
    assert all(s == sorted(s) for s in steps) and len(steps) == 4
    assert steps == epoch_steps(10, 3, seed=1, epoch=4) != epoch_steps(10, 3, seed=1, epoch=5)
    assert epoch_steps(10, None, seed=1, epoch=0) == [list(range(10))]
    assert tree_sum([1, 2, 3, 4, 5], lambda a, b: f"({a}+{b})") == "(((1+2)+(3+4))+5)"


def test_a_retried_visit_reads_and_writes_the_same() -> None:
    V = np.random.default_rng(4).random((10, 50)).astype(np.float32)
    cfg = LearnConfig(rank=3, tol=0, epochs=2, schedule="full", solver="mu")
    state, be = memory_fit(V, cfg, block=25)
    p = VisitParams(1.0, 2, 0.0, 0.0, 0, state.avg)
    (visit,) = plan_visits(
        [1], be.blocks(), n_frames=50, lags=1, n_inner=2, epoch=2, visited=state.visited,
        pending=state.pending, done_this_epoch=set(),
    )  # fmt: skip
    first = visit_block(be, visit, state.W, 2, p)
    written = be.H[1].copy()  # type: ignore[union-attr]
    again = visit_block(be, visit, state.W, 2, p)
    assert first[0].tobytes() == again[0].tobytes() and first[2] == again[2]
    assert be.H[1].tobytes() == written.tobytes()  # type: ignore[union-attr]


@pytest.mark.parametrize("init", ["nndsvda", "kmeans"])
def test_sample_inits(init: str) -> None:
    V = (np.random.default_rng(5).random((30, 300)) ** 3).astype(np.float32)
    cfg = LearnConfig(
        rank=6, init=init, epochs=10, tol=0, sample_frames=100, schedule="full", solver="mu"
    )
    state, _ = memory_fit(V, cfg)
    assert state.W.shape == (30, 6, 1) and (state.W >= 0).all() and np.isfinite(state.losses).all()
    assert state.losses[-1] < state.losses[0]


# -- on a real cluster, from a corpus store ------------------------------------------------
def write_corpus(path: Path, V: np.ndarray, chunk_frames: int) -> Path:
    """A corpus store holding V directly (no audio), as ingest would lay it out."""
    cfg = FeatureConfig(n_fft=2 * (V.shape[0] - 1), hop_length=16)
    store = CorpusStore.create(path, cfg, chunk_frames=chunk_frames, source="synthetic")
    store.resize_frames(V.shape[1])
    store.V[:] = V
    from dnmf.io.corpus import FileRecord

    store.commit([FileRecord("x.wav", "h", 0, V.shape[1])], V.shape[1], {"synthetic": True})
    return path


class Crash(Exception):
    """What a killed job looks like to the learner: it stops after a step."""


def crash_at(step: int):  # type: ignore[no-untyped-def]
    def on_step(p) -> None:  # type: ignore[no-untyped-def]
        if p.global_step >= step:
            raise Crash(step)

    return on_step


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    rng = np.random.default_rng(6)
    V = (rng.random((33, 4)) @ rng.random((4, 700)) + 0.01).astype(np.float32)
    return write_corpus(tmp_path / "corpus.zarr", V, chunk_frames=100)


@pytest.mark.parametrize("lags", [1, 8])
def test_cluster_equals_memory_bitwise_for_1_2_3_workers(
    corpus: Path, tmp_path: Path, cluster_client, lags: int
) -> None:
    from dnmf.cluster import connect

    cfg = LearnConfig(
        rank=4,
        lags=lags,
        epochs=6,
        batch_chunks=3,
        n_inner=2,
        tol=0,
        seed=3,
        schedule="full",
        solver="mu",
    )
    V = CorpusStore.open(corpus).V[:]
    mem, _ = memory_fit(V, cfg, block=100)
    two = learn_corpus(corpus, tmp_path / "two.zarr", config=cfg, client=cluster_client)
    with connect(workers=1, processes=False) as c1:
        learn_corpus(corpus, tmp_path / "one.zarr", config=cfg, client=c1)
    with connect(workers=3, processes=False) as c3:
        learn_corpus(corpus, tmp_path / "three.zarr", config=cfg, client=c3)
    Ws = [ModelStore.open(tmp_path / f"{n}.zarr").W for n in ("one", "two", "three")]
    assert all(W.tobytes() == mem.W.tobytes() for W in Ws)  # (bin, component, 1) in memory
    assert two.losses == mem.losses and two.epochs == 6


@pytest.mark.parametrize("lags", [1, 8])
def test_resume_ends_bitwise_where_an_uninterrupted_run_ends(
    corpus: Path, tmp_path: Path, cluster_client, lags: int
) -> None:
    cfg = LearnConfig(
        rank=4,
        lags=lags,
        epochs=5,
        batch_chunks=2,
        n_inner=2,
        tol=0,
        checkpoint_every=3,
        schedule="full",
        solver="mu",
    )
    whole = learn_corpus(corpus, tmp_path / "whole.zarr", config=cfg, client=cluster_client)
    with pytest.raises(Crash):
        learn_corpus(
            corpus, tmp_path / "cut.zarr", config=cfg, client=cluster_client, on_step=crash_at(11)
        )
    assert ModelStore.open(tmp_path / "cut.zarr").status == "running"
    resumed = learn_corpus(
        corpus, tmp_path / "cut.zarr", config=cfg, resume=True, client=cluster_client
    )
    # 4 steps an epoch; checkpoints every 3 steps and at epoch ends: the last is step 9,
    # so steps 10 and 11 (whose H writes the crash left behind) are done again.
    assert resumed.resumed_from_step == 9
    a, b = ModelStore.open(tmp_path / "whole.zarr"), ModelStore.open(tmp_path / "cut.zarr")
    assert a.W.tobytes() == b.W.tobytes() and b.status == "done"
    assert resumed.losses == whole.losses


def test_model_store_opens_in_xarray(corpus: Path, tmp_path: Path, cluster_client) -> None:
    import xarray as xr

    learn_corpus(
        corpus,
        tmp_path / "m.zarr",
        config=LearnConfig(rank=3, epochs=3, schedule="full", solver="mu"),
        client=cluster_client,
    )
    ds = xr.open_zarr(tmp_path / "m.zarr")
    assert ds.W.dims == ("bin", "component") and ds.W.shape == (33, 3)
    assert ds.loss.dims == ("epoch",) and ds.sizes["epoch"] == 3
    assert "frequency" in ds.coords
    assert ds.attrs["dnmf"]["corpus"]["fingerprint"] == CorpusStore.open(corpus).fingerprint()


def test_bad_values_name_chunk_and_frame(tmp_path: Path, cluster_client) -> None:
    V = np.ones((9, 300), np.float32)
    V[4, 237] = np.nan
    store = write_corpus(tmp_path / "bad.zarr", V, chunk_frames=100)
    with pytest.raises(InvalidDataError, match=r"bin 4, frame 237 of chunk 2"):
        learn_corpus(
            store,
            tmp_path / "m.zarr",
            config=LearnConfig(rank=2, schedule="full", solver="mu"),
            client=cluster_client,
        )
    V[4, 237] = -1.0
    store = write_corpus(tmp_path / "neg.zarr", V, chunk_frames=100)
    with pytest.raises(InvalidDataError, match="negative"):
        learn_corpus(
            store,
            tmp_path / "m2.zarr",
            config=LearnConfig(rank=2, schedule="full", solver="mu"),
            client=cluster_client,
        )


def test_bad_input_is_refused_and_nothing_overwritten(
    corpus: Path, tmp_path: Path, cluster_client
) -> None:
    with pytest.raises(DnmfUsageError, match="rank=40 is larger than the data allows"):
        learn_corpus(
            corpus,
            tmp_path / "m.zarr",
            config=LearnConfig(rank=40, schedule="full", solver="mu"),
            client=cluster_client,
        )
    learn_corpus(
        corpus,
        tmp_path / "m.zarr",
        config=LearnConfig(rank=2, epochs=2, schedule="full", solver="mu"),
        client=cluster_client,
    )
    before = ModelStore.open(tmp_path / "m.zarr").W
    with pytest.raises(DnmfUsageError, match="exists; pass --resume"):
        learn_corpus(
            corpus,
            tmp_path / "m.zarr",
            config=LearnConfig(rank=2, epochs=3, schedule="full", solver="mu"),
        )
    other = write_corpus(tmp_path / "other.zarr", np.ones((33, 50), np.float32), chunk_frames=100)
    with pytest.raises(StoreMismatchError, match="another corpus"):
        learn_corpus(
            other,
            tmp_path / "m.zarr",
            config=LearnConfig(rank=2, epochs=3, schedule="full", solver="mu"),
            resume=True,
        )
    with pytest.raises(StoreMismatchError, match="seed=0"):
        learn_corpus(
            corpus,
            tmp_path / "m.zarr",
            config=LearnConfig(rank=2, seed=1, schedule="full", solver="mu"),
            resume=True,
        )
    assert ModelStore.open(tmp_path / "m.zarr").W.tobytes() == before.tobytes()
    with pytest.raises(StoreFormatError, match="not a corpus store"):
        learn_corpus(
            tmp_path / "m.zarr",
            tmp_path / "m3.zarr",
            config=LearnConfig(rank=2, schedule="full", solver="mu"),
        )
    zarr.open_group(tmp_path / "plain.zarr", mode="w")
    with pytest.raises(StoreFormatError, match="not a dnmf store"):
        learn_corpus(
            tmp_path / "plain.zarr",
            tmp_path / "m4.zarr",
            config=LearnConfig(rank=2, schedule="full", solver="mu"),
        )
    with pytest.raises(DnmfUsageError, match="beta='hellinger'"):
        LearnConfig.from_options(rank=2, beta="hellinger")


def test_blocks_prefer_workers_in_runs_balanced_by_frames(
    corpus: Path, tmp_path: Path, cluster_client
) -> None:
    from distributed import Client, LocalCluster

    from dnmf.backends import DaskBackend

    # 7 blocks, the last one half as long: 3 + 3.5 blocks of frames, not 4 + 2.5.
    args = (f"{corpus}/V", str(tmp_path / "H"))
    backend = DaskBackend(cluster_client, *args, block_frames=100, n_frames=650)
    home = backend._homes()
    places = [home(b) for b in range(len(backend.blocks()))]
    assert all(p["allow_other_workers"] and len(p["workers"]) == 1 for p in places)
    owners = [p["workers"][0] for p in places]
    assert owners == sorted(owners) and len(set(owners)) == 2  # contiguous runs
    frames: dict[str, int] = {}
    for (a, z), o in zip(backend.blocks(), owners, strict=True):
        frames[o] = frames.get(o, 0) + z - a
    assert sorted(frames.values()) == [300, 350]
    # A scheduler that knows no worker yet: no placement at all (submit refuses
    # allow_other_workers without workers).
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cl, Client(cl) as c:
        empty = DaskBackend(c, *args, block_frames=100, n_frames=650)
        assert empty._homes()(0) == {}


def test_a_model_store_of_the_previous_version_opens_resumes_and_exports(
    corpus: Path, tmp_path: Path, cluster_client
) -> None:
    """Before NMF and NMFD were one config, a plain model recorded no ``lags`` and kept a
    2-D ``W`` in its checkpoint slots; such a store still opens, resumes and exports."""
    from dnmf.io.store import read_meta, write_meta
    from pipelines.export import export

    cfg = LearnConfig(rank=3, epochs=4, tol=0, schedule="full", solver="mu")
    whole = learn_corpus(corpus, tmp_path / "whole.zarr", config=cfg, client=cluster_client)
    path = tmp_path / "old.zarr"
    with pytest.raises(Crash):
        learn_corpus(corpus, path, config=cfg, client=cluster_client, on_step=crash_at(2))
    group = zarr.open_group(path, mode="r+")
    meta = read_meta(group, "model", path)
    old_config = {k: v for k, v in meta["config"].items() if k in _V0_KEYS}
    meta.update(config=old_config, model="nmf")
    del meta["lags"]
    del meta["checkpoint"]["has_H_records"]  # nor records of its activation buffers
    write_meta(group, meta)
    slot = zarr.open_group(path / "state" / f"slot{meta['checkpoint']['slot']}", mode="r+")
    W3 = slot["W"][:]
    slot.create_array("W", data=W3[:, :, 0], overwrite=True)  # the old 2-D slot
    del slot["H_crc"]
    records = zarr.open_group(path / "chunks", mode="r+")  # and no records of its slots
    index = dict(records.attrs["dnmf_records"])  # type: ignore[arg-type]
    arrays = {k: v for k, v in index["arrays"].items() if not k.startswith("state/")}  # type: ignore[union-attr]
    records.attrs["dnmf_records"] = {**index, "arrays": arrays}
    model = ModelStore.open(path)
    assert model.lags == 1 and model.config.lags == 1
    resumed = learn_corpus(corpus, path, config=cfg, resume=True, client=cluster_client)
    assert resumed.losses == whole.losses
    assert ModelStore.open(path).W.tobytes() == ModelStore.open(tmp_path / "whole.zarr").W.tobytes()
    assert export(path, tmp_path / "acts.zarr", n_iter=5, client=cluster_client).chunks == 7
    # an NMFD config of the previous version named its model kind
    assert LearnConfig.from_attrs({"rank": 2, "lags": 8, "model": "nmfd"}).lags == 8


#: The keys of the plain NMF config of the previous version.
_V0_KEYS = {
    "rank", "beta", "epochs", "batch_chunks", "block_frames", "n_inner", "forget_factor",
    "init", "seed", "tol", "alpha_W", "alpha_H", "l1_ratio", "norm", "fixed_components",
    "checkpoint_every", "sample_frames",
}  # fmt: skip


@pytest.mark.parametrize("shape", [(40, 300), (300, 40)])
def test_nndsvda_from_the_leading_triplets_is_sklearns(shape: tuple[int, int]) -> None:
    from dnmf.nmf.init import nndsvda_W

    rng = np.random.default_rng(7)
    # six well separated singular values, so the leading vectors are well defined
    sample = (rng.random((shape[0], 6)) * [8, 6, 4, 3, 2, 1]) @ rng.random((6, shape[1]))
    sample += 1e-3 * rng.random(shape)
    _, H = _initialize_nmf(sample.T, 6, init="nndsvda")
    np.testing.assert_allclose(nndsvda_W(sample, 6), H.T, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("penalty", [{}, {"alpha_W": 0.01, "alpha_H": 0.02, "l1_ratio": 0.4}])
def test_hals_equals_sklearns_coordinate_descent(penalty: dict[str, float]) -> None:
    """β = 2 with solver='hals' is scikit-learn's NMF(solver='cd', shuffle=False)."""
    rng = np.random.default_rng(8)
    X = rng.random((300, 40)) ** 2  # frames x bins
    W_sk, H_sk = _initialize_nmf(X, 5, init="random", random_state=0)
    sk_pen = {"alpha_W": penalty.get("alpha_H", 0.0), "alpha_H": penalty.get("alpha_W", 0.0),
              "l1_ratio": penalty.get("l1_ratio", 0.0)}  # fmt: skip
    ref = NMF(5, solver="cd", beta_loss=2, init="custom", max_iter=25, tol=0, **sk_pen)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        acts = ref.fit_transform(X, W=W_sk.copy(), H=H_sk.copy())
    cfg = LearnConfig(
        rank=5,
        beta=2,
        solver="hals",
        epochs=25,
        init="custom",
        norm=None,
        tol=0,
        **penalty,
        schedule="full",
    )
    state, be = memory_fit(X.T.copy(), cfg, W0=H_sk.T.copy(), H0=W_sk.T.copy(), block=300)
    np.testing.assert_allclose(state.W[:, :, 0], ref.components_.T, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(be.activations(state.latest_buffer), acts.T, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("schedule", [{}, {"batch_chunks": 2, "n_inner": 2}])
def test_hals_loss_never_rises_in_full_batch_and_minibatch_learns(schedule: dict) -> None:
    rng = np.random.default_rng(9)
    V = (rng.random((30, 4)) @ rng.random((4, 400)) + 0.01 * rng.random((30, 400))).astype(
        np.float32
    )
    cfg = LearnConfig(rank=4, beta=2, solver="hals", epochs=30, tol=0, **schedule, schedule="full")
    state, _ = memory_fit(V, cfg, block=100)
    losses = np.array(state.losses)
    if not schedule:
        assert (np.diff(losses) <= 1e-5 * losses[0]).all(), losses
    assert losses[-1] < 0.2 * losses[0] and (state.W >= 0).all()
    with pytest.raises(DnmfUsageError, match="solver='hals' is for beta=2"):
        LearnConfig.from_options(rank=2, beta=1, solver="hals")


@pytest.mark.parametrize(("beta", "init", "expected"), [
    (None, None, "nndsvda"), ("kullback-leibler", None, "nndsvda"), (0, None, "random"),
    ("itakura-saito", None, "random"), (0, "kmeans", "kmeans"),
])  # fmt: skip
def test_dnmf_learn_default_init_follows_beta(beta: Any, init: str | None, expected: str) -> None:
    """``dnmf learn`` without --init: NNDSVDa, but random for --beta below 1."""
    from dnmf.cli._learn_options import learn_config

    common = {} if beta is None else {"beta": beta}
    cfg, _ = learn_config(
        rank=4, init=init, fixed=(), lags=None, pitches=None, pitch_tol=None, harmonics=None,
        drums=None, scores=None, onset_tol=None, h_init=None, sparsity=None, uncorr=None,
        fix_w=False, fix_h=False, common=common,
    )  # fmt: skip
    assert cfg.init == expected


def test_a_cancelled_step_is_submitted_again_to_the_same_W(
    corpus: Path, tmp_path: Path, cluster_client, monkeypatch
) -> None:
    """A step whose graph the scheduler cancels after its tasks ran (and wrote H) is
    run again under new keys, and the run ends bitwise where an undisturbed one does."""
    from concurrent.futures import CancelledError

    from dnmf.backends import DaskBackend

    cfg = LearnConfig(rank=4, epochs=4, batch_chunks=3, tol=0, seed=5, schedule="full")
    whole = learn_corpus(corpus, tmp_path / "whole.zarr", config=cfg, client=cluster_client)
    once = DaskBackend._step_once
    tags: list[str] = []

    def cancelled_after_the_third(self, visits, W, epoch, p, tag):  # type: ignore[no-untyped-def]
        tags.append(tag)
        out = once(self, visits, W, epoch, p, tag)
        if len(tags) == 3:
            raise CancelledError("already forgotten")
        return out

    monkeypatch.setattr(DaskBackend, "_step_once", cancelled_after_the_third)
    again = learn_corpus(corpus, tmp_path / "again.zarr", config=cfg, client=cluster_client)
    assert tags[3] == tags[2] + "-a1"  # the same step, new keys
    W = ModelStore.open(tmp_path / "whole.zarr").W
    assert ModelStore.open(tmp_path / "again.zarr").W.tobytes() == W.tobytes()
    assert again.losses == whole.losses
