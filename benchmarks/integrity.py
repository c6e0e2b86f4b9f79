"""What checking each chunk read against its record costs, next to a learning epoch.

A corpus store of ``--chunks`` chunks of V at the default layout (1025 bins x 8192
frames of float32, 33.6 MB a chunk) is written and committed (which records it).
Then, per chunk: an unchecked Zarr read, the check alone (the CRC-32 of the values
read, :func:`dnmf.io.records.checksum`) and a checked read
(:func:`dnmf.io.blocks.read_checked`); and one learning epoch (``--rank``, the
default schedule) on an in-process cluster of one single-threaded worker with
the block cache off, so that every chunk is read, and checked, every epoch.
Prints the check's share of the epoch: chunks x check / epoch.

Run: ``PYTHONPATH=. python3 benchmarks/integrity.py``
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def best(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=4)
    ap.add_argument("--rank", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    os.environ["DNMF_CACHE_MB"] = "0"  # every epoch reads (and checks) every chunk

    from distributed import Client, LocalCluster

    from dnmf.audio.features import FeatureConfig
    from dnmf.io.blocks import open_array, read_checked, set_block_cache
    from dnmf.io.corpus import CorpusStore, FileRecord
    from dnmf.io.records import checksum
    from dnmf.nmf.config import LearnConfig
    from pipelines.learn import learn_corpus

    set_block_cache(None)
    cf, n_bins = 8192, 1025
    n = cf * args.chunks
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.zarr"
        store = CorpusStore.create(path, FeatureConfig(), chunk_frames=cf, source="synthetic")
        store.resize_frames(n)
        rng = np.random.default_rng(0)
        for j in range(args.chunks):
            W, H = rng.random((n_bins, 16)), rng.random((16, cf))
            store.V[:, j * cf : (j + 1) * cf] = (W @ H + 0.01).astype(np.float32)
        t0 = time.perf_counter()
        store.commit([FileRecord("x.wav", "h", 0, n)], n, {"synthetic": True})
        commit_s = time.perf_counter() - t0
        url = f"{path}/V"
        V = open_array(url)
        block = np.asarray(V[:, :cf])
        plain = best(lambda: np.asarray(V[:, :cf]), args.repeat)
        check = best(lambda: checksum(block), args.repeat)
        checked = best(lambda: read_checked(url, 0, cf, V), args.repeat)

        cfg = LearnConfig(rank=args.rank, epochs=2, tol=0, seed=0)
        epochs: list[float] = []
        marks = [time.perf_counter()]

        def on_step(p) -> None:  # type: ignore[no-untyped-def]
            if p.epoch_done:
                marks.append(time.perf_counter())

        with LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster, Client(cluster) as client:  # fmt: skip
            marks[0] = time.perf_counter()
            learn_corpus(path, Path(tmp) / "m.zarr", config=cfg, client=client, on_step=on_step)
        epochs = [b - a for a, b in itertools.pairwise(marks)]
        epoch = statistics.median(epochs[1:] or epochs)

    mb = block.nbytes / 2**20
    print(f"chunk: {n_bins} x {cf} float32 ({mb:.1f} MiB), {args.chunks} chunks, rank {args.rank}")
    print(f"commit (records {args.chunks} chunks, read back): {commit_s:.3f} s")
    print(f"per chunk: unchecked read {plain * 1e3:.1f} ms, checked read {checked * 1e3:.1f} ms, "
          f"check alone (crc32 of the values) {check * 1e3:.2f} ms "
          f"({mb / check / 1024:.1f} GiB/s)")  # fmt: skip
    print(f"learning epoch (1 worker, 1 thread, cache off: every chunk read): {epoch:.2f} s "
          f"= {epoch / args.chunks * 1e3:.0f} ms per chunk")  # fmt: skip
    ratio = args.chunks * check / epoch
    print(f"check / epoch = {ratio * 100:.2f} % (target < 5 %)")


if __name__ == "__main__":
    main()
