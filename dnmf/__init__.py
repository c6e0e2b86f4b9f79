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

#: Where each name of the public API lives, imported on first use: ``import dnmf`` (and so
#: every ``dnmf`` command before its first line) pays for no NumPy, pydantic, zarr, numba,
#: scikit-learn or xarray, and not for ``importlib.metadata`` either.
_LAZY = {
    "NMF": "dnmf.nmf.estimator",
    "NMFD": "dnmf.nmf.nmfd_estimator",
    "FeatureConfig": "dnmf.audio.features",
    "__version__": "dnmf._version",
    "file_frames": "dnmf.api",
    "open_activations": "dnmf.api",
    "open_corpus": "dnmf.api",
    "open_model": "dnmf.api",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dnmf' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # found directly from now on
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
