"""What checking each chunk read against its record costs, next to a learning epoch.

A corpus store of ``--chunks`` chunks of V at the default layout (1025 bins x 8192
frames of float32, 33.6 MB a chunk) is written and committed (which records it).
Then, per chunk: an unchecked Zarr read, the check alone (the CRC-32 of the values
read, :func:`dnmf.io.records.checksum`) and a checked read
(:func:`dnmf.io.blocks.read_checked`); and one learning epoch (``--rank``, the
default schedule) on an in-process cluster of one single-threaded worker with
the block cache off, so that every chunk is read, and checked, every epoch.
Prints the check's share of the epoch: chunks x check / epoch.

The activation buffers (``state/H0..H2``, :mod:`dnmf.io.buffers`): per block and
epoch a visit takes the crc of the block it writes and checks the chunks of H it
reads, at most two under the fast schedule (the latest activations and, while it
extrapolates, the previous ones), so at most three crcs of a ``rank x 8192``
float32 block; printed as chunks x 3 x crc / epoch. A whole-block read of H reads
no more than an unchecked one. ``--ab`` also times epochs with those checks and
without them (interleaved runs, median of the per-repeat ratios), and the check
``--resume`` makes before its first step (every chunk the checkpoint refers to,
read and checked in one process) is timed against the epoch too.

Run: ``PYTHONPATH=. python3 benchmarks/integrity.py [--ab]``
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
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
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--ab", action="store_true", help="time epochs with and without H checks")
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

        cfg = LearnConfig(rank=args.rank, epochs=args.epochs, tol=0, seed=0)

        def epoch_seconds(client: Client, out: Path) -> tuple[float, float]:
            """The median epoch of a run (the first left out: start-up), and the median
            share of its epochs spent computing crcs of H blocks (writes and checks)."""
            marks = [time.perf_counter()]
            spent = [0.0]
            shares: list[float] = []

            def on_step(p) -> None:  # type: ignore[no-untyped-def]
                if p.epoch_done:
                    marks.append(time.perf_counter())
                    shares.append(H_CRC_SECONDS[0] - spent[0])
                    spent[0] = H_CRC_SECONDS[0]

            learn_corpus(path, out, config=cfg, client=client, on_step=on_step, overwrite=True)
            epochs = [b - a for a, b in itertools.pairwise(marks)]
            share = [h / e for h, e in zip(shares, epochs, strict=True)]
            return statistics.median(epochs[1:] or epochs), statistics.median(share[1:] or share)

        ratios: list[float] = []
        with LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster, Client(cluster) as client, timed_H_crcs():  # fmt: skip
            model = Path(tmp) / "m.zarr"
            epoch, h_share = epoch_seconds(client, model)
            for n in range(args.repeat if args.ab else 0):
                # in turn on first, then off first: a shared machine's load falls on both
                times = {}
                for checked_H in (True, False) if n % 2 == 0 else (False, True):
                    ctx = contextlib.nullcontext() if checked_H else unchecked_buffers()
                    with ctx:
                        times[checked_H] = epoch_seconds(client, Path(tmp) / f"{checked_H}.zarr")[0]
                ratios.append(times[True] / times[False])
        H_block = rng.random((args.rank, cf)).astype(np.float32)
        h_check = best(lambda: checksum(H_block), args.repeat)
        resume_s, live = resume_check(model, args.repeat)

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
    hb = H_block.nbytes / 2**20
    print(f"activation buffers: crc of one {args.rank} x {cf} float32 block ({hb:.1f} MiB) "
          f"{h_check * 1e3:.2f} ms; per visit at most 3 (one write, two reads)")  # fmt: skip
    h_ratio = args.chunks * 3 * h_check / epoch
    print(f"H checks / epoch = {h_ratio * 100:.2f} % (target < 5 %); "
          f"with V's: {(ratio + h_ratio) * 100:.2f} %")  # fmt: skip
    print(f"H crcs timed inside the epochs (writes and checks, median share of an epoch): "
          f"{h_share * 100:.2f} %")  # fmt: skip
    print(f"--resume check ({live} chunks read and checked, once per resume): "
          f"{resume_s * 1e3:.0f} ms = {resume_s / epoch * 100:.1f} % of one epoch")  # fmt: skip
    if ratios:
        print(f"epoch with H checks / without (median of {len(ratios)} interleaved pairs): "
              f"{statistics.median(ratios):.3f} (each: {', '.join(f'{r:.3f}' for r in ratios)})")  # fmt: skip


def resume_check(model: Path, repeat: int) -> tuple[float, int]:
    """Seconds to read and check every activation chunk the model's checkpoint refers to."""
    from dnmf.io.buffers import check_chunks_task
    from dnmf.io.model import ModelStore

    store = ModelStore.open(model)
    state = store.load_checkpoint()
    assert state is not None
    items = store.buffer_chunks(state)
    url = str(Path(store.H_url).resolve())
    return best(lambda: check_chunks_task(items, url), repeat), len(items)


#: Seconds spent in the crcs of H blocks (:func:`timed_H_crcs`), in this process.
H_CRC_SECONDS = [0.0]


@contextlib.contextmanager
def timed_H_crcs() -> Iterator[None]:
    """Time every crc :mod:`dnmf.io.buffers` takes (the worker runs in this process)."""
    import dnmf.io.buffers

    plain = dnmf.io.buffers.checksum

    def timed(data: np.ndarray) -> int:
        t0 = time.perf_counter()
        try:
            return plain(data)
        finally:
            H_CRC_SECONDS[0] += time.perf_counter() - t0

    dnmf.io.buffers.checksum = timed  # type: ignore[assignment]
    try:
        yield
    finally:
        dnmf.io.buffers.checksum = plain  # type: ignore[assignment]


@contextlib.contextmanager
def unchecked_buffers() -> Iterator[None]:
    """Visits that neither check the chunks of H they read nor take the crc of what they
    write (in this process: the cluster's worker runs in it)."""
    import dnmf.io.buffers
    import dnmf.nmf.visit

    saved = dnmf.nmf.visit.expected_chunks, dnmf.io.buffers.written_crc
    dnmf.nmf.visit.expected_chunks = lambda visit: {}  # type: ignore[assignment]
    dnmf.io.buffers.written_crc = lambda arr, start, stop, data: {}  # type: ignore[assignment]
    try:
        yield
    finally:
        dnmf.nmf.visit.expected_chunks, dnmf.io.buffers.written_crc = saved


if __name__ == "__main__":
    main()
