"""dnmf: distributed, out-of-core nonnegative matrix factorization of audio corpora.

A corpus of audio becomes a chunked spectrogram ``V (bin, frame)`` in Zarr
(:mod:`pipelines.ingest`, ``dnmf ingest``); a minibatch NMF learns a dictionary
``W (bin, component)`` (or templates ``W (bin, component, lag)``) from it on a
Dask cluster; activations
``H (component, frame)`` are exported chunk for chunk. See README.md.
"""

from __future__ import annotations

from dnmf._numba_cache import configure as _configure_numba_cache

_configure_numba_cache()  # before anything imports numba: its cache stays out of the package

from dnmf._version import __version__  # noqa: E402
from dnmf.audio.features import FeatureConfig  # noqa: E402
from dnmf.errors import DnmfError, DnmfUsageError, DnmfWarning  # noqa: E402

__all__ = [
    "NMF",
    "NMFD",
    "DnmfError",
    "DnmfUsageError",
    "DnmfWarning",
    "FeatureConfig",
    "__version__",
    "file_frames",
    "open_activations",
    "open_corpus",
    "open_model",
]


def __getattr__(name: str) -> object:
    # The estimator pulls in scikit-learn: import it only when asked for.
    if name == "NMF":
        from dnmf.nmf.estimator import NMF

        return NMF
    if name == "NMFD":
        from dnmf.nmf.nmfd_estimator import NMFD

        return NMFD
    if name in ("open_corpus", "open_model", "open_activations", "file_frames"):
        from dnmf import api  # xarray is imported only when asked for

        return getattr(api, name)
    raise AttributeError(f"module 'dnmf' has no attribute {name!r}")
