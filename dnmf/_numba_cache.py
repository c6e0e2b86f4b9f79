"""Where numba caches dnmf's compiled kernels: a user cache folder, never the package.

:mod:`dnmf.nmf._fused` compiles with ``numba.njit(cache=True)``. Left to
itself numba writes its ``.nbi``/``.nbc`` files into ``__pycache__`` beside the
source, inside ``site-packages/dnmf``; that folder outlives a ``pip
uninstall`` and, after a later ``pip install -e``, is found first as an empty
namespace package, so ``import dnmf`` from outside the repository gives a
module without its API. dnmf therefore points ``NUMBA_CACHE_DIR`` at
``platformdirs.user_cache_dir("dnmf")/numba`` unless the user set it, before
anything imports numba. Worker processes of a local cluster inherit the
environment; workers elsewhere set it when they import dnmf.
"""

from __future__ import annotations

import os
import sys

__all__ = ["ENV", "cache_dir", "configure"]

ENV = "NUMBA_CACHE_DIR"


def cache_dir() -> str:
    """``NUMBA_CACHE_DIR`` as dnmf sets it when the user has not: a per-user cache folder."""
    from platformdirs import user_cache_dir

    return os.path.join(user_cache_dir("dnmf"), "numba")


def configure() -> None:
    """Set ``NUMBA_CACHE_DIR`` to :func:`cache_dir` unless it is set already.

    Works also when numba was imported before dnmf: numba's config has then
    read the environment, so its ``CACHE_DIR`` is set too. numba creates the
    folder; if it cannot, it falls back to its own choices.
    """
    if os.environ.get(ENV):
        return
    path = cache_dir()
    os.environ[ENV] = path
    config = sys.modules.get("numba.core.config")
    if config is not None and not getattr(config, "CACHE_DIR", ""):
        config.CACHE_DIR = path  # type: ignore[attr-defined]
