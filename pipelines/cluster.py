"""A ``distributed.Client`` for a pipeline config's ``cluster:`` section.

Which cluster a run uses, first match wins:

1. ``--scheduler ADDR`` or ``--workers N`` on the command line;
2. the ``DNMF_SCHEDULER`` environment variable (a running scheduler);
3. the config's ``cluster:`` section: ``local`` (a LocalCluster on this
   machine, :func:`dnmf.cluster.connect`), ``address`` (a running
   scheduler), ``slurm`` / ``pbs`` (dask-jobqueue) or ``kubernetes``
   (dask-kubernetes). The last three come with the ``cluster`` extra
   (``pip install 'dnmf[cluster]'``) and are imported only when used.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dnmf.cluster import LOG_KEY, LOG_LENGTH, SCHEDULER_ENV, check_compute_options, connect
from dnmf.errors import DnmfUsageError, MissingExtraError

if TYPE_CHECKING:
    from distributed import Client

    from pipelines.config import ClusterSection

__all__ = ["MissingExtraError", "describe_target", "job_script", "open_client"]


# Keywords of JobQueueCluster.__init__ that dnmf sets itself or that dask-jobqueue refuses.
_NOT_OPTIONS = {
    "self", "n_workers", "job_cls", "loop", "asynchronous", "dashboard_address", "host",
    "scheduler_cls", "job_kwargs", "scheduler", "name", "base_class_kwargs",
}  # fmt: skip


def _jobqueue_class(kind: str) -> Any:
    try:
        import dask_jobqueue
    except ImportError:
        raise MissingExtraError(
            f"cluster.kind={kind} needs dask-jobqueue, which is not installed; "
            "install the cluster extra: pip install 'dnmf[cluster]'"
        ) from None
    return dask_jobqueue.SLURMCluster if kind == "slurm" else dask_jobqueue.PBSCluster


def jobqueue_options(cls: Any) -> list[str]:
    """The keywords a dask-jobqueue cluster class takes in ``cluster.options``."""
    from dask_jobqueue.core import Job, JobQueueCluster

    names: list[str] = []
    for fn in (cls.job_cls.__init__, Job.__init__, JobQueueCluster.__init__):
        for name in inspect.signature(fn).parameters:
            if name not in _NOT_OPTIONS and name not in names:
                names.append(name)
    return names


def _jobqueue_cluster(section: ClusterSection, **override: Any) -> Any:
    cls = _jobqueue_class(section.kind)
    allowed = jobqueue_options(cls)
    bad = [k for k in section.options if k not in allowed]
    if bad:
        raise DnmfUsageError(
            f"cluster.options.{bad[0]} is not an option of dask-jobqueue's {cls.__name__}; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    options = {"silence_logs": "error", **section.options}
    options.update(override)
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise DnmfUsageError(
            f"dask-jobqueue's {cls.__name__} refused cluster.options ({exc}); fix the options"
        ) from None


def job_script(section: ClusterSection, *, scheduler_host: str = "127.0.0.1") -> str:
    """The batch script dask-jobqueue would submit for each job of a slurm/pbs section.

    A scheduler is started on ``scheduler_host`` for the moment it takes (the
    script names its address) and closed again; nothing is submitted.
    """
    if section.kind not in ("slurm", "pbs"):
        raise DnmfUsageError(f"cluster.kind={section.kind} submits no job scripts")
    sched = dict(section.options.get("scheduler_options") or {})
    sched.update(host=scheduler_host, dashboard_address=":0")
    cluster = _jobqueue_cluster(section, scheduler_options=sched)
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()


def describe_target(section: ClusterSection, *, workers: int | None, scheduler: str | None) -> str:
    """Which cluster :func:`open_client` would use, in words (for ``--dry-run``)."""
    if scheduler:
        return f"the scheduler at {scheduler} (--scheduler)"
    if workers:
        return f"a local cluster of {workers} worker processes (--workers)"
    env = os.environ.get(SCHEDULER_ENV)
    if env:
        return f"the scheduler at {env} (${SCHEDULER_ENV})"
    if section.kind == "local":
        n = section.workers or "one per core"
        return f"a local cluster of worker processes ({n})"
    if section.kind == "address":
        return f"the scheduler at {section.address}"
    return f"a {section.kind} cluster of {section.workers or 1} workers"


@contextmanager
def open_client(
    section: ClusterSection,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
) -> Iterator[Client]:
    """A client for the run, closed (with any cluster it started) at the end of the block.

    With ``progress``, a line on stderr says at once which cluster is being
    started or joined (:func:`dnmf.cluster.connect`).
    """
    check_compute_options(workers, scheduler)
    if scheduler or workers or os.environ.get(SCHEDULER_ENV):
        with connect(workers, scheduler, progress=progress) as client:
            yield client
        return
    if section.kind == "local":
        with connect(section.workers or None, None, progress=progress) as client:
            yield client
        return
    if section.kind == "address":
        with connect(None, section.address, progress=progress) as client:
            yield client
        return
    import dask
    from distributed import Client

    n = section.workers or 1
    if progress:
        from dnmf.progress import announce

        announce(f"starting a {section.kind} cluster of {n} workers...")
    # A dask-jobqueue cluster's scheduler runs in this process, as the client does: keep 32
    # debugging messages per stream, not 1000, as dnmf's LocalCluster does, or the process
    # grows with the steps of a long run (benchmarks/longrun.py). Streams are opened as
    # workers join, so the setting holds for the whole run. The workers read their own
    # config: configs/slurm.yaml exports it in job_script_prologue (docs/scaling.md).
    with dask.config.set({LOG_KEY: LOG_LENGTH}):
        if section.kind in ("slurm", "pbs"):
            cluster = _jobqueue_cluster(section)
            cluster.scale(n=n)
        else:
            cluster = _kube_cluster(section, n)
        try:
            with Client(cluster) as client:
                yield client
        finally:
            cluster.close()


def _kube_cluster(section: ClusterSection, n: int) -> Any:
    try:
        from dask_kubernetes.operator import KubeCluster
    except ImportError:
        raise MissingExtraError(
            "cluster.kind=kubernetes needs dask-kubernetes, which is not installed; "
            "install the cluster extra: pip install 'dnmf[cluster]'"
        ) from None
    options = {"name": "dnmf", **section.options}
    try:
        return KubeCluster(n_workers=n, **options)
    except TypeError as exc:
        raise DnmfUsageError(
            f"dask-kubernetes' KubeCluster refused cluster.options ({exc}); fix the options"
        ) from None
