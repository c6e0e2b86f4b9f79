"""The one way in to compute: a ``distributed.Client``.

:func:`connect` joins the scheduler named by ``--scheduler`` or the
``DNMF_SCHEDULER`` environment variable, or starts a ``LocalCluster`` of
single-threaded worker processes sized to the machine, listening on
127.0.0.1 only. Workers run one task at a time and each task pins its BLAS to
one thread (:func:`one_blas_thread`), so a chunk's arithmetic is the same on
every worker.

A long run must stay flat (:func:`cluster_config`): the clusters dnmf starts
keep few debugging messages per stream, so that the client's memory does not
grow with the steps, and their workers run without Dask's sampling profiler.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from dnmf.errors import DnmfUsageError
from dnmf.progress import announce, stage
from dnmf.words import count

if TYPE_CHECKING:
    from distributed import Client

__all__ = [
    "check_compute_options",
    "cluster_config",
    "connect",
    "default_workers",
    "one_blas_thread",
    "worker_preload",
]

SCHEDULER_ENV = "DNMF_SCHEDULER"
SPAWN_ENV = "distributed.nanny.pre-spawn-environ"
PRELOAD_KEY = "distributed.worker.preload"
PROFILE_KEY = "distributed.worker.profile.enabled"
LOG_KEY = "distributed.admin.low-level-log-length"
#: Entries kept by each of Dask's debugging logs (each batched stream's recent
#: messages, the scheduler's and each worker's transition logs); Dask keeps 1000.
LOG_LENGTH = 32


#: Modules the workers of the local clusters dnmf starts load as Dask preloads, besides
#: the configured ones (:func:`worker_preload`).
_preloads: list[str] = []


@contextmanager
def worker_preload(module: str) -> Iterator[None]:
    """Local workers started inside the block also load ``module`` as a Dask preload.

    The same as setting ``distributed.worker.preload`` around the block, without
    importing Dask, which costs a command a third of a second before its first
    line (the command line's Ctrl-C handling uses it, :mod:`dnmf.cli._interrupt`).
    The setting reaches the clusters :func:`connect` starts, not the ones a caller
    makes itself.
    """
    if module in _preloads:
        yield
        return
    _preloads.append(module)
    try:
        yield
    finally:
        _preloads.remove(module)


def default_workers() -> int:
    """One worker process per physical core (at least one)."""
    import psutil

    return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)


def check_compute_options(workers: int | None, scheduler: str | None) -> None:
    """Refuse ``workers`` and ``scheduler`` together, or a worker count below one."""
    if workers is not None and scheduler is not None:
        raise DnmfUsageError("pass --workers or --scheduler, not both")
    if workers is not None and workers < 1:
        raise DnmfUsageError(f"workers={workers} must be at least 1")


@contextmanager
def connect(
    workers: int | None = None,
    scheduler: str | None = None,
    *,
    processes: bool = True,
    client: Client | None = None,
    profile: bool = False,
    progress: bool = False,
    audio: bool = True,
) -> Iterator[Client]:
    """A client for the duration of the block.

    Parameters
    ----------
    workers : int, optional
        Worker processes of the local cluster (default: one per physical core).
    scheduler : str, optional
        Address of a running scheduler (``tcp://host:8786``); the
        ``DNMF_SCHEDULER`` environment variable is used when neither this nor
        ``workers`` is given.
    processes : bool
        Local workers in separate processes (the default) or threads.
    client : Client, optional
        Use this client as it is and leave it open.
    profile : bool
        Run Dask's sampling profiler in the local workers (off by default; see
        :func:`cluster_config`).
    progress : bool
        Say on stderr, at once, that a cluster is being started or joined, and
        show the start as a stage of its own (:func:`dnmf.progress.stage`).
    audio : bool
        Local workers also import and warm up the audio stack (librosa, soxr)
        before the first task: what ingest needs, and 2 of the 3 seconds of a
        2-worker start on 2 cores, which learning and export on a corpus
        store do without (:func:`warm_up`).

    Examples
    --------
    >>> with connect(workers=2) as client:  # doctest: +SKIP
    ...     client.submit(sum, [1, 2]).result()
    3
    """
    if client is not None:
        yield client
        return
    check_compute_options(workers, scheduler)
    # An explicit --workers wins over a DNMF_SCHEDULER set in the environment.
    address = scheduler or (os.environ.get(SCHEDULER_ENV) if workers is None else None) or None
    if address:
        with _join(address, progress) as remote:
            yield remote
        return
    n = workers or default_workers()
    with ExitStack() as stack:
        starting = f"starting a local cluster of {count(n, 'worker')}..."
        with stage("cluster", starting, enabled=progress, unit="workers", total=n):
            local = stack.enter_context(
                _local_cluster(n, processes=processes, profile=profile, audio=audio)
            )
        yield local


def connect_timeout() -> float:
    """Seconds to keep trying a scheduler's address: ``DNMF_CONNECT_TIMEOUT``, default 20."""
    raw = os.environ.get("DNMF_CONNECT_TIMEOUT", "20")
    try:
        seconds = float(raw)
    except ValueError:
        seconds = math.nan
    if not seconds > 0:
        raise DnmfUsageError(
            f"DNMF_CONNECT_TIMEOUT={raw!r} is not a number of seconds; set it to e.g. 20"
        )
    return seconds


@contextmanager
def _join(address: str, progress: bool) -> Iterator[Client]:
    """A client of the running scheduler at ``address``, closed at the end of the block."""
    if progress:
        announce(f"joining the Dask scheduler at {address}...")
    import dask
    from distributed import Client

    try:
        # The cluster is someone else's; only this client's own stream log is ours to size.
        with dask.config.set({LOG_KEY: LOG_LENGTH}):
            remote = Client(address, timeout=f"{connect_timeout()}s")
    except OSError as exc:
        raise DnmfUsageError(
            f"cannot reach the Dask scheduler at {address!r} ({exc}); check the address "
            "or start one with 'dask scheduler'"
        ) from None
    try:
        yield remote
    finally:
        remote.close()


@contextmanager
def _local_cluster(n: int, *, processes: bool, profile: bool, audio: bool) -> Iterator[Client]:
    """A LocalCluster of ``n`` single-threaded workers and its client, warmed up."""
    import dask
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with (
        dask.config.set(cluster_config(profile=profile)),
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=processes,
            # Threads talk in-process; worker processes listen on the loopback only.
            **({"host": "127.0.0.1"} if processes else {}),
            dashboard_address="127.0.0.1:0",  # a free port, on the loopback only
            memory_limit=0,
        ) as cluster,
        Client(cluster) as local,
    ):
        if processes:
            local.run(warm_up, audio)  # imports in every worker at once, not in the first task
        yield local


