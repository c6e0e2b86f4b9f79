"""Block I/O on workers: V read from the corpus store (through a per-process cache),
the activation buffers ``H0``, ``H1`` (``H2``) read and written in the model store,
each chunk checked against its record (:mod:`dnmf.io.records`, :mod:`dnmf.io.buffers`).

A worker opens the Zarr arrays itself from a path or URL; nothing here knows
Dask. The learner's visits (:mod:`dnmf.nmf.visit`) read and write through
:class:`ZarrBlockIO`.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import zarr

__all__ = [
    "ActivationCache",
    "BlockCache",
    "ZarrBlockIO",
    "absolute",
    "activation_cache",
    "block_cache",
    "create_H_buffers",
    "open_array",
    "read_checked",
    "set_block_cache",
]


def absolute(url: str) -> str:
    return url if "://" in url else os.path.abspath(url)


#: ``(url, mode) -> (the zarr.json it was opened from, the handle)``: :func:`open_array`.
_handles: dict[tuple[str, str], tuple[bytes, Any]] = {}
#: Handles kept per process (a worker's visits open a few arrays, again every step).
HANDLES = 64


def open_array(url: str, mode: str = "r") -> Any:
    """The Zarr array at ``url``, opened ``"r"`` or ``"r+"``.

    An array on a local path is opened once per process and its handle reused
    while its ``zarr.json`` holds the same bytes (one small read, where opening
    parses the document and builds the codec pipeline again: 40 % of a visit's
    time on the small chunks of ``benchmarks/step_overhead.py``). A handle
    depends on nothing but that document, so a store rewritten, resized or
    replaced at the same path is opened anew.
    """
    if "://" in url or mode not in ("r", "r+"):
        return _open(url, mode)
    try:
        doc = Path(url, "zarr.json").read_bytes()
    except OSError:  # not there (or not readable): Zarr says so in its own words
        return _open(url, mode)
    hit = _handles.get((url, mode))
    if hit is not None and hit[0] == doc:
        return hit[1]
    arr = _open(url, mode)
    if len(_handles) >= HANDLES:
        _handles.pop(next(iter(_handles)))
    _handles[url, mode] = (doc, arr)
    return arr


def _open(url: str, mode: str) -> Any:
    return zarr.open_array(url, mode=mode, zarr_format=3, use_consolidated=False)  # type: ignore[arg-type]


class BlockCache:
    """Blocks of V kept in a worker process between epochs, within a budget of bytes.

    Reading a 1025 x 8192 float32 chunk through Zarr took half as long as the
    chunk's whole update (28 ms against 58 ms); a corpus that fits in the
    workers' memory is read once. Blocks are pinned to workers (see
    :meth:`DaskBackend.step`), so each worker holds its share only. Cached
    arrays are read-only; the budget is ``DNMF_CACHE_MB`` (MiB per worker
    process; 0 turns the cache off), by default a quarter of the machine's
    memory shared among its CPUs.

    When a worker's share is larger than its budget, the visits still read
    the share in the same cyclic order every epoch, under which a least
    recently used cache misses every time. The default ``policy="keep"`` is
    scan-resistant instead: a block that misses takes the place of the least
    recently used one only if that one looks stale, unused for more than
    ``STALE`` times the newcomer's own interval between its last two requests
    (a block never asked for before takes no one's place). Under a cyclic
    scan every cached block comes back as often as any other, so nothing is
    stale: the cache keeps a fixed set of blocks and the hit rate is
    budget / share, where LRU's is zero. Under the random order of minibatch
    epochs it stays near budget / share too (0.29 against LRU's 0.06 for a
    share of 3 budgets, simulated). Blocks no longer read (another corpus,
    another run on the same worker) give way after about ``STALE`` passes over
    the new ones. ``policy="lru"`` is the plain least-recently-used rule.

    Parameters
    ----------
    budget : int
        Bytes the cache may hold.
    policy : {"keep", "lru"}
    """

    #: Keys whose last request is remembered (cached or not), at most.
    HISTORY = 1 << 16
    #: A cached block is stale, and may give way, once unused for this many times the
    #: newcomer's interval between requests (4: the best of 1-8 in simulated cyclic and
    #: random epochs; larger ones replace old blocks more slowly).
    STALE = 4

    def __init__(self, budget: int, *, policy: str = "keep") -> None:
        from collections import OrderedDict

        if policy not in ("keep", "lru"):
            raise ValueError(f"policy={policy!r} is not a cache policy; pass 'keep' or 'lru'")
        self.budget = budget
        self.policy = policy
        self.used = 0
        self._items: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()  # LRU first
        self._used_at: dict[tuple[str, int, int], int] = {}  # cached key -> tick of last use
        self._asked: OrderedDict[tuple[str, int, int], int] = OrderedDict()  # key -> last request
        self._tick = 0
        self.reset_stats()

    @staticmethod
    def default_budget() -> int:
        env = os.environ.get(CACHE_ENV)
        if env is not None:
            return max(0, int(float(env) * 2**20))
        import psutil

        return int(psutil.virtual_memory().total // 4 // max(1, os.cpu_count() or 1))

    def reset_stats(self) -> None:
        """Zero the counters of :meth:`stats` (the cached blocks stay)."""
        self.hits = self.misses = self.rejected = self.evicted = 0
        self.read_seconds = 0.0

    def stats(self) -> dict[str, float]:
        """Hits, misses, misses not cached (``rejected``), evictions, bytes and blocks held,
        and the seconds spent reading the blocks that missed."""
        return {
            "hits": self.hits, "misses": self.misses, "rejected": self.rejected,
            "evicted": self.evicted, "used": self.used, "budget": self.budget,
            "blocks": len(self._items), "read_seconds": self.read_seconds,
        }  # fmt: skip

    def get(self, key: tuple[str, int, int], read: Any) -> np.ndarray:
        """The block ``key``, cached or from ``read()`` (then cached if the policy lets it)."""
        self._tick += 1
        previous = self._asked.pop(key, None)
        self._asked[key] = self._tick
        if len(self._asked) > self.HISTORY:
            self._asked.popitem(last=False)
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            self._used_at[key] = self._tick
            self.hits += 1
            return hit
        self.misses += 1
        t0 = time.perf_counter()
        value = np.ascontiguousarray(read())
        self.read_seconds += time.perf_counter() - t0
        if value.nbytes > self.budget:
            return value
        interval = None if previous is None else self._tick - previous
        victims = self._victims(value.nbytes, interval)
        if victims is None:
            self.rejected += 1
            return value
        for old in victims:
            self.used -= self._items.pop(old).nbytes
            del self._used_at[old]
        self.evicted += len(victims)
        value.setflags(write=False)
        self._items[key] = value
        self._used_at[key] = self._tick
        self.used += value.nbytes
        return value

    def _victims(self, nbytes: int, interval: int | None) -> list[tuple[str, int, int]] | None:
        """The cached keys to drop for ``nbytes`` more, least recently used first; None: keep all.

        ``interval`` is the newcomer's ticks since its last request (None: never asked for).
        """
        need = self.used + nbytes - self.budget
        out: list[tuple[str, int, int]] = []
        for old, value in self._items.items():
            if need <= 0:
                break
            if self.policy == "keep" and (
                interval is None or self._tick - self._used_at[old] <= self.STALE * interval
            ):
                return None  # not stale: what is cached stays
            out.append(old)
            need -= value.nbytes
        return out


CACHE_ENV = "DNMF_CACHE_MB"
_cache: BlockCache | None = None


def block_cache() -> BlockCache:
    """This process's :class:`BlockCache`."""
    global _cache
    if _cache is None:
        _cache = BlockCache(BlockCache.default_budget())
    return _cache


def set_block_cache(cache: BlockCache | None) -> None:
    """Replace this process's cache (None: a default one on next use); for tests and benchmarks."""
    global _cache
    _cache = cache


def read_checked(url: str, start: int, stop: int, array: Any = None) -> np.ndarray:
    """Frames ``[start, stop)`` of the Zarr array at ``url`` (``<store>/<name>``), every
    chunk read checked against the store's records (:mod:`dnmf.io.records`)."""
    from dnmf.io.checked import read_frames
    from dnmf.io.records import load_records

    store, _, name = url.rstrip("/").rpartition("/")
    arr = open_array(url) if array is None else array
    return read_frames(arr, load_records(store, name), start, stop)


class ZarrBlockIO:
    """A worker's view of one block: ``V`` from the corpus, ``H0``/``H1`` in the model store,
    and the weights ``M`` of a user mask store aligned with V (``M_url``), if any.

    Each chunk of V read is checked against the corpus's records, and each chunk of
    H named in ``expect`` against the crc its writer returned: a missing,
    truncated or altered chunk raises :class:`~dnmf.errors.StoreDamagedError`
    naming it, never a block of zeros. Each write of H notes the crc of what it
    wrote in ``written``, for the visit to return with its statistics.
    """

    def __init__(
        self, V_url: str, H_url: str, M_url: str = "",
        expect: dict[tuple[int, int], int] | None = None,
    ) -> None:  # fmt: skip
        self.V_url, self.H_url, self.M_url = V_url, H_url, M_url
        self._V: Any = None
        self._M: Any = None
        self._H: dict[int, Any] = {}
        #: (buffer, chunk) -> the crc its writer recorded: checked when read
        #: (:mod:`dnmf.io.buffers`); a chunk not named here is read unchecked.
        self.expect = expect or {}
        #: chunk -> the crc of what :meth:`write_H` wrote there (-1: written in part).
        self.written: dict[int, int] = {}

    def read_M(self, start: int, stop: int) -> np.ndarray:
        """The mask store's frames ``[start, stop)`` (through the block cache, as V)."""

        def read() -> np.ndarray:
            if self._M is None:
                self._M = open_array(self.M_url)
            return np.asarray(self._M[:, start:stop])

        return block_cache().get((self.M_url, start, stop), read)

    def read_V(self, start: int, stop: int) -> np.ndarray:
        def read() -> np.ndarray:
            if self._V is None:
                self._V = open_array(self.V_url)
            return read_checked(self.V_url, start, stop, self._V)

        return block_cache().get((self.V_url, start, stop), read)

    def _buffer(self, buffer: int) -> Any:
        if buffer not in self._H:
            self._H[buffer] = open_array(f"{self.H_url}/H{buffer}", mode="r+")
        return self._H[buffer]

    def read_H(self, buffer: int, start: int, stop: int) -> np.ndarray:
        expect = {j: crc for (b, j), crc in self.expect.items() if b == buffer}
        held = activation_cache().get((self.H_url, buffer, start, stop), expect)
        if held is not None:
            return held
        arr = self._buffer(buffer)
        if not expect:
            return np.asarray(arr[:, start:stop])
        from dnmf.io.buffers import read_buffer_checked

        return read_buffer_checked(arr, self.H_url, buffer, start, stop, expect)

    def write_H(self, buffer: int, start: int, stop: int, H: np.ndarray) -> None:
        from dnmf.io.buffers import written_crc

        arr = self._buffer(buffer)
        data = np.ascontiguousarray(H, dtype=arr.dtype)  # what the chunk will hold
        arr[:, start:stop] = data
        crcs = written_crc(arr, start, stop, data)
        self.written.update(crcs)
        activation_cache().put((self.H_url, buffer, start, stop), crcs, data)


class ActivationCache:
    """The activations a worker process wrote last, kept for its next visit to the block.

    A visit reads its block's H from one or two buffers that this worker
    process most likely wrote itself in the last epochs (blocks have home
    workers). An entry is the block's values and the crc of each chunk they
    filled, as returned to the client; a read is served from memory only when
    every chunk's crc is the one the visit expects (the checkpoint's record of
    what the store holds), so a block rewritten elsewhere (a retried task on
    another worker, another run) or written in part is read from the store.
    The values are then those the store holds, and the read skips Zarr and the
    crc of the chunk. The budget is half the block cache's (:class:`BlockCache`):
    the activations are ``rank / n_bins`` of V per buffer.
    """

    def __init__(self, budget: int) -> None:
        from collections import OrderedDict

        self.budget = budget
        self.used = 0
        self._items: OrderedDict[tuple[str, int, int, int], tuple[dict[int, int], np.ndarray]]
        self._items = OrderedDict()
        self.hits = self.misses = 0

    def put(self, key: tuple[str, int, int, int], crcs: dict[int, int], H: np.ndarray) -> None:
        """Keep a copy of ``H``, written at ``key`` with the chunks' ``crcs`` (chunk -> crc)."""
        old = self._items.pop(key, None)
        if old is not None:
            self.used -= old[1].nbytes
        if H.nbytes > self.budget or not crcs or min(crcs.values()) < 0:
            return  # too big, or a chunk written in part: its crc is not known here
        while self._items and self.used + H.nbytes > self.budget:
            self.used -= self._items.popitem(last=False)[1][1].nbytes
        self._items[key] = (crcs, H.copy())
        self.used += H.nbytes

    def get(self, key: tuple[str, int, int, int], expect: dict[int, int]) -> np.ndarray | None:
        """A copy of the values written at ``key`` if every chunk's crc is as ``expect``
        (chunk -> crc) says; None otherwise."""
        hit = self._items.get(key)
        if hit is None or any(expect.get(j) != crc for j, crc in hit[0].items()):
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return hit[1].copy()


_activations: ActivationCache | None = None


def activation_cache() -> ActivationCache:
    """This process's :class:`ActivationCache`."""
    global _activations
    if _activations is None:
        _activations = ActivationCache(BlockCache.default_budget() // 2)
    return _activations


def create_H_buffers(
    H_url: str, rank: int, n_frames: int, block_frames: int, dtype: Any, *, overwrite: bool = False,
    n_buffers: int = 2,
) -> None:  # fmt: skip
    """The activation buffers (two, or three for the fast schedule), one block per chunk
    (each block has one writer)."""
    group = zarr.open_group(H_url, mode="a", zarr_format=3)
    for b in range(n_buffers):
        name = f"H{b}"
        if name in group and not overwrite:
            continue
        group.create_array(
            name, shape=(rank, n_frames), chunks=(rank, block_frames), dtype=dtype,
            dimension_names=("component", "frame"), compressors=None, fill_value=0.0,
            overwrite=True,
        )  # fmt: skip
