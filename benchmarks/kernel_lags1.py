"""Safety net of the single learner: its ``lags = 1`` chunk kernel against the NMF kernel it replaced.

Run from the repository root::

    python benchmarks/kernel_lags1.py            # 1025 x 8192 chunk, rank 64, each beta
    python benchmarks/kernel_lags1.py --repeat 15

One chunk of V (float32, music-like: a low-rank product plus noise, some
silent frames), the kernel a visit runs (one inner H update, then the block's
statistics for W and its loss), BLAS on one thread as on a worker:

* reference: ``chunk_stats`` of the plain NMF learner as it was
  (``tests/reference_v0``, frozen) on ``W (n_bins, k)``;
* today: :func:`dnmf.nmf.lags.window_stats` on the templates ``W (n_bins, k, 1)``.

Both are timed alternately in one run (median of ``--repeat``); the ratio
today / reference is printed per beta, and the outputs are checked to be the
same bytes. Target: within 2 %. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def chunk(n_bins: int, n_frames: int, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    V = (rng.random((n_bins, 16)) ** 4) @ rng.random((16, n_frames)) + 1e-3 * rng.random(
        (n_bins, n_frames)
    )
    V[:, :64] = 0.0  # digital silence
    W = rng.random((n_bins, rank))
    H = rng.random((rank, n_frames))
    return V.astype(np.float32), W.astype(np.float32), H.astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bins", type=int, default=1025)
    ap.add_argument("--frames", type=int, default=8192)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()

    from reference_v0.kernels import chunk_stats as reference

    from dnmf.cluster import one_blas_thread
    from dnmf.nmf.model import window_stats

    V, W, H = chunk(args.bins, args.frames, args.rank)
    W3 = np.ascontiguousarray(W[:, :, None])
    n = V.shape[1]
    print(f"chunk {args.bins} x {args.frames}, rank {args.rank}, float32, 1 BLAS thread, "
          f"median of {args.repeat}")  # fmt: skip
    print(f"{'beta':>5} {'reference ms':>13} {'today ms':>9} {'today/ref':>10} {'same bytes':>11}")
    with one_blas_thread():
        for beta in (0.0, 0.5, 1.0, 2.0):

            def old(beta: float = beta) -> object:
                return reference(V, W, H, beta=beta, n_inner=1)

            def new(beta: float = beta) -> object:
                return window_stats(V, W3, H, start=0, stop=n, beta=beta, n_inner=1)

            a, b = old(), new()  # warm (numba compiles on first use)
            same = (
                all(
                    np.asarray(getattr(a, f)).tobytes() == np.asarray(getattr(b, f)).tobytes()
                    for f in ("H", "num", "den")
                )
                and a.loss == b.loss
            )  # type: ignore[attr-defined]
            t_old, t_new = [], []
            for _ in range(args.repeat):
                for fn, times in ((old, t_old), (new, t_new)):
                    t0 = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t0)
            m_old, m_new = statistics.median(t_old), statistics.median(t_new)
            print(f"{beta:5g} {1e3 * m_old:13.1f} {1e3 * m_new:9.1f} {m_new / m_old:10.3f} "
                  f"{'yes' if same else 'NO':>11}")  # fmt: skip


if __name__ == "__main__":
    main()