def cluster_config(*, profile: bool = False) -> dict[str, Any]:
    """The Dask settings of the clusters dnmf starts, and of their clients.

    * ``distributed.admin.low-level-log-length`` is :data:`LOG_LENGTH`. Every
      batched stream (client to scheduler, scheduler to client and to each
      worker) keeps its last messages for debugging, Dask's default 1000 of
      them: each holds the pickled tasks of a step, so the client of a
      LocalCluster (whose scheduler runs in the client's process) grew by
      about 100 KiB an epoch on a 20-minute corpus until 4000 batches were
      kept, and by more on a larger corpus (benchmarks/longrun.py).
    * ``distributed.worker.profile.enabled`` is ``profile`` (default off).
      The profiler samples every thread's stack 100 times a second through
      ``sys._current_frames()``; walking another thread's frames while it runs
      is a known crash of CPython 3.11 (``PyFrame_GetBack``), and a worker died
      there once in 23 runs. Nothing in dnmf reads the profile.
    * the worker processes' environment, :func:`worker_environ`.
    * ``distributed.worker.preload``: the configured preloads and those of
      :func:`worker_preload`.
    """
    import dask

    config: dict[str, Any] = {
        SPAWN_ENV: worker_environ(),
        PROFILE_KEY: profile,
        LOG_KEY: LOG_LENGTH,
    }
    configured = list(dask.config.get(PRELOAD_KEY, default=None) or [])
    extra = [m for m in _preloads if m not in configured]
    if extra:
        config[PRELOAD_KEY] = [*configured, *extra]
    return config


def worker_environ() -> dict[str, Any]:
    """The environment of LocalCluster worker processes: Dask's, less its malloc setting.

    Dask sets ``MALLOC_TRIM_THRESHOLD_``, which also turns off glibc's adaptive
    mmap threshold: every large array is then a fresh ``mmap`` whose pages fault
    in on first touch, which made chunk tasks 40 % slower here. The thread caps
    (one BLAS/OpenMP thread per worker process) are kept.
    """
    import dask

    env = dict(dask.config.get(SPAWN_ENV, default={}) or {})
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    return env


def warm_up(audio: bool = True) -> None:
    """Import what chunk tasks use, and compile (or load from numba's cache) the fused
    passes, so that no task pays for it; with ``audio`` also the feature stack (librosa
    loads lazily: its import and first STFT take about 2 s in each worker)."""
    import numpy as np
    import zarr  # noqa: F401

    import dnmf.nmf.visit
    from dnmf.nmf.kernels import chunk_stats

    if audio:
        import soxr
        from librosa import stft

        import dnmf.audio.features  # noqa: F401

        y = np.zeros(4096, dtype=np.float32)
        stft(y, n_fft=1024)
        soxr.resample(y, 44100, 22050)
    V = np.ones((4, 3), dtype=np.float32)
    for beta in (0.0, 1.0):
        chunk_stats(V, V[:, :2].copy(), V[:2].copy(), beta=beta)
    one_blas_thread()


_controller: Any = None


def one_blas_thread() -> Any:
    """A context in which BLAS and OpenMP use one thread: a chunk task's arithmetic.

    The pools are inspected once per process (threadpoolctl's inspection is
    slow next to a small task) and limited each time.
    """
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=1)
