"""The one boundary between the learner and where it runs: the ``Backend`` protocol.

A backend runs the visits of a step (:func:`dnmf.nmf.visit.visit_block`) and
returns their statistics summed in the fixed tree of
:func:`dnmf.nmf.plan.tree_sum`, checks and summarises V, and samples frames
(DESIGN.md section 4). :class:`MemoryBackend` does it on NumPy arrays in this
process (the estimators, the tests); :class:`DaskBackend` on a cluster, where
W is scattered once per step, one task per block runs the visit on the worker
(which opens the Zarr arrays itself; the client never pulls V), the
statistics are summed by tasks too, and only the root, O(n_bins · rank),
comes back, with the crc of each chunk of H the visits wrote (4 bytes a block,
:mod:`dnmf.io.buffers`). Each task pins BLAS to one thread, so a block's arithmetic is the
same on every worker; with the fixed tree the step is bitwise the same for
any number of workers, and after a retried task. Nothing else in dnmf's
learning and export code calls ``submit`` or ``scatter``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dnmf.io.blocks import absolute, open_array, read_checked
from dnmf.nmf.divergence import check_nonnegative
from dnmf.nmf.mask import MaskSpec, block_mask
from dnmf.nmf.plan import Visit, blocks_of, tree_sum
from dnmf.nmf.visit import StepStats, VisitParams, add_stats, add_step, visit_block, visit_task

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["Backend", "DaskBackend", "MemoryBackend", "sample_columns"]


class Backend(Protocol):
    """Runs the visits of a step and returns their tree-summed statistics."""

    n_bins: int
    n_frames: int
    dtype: Any

    def blocks(self) -> list[tuple[int, int]]: ...

    def summary(self) -> tuple[float, float]:
        """(sum, count) of V over the whole corpus, after checking it is valid."""
        ...

    def sample(self, n_frames: int, seed: int) -> np.ndarray: ...

    def step(
        self, visits: list[Visit], W: np.ndarray, epoch: int, p: VisitParams, tag: str
    ) -> StepStats:
        """The visits' (num, den, loss), tree-summed, and ``written``: rows (block, crc) of
        the activation chunks they wrote in a store (:mod:`dnmf.io.buffers`; none in
        process)."""
        ...

    def map_blocks(
        self, fn: Callable[..., Any], items: Sequence[Any], *args: Any, tag: str,
        progress: Callable[[Any], None] | None = None, **kwargs: Any,
    ) -> list[Any]:  # fmt: skip
        """``[fn(item, *args, **kwargs) for item in items]``, where the blocks live."""
        ...


def _pair(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return a[0] + b[0], a[1] + b[1]


class MemoryBackend:
    """V and both H buffers as NumPy arrays in this process.

    Parameters
    ----------
    V : ndarray of shape (n_bins, n_frames)
    block_frames : int
    M : ndarray of shape (n_bins, n_frames), optional
        Weights of the entries (bool or float, >= 0): a masked run. V may hold
        anything (NaN included) where ``M == 0``.
    mask : MaskSpec, optional
        The run's other mask sources (:mod:`dnmf.nmf.mask`); with ``M`` its
        ``store`` is this array.
    """

    def __init__(
        self, V: np.ndarray, block_frames: int, *, M: np.ndarray | None = None,
        mask: MaskSpec | None = None,
    ) -> None:  # fmt: skip
        self.V = V
        self.n_bins, self.n_frames = V.shape
        self.dtype = V.dtype
        self.block_frames = block_frames
        self.H: list[np.ndarray | None] = [None, None, None]
        self.M = M
        if M is not None:
            mask = MaskSpec(store="memory") if mask is None else replace(mask, store="memory")
        self.mask = mask

    def blocks(self) -> list[tuple[int, int]]:
        return blocks_of(self.n_frames, self.block_frames)

    # BlockIO
    def read_V(self, start: int, stop: int) -> np.ndarray:
        # Contiguous, as a block read from Zarr is: BLAS must see the same layout.
        return np.ascontiguousarray(self.V[:, start:stop])

    def read_H(self, buffer: int, start: int, stop: int) -> np.ndarray:
        H = self.H[buffer]
        assert H is not None
        return np.ascontiguousarray(H[:, start:stop])

    def read_M(self, start: int, stop: int) -> np.ndarray:
        assert self.M is not None
        return np.ascontiguousarray(self.M[:, start:stop])

    def write_H(self, buffer: int, start: int, stop: int, H: np.ndarray) -> None:
        if self.H[buffer] is None:
            self.H[buffer] = np.zeros((H.shape[0], self.n_frames), dtype=H.dtype)
        self.H[buffer][:, start:stop] = H  # type: ignore[index]

    def summary(self) -> tuple[float, float]:
        parts = []
        for b, (a, z) in enumerate(self.blocks()):
            parts.append(block_summary(self.read_V(a, z), b, a, self.mask, self.read_M, "block"))
        # The same per-block sums and tree as on a cluster: the init scale is bitwise the same.
        return tree_sum(parts, _pair)  # type: ignore[no-any-return]

    def sample(self, n_frames: int, seed: int) -> np.ndarray:
        if self.mask is None:
            return sample_columns(self.V, n_frames, seed)
        idx = sample_index(self.n_frames, n_frames, seed)
        return masked_columns(self.V[:, idx], idx, self.mask, self.M)

    def step(
        self, visits: list[Visit], W: np.ndarray, epoch: int, p: VisitParams, tag: str
    ) -> StepStats:
        from dnmf.cluster import one_blas_thread

        with one_blas_thread():  # as on a worker: the same arithmetic
            leaves = [visit_block(self, v, W, epoch, p) for v in visits]
        num, den, loss = tree_sum(leaves, add_stats)
        return num, den, loss, np.zeros((0, 2), dtype=np.int64)  # no store: nothing to record

    def map_blocks(
        self, fn: Callable[..., Any], items: Sequence[Any], *args: Any, tag: str,
        progress: Callable[[Any], None] | None = None, **kwargs: Any,
    ) -> list[Any]:  # fmt: skip
        out = []
        for item in items:
            out.append(_call_one_thread(fn, item, *args, **kwargs))
            if progress is not None:
                progress(out[-1])
        return out

    def activations(self, buffer: int) -> np.ndarray:
        """H in ``buffer`` (``LearnState.latest_buffer``: as the last completed epoch left it)."""
        H = self.H[buffer]
        assert H is not None
        return H


def block_summary(
    V: np.ndarray, b: int, a: int, mask: MaskSpec | None, read_M: Any, what: str
) -> tuple[float, float]:
    """(sum, count) of one block's V, checked; with a mask, over the entries it keeps (V may
    hold anything, NaN included, where the mask is 0)."""
    bm = block_mask(mask, V, a, a + V.shape[1], read_M)
    if bm is None:
        check_nonnegative(V, where=f"V of {what} {b}", frame_offset=a)
        return float(V.sum(dtype=np.float64)), float(V.size)
    keep = bm.dense(V.shape[0], np.float64) > 0
    Vk = np.where(keep, V, 0)
    check_nonnegative(Vk, where=f"V of {what} {b}", frame_offset=a)
    return float(Vk.sum(dtype=np.float64)), float(np.count_nonzero(keep))


def sample_index(total: int, n_frames: int, seed: int) -> np.ndarray:
    """The frames :func:`sample_columns` takes."""
    if total <= n_frames:
        return np.arange(total)
    return np.sort(np.random.default_rng([seed, 0x534D]).choice(total, n_frames, replace=False))


def masked_columns(V: np.ndarray, idx: np.ndarray, mask: MaskSpec, M: Any = None) -> np.ndarray:
    """Sampled columns ``V[:, idx]`` with the entries the mask removes set to 0 (frame by
    frame: the per-frame sources see the column alone; ``M`` is the stored mask, whose
    columns ``idx`` are read)."""
    stored = None if M is None or mask.store is None else np.asarray(M[:, idx])
    out = np.array(V, copy=True)
    for n, f in enumerate(idx):
        bm = block_mask(mask, out[:, n : n + 1], int(f), int(f) + 1,
                        (lambda a, z, n=n: stored[:, n : n + 1]) if stored is not None else None)  # type: ignore[index]  # fmt: skip
        if bm is not None:
            out[:, n : n + 1] = np.where(bm.dense(V.shape[0], np.float64) > 0, out[:, n : n + 1], 0)
    return out


def sample_columns(V: Any, n_frames: int, seed: int) -> np.ndarray:
    """Up to ``n_frames`` columns of V, chosen from ``seed``, in frame order."""
    total = V.shape[1]
    if total <= n_frames:
        return np.asarray(V[:, :])
    idx = np.sort(np.random.default_rng([seed, 0x534D]).choice(total, n_frames, replace=False))
    return np.asarray(V[:, idx])


def _summary_task(
    V_url: str, block: int, start: int, stop: int, mask: MaskSpec | None = None
) -> tuple[float, float]:
    V = read_checked(V_url, start, stop)
    read_M = None
    if mask is not None and mask.store:
        store = open_array(mask.store)

        def read_M(a: int, z: int) -> np.ndarray:
            return np.asarray(store[:, a:z])

    return block_summary(V, block, start, mask, read_M, "chunk")


def mask_count_task(item: tuple[int, int], V_url: str, mask: MaskSpec) -> dict[str, float]:
    """:func:`dnmf.nmf.mask.source_counts` of the frames ``item = (start, stop)`` of a
    Zarr V (for :func:`Backend.map_blocks`)."""
    from dnmf.nmf.mask import source_counts

    start, stop = item
    V = np.asarray(open_array(V_url)[:, start:stop])
    read_M = None
    if mask.store:
        store = open_array(mask.store)

        def read_M(a: int, z: int) -> np.ndarray:
            return np.asarray(store[:, a:z])

    return source_counts(mask, V, start, read_M)


def _sample_task(
    V_url: str, columns: np.ndarray, mask: MaskSpec | None, block: tuple[int, int]
) -> np.ndarray:
    """The sampled ``columns`` of the block ``(start, stop)`` of V, the whole block read
    through the worker's block cache, where the first epoch's visit finds it (the sample
    tasks run on the blocks' home workers)."""
    from dnmf.io.blocks import ZarrBlockIO

    V = ZarrBlockIO(V_url, "").read_V(*block)[:, columns - block[0]]
    if mask is None:
        return V
    M = None
    if mask.store:
        M = np.asarray(open_array(mask.store).get_orthogonal_selection((slice(None), columns)))
        return masked_columns(V, columns, mask, _Columns(M, columns))
    return masked_columns(V, columns, mask, M)


class _Columns:
    """A stored mask's sampled columns, indexed as :func:`masked_columns` indexes ``M``."""

    def __init__(self, M: np.ndarray, columns: np.ndarray) -> None:
        self.M, self.columns = M, columns

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.M


def _call_one_thread(fn: Callable[..., Any], item: Any, *args: Any, **kwargs: Any) -> Any:
    from dnmf.cluster import one_blas_thread

    with one_blas_thread():
        return fn(item, *args, **kwargs)


#: Times a step's graph is submitted before a cancellation is raised (:meth:`DaskBackend.step`).
STEP_ATTEMPTS = 3


class DaskBackend:
    """Blocks of a Zarr array ``V (n_bins, n_frames)`` visited by tasks on ``client``.

    Parameters
    ----------
    client : distributed.Client
    V_url : str
        Path (or URL) of the Zarr array of V, e.g. ``corpus.zarr/V``.
    H_url : str, optional
        Zarr group holding the buffers ``H0`` and ``H1``
        (:func:`dnmf.io.blocks.create_H_buffers`); learning needs them, export does not.
    block_frames : int
        Frames per block; should divide V's chunk along frames.
    n_frames : int, optional
        Frames of V to use (the corpus's committed extent); default all.
    mask : MaskSpec, optional
        A masked run's mask sources, computed per block on the workers
        (:mod:`dnmf.nmf.mask`); a stored mask by its (absolute) URL.
    """

    def __init__(
        self, client: Client, V_url: str, H_url: str = "", *, block_frames: int,
        n_frames: int | None = None, mask: MaskSpec | None = None,
    ) -> None:  # fmt: skip
        # Workers may run elsewhere, in another working directory: ship absolute paths.
        V_url, H_url = absolute(V_url), absolute(H_url) if H_url else ""
        V = open_array(V_url)
        self.client = client
        self.V_url, self.H_url = V_url, H_url
        self.n_bins = int(V.shape[0])
        self.n_frames = int(V.shape[1] if n_frames is None else n_frames)
        self.dtype = np.dtype(V.dtype)
        self.block_frames = block_frames
        from dask.base import tokenize

        if mask is not None and mask.store:
            mask = replace(mask, store=absolute(mask.store))
        if mask is not None and mask.corpus:
            mask = replace(mask, corpus=absolute(mask.corpus))
        self.mask = mask
        self.token = tokenize(V_url, H_url, block_frames, self.n_frames, mask)[:10]
        self._held: Any = None  # the last step's W on the cluster (see step)

    def blocks(self) -> list[tuple[int, int]]:
        return blocks_of(self.n_frames, self.block_frames)

    def _homes(self) -> Any:
        """Block -> the task annotations naming the worker it prefers, so that each worker's
        cache holds its share of V; none while the scheduler knows no worker.

        Contiguous runs of blocks per worker, from the workers present now,
        balanced by frames: a block goes to the worker whose share of the frames
        holds the block's middle (7 blocks, the last one short, on 2 workers: 3
        and 3 plus the short one, not 4 and 3). Only where a task runs depends
        on this, never what it computes; a worker that is gone or busy is passed
        over (``allow_other_workers``).
        """
        workers = sorted(self.client.scheduler_info(n_workers=-1)["workers"])
        if not workers:  # none connected yet (or all lost): anywhere will do
            return lambda b: {}
        ranges, n = self.blocks(), len(workers)
        total = ranges[-1][1]

        def home(b: int) -> dict[str, Any]:
            w = workers[min(n - 1, (ranges[b][0] + ranges[b][1]) * n // (2 * total))]
            return {"workers": [w], "allow_other_workers": True}

        return home

    def summary(self) -> tuple[float, float]:
        c = self.client
        leaves = [
            c.submit(
                _summary_task, self.V_url, b, a, z, self.mask, key=f"dnmf-check-{self.token}-{b}"
            )
            for b, (a, z) in enumerate(self.blocks())
        ]
        root = tree_sum(leaves, lambda x, y: c.submit(_pair, x, y, pure=False))
        return root.result()  # type: ignore[no-any-return]

    def sample(self, n_frames: int, seed: int) -> np.ndarray:
        total = self.n_frames
        if total <= n_frames:
            idx = np.arange(total)
        else:
            rng = np.random.default_rng([seed, 0x534D])
            idx = np.sort(rng.choice(total, n_frames, replace=False))
        parts, home = [], self._homes()
        for b, (a, z) in enumerate(self.blocks()):
            cols = idx[(idx >= a) & (idx < z)]
            if len(cols):
                parts.append(
                    self.client.submit(
                        _sample_task, self.V_url, cols, self.mask, (a, z),
                        key=f"dnmf-sample-{self.token}-{b}", **home(b),
                    )
                )  # fmt: skip
        return np.concatenate(self.client.gather(parts), axis=1)

    def step(
        self, visits: list[Visit], W: np.ndarray, epoch: int, p: VisitParams, tag: str
    ) -> StepStats:
        """One graph for the step: the visits, each preferring its block's home worker, and
        the fixed tree of sums; computed at once, and only its root comes back (with the
        crc of every chunk of H the visits wrote).

        A step whose graph the scheduler cancelled (a key forgotten while a lost
        worker's tasks were being moved) is submitted again under new keys: its
        tasks are idempotent, so the step's result is the same.
        """
        from concurrent.futures import CancelledError

        tags = [tag] + [f"{tag}-a{attempt}" for attempt in range(1, STEP_ATTEMPTS)]
        for again in tags[:-1]:
            try:
                return self._step_once(visits, W, epoch, p, again)
            except CancelledError:
                pass
        return self._step_once(visits, W, epoch, p, tags[-1])

    def _step_once(
        self, visits: list[Visit], W: np.ndarray, epoch: int, p: VisitParams, tag: str
    ) -> StepStats:
        from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

        c = self.client
        key = f"dnmf-{self.token}-{tag}"
        W_f = c.scatter({f"{key}-W": W}, broadcast=True)[f"{key}-W"]
        home = self._homes()
        # A layer per home worker: Dask annotates layers, not single tasks of one graph.
        layers: dict[str, dict[str, Any]] = {}
        annotations: dict[str, dict[str, Any]] = {}
        leaves = []
        for v in visits:
            where = home(v.block)
            name = f"{key}-visit-on-{where['workers'][0]}" if where else f"{key}-visit"
            leaf = f"{key}-visit-{v.block}"
            layers.setdefault(name, {})[leaf] = (
                visit_task, self.V_url, self.H_url, v, W_f, epoch, p,
            )  # fmt: skip
            annotations[name] = where
            leaves.append(leaf)
        sums: dict[str, Any] = {}

        def add(x: str, y: str) -> str:
            k = f"{key}-sum-{len(sums)}"
            sums[k] = (add_step, x, y)
            return k

        root = tree_sum(leaves, add)
        graph = {
            n: MaterializedLayer(d, annotations=annotations[n] or None) for n, d in layers.items()
        }
        deps: dict[str, set[str]] = {n: set() for n in layers}
        if sums:
            graph[f"{key}-sum"] = MaterializedLayer(sums)
            deps[f"{key}-sum"] = set(layers)
        future = c.get(HighLevelGraph(graph, deps), root, sync=False, retries=3)
        result: StepStats = future.result()
        # Held until the next step's graph is in: the scheduler then keeps one task group
        # (all keys of a run share one) and one span for the whole run, where a group and
        # a span that emptied between steps would be made anew, and the span kept, at
        # every step (benchmarks/longrun.py).
        self._held = W_f
        del W_f, future
        return result

    def map_blocks(
        self, fn: Callable[..., Any], items: Sequence[Any], *args: Any, tag: str,
        progress: Callable[[Any], None] | None = None, **kwargs: Any,
    ) -> list[Any]:  # fmt: skip
        """``fn(item, *args, **kwargs)`` for every item, one task each (BLAS on one thread).

        Array arguments are scattered once; results come back in the order of
        ``items``; ``progress(result)`` is called as each task finishes.
        """
        from distributed import as_completed

        c = self.client
        shipped = [c.scatter(a, broadcast=True, hash=False) if isinstance(a, np.ndarray) else a
                   for a in args]  # fmt: skip
        futures = [
            c.submit(_call_one_thread, fn, item, *shipped, key=f"dnmf-{tag}-{n}", retries=2,
                     **kwargs)
            for n, item in enumerate(items)
        ]  # fmt: skip
        index = {f.key: n for n, f in enumerate(futures)}
        out: list[Any] = [None] * len(futures)
        for fut in as_completed(futures):
            out[index[fut.key]] = fut.result()
            if progress is not None:
                progress(out[index[fut.key]])
        return out
