"""Ingest throughput against a plain librosa loop, worker scaling, memory, and the no-op rerun.

Run from the repository root::

    python benchmarks/ingest.py            # about 2 hours of audio, a 3-hour file
    python benchmarks/ingest.py --quick    # a few minutes of audio, a 20-minute file

Every figure is measured in this one run on this machine and printed as a
ratio against a reference measured alongside it. Nothing here is a test.

Two hours by default, not half an hour: the plain loop took 1.6 s on 30 files,
where a run of ingest has fixed costs of a few tenths of a second (the store's
metadata, the probe round trip, the commit) that a corpus worth a cluster
makes small. Each store is deleted as soon as it is measured, so that no
measurement pays for the kernel writing back the dirty pages of an earlier
store (they are dropped instead). The plain loop writes nothing; the row
"plain loop + np.save" says what writing its spectrograms would add to it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from zarr.codecs import BloscCodec, ZstdCodec

import dnmf.io.corpus as corpus_mod
from dnmf.cluster import connect
from dnmf.demo import synth_piece
from dnmf.io.corpus import CorpusStore
from pipelines.ingest import ingest


def make_corpus(root: Path, minutes: float, seed: int = 0) -> list[Path]:
    """Music-like files of about one minute at mixed rates and channel counts."""
    layouts = [(44100, 2, "flac"), (22050, 1, "wav"), (48000, 1, "wav"), (44100, 1, "flac")]
    paths = []
    for i in range(max(1, round(minutes))):
        sr, ch, ext = layouts[i % len(layouts)]
        y = synth_piece(60.0, sr, seed=seed + i)
        data = np.stack([y, 0.7 * y], axis=1) if ch == 2 else y
        path = root / f"d{i % 5}" / f"track{i:04d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, data, sr)
        paths.append(path)
    return paths


def plain_loop(paths: list[Path], save_to: Path | None = None) -> float:
    """What a user writes today: librosa.load + librosa.stft, one file after another
    (and, given ``save_to``, np.save of each float32 |STFT| there, deleted afterwards)."""
    import librosa

    t0 = time.perf_counter()
    for i, p in enumerate(paths):
        y, _ = librosa.load(p, sr=22050)
        S = np.abs(librosa.stft(y, n_fft=2048, hop_length=512))
        if save_to is not None:
            save_to.mkdir(parents=True, exist_ok=True)
            np.save(save_to / f"{i}.npy", S)
    wall = time.perf_counter() - t0
    if save_to is not None:
        shutil.rmtree(save_to)
    return wall


def _warm(paths: list[Path]) -> None:
    plain_loop(paths)


def plain_loop_two_processes(paths: list[Path]) -> float:
    """Wall seconds of the plain loop split over two processes (alternate files), each
    warmed up first: how much faster two processes run on this machine at all, the
    ceiling for two workers against one."""
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(2, initializer=_warm, initargs=(paths[:1],)) as pool:
        pool.map(time.sleep, [0.5, 0.5], chunksize=1)  # both started and warmed up
        t0 = time.perf_counter()
        pool.map(plain_loop, [paths[0::2], paths[1::2]], chunksize=1)
        return time.perf_counter() - t0


def timed_ingest(corpus: Path, store: Path, workers: int) -> tuple[float, float]:
    """Wall seconds of a whole ingest (cluster start and stop included) and without them."""
    shutil.rmtree(store, ignore_errors=True)
    t0 = time.perf_counter()
    with connect(workers=workers) as client:
        t1 = time.perf_counter()
        ingest(corpus, store, client=client)
        work = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    shutil.rmtree(store)
    return wall, work


CODECS: dict[str, Any] = {
    "none (the default)": None,
    "blosc lz4 clevel 1, shuffle": [BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")],
    "zstd level 1": [ZstdCodec(level=1)],
}


def codec_figures(corpus: Path, tmp: Path, workers: int, repeats: int) -> list[tuple[str, str]]:
    """Per codec of V: ingest seconds and one read of V (best of ``repeats``), bytes on disk.

    One cluster for all; a first ingest warms it up, and the codecs take turns in
    each repeat, in an order rotated each time, so that none pays for being first.
    """
    best = {name: [float("inf"), float("inf"), 0] for name in CODECS}
    with connect(workers=workers) as client:
        ingest(corpus, tmp / "warm.zarr", client=client, rebuild=True)
        shutil.rmtree(tmp / "warm.zarr")
        for r in range(repeats):
            order = list(CODECS.items())
            for name, codecs in order[r % len(order) :] + order[: r % len(order)]:
                corpus_mod.V_COMPRESSORS = codecs
                store = tmp / "codec.zarr"
                shutil.rmtree(store, ignore_errors=True)
                t0 = time.perf_counter()
                ingest(corpus, store, client=client)
                t1 = time.perf_counter()
                CorpusStore.open(store).V[:]
                t2 = time.perf_counter()
                size = sum(f.stat().st_size for f in (store / "V").rglob("*") if f.is_file())
                shutil.rmtree(store)
                b = best[name]
                b[0], b[1], b[2] = min(b[0], t1 - t0), min(b[1], t2 - t1), size
    corpus_mod.V_COMPRESSORS = None
    return [
        (f"V {name}, {workers} workers", f"ingest {t:.2f} s, {size / 1e6:.0f} MB, "
         f"reading V once {r:.2f} s")
        for name, (t, r, size) in best.items()
    ]  # fmt: skip


def long_file_peak_rss(tmp: Path, hours: float) -> tuple[float, float, float]:
    """Peak RSS (MB) of the one worker that ingests one long file; and the file's hours."""
    path = tmp / "long" / "long.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    sr = 44100
    piece = synth_piece(60.0, sr, seed=99)
    with sf.SoundFile(path, "w", sr, 2, subtype="PCM_16") as fh:
        for _ in range(round(hours * 60)):
            fh.write(np.stack([piece, 0.5 * piece], axis=1))
    store = tmp / "long.zarr"
    with connect(workers=1) as client:
        base = max(client.run(_peak_rss_mb).values())
        t0 = time.perf_counter()
        ingest(path.parent, store, client=client)
        wall = time.perf_counter() - t0
        peak = max(client.run(_peak_rss_mb).values())
    shutil.rmtree(store)
    path.unlink()
    return peak, base, wall


