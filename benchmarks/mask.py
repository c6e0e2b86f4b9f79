"""The cost of a mask per epoch against no mask: β = 1, rank 64, one core.

Run from the repository root::

    python benchmarks/mask.py                  # 2 blocks of 1025 x 8192, rank 64
    python benchmarks/mask.py --blocks 1 --repeat 5

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

The runs are interleaved (every repeat times one epoch of each, in turn), so the
load of a shared machine falls on all alike. Printed: the median seconds per
epoch and the median over repeats of its ratio to no mask's epoch. Targets
(issue 15): <= 1.3x structured, <= 1.6x arbitrary. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from dnmf.backends import MemoryBackend
from dnmf.cluster import one_blas_thread
from dnmf.nmf.config import LearnConfig
from dnmf.nmf.learner import learn, start_state
from dnmf.nmf.mask import Holdout, MaskSpec


def warm_run(V: np.ndarray, cfg: LearnConfig, block: int, **kw: object) -> Callable[[], float]:
    """A timer of one epoch of a run with backend options ``kw``, warmed up (H seeded,
    numba compiled): each call times one more epoch."""
    be = MemoryBackend(V, block, **kw)  # type: ignore[arg-type]
    state = start_state(cfg, be)
    learn(cfg.model_copy(update={"epochs": 1}), be, state)
    epochs = [1]

    def epoch() -> float:
        epochs[0] += 1
        t0 = time.perf_counter()
        learn(cfg.model_copy(update={"epochs": epochs[0]}), be, state)
        return time.perf_counter() - t0

    return epoch


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
          "n_inner 1, one BLAS thread, interleaved, median of", a.repeat)  # fmt: skip
    masks: dict[str, dict[str, Any]] = {
        "no mask": {},
        "silence, 10 % of frames (structured)": {"mask": MaskSpec(silence_db=-200.0)},
        "stored bool, 10 % of entries (arbitrary)": {"M": stored},
        "held-out tiles, 10 % (dnmf rank)": {"mask": MaskSpec(holdout=Holdout(share=0.1, seed=0))},
    }
    with one_blas_thread():
        runs = {name: warm_run(V, cfg, a.block, **kw) for name, kw in masks.items()}
        # Interleaved: repeat r times every run once, so a burst of load on a shared
        # machine hits all of them alike; the ratio is taken within each repeat.
        times: dict[str, list[float]] = {name: [] for name in masks}
        for _ in range(a.repeat):
            for name, run in runs.items():
                times[name].append(run())
    base = np.array(times["no mask"])
    print(f"{'mask':44s} {'s/epoch':>8s} {'x no mask':>10s}")
    for name, t in times.items():
        ratio = float(np.median(np.array(t) / base))
        print(f"{name:44s} {float(np.median(t)):8.3f} {ratio:10.2f}")


if __name__ == "__main__":
    main()
