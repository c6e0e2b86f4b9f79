"""The learner's backend on a Dask cluster: V in a Zarr store, H buffers in the model store.

Per step: W is scattered once, one task per block runs :func:`dnmf.nmf.learner.visit_block`
on the worker (which opens the Zarr arrays itself; the client never pulls V),
the (num, den, loss) of the blocks are summed in the fixed tree of
:func:`dnmf.nmf.learner.tree_sum` by tasks too, and only the root, O(n_bins · rank),
comes back. Each task pins BLAS to one thread, so a block's arithmetic is the
same on every worker; with the fixed tree the step is bitwise the same for
any number of workers, and after a retried task.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dnmf.io.blocks import ZarrBlockIO, absolute, open_array
from dnmf.nmf.learner import Stats, VisitParams, add_stats, blocks_of, tree_sum, visit_block

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["DaskBackend"]


# -- tasks ---------------------------------------------------------------------------
def _visit_task(
    V_url: str, H_url: str, block: int, start: int, stop: int, W: np.ndarray, epoch: int,
    scale: np.ndarray | None, fresh: bool, p: VisitParams,
) -> Stats:  # fmt: skip
    from dnmf.cluster import one_blas_thread

    with one_blas_thread():
        return visit_block(ZarrBlockIO(V_url, H_url), block, start, stop, W, epoch, scale, fresh, p)


def _summary_task(V_url: str, block: int, start: int, stop: int) -> tuple[float, float]:
    from dnmf.nmf.kernels import check_nonnegative

    V = np.asarray(open_array(V_url)[:, start:stop])
    check_nonnegative(V, where=f"V of chunk {block}", frame_offset=start)
    return float(V.sum(dtype=np.float64)), float(V.size)


def _add_pair(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return a[0] + b[0], a[1] + b[1]


def _sample_task(V_url: str, columns: np.ndarray) -> np.ndarray:
    return np.asarray(open_array(V_url).get_orthogonal_selection((slice(None), columns)))


class DaskBackend:
    """Blocks of a Zarr array ``V (n_bins, n_frames)`` visited by tasks on ``client``.

    Parameters
    ----------
    client : distributed.Client
    V_url : str
        Path (or URL) of the Zarr array of V, e.g. ``corpus.zarr/V``.
    H_url : str
        Zarr group holding the buffers ``H0`` and ``H1`` (see :func:`create_H_buffers`).
    block_frames : int
        Frames per block; should divide V's chunk along frames.
    n_frames : int, optional
        Frames of V to use (the corpus's committed extent); default all.
    """

    def __init__(
        self, client: Client, V_url: str, H_url: str, *, block_frames: int,
        n_frames: int | None = None,
    ) -> None:  # fmt: skip
        # Workers may run elsewhere, in another working directory: ship absolute paths.
        V_url, H_url = absolute(V_url), absolute(H_url)
        V = open_array(V_url)
        self.client = client
        self.V_url, self.H_url = V_url, H_url
        self.n_bins = int(V.shape[0])
        self.n_frames = int(V.shape[1] if n_frames is None else n_frames)
        self.dtype = np.dtype(V.dtype)
        self.block_frames = block_frames
        from dask.base import tokenize

        self.token = tokenize(V_url, H_url, block_frames, self.n_frames)[:10]

    def blocks(self) -> list[tuple[int, int]]:
        return blocks_of(self.n_frames, self.block_frames)

    def _homes(self) -> Any:
        """Block -> ``submit`` options naming the worker it prefers, so that each worker's
        cache holds its share of V; no options while the scheduler knows no worker.

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
            c.submit(_summary_task, self.V_url, b, a, z, key=f"dnmf-check-{self.token}-{b}")
            for b, (a, z) in enumerate(self.blocks())
        ]
        root = tree_sum(leaves, lambda x, y: c.submit(_add_pair, x, y, pure=False))
        return root.result()  # type: ignore[no-any-return]

    def sample(self, n_frames: int, seed: int) -> np.ndarray:
        total = self.n_frames
        if total <= n_frames:
            idx = np.arange(total)
        else:
            rng = np.random.default_rng([seed, 0x534D])
            idx = np.sort(rng.choice(total, n_frames, replace=False))
        parts = []
        for b, (a, z) in enumerate(self.blocks()):
            cols = idx[(idx >= a) & (idx < z)]
            if len(cols):
                parts.append(
                    self.client.submit(
                        _sample_task, self.V_url, cols, key=f"dnmf-sample-{self.token}-{b}"
                    )
                )
        return np.concatenate(self.client.gather(parts), axis=1)

    def step(
        self, blocks: list[int], W: np.ndarray, epoch: int, scales: dict[int, np.ndarray | None],
        fresh: set[int], p: VisitParams, tag: str,
    ) -> Stats:  # fmt: skip
        c = self.client
        ranges = self.blocks()
        W_f = c.scatter(W, broadcast=True, hash=False)
        key = f"dnmf-{self.token}-{tag}"
        home = self._homes()
        leaves = [
            c.submit(
                _visit_task, self.V_url, self.H_url, b, *ranges[b], W_f, epoch, scales.get(b),
                b in fresh, p, key=f"{key}-visit-{b}", retries=3, **home(b),
            )
            for b in blocks
        ]  # fmt: skip
        counter = iter(range(len(leaves)))
        root = tree_sum(
            leaves,
            lambda x, y: c.submit(add_stats, x, y, key=f"{key}-sum-{next(counter)}", retries=3),
        )
        result: Stats = root.result()
        del W_f, leaves, root
        return result
