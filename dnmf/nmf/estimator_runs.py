"""Where :class:`dnmf.NMF` runs its learner: in this process or on a Dask cluster.

The estimator (:mod:`dnmf.nmf.estimator`) speaks scikit-learn; these are the
runs under it. :class:`MemoryRun` holds ``V`` in a
:class:`~dnmf.backends.MemoryBackend`; :class:`DaskRun` writes a Dask ``X``
once, as ``V = X.T``, to a temporary Zarr store that the workers of a
:class:`~dnmf.backends.DaskBackend` read. Both compute scikit-learn's error
block by block on their backend, and share the learner's steps.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import TYPE_CHECKING, Any

import numpy as np

from dnmf.backends import MemoryBackend
from dnmf.nmf.config import LearnConfig
from dnmf.nmf.divergence import beta_divergence
from dnmf.nmf.init import RandomH
from dnmf.nmf.kernels import update_H
from dnmf.nmf.learner import learn, loss_to_error, run_step, start_state, visit_params
from dnmf.nmf.plan import tree_sum
from dnmf.nmf.state import LearnState
from dnmf.nmf.visit import block_loss

if TYPE_CHECKING:
    from distributed import Client

#: scikit-learn's ``_fit_multiplicative_update`` tests convergence every this many
#: iterations (epochs here), on the error of the current factors.
CHECK_EVERY = 10


# -- where the learner runs ----------------------------------------------------------------
class Stream:
    """What :meth:`NMF.partial_fit` carries between calls: config, W and the accumulators."""

    def __init__(
        self, cfg: LearnConfig, W: np.ndarray, A: np.ndarray | None, B: np.ndarray | None
    ) -> None:
        self.cfg, self.W, self.A, self.B = cfg, W, A, B


Seeded = tuple[int, float] | None  # (seed, avg) of the seeded activations, or read them


def block_error(
    backend: Any, where: object, W: np.ndarray, buffer: int, pending: np.ndarray | None,
    seeded: Seeded, beta: float,
) -> float:  # fmt: skip
    """scikit-learn's ``_beta_divergence(X, W_sk, H_sk, square_root=True)``, block by block
    on the backend (:func:`dnmf.nmf.visit.block_loss`), summed in the fixed tree."""
    from uuid import uuid4

    items = [
        (b, a, z, None if pending is None else pending[b])
        for b, (a, z) in enumerate(backend.blocks())
    ]
    leaves = backend.map_blocks(
        block_loss, items, W, where, buffer, seeded, beta, tag=f"nmf-loss-{uuid4().hex[:12]}"
    )
    return loss_to_error(tree_sum(leaves, float.__add__), beta)


def scaled(H: np.ndarray, blocks: list[tuple[int, int]], pending: np.ndarray | None) -> np.ndarray:
    """H with the learner's pending per-block scales applied (a copy only if there are any)."""
    if pending is None or np.all(pending == 1.0):
        return H
    H = H.copy()
    for b, (a, z) in enumerate(blocks):
        H[:, a:z] *= pending[b].astype(H.dtype)[:, None]
    return H


class MemoryRun:
    """The learner in this process: a :class:`MemoryBackend` of ``V``."""

    def __init__(self, V: np.ndarray, block_frames: int, M: np.ndarray | None = None) -> None:
        self.backend = MemoryBackend(V, block_frames, M=M)

    def write_initial(self, H: np.ndarray) -> None:
        self.backend.write_H(0, 0, self.backend.n_frames, H)

    def error(
        self, W: np.ndarray, buffer: int, pending: np.ndarray | None, seeded: Seeded, beta: float
    ) -> float:
        return block_error(self.backend, self.backend, W, buffer, pending, seeded, beta)

    def activations(self, state: LearnState) -> np.ndarray:
        H = self.backend.activations(state.latest_buffer)
        return scaled(H, self.backend.blocks(), state.pending)

    def close(self) -> None:
        pass


class DaskRun:
    """The learner on the cluster of ``client``: ``V = X.T`` in a temporary Zarr store.

    The workers open the store themselves, so they must see this machine's
    temporary directory (a ``LocalCluster``'s workers do).
    """

    def __init__(self, client: Client, X: Any, block_frames: int, rank: int) -> None:
        import dask.array as da

        from dnmf.backends import DaskBackend
        from dnmf.io.blocks import create_H_buffers

        self.client = client
        self.root = tempfile.mkdtemp(prefix="dnmf-nmf-")
        try:
            self.V_url, self.H_url = f"{self.root}/V.zarr", f"{self.root}/H.zarr"
            V = X.T.rechunk({0: -1, 1: block_frames})  # the turn, for a Dask X
            da.to_zarr(V, self.V_url, zarr_format=3, dimension_names=("bin", "frame"))
            n_frames = int(V.shape[1])
            create_H_buffers(self.H_url, rank, n_frames, block_frames, V.dtype, n_buffers=3)
            self.backend = DaskBackend(client, self.V_url, self.H_url, block_frames=block_frames)
        except BaseException:
            self.close()
            raise

    def _H(self, buffer: int) -> Any:
        import zarr

        return zarr.open_array(f"{self.H_url}/H{buffer}", mode="r+", zarr_format=3)

    def write_initial(self, H: np.ndarray) -> None:
        self._H(0)[:, :] = H

    def error(
        self, W: np.ndarray, buffer: int, pending: np.ndarray | None, seeded: Seeded, beta: float
    ) -> float:
        # The workers run dnmf.nmf.visit.block_loss on their own ZarrBlockIO: they never
        # import this module (nor scikit-learn).
        where = (self.V_url, self.H_url)
        return block_error(self.backend, where, W, buffer, pending, seeded, beta)

    def activations(self, state: LearnState) -> np.ndarray:
        H = np.asarray(self._H(state.latest_buffer)[:, :])
        return scaled(H, self.backend.blocks(), state.pending)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def client_for(X: Any) -> Client | None:
    """The current ``distributed.Client`` if X is a Dask array and there is one."""
    if not is_dask_array(X):
        return None
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


