"""Long runs stay flat: the block cache past its budget, the cluster's settings, a soak run.

The cache tests are pure (no cluster); the settings tests use the session's
LocalCluster; the soak test (slow) runs many epochs on its own worker processes.
"""

from __future__ import annotations

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
