"""Long runs stay flat: the block cache past its budget, the cluster's settings, a soak run.

The cache tests are pure (no cluster); the settings tests use the session's
LocalCluster; the soak test (slow) runs many epochs on its own worker processes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dnmf.io.blocks import BlockCache

BLOCK = 1000  # bytes per block in the cache tests (uint8 arrays)


def scan(cache: BlockCache, keys: list[int], epochs: int, url: str = "V") -> list[float]:
    """Read ``keys`` in order ``epochs`` times; the hit rate of each epoch."""
    rates = []
    for _ in range(epochs):
        h0 = cache.hits
        for k in keys:
            got = cache.get((url, k, k + 1), lambda k=k: np.full(BLOCK, k % 251, dtype=np.uint8))
            assert got[0] == k % 251
        rates.append((cache.hits - h0) / len(keys))
    return rates


@pytest.mark.parametrize(("share", "budget"), [(30, 10), (12, 4), (7, 2)])
def test_cyclic_scan_past_the_budget_hits_budget_over_share(share: int, budget: int) -> None:
    cache = BlockCache(budget * BLOCK)
    rates = scan(cache, list(range(share)), 6)
    assert rates[0] == 0.0
    assert rates[1:] == [budget / share] * 5  # a fixed set of blocks stays
    assert cache.used <= cache.budget
    assert cache.stats()["evicted"] == 0


def test_lru_under_the_same_scan_misses_every_time() -> None:
    """What the issue measured: LRU under a cyclic scan larger than itself."""
    cache = BlockCache(10 * BLOCK, policy="lru")
    assert scan(cache, list(range(30)), 4) == [0.0] * 4


def test_share_within_the_budget_is_read_once() -> None:
    cache = BlockCache(20 * BLOCK)
    assert scan(cache, list(range(15)), 4) == [0.0, 1.0, 1.0, 1.0]
    assert cache.stats()["misses"] == 15


def test_blocks_no_longer_read_give_way_after_a_few_passes() -> None:
    """A worker that cached another corpus: the new blocks replace the old ones."""
    cache = BlockCache(10 * BLOCK)
    scan(cache, list(range(10)), 3, url="old")
    rates = scan(cache, list(range(5)), 8, url="new")
    assert rates[0] == 0.0 and rates[-1] == 1.0
    held = {k[0] for k in cache._items}
    assert held == {"old", "new"} and cache.used <= cache.budget
    # A share of the new corpus larger than the budget takes the whole cache.
    rates = scan(cache, list(range(100, 130)), 10, url="new")
    assert rates[-1] == pytest.approx(10 / 30)
    assert {k[0] for k in cache._items} == {"new"}


def test_random_order_hits_about_budget_over_share() -> None:
    """Minibatch epochs visit blocks in a new permutation each time: ~budget/share, as LRU."""
    rng = np.random.default_rng(0)
    cache = BlockCache(10 * BLOCK)
    lru = BlockCache(10 * BLOCK, policy="lru")
    rates, lru_rates = [], []
    for _ in range(40):
        order = list(rng.permutation(30))
        rates += scan(cache, order, 1)
        lru_rates += scan(lru, order, 1)
    assert np.mean(rates[5:]) == pytest.approx(1 / 3, abs=0.08)
    assert np.mean(lru_rates[5:]) < 0.15


def test_a_block_larger_than_the_budget_is_not_kept() -> None:
    cache = BlockCache(BLOCK // 2)
    scan(cache, [1, 2], 2)
    assert cache.used == 0 and cache.stats()["blocks"] == 0


def test_cached_blocks_are_read_only() -> None:
    cache = BlockCache(4 * BLOCK)
    a = cache.get(("V", 0, 1), lambda: np.zeros(BLOCK, dtype=np.uint8))
    with pytest.raises(ValueError, match="read-only"):
        a[0] = 1


def test_unknown_policy_says_which_exist() -> None:
    with pytest.raises(ValueError, match="'keep' or 'lru'"):
        BlockCache(1, policy="lfu")


def test_history_is_bounded() -> None:
    cache = BlockCache(2 * BLOCK)
    cache.HISTORY = 50
    scan(cache, list(range(200)), 1)
    assert len(cache._asked) == 50


# -- the clusters dnmf starts ------------------------------------------------------------------
def _profiling(dask_worker: Any = None) -> bool:
    return "profile" in dask_worker.periodic_callbacks  # type: ignore[union-attr]


def _scheduler_logs(dask_scheduler: Any = None) -> list[int | None]:
    s = dask_scheduler
    streams = [*s.stream_comms.values(), *s.client_comms.values()]
    return [s.transition_log.maxlen, *(b.recent_message_log.maxlen for b in streams)]


def _spans(dask_scheduler: Any = None) -> int:
    return len(dask_scheduler.extensions["spans"].spans)  # type: ignore[union-attr]


def test_local_workers_run_no_profiler_and_keep_short_logs(cluster_client: Any) -> None:
    from dnmf.cluster import LOG_LENGTH

    assert cluster_client.run(_profiling) and not any(cluster_client.run(_profiling).values())
    assert set(cluster_client.run_on_scheduler(_scheduler_logs)) == {LOG_LENGTH}
    assert cluster_client.scheduler_comm.recent_message_log.maxlen == LOG_LENGTH


def test_the_profiler_can_be_asked_for() -> None:
    from dnmf.cluster import connect

    with connect(workers=1, processes=False, profile=True) as client:
        assert all(client.run(_profiling).values())


def synthetic_corpus(path: Path, n_bins: int, n_frames: int, chunk: int, seed: int = 0) -> Path:
    """A corpus store holding a random low-rank V directly (no audio)."""
    from dnmf.audio.features import FeatureConfig
    from dnmf.io.corpus import CorpusStore, FileRecord

    rng = np.random.default_rng(seed)
    V = (rng.random((n_bins, 4)) @ rng.random((4, n_frames)) + 0.01).astype(np.float32)
    store = CorpusStore.create(
        path, FeatureConfig(n_fft=2 * (n_bins - 1), hop_length=16), chunk_frames=chunk,
        source="synthetic",
    )  # fmt: skip
    store.resize_frames(n_frames)
    store.V[:] = V
    store.commit([FileRecord("x.wav", "h", 0, n_frames)], n_frames, {"synthetic": True})
    return path


def test_one_span_per_run_however_many_steps(tmp_path: Path, cluster_client: Any) -> None:
    """The scheduler keeps a span per burst of tasks: a run's steps must share one."""
    from dnmf.nmf.config import LearnConfig
    from pipelines.learn import learn_corpus

    corpus = synthetic_corpus(tmp_path / "c.zarr", 17, 500, 100)
    seen: list[int] = []

    def on_step(p: Any) -> None:
        seen.append(cluster_client.run_on_scheduler(_spans))

    cfg = LearnConfig(rank=3, epochs=8, tol=0)
    learn_corpus(corpus, tmp_path / "m.zarr", config=cfg, client=cluster_client, on_step=on_step)
    assert len(seen) == 8 and seen[-1] == seen[0]