def is_dask_array(X: Any) -> bool:
    from dask.base import is_dask_collection

    return bool(is_dask_collection(X)) and hasattr(X, "chunks") and hasattr(X, "ndim")


def computed(X: Any) -> Any:
    """A Dask collection computed into memory; anything else as it is."""
    from dask.base import is_dask_collection

    return X.compute() if is_dask_collection(X) else X


# -- learner steps ---------------------------------------------------------------------------
def fresh_state(cfg: LearnConfig, backend: Any, W: np.ndarray, avg: float) -> LearnState:
    n_blocks = len(backend.blocks())
    return LearnState(
        W=W,
        pending=np.ones((n_blocks, cfg.rank)),
        visited=np.zeros(n_blocks, dtype=bool),
        avg=avg,
    )


def start_state_any_rank(cfg: LearnConfig, backend: Any, W_init: np.ndarray | None) -> LearnState:
    """:func:`dnmf.nmf.learner.start_state` without its rank bound.

    scikit-learn accepts ``n_components > min(n_samples, n_features)`` for
    random inits, and a ``partial_fit`` batch may have fewer frames than the
    rank; the fixed components are checked in :meth:`NMF._fixed`.
    """
    return start_state(cfg, backend, W_init=W_init, bound_rank=False)


def one_lag(state: LearnState) -> np.ndarray:
    """The one-lag templates ``(n_bins, k, 1)`` of the state as the dictionary ``(n_bins, k)``."""
    return np.ascontiguousarray(state.W[:, :, 0])


def run_epochs(cfg: LearnConfig, backend: Any, state: LearnState, epochs: int) -> None:
    """Run the learner until ``epochs`` epochs in all (its own ``tol`` is 0: no early stop)."""
    run_cfg = cfg.model_copy(update={"epochs": epochs})
    while state.done_epochs < epochs:
        state.converged = False
        learn(run_cfg, backend, state)


def online_step(cfg: LearnConfig, backend: MemoryBackend, state: LearnState, *, rho: float) -> None:
    """One minibatch step over all blocks of ``backend`` with the online accumulators.

    The learner's own step (:func:`dnmf.nmf.learner.run_step`) for a batch that
    is a whole pass of its own: visit every block (epoch 0: given H, written to
    buffer 1), then the online update with forgetting ``rho`` and the
    normalisation.
    """
    p = visit_params(cfg, backend.n_bins, state.avg, RandomH())
    blocks = list(range(len(backend.blocks())))
    loss, _ = run_step(
        cfg, backend, state, blocks, rho=rho, p=p, done_this_epoch=set(), tag="partial-fit"
    )
    state.losses.append(loss)
    state.epoch = 1


def solve_sklearn(
    V: np.ndarray, W: np.ndarray, H: np.ndarray, *, beta: float, max_iter: int, tol: float,
    l1: float, l2: float, solver: str = "mu", M: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:  # fmt: skip
    """H with W fixed, as scikit-learn's ``_fit_multiplicative_update(update_H=False)``
    (or HALS sweeps for ``solver='hals'``), with its convergence test every 10; with
    weights ``M`` the weighted updates (:mod:`dnmf.nmf.masked`, MU for every β)."""
    if M is not None:
        from dnmf.nmf.masked import masked_values, update_H_masked, weighted_loss

        Mw = np.ascontiguousarray(M, dtype=V.dtype)
        Vm = masked_values(V, Mw)

        def run(H: np.ndarray, n: int) -> np.ndarray:
            return update_H_masked(Vm, W, H, Mw, beta=beta, n_iter=n, l1_reg=l1, l2_reg=l2)

        def error(H: np.ndarray) -> float:
            return loss_to_error(weighted_loss(Vm, W @ H, Mw, beta), beta)
    else:

        def run(H: np.ndarray, n: int) -> np.ndarray:
            return update_H(V, W, H, beta=beta, n_iter=n, l1_reg=l1, l2_reg=l2, solver=solver)

        def error(H: np.ndarray) -> float:
            return loss_to_error(beta_divergence(V, W, H, beta), beta)

    if tol <= 0:
        return run(H, max_iter), max_iter

    error_at_init = previous = error(H)
    n_iter = 0
    while n_iter < max_iter:
        n = min(CHECK_EVERY - n_iter % CHECK_EVERY, max_iter - n_iter)
        H = run(H, n)
        n_iter += n
        if n_iter % CHECK_EVERY == 0:
            current = error(H)
            if error_at_init == 0 or (previous - current) / error_at_init < tol:
                break
            previous = current
    return H, n_iter