def _peak_rss_mb() -> float:
    """The worker's peak RSS: VmHWM, not ru_maxrss, which a spawned process inherits from
    the high-water mark of the process that forked it (here, the benchmark's own)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def noop_rerun(tmp: Path, n_files: int) -> float:
    """Seconds for ``dnmf ingest`` (a new process) to find nothing new among n_files files."""
    corpus = tmp / "many"
    y = synth_piece(0.2, 22050, seed=3)
    for i in range(n_files):
        path = corpus / f"g{i % 20}" / f"f{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, y, 22050)
    store = tmp / "many.zarr"
    ingest(corpus, store, workers=2)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "dnmf.cli", "ingest", str(corpus), "-o", str(store), "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    assert json.loads(out.stdout)["nothing_new"], out.stdout
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a small corpus and a 20-minute file")
    ap.add_argument("--minutes", type=float, help="minutes of audio in the corpus")
    ap.add_argument("--long-hours", type=float, help="hours of the long file (peak RSS)")
    ap.add_argument("--noop-files", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=2, help="best of this many runs per figure")
    args = ap.parse_args()
    minutes = args.minutes or (4 if args.quick else 120)
    long_hours = args.long_hours or (1 / 3 if args.quick else 3.0)

    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dnmf-bench-") as tmpdir:
        tmp = Path(tmpdir)
        paths = make_corpus(tmp / "corpus", minutes)
        hours = sum(sf.info(p).duration for p in paths) / 3600
        # Interleaved, best of --repeats: the machine is shared and noisy.
        plain, saved, one_total, one, two_total, two = (float("inf"),) * 6
        plain2 = float("inf")
        each: list[tuple[float, float, float]] = []  # this repeat's (plain, one, two)
        plain_loop(paths[:1])  # librosa's lazy imports, as the workers' warm-up does them
        for _ in range(args.repeats):
            p = plain_loop(paths)
            plain, saved = min(plain, p), min(saved, plain_loop(paths, tmp / "npy"))
            plain2 = min(plain2, plain_loop_two_processes(paths))
            a, b = timed_ingest(tmp / "corpus", tmp / "one.zarr", 1)
            one_total, one = min(one_total, a), min(one, b)
            a, c = timed_ingest(tmp / "corpus", tmp / "two.zarr", 2)
            two_total, two = min(two_total, a), min(two, c)
            each.append((p, b, c))
        codecs = codec_figures(tmp / "corpus", tmp, 2, args.repeats)
        peak, base, long_wall = long_file_peak_rss(tmp, long_hours)
        noop = noop_rerun(tmp, args.noop_files)

    rows = [
        ("files", f"{len(paths)}"),
        ("audio", f"{hours:.3f} h"),
        ("plain librosa loop (load + stft), 1 process", f"{plain:.1f} s  ({hours * 3600 / plain:.0f}x realtime)"),
        ("plain loop + np.save of each |STFT| (not a target)", f"{saved:.1f} s"),
        ("plain loop in 2 processes, half the files each", f"{plain2:.1f} s  ({plain / plain2:.2f}x the 1-process loop: this machine's ceiling for 2 workers vs 1)"),
        ("dnmf ingest, 1 worker (cluster start and stop included)", f"{one_total:.1f} s  ({one:.1f} s on the cluster)"),
        ("dnmf ingest, 2 workers (cluster start and stop included)", f"{two_total:.1f} s  ({two:.1f} s on the cluster)"),
        ("realtime factor, 2 workers", f"{hours * 3600 / two_total:.0f}x  ({hours * 3600 / two:.0f}x on the cluster)"),
        ("1 worker vs plain loop (target >= 0.9)", f"{plain / one:.2f}x on the cluster  ({plain / one_total:.2f}x with start and stop)"),
        ("2 workers vs 1 worker (target >= 1.7)", f"{one / two:.2f}x on the cluster  ({one_total / two_total:.2f}x with start and stop)"),
        ("each repeat, on the cluster: 1 worker vs plain", "  ".join(f"{p / b:.2f}x" for p, b, _ in each)),
        ("each repeat, on the cluster: 2 workers vs 1", "  ".join(f"{b / c:.2f}x" for _, b, c in each)),
        *codecs,
        (f"peak worker RSS, one {long_hours:.2f} h file (target < 1 GB)", f"{peak:.0f} MB (idle worker {base:.0f} MB; {long_wall:.0f} s)"),
        (f"nothing-new rerun, {args.noop_files} files, new process (target < 2 s)", f"{noop:.2f} s"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    print(f"# python benchmarks/ingest.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"dnmf ingest benchmark ({'quick' if args.quick else 'full'}, best of {args.repeats})")
    print(
        f"  ({os.cpu_count()} cores; load average {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end)"
    )
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


if __name__ == "__main__":
    main()