# -- soak ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_soak_many_epochs_on_worker_processes_without_a_restart(tmp_path: Path) -> None:
    """Hundreds of steps on two worker processes: no worker restarts, nothing on the
    scheduler or in the client grows with the steps, every epoch's loss is finite."""
    import gc
    import os

    from dnmf.cluster import LOG_LENGTH, connect
    from dnmf.nmf.config import LearnConfig
    from pipelines.learn import learn_corpus

    corpus = synthetic_corpus(tmp_path / "c.zarr", 129, 8 * 512, 512)
    epochs = 500
    seen: dict[int, tuple[int, int, int]] = {}
    with connect(workers=2) as client:
        pids = client.run(os.getpid)
        scheduler = client.cluster.scheduler  # type: ignore[union-attr]

        def on_step(p: Any) -> None:
            if p.epoch_done and p.epoch in (100, epochs - 1):
                gc.collect()
                seen[p.epoch] = (len(gc.get_objects()), _spans(scheduler), len(scheduler.tasks))

        cfg = LearnConfig(rank=8, beta=1, epochs=epochs, batch_chunks=4, n_inner=2, tol=0)
        result = learn_corpus(
            corpus, tmp_path / "m.zarr", config=cfg, client=client, on_step=on_step
        )
        assert client.run(os.getpid) == pids  # the same two processes: none died or restarted
        assert not any(client.run(_profiling).values())
        logs = client.run_on_scheduler(_scheduler_logs)
    assert result.epochs == epochs and np.isfinite(result.losses).all()
    assert result.losses[-1] < result.losses[0]
    (o0, s0, t0), (o1, s1, t1) = seen[100], seen[epochs - 1]
    assert s1 == s0 and t1 == t0  # one span for the run; no task left behind per step
    # 800 steps later: at most the scheduler's last 100 computations (Dask's bound) and
    # the fixed-length logs have filled; what grew per step would be thousands of objects.
    assert o1 - o0 < 1500, (o0, o1)
    assert set(logs) == {LOG_LENGTH}
