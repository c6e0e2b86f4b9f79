"""Safety net of the single learner: at ``lags = 1`` it is bitwise the NMF it replaced.

The reference is the plain NMF learner as it was before NMF and NMFD became one
(``tests/reference_v0``, frozen). The learner of today must give the same bytes
of ``W`` and of the final ``H`` for every β, full batch and minibatch, in process
and on a cluster of 1 and of 2 workers.

One change since is deliberate: online accumulators start from the current
dictionary (scikit-learn's ``A = W^(1/γ)``, ``B = 1``) instead of the first
step's statistics, which zeroed for good every entry that step saw no energy
for. The ``online`` schedule holds the reference to that start (a patch of its
``accumulate``, nothing else); ``minibatch`` (ρ = 0) and ``full`` are the
reference untouched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from reference_v0 import learn as v0

from dnmf.audio.features import FeatureConfig
from dnmf.cluster import connect
from dnmf.io.corpus import CorpusStore, FileRecord
from dnmf.io.model import ModelStore
from dnmf.nmf.config import LearnConfig
from dnmf.nmf.learner import fit_in_memory
from pipelines.learn import learn_corpus

BETAS = [0.0, 0.5, 1.0, 2.0]
SCHEDULES = {
    "full": {},
    "minibatch": {"batch_chunks": 3, "n_inner": 2, "forget_factor": 0.0},
    "online": {"batch_chunks": 3, "n_inner": 2, "forget_factor": 0.7},
}


def _accumulate_from_the_dictionary(state, W, num, d, *, beta, rho):  # type: ignore[no-untyped-def]
    """The reference's ``accumulate`` with scikit-learn's start of the accumulators."""
    g = _gamma(beta)
    d[d == 0] = np.finfo(np.float32).eps
    W_g = W ** (1.0 / g) if g != 1 else W
    if state.A is None or state.B is None:
        state.A, state.B = np.array(W_g, dtype=np.float64), np.ones_like(W, dtype=np.float64)
    state.A = rho * state.A + num * W_g
    state.B = rho * state.B + d
    W_new = state.A / state.B
    if g != 1:
        W_new **= g
    if beta <= 1:
        W_new[W_new < np.finfo(np.float64).eps] = 0.0
    return W_new


def _gamma(beta: float) -> float:
    from reference_v0.kernels import gamma

    return gamma(beta)


def _data() -> np.ndarray:
    rng = np.random.default_rng(11)
    V = rng.random((33, 4)) @ rng.random((4, 700)) + 0.01 * rng.random((33, 700))
    V[:, 250:260] = 0.0  # silent frames
    return V.astype(np.float32)


def _reference(V: np.ndarray, options: dict) -> tuple[np.ndarray, np.ndarray]:
    cfg = v0.LearnConfig(**options)
    be = v0.MemoryBackend(V, 100)
    saved = v0.accumulate
    v0.accumulate = _accumulate_from_the_dictionary  # the one deliberate change (see above)
    try:
        state = v0.learn(cfg, be, v0.start_state(cfg, be))
    finally:
        v0.accumulate = saved
    scale = np.repeat(state.pending, 100, axis=0)[: V.shape[1]].T
    return state.W, be.activations(state.epoch) * scale


def _options(beta: float, schedule: str) -> dict:
    return dict(rank=4, beta=beta, epochs=6, tol=0, seed=3, **SCHEDULES[schedule])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lags1") / "corpus.zarr"
    V = _data()
    store = CorpusStore.create(
        path, FeatureConfig(n_fft=64, hop_length=16), chunk_frames=100, source="synthetic"
    )
    store.resize_frames(V.shape[1])
    store.V[:] = V
    store.commit([FileRecord("x.wav", "h", 0, V.shape[1])], V.shape[1], {"synthetic": True})
    return path


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("beta", BETAS)
def test_in_process_equals_the_old_nmf_bitwise(beta: float, schedule: str) -> None:
    V = _data()
    W_ref, H_ref = _reference(V, _options(beta, schedule))
    fit = fit_in_memory(
        V, LearnConfig(**_options(beta, schedule), schedule="full", solver="mu"), block_frames=100
    )
    assert fit.W.shape == W_ref.shape  # a one-lag model is (bin, component) outside
    assert fit.W.tobytes() == W_ref.tobytes()
    assert fit.H.tobytes() == H_ref.astype(np.float32).tobytes()


def _on_a_cluster() -> list[object]:
    """Every beta and schedule; by default each beta once, with the schedules in turn
    (the in-process test above takes every pair; the rest run with -m slow)."""
    names = list(SCHEDULES)
    return [
        pytest.param(b, s, marks=() if names.index(s) == i % len(names) else pytest.mark.slow)
        for i, b in enumerate(BETAS)
        for s in names
    ]


@pytest.mark.parametrize(("beta", "schedule"), _on_a_cluster())
def test_one_and_two_workers_equal_the_old_nmf_bitwise(
    beta: float, schedule: str, corpus: Path, tmp_path: Path, cluster_client: object
) -> None:
    W_ref, H_ref = _reference(_data(), _options(beta, schedule))
    cfg = LearnConfig(**_options(beta, schedule), schedule="full", solver="mu")
    with connect(workers=1, processes=False) as one:
        learn_corpus(corpus, tmp_path / "one.zarr", config=cfg, client=one)
    learn_corpus(corpus, tmp_path / "two.zarr", config=cfg, client=cluster_client)
    for name in ("one", "two"):
        model = ModelStore.open(tmp_path / f"{name}.zarr")
        assert model.W.tobytes() == W_ref.tobytes(), name
        assert model.activations().tobytes() == H_ref.tobytes(), name
