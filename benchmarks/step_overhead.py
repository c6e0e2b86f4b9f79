"""What one learning step costs beyond its kernels (issue 13, "cheap steps").

Run from the repository root::

    python benchmarks/step_overhead.py                 # 8 chunks, 60 epochs, 2 workers
    python benchmarks/step_overhead.py --bins 1025 --rank 64 --frames 512

A corpus of ``--chunks`` chunks of ``--frames`` frames and ``--bins`` bins
(random, written as ingest lays it out) is learned by ``pipelines.learn.learn_corpus``
on a LocalCluster of 2 worker processes (``dnmf.cluster.connect``), full batch,
``--epochs`` epochs, with the fast schedule's defaults (one step per epoch, a
checkpoint after each). The data are small, so the kernels take almost nothing
and the step's time is its fixed cost. The learner's own calls are timed by
wrapping them: ``DaskBackend.step`` (W scattered, the graph of visits and sums
submitted and its root gathered: the scheduler round trips, V and H chunk I/O
on the workers, the reduction) and ``ModelStore.save_checkpoint`` (the slot,
W, loss and their records written, the attrs switched). Printed: the median
per step of each and of the whole step (the time between two steps' ends),
and the same kernels' time measured in this process, one thread, for scale.
Nothing here is a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--frames", type=int, default=256, help="frames per chunk")
    ap.add_argument("--bins", type=int, default=129)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=60)
    args = ap.parse_args()

    import dnmf.backends as backends
    import dnmf.io.model as model_mod
    from dnmf.cluster import connect
    from dnmf.nmf.config import LearnConfig
    from pipelines.learn import learn_corpus
    from tests.test_learn import write_corpus

    times: dict[str, list[float]] = {"step": [], "checkpoint": []}
    ends: list[float] = []

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        def wrapper(*a, **k):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                times[name].append(time.perf_counter() - t)
                if name == "checkpoint":
                    ends.append(time.perf_counter())

        return wrapper

    backends.DaskBackend.step = timed("step", backends.DaskBackend.step)  # type: ignore[method-assign]
    model_mod.ModelStore.save_checkpoint = timed(  # type: ignore[method-assign]
        "checkpoint", model_mod.ModelStore.save_checkpoint
    )
    rng = np.random.default_rng(0)
    V = (rng.random((args.bins, args.chunks * args.frames)) + 0.1).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_corpus(Path(tmp) / "c.zarr", V, chunk_frames=args.frames)
        cfg = LearnConfig(rank=args.rank, epochs=args.epochs, tol=0, seed=0)
        with connect(workers=2) as client:
            t0 = time.perf_counter()
            learn_corpus(corpus, Path(tmp) / "m.zarr", config=cfg, client=client)
            wall = time.perf_counter() - t0
    skip = 5  # warm-up: the first steps open the stores on the workers
    med = {k: statistics.median(v[skip:]) for k, v in times.items()}
    per_step = statistics.median(np.diff(ends[skip:]))
    print(f"# python benchmarks/step_overhead.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"{args.chunks} chunks x {args.frames} frames x {args.bins} bins, rank {args.rank}, "
          f"{len(times['step'])} steps in {wall:.1f} s on 2 workers")  # fmt: skip
    print(f"  whole step (end to end), median   {per_step * 1e3:7.1f} ms")
    print(f"  DaskBackend.step                  {med['step'] * 1e3:7.1f} ms")
    print(f"  ModelStore.save_checkpoint        {med['checkpoint'] * 1e3:7.1f} ms")
    rest = per_step - med["step"] - med["checkpoint"]
    print(f"  the rest (W update, plan, bar)    {rest * 1e3:7.1f} ms")
    W = rng.random((args.bins, args.rank)).astype(np.float32)
    H = rng.random((args.rank, args.frames)).astype(np.float32)
    Vb = V[:, : args.frames]
    t = time.perf_counter()
    for _ in range(20):
        R = Vb / (W @ H)
        W.T @ R, R @ H.T
    kern = (time.perf_counter() - t) / 20 * args.chunks
    print(
        f"  the kernels of a step, 1 thread   {kern * 1e3:7.1f} ms  (beta=1 products, all chunks)"
    )


if __name__ == "__main__":
    main()
