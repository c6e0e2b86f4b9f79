"""The cost of a mask per epoch against no mask: β = 1, rank 64, one core.

Run from the repository root::

    python benchmarks/mask.py                  # 2 blocks of 1025 x 8192, rank 64
    python benchmarks/mask.py --blocks 1 --repeat 3

One full-batch epoch of the in-process learner (:func:`dnmf.nmf.learner.learn`,
BLAS on one thread, ``n_inner = 1``) on a float32 spectrogram-like V
(a random rank-64 product plus noise), timed for:

* no mask (today's fused kernels);
* a structured mask: ``--mask-silence`` removing 10 % of the frames (a 0/1 frame
  mask: the unmasked kernels on the kept frames, plus the level of each frame);
* an arbitrary stored mask: a random 10 % of the entries at weight 0 (bool,
  read with V: the weighted kernels of :mod:`dnmf.nmf.masked`);
* the held-out tiles of ``dnmf rank`` (10 % of the entries in 8 x 16 tiles,
  computed per block: the weighted kernels too).

Printed: the median seconds per epoch and the ratio to no mask. Targets
(issue 15): <= 1.3x structured, <= 1.6x arbitrary. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dnmf.backends import MemoryBackend
from dnmf.cluster import one_blas_thread
from dnmf.nmf.config import LearnConfig
from dnmf.nmf.learner import learn, start_state
from dnmf.nmf.mask import Holdout, MaskSpec


def epoch_seconds(V: np.ndarray, cfg: LearnConfig, block: int, repeat: int, **kw: object) -> float:
    times = []
    for _ in range(repeat):
        be = MemoryBackend(V, block, **kw)  # type: ignore[arg-type]
        state = start_state(cfg, be)
        learn(cfg.model_copy(update={"epochs": 1}), be, state)  # warm: H seeded, numba compiled
        t0 = time.perf_counter()
        learn(cfg.model_copy(update={"epochs": 2}), be, state)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bins", type=int, default=1025)
    ap.add_argument("--block", type=int, default=8192)
    ap.add_argument("--blocks", type=int, default=2)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    n = a.block * a.blocks
    V = (rng.random((a.bins, 64), dtype=np.float32) ** 4) @ rng.random((64, n), dtype=np.float32)
    V += 0.01 * rng.random(V.shape, dtype=np.float32)
    silent = rng.random(n) < 0.10
    V[:, silent] = 0.0  # digital silence, 10 % of the frames
    stored = rng.random(V.shape) >= 0.10
    cfg = LearnConfig(rank=a.rank, beta=1, tol=0, epochs=2)
    print(f"V {a.bins} x {n} float32 ({a.blocks} blocks of {a.block}), rank {a.rank}, beta 1, "
          "n_inner 1, one BLAS thread, median of", a.repeat)  # fmt: skip
    with one_blas_thread():
        base = epoch_seconds(V, cfg, a.block, a.repeat)
        rows = [
            ("no mask", base),
            ("silence, 10 % of frames (structured)",
             epoch_seconds(V, cfg, a.block, a.repeat, mask=MaskSpec(silence_db=-200.0))),
            ("stored bool, 10 % of entries (arbitrary)",
             epoch_seconds(V, cfg, a.block, a.repeat, M=stored)),
            ("held-out tiles, 10 % (dnmf rank)",
             epoch_seconds(V, cfg, a.block, a.repeat,
                           mask=MaskSpec(holdout=Holdout(share=0.1, seed=0)))),
        ]  # fmt: skip
    print(f"{'mask':44s} {'s/epoch':>8s} {'x no mask':>10s}")
    for name, s in rows:
        print(f"{name:44s} {s:8.3f} {s / base:10.2f}")


if __name__ == "__main__":
    main()
