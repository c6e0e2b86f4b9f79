"""The fast schedule: growing samples, safeguarded extrapolation, and every guarantee kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dnmf.backends import MemoryBackend
from dnmf.io.corpus import CorpusStore
from dnmf.io.model import ModelStore
from dnmf.io.store import write_meta
from dnmf.nmf.accel import extrapolate
from dnmf.nmf.config import LearnConfig
from dnmf.nmf.divergence import EPSILON
from dnmf.nmf.init import RandomH
from dnmf.nmf.learner import fit_in_memory, learn, start_state
from dnmf.nmf.plan import passes_done, sample_blocks, sample_stages, visited_twice
from dnmf.nmf.state import LearnState
from pipelines.learn import learn_corpus
from tests.test_learn import Crash, crash_at, write_corpus


def low_rank(seed: int = 0, n_frames: int = 1400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((40, 8)) @ rng.random((8, n_frames)) + 0.01).astype(np.float32)


def test_samples_are_nested_seeded_and_counted_in_passes() -> None:
    assert sample_stages(7) == [(1, 20), (2, 15), (4, 10)]
    assert sample_stages(1) == [] and sample_stages(40, budget=49) == []
    seen: list[int] = []
    for epoch in range(45):
        sample = sample_blocks(7, epoch, seed=3)
        assert sample is not None and set(seen) <= set(sample) and sample == sorted(sample)
        seen = sample
    assert sample_blocks(7, 45, seed=3) is None
    assert {tuple(sample_blocks(7, 30, seed=s) or ()) for s in range(6)} != {(0, 1)}
    assert passes_done(7, 45, fast=True) == pytest.approx((20 * 1 + 15 * 2 + 10 * 4) / 7)
    assert passes_done(7, 46, fast=True) == pytest.approx(90 / 7 + 1)
    assert passes_done(7, 46, fast=False) == 46
    first = sample_blocks(7, 20, seed=3)
    assert first is not None
    twice = visited_twice(7, 21, seed=3)
    assert twice.sum() == 1 and twice[sample_blocks(7, 0, seed=3)[0]]  # type: ignore[index]


def test_defaults_are_the_fast_schedule_and_hals_for_frobenius() -> None:
    assert LearnConfig(rank=3).schedule == "fast" and LearnConfig(rank=3).solver == "mu"
    assert LearnConfig(rank=3, beta="frobenius").solver == "hals"
    assert LearnConfig(rank=3, beta=2, lags=4).solver == "mu"
    assert LearnConfig(rank=3, beta=2, solver="mu").solver == "mu"
    # a store written before the fast schedule learned with full passes
    assert LearnConfig.from_attrs({"rank": 3}).schedule == "full"


def test_the_fast_schedule_takes_heuristic_mu_below_beta_1_and_nowhere_else() -> None:
    cfg = LearnConfig(rank=3, beta=0)
    assert cfg.heuristic_mu and cfg.update_exponent() == 1.0
    assert LearnConfig(rank=3, beta=0.5, lags=3).update_exponent() == 1.0
    for other in (
        dict(beta=0, schedule="full"), dict(beta=0, batch_chunks=2), dict(beta=-0.5),
        dict(beta=0, heuristic_mu=False), dict(beta=1), dict(beta=3),
    ):  # fmt: skip
        assert LearnConfig(rank=3, **other).update_exponent() is None, other  # type: ignore[arg-type]
    # a store written before the option learned with the majorization's exponent
    old = LearnConfig.from_attrs({"rank": 3, "beta": 0.0, "schedule": "fast"})
    assert old.update_exponent() is None
    # the exponent reaches both updates: one step of each factor moves twice as far (in log)
    V = low_rank()
    base = dict(rank=8, beta=0.0, epochs=1, tol=0, norm=None)

    def fit(**kw: object) -> tuple[np.ndarray, np.ndarray]:
        r = fit_in_memory(V, LearnConfig(**{**base, **kw}), block_frames=200)  # type: ignore[arg-type]
        return r.W, r.H

    W0, H0 = fit(fix_W=True)[0], fit(fix_H=True)[1]  # the starting point of each
    for free, kw in ((0, {"fix_H": True}), (1, {"fix_W": True})):
        start = (W0, H0)[free]
        step = {h: np.log(fit(**kw, heuristic_mu=h)[free] / start) for h in (True, False)}
        assert np.abs(step[False]).max() > 0.01
        np.testing.assert_allclose(step[True], 2.0 * step[False], rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 2.0])
def test_the_extrapolation_lifts_a_tiny_entry_to_epsilon_only_from_beta_1(beta: float) -> None:
    tiny, eps = np.float32(1e-9), np.float32(EPSILON)
    state = LearnState(W=np.array([[tiny], [0.5], [0.0]], dtype=np.float32))
    state.W_prev = np.array([[1e-6], [0.4], [0.3]], dtype=np.float32)
    state.accel = (0.5, 1.0, 0.5, 10.0, 0.0)
    assert extrapolate(state, 5.0, beta=beta)  # the loss fell: extrapolated
    W = state.W[:, 0]
    assert W[0] == (tiny if beta < 1 else eps)  # pushed below 0: floored, lifted only from β = 1
    assert W[1] == pytest.approx(0.5 + 0.525 * 0.1, rel=1e-6)  # b grew from 0.5 to 0.525
    assert W[2] == 0.0  # a zero stays zero


@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_fast_reaches_a_lower_loss_than_plain_mu_in_the_same_passes(beta: float) -> None:
    V = low_rank()
    losses = {}
    for schedule in ("full", "fast"):
        cfg = LearnConfig(rank=8, beta=beta, epochs=60, tol=0, schedule=schedule)
        r = fit_in_memory(V, cfg, block_frames=200)
        losses[schedule] = r.losses[-1]  # the fast run ends with full-data epochs
        assert (r.W >= 0).all() and np.isfinite(r.losses).all()
    assert losses["fast"] < 0.8 * losses["full"], losses


def test_a_sample_stage_holds_at_least_sample_min_frames() -> None:
    from dnmf.nmf.learner import stage_kw
    from dnmf.nmf.plan import min_sample_blocks

    assert min_sample_blocks(65536, 8192) == 8 and min_sample_blocks(0, 8192) == 1
    # the 20-minute benchmark corpus (7 chunks of 8192): no stage; 2 hours (38): 1/4 and 1/2
    assert sample_stages(7, 200, min_blocks=8) == []
    assert sample_stages(38, 200, min_blocks=8) == [(10, 15), (19, 10)]
    ranges = [(a, a + 8192) for a in range(0, 38 * 8192, 8192)]
    kw = stage_kw(LearnConfig(rank=4), ranges)
    assert kw["min_blocks"] == 8 and sample_blocks(38, 0, **kw) is not None
    assert passes_done(38, 25, fast=True, budget=200, min_blocks=8) == pytest.approx(
        (15 * 10 + 10 * 19) / 38
    )
    assert passes_done(7, 25, fast=True, budget=200, min_blocks=8) == 25


def test_fast_stops_on_tol_and_says_so() -> None:
    V = low_rank(1, 400)
    r = fit_in_memory(V, LearnConfig(rank=8, epochs=500, tol=1e-3), block_frames=400)
    assert r.state.converged and len(r.losses) < 500
    prev, cur = r.losses[-2], r.losses[-1]
    assert 0 <= (prev - cur) / prev < 1e-3


def test_masked_entries_and_fixed_activations_skip_the_extrapolation() -> None:
    V = low_rank(2, 400)
    cfg = LearnConfig(rank=8, epochs=20, tol=0, fix_H=True)
    be = MemoryBackend(V, 200)
    state = learn(cfg, be, start_state(cfg, be))
    assert np.isfinite(state.losses).all() and (state.W >= 0).all()


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "corpus.zarr", low_rank(6, 700)[:33], chunk_frames=100)


@pytest.mark.parametrize(
    ("lags", "epochs", "one_worker"),
    # with and without samples; the samples' 1-worker leg (5 s) runs with the slow tests
    [(1, 50, False), (4, 12, True), pytest.param(1, 50, True, marks=pytest.mark.slow)],
)
def test_fast_is_bitwise_the_same_in_memory_and_for_1_and_2_workers(
    corpus: Path, tmp_path: Path, cluster_client, lags: int, epochs: int, one_worker: bool
) -> None:
    from dnmf.cluster import connect

    cfg = LearnConfig(rank=4, lags=lags, epochs=epochs, tol=0, seed=3, sample_min_frames=0)
    V = CorpusStore.open(corpus).V[:]
    be = MemoryBackend(V, 100)
    mem = learn(cfg, be, start_state(cfg, be))
    assert mem.accel is not None and mem.accel[0] != 0.5  # the weight moved from its start
    two = learn_corpus(corpus, tmp_path / "two.zarr", config=cfg, client=cluster_client)
    runs = ["two"]
    if one_worker:
        with connect(workers=1, processes=False) as c1:
            learn_corpus(corpus, tmp_path / "one.zarr", config=cfg, client=c1)
        runs.append("one")
    Ws = [ModelStore.open(tmp_path / f"{n}.zarr").W for n in runs]
    W_mem = mem.W[:, :, 0] if lags == 1 else mem.W
    assert all(W.tobytes() == W_mem.astype(np.float32).tobytes() for W in Ws)
    assert two.losses == mem.losses
    # --epochs counts passes: a sample epoch counts as its share (lags 1 has samples here)
    want = passes_done(7, len(mem.losses), fast=True, budget=epochs)
    assert two.passes == pytest.approx(want) and two.passes >= epochs
    assert (two.epochs > two.passes) == (lags == 1)


def test_fast_resume_ends_bitwise_where_an_uninterrupted_run_ends(
    corpus: Path, tmp_path: Path, cluster_client
) -> None:
    cfg = LearnConfig(rank=4, epochs=12, tol=0)
    whole = learn_corpus(corpus, tmp_path / "whole.zarr", config=cfg, client=cluster_client)
    with pytest.raises(Crash):  # extrapolating by then
        learn_corpus(
            corpus, tmp_path / "cut.zarr", config=cfg, client=cluster_client, on_step=crash_at(8)
        )
    resumed = learn_corpus(
        corpus, tmp_path / "cut.zarr", config=cfg, resume=True, client=cluster_client
    )
    a, b = ModelStore.open(tmp_path / "whole.zarr"), ModelStore.open(tmp_path / "cut.zarr")
    assert a.W.tobytes() == b.W.tobytes() and resumed.losses == whole.losses


@pytest.mark.slow  # three cluster runs; the suite's 5 minutes
def test_a_model_learned_before_heuristic_mu_resumes_with_its_exponent(
    corpus: Path, tmp_path: Path, cluster_client
) -> None:
    mm = LearnConfig(rank=4, beta=0, epochs=10, tol=0, heuristic_mu=False)
    whole = learn_corpus(corpus, tmp_path / "whole.zarr", config=mm, client=cluster_client)
    with pytest.raises(Crash):
        learn_corpus(
            corpus, tmp_path / "cut.zarr", config=mm, client=cluster_client, on_step=crash_at(6)
        )
    cut = ModelStore.open(tmp_path / "cut.zarr", mode="r+")
    meta = dict(cut.meta)
    meta["config"] = {k: v for k, v in meta["config"].items() if k != "heuristic_mu"}
    write_meta(cut.group, meta)  # as a store written before the option
    resumed = learn_corpus(  # the user's config takes the new default
        corpus, tmp_path / "cut.zarr", config=mm.model_copy(update={"heuristic_mu": True}),
        resume=True, client=cluster_client,
    )  # fmt: skip
    a, b = ModelStore.open(tmp_path / "whole.zarr"), ModelStore.open(tmp_path / "cut.zarr")
    assert a.W.tobytes() == b.W.tobytes() and resumed.losses == whole.losses
    assert b.config.heuristic_mu is False


def test_a_retried_extrapolated_visit_reads_and_writes_the_same() -> None:
    from dataclasses import replace

    from dnmf.nmf.learner import visit_params
    from dnmf.nmf.plan import plan_visits
    from dnmf.nmf.visit import visit_block

    V = low_rank(3, 50)
    cfg = LearnConfig(rank=3, tol=0, epochs=6)
    be = MemoryBackend(V, 25)
    state = learn(cfg, be, start_state(cfg, be))
    assert state.accel is not None and state.pending_prev is not None
    p = replace(visit_params(cfg, be.n_bins, state.avg, RandomH()), extrapolate=0.7)
    twice = visited_twice(2, state.epoch, seed=cfg.seed, budget=cfg.epochs)
    (visit,) = plan_visits(
        [1], be.blocks(), n_frames=50, lags=1, n_inner=1, epoch=state.epoch,
        visited=state.visited, pending=state.pending, done_this_epoch=set(), n_buffers=3,
        pending_prev=state.pending_prev, twice=twice,
    )  # fmt: skip
    assert visit.pieces[0].prev_buffer == (state.epoch - 1) % 3  # it extrapolates
    target = (state.epoch + 1) % 3
    first = visit_block(be, visit, state.W, state.epoch, p)
    written = be.H[target].copy()  # type: ignore[union-attr]
    again = visit_block(be, visit, state.W, state.epoch, p)
    assert first[0].tobytes() == again[0].tobytes() and first[2] == again[2]
    assert be.H[target].tobytes() == written.tobytes()  # type: ignore[union-attr]
