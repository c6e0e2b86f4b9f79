"""Convolutive NMF (NMFD): dnmf against libnmfd's ``nmfd``, and dnmf on a corpus libnmfd cannot hold.

Run from the repository root (libnmfd: ``pip install --no-deps libnmfd tqdm``; its
declared requirements pin numpy < 2 and pandas < 2)::

    nice -n 19 python benchmarks/nmfd.py               # both parts
    nice -n 19 python benchmarks/nmfd.py --part compare --seconds 60 --iter 50
    nice -n 19 python benchmarks/nmfd.py --part corpus --epochs 2

**compare** — one spectrogram (synthetic notes and drums, ``dnmf.demo.synth_piece``,
sr 22050, n_fft 2048, hop 512, magnitude), rank 8, 8 lags, β = 1 (libnmfd's
nmfd is KL only), the same start for both: random templates scaled to unit
sum (libnmfd's convention) and constant activations. ``--iter`` iterations
each, one BLAS thread each (dnmf's tasks pin one; libnmfd is timed under the
same limit). Reported: wall time and the final KL divergence d(V | Λ) of each
(recomputed here, in float64, from the returned factors), as ratios. dnmf is
timed twice: in process (``fit_nmfd``, float32, the learner the cluster runs)
and as ``dnmf learn`` on a 2-worker LocalCluster over a corpus store of the
same spectrogram (scheduling and Zarr I/O included).

**corpus** — libnmfd holds the whole spectrogram and several full-size float64
work arrays in memory: its peak allocation per entry of V is measured here with
tracemalloc on the compare spectrogram (two iterations). With the machine's
memory that gives the largest spectrogram it can factorise; a corpus store
``--over`` times larger is written (the compare spectrogram tiled with random
gains, float32 on disk) and dnmf learns it on a 2-worker LocalCluster with its
V cache off (``DNMF_CACHE_MB=0``: every epoch reads V from the store), and
reports the time per epoch and the workers' peak resident memory. Nothing here
is a test.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import numpy as np

SR, N_FFT, HOP = 22050, 2048, 512
RANK, LAGS = 8, 8


def spectrogram(seconds: float, seed: int = 0) -> np.ndarray:
    import librosa

    from dnmf.demo import synth_piece

    y = synth_piece(seconds, SR, seed=seed)
    return np.abs(librosa.stft(y, n_fft=N_FFT, hop_length=HOP)).astype(np.float64)


def common_init(V: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Templates with unit sum each (libnmfd's normalisation) and constant activations.

    The constant is dnmf's uniform start, ``mean(V) / Σ_{r,t} mean_f W0`` (the mean of Λ
    is that of V), so the cluster run, which draws its own, starts there too.
    """
    from dnmf.nmf.init import activation_scale

    rng = np.random.default_rng(seed)
    W0 = rng.random((V.shape[0], RANK, LAGS))
    W0 /= W0.sum(axis=(0, 2), keepdims=True)
    H0 = np.full((RANK, V.shape[1]), activation_scale(float(V.mean()), W0, init="uniform"))
    return W0, H0


def libnmfd_nmfd(V: np.ndarray, W0: np.ndarray, H0: np.ndarray, n_iter: int) -> Any:
    import libnmfd.core.nmfconv as nmfconv

    nmfconv.tnrange = lambda n, desc=None: range(n)  # its notebook progress bar needs Jupyter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, H, _, _, tensor_W = nmfconv.nmfd(
            V, num_comp=RANK, num_frames=V.shape[1], num_iter=n_iter, num_template_frames=LAGS,
            init_W=[W0[:, r, :].copy() for r in range(RANK)], init_H=H0 / V.sum(),
        )  # fmt: skip
    return tensor_W, H * V.sum()  # libnmfd factorises V / sum(V)


def write_store(path: Path, V: np.ndarray, chunk_frames: int = 8192) -> Path:
    from dnmf.audio.features import FeatureConfig
    from dnmf.io.corpus import CorpusStore, FileRecord

    store = CorpusStore.create(path, FeatureConfig(sr=SR, n_fft=N_FFT, hop_length=HOP),
                               chunk_frames=chunk_frames, source="benchmark")  # fmt: skip
    store.resize_frames(V.shape[1])
    store.V[:] = V.astype(np.float32)
    store.commit([FileRecord("piece.wav", "h", 0, V.shape[1])], V.shape[1], {"benchmark": True})
    return path


def part_compare(args: argparse.Namespace, tmp: Path) -> None:
    from threadpoolctl import threadpool_limits

    from dnmf.cluster import connect
    from dnmf.io.model import ModelStore
    from dnmf.nmf.config import LearnConfig
    from dnmf.nmf.lags import beta_divergence_conv
    from dnmf.nmf.learner import fit_in_memory
    from pipelines.learn import learn_corpus

    V = spectrogram(args.seconds)
    W0, H0 = common_init(V)
    print(f"compare: V {V.shape[0]} x {V.shape[1]} ({args.seconds:g} s of audio), rank {RANK}, "
          f"{LAGS} lags, beta 1, {args.iter} iterations, same init")  # fmt: skip
    start = beta_divergence_conv(V, W0, H0, 1)

    with threadpool_limits(1):
        t0 = time.perf_counter()
        lib_W, lib_H = libnmfd_nmfd(V, W0, H0, args.iter)
        t_lib = time.perf_counter() - t0
    loss_lib = beta_divergence_conv(V, lib_W, lib_H, 1)

    cfg = LearnConfig(rank=RANK, lags=LAGS, beta=1, epochs=args.iter, init="custom", tol=0)
    V32 = V.astype(np.float32)
    t0 = time.perf_counter()
    ours = fit_in_memory(V32, cfg, W_init=W0.astype(np.float32), H_init=H0.astype(np.float32))
    t_mem = time.perf_counter() - t0
    loss_mem = beta_divergence_conv(V, ours.W.astype(np.float64), ours.H.astype(np.float64), 1)

    store = write_store(tmp / "compare.zarr", V)
    with connect(workers=2) as client:
        # H starts at the learner's own uniform init: the same constant as H0.
        ccfg = cfg.model_copy(update={"h_init": "uniform"})
        t0 = time.perf_counter()
        learn_corpus(store, tmp / "m.zarr", config=ccfg, W_init=W0.astype(np.float32),
                     client=client)  # fmt: skip
        t_dask = time.perf_counter() - t0
    m = ModelStore.open(tmp / "m.zarr")
    H_d = np.asarray(m.group["state"][f"H{args.iter % 2}"][:], dtype=np.float64)  # type: ignore[index]
    ck = m.load_checkpoint()
    assert ck is not None and ck.pending is not None
    H_d *= np.repeat(ck.pending, m.meta["block_frames"], axis=0)[: V.shape[1]].T
    loss_dask = beta_divergence_conv(V, m.W.astype(np.float64), H_d, 1)

    print(f"  start loss {start:.6g}")
    print(
        f"  {'':28s} {'time s':>9s} {'final KL':>12s} {'time / libnmfd':>15s} {'loss / libnmfd':>15s}"
    )
    rows = [("libnmfd nmfd (float64)", t_lib, loss_lib),
            ("dnmf fit_nmfd (float32)", t_mem, loss_mem),
            ("dnmf learn, 2 workers", t_dask, loss_dask)]  # fmt: skip
    for name, t, loss in rows:
        print(f"  {name:28s} {t:9.2f} {loss:12.6g} {t / t_lib:15.3f} {loss / loss_lib:15.4f}")
    sys.stdout.flush()


def libnmfd_bytes_per_entry(V: np.ndarray) -> float:
    W0, H0 = common_init(V)
    tracemalloc.start()
    libnmfd_nmfd(V, W0, H0, 2)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / V.size


def part_corpus(args: argparse.Namespace, tmp: Path) -> None:
    import psutil

    from dnmf.cluster import connect
    from dnmf.nmf.config import LearnConfig
    from pipelines.learn import learn_corpus

    base = spectrogram(args.seconds).astype(np.float32)
    per_entry = libnmfd_bytes_per_entry(base.astype(np.float64))
    ram = psutil.virtual_memory().total
    fits = ram / per_entry  # entries of V libnmfd's nmfd could hold at most
    n_frames = int(args.over * fits / base.shape[0])
    chunk = 8192
    n_frames = -(-n_frames // chunk) * chunk
    need = per_entry * base.shape[0] * n_frames
    hours = n_frames * HOP / SR / 3600
    print(f"corpus: libnmfd's nmfd peaks at {per_entry:.1f} bytes per entry of V (tracemalloc, "
          f"{base.shape[0]} x {base.shape[1]}); with {ram / 2**30:.1f} GiB of memory it can "
          f"hold at most {fits / base.shape[0]:,.0f} frames ({fits / base.shape[0] * HOP / SR / 3600:.2f} h "
          f"at hop {HOP}, sr {SR})")  # fmt: skip
    print(f"  corpus store: {base.shape[0]} x {n_frames:,} frames ({hours:.2f} h), "
          f"{base.shape[0] * n_frames * 4 / 2**30:.2f} GiB float32 on disk; libnmfd would need "
          f"{need / 2**30:.1f} GiB")  # fmt: skip

    from dnmf.audio.features import FeatureConfig
    from dnmf.io.corpus import CorpusStore, FileRecord

    t0 = time.perf_counter()
    store = CorpusStore.create(tmp / "big.zarr", FeatureConfig(sr=SR, n_fft=N_FFT, hop_length=HOP),
                               chunk_frames=chunk, source="benchmark")  # fmt: skip
    store.resize_frames(n_frames)
    rng = np.random.default_rng(1)
    reps = -(-chunk // base.shape[1]) + 1
    for a in range(0, n_frames, chunk):
        tiled = np.tile(base, reps)
        off = int(rng.integers(base.shape[1]))
        gains = np.repeat(rng.uniform(0.5, 2.0, reps), base.shape[1])
        store.V[:, a : a + chunk] = (tiled * gains)[:, off : off + chunk]
    store.commit([FileRecord("big.wav", "h", 0, n_frames)], n_frames, {"benchmark": True})
    print(f"  wrote the store in {time.perf_counter() - t0:.0f} s")

    os.environ["DNMF_CACHE_MB"] = "0"  # workers inherit it: V is read from the store each epoch
    cfg = LearnConfig(rank=RANK, lags=LAGS, beta=1, epochs=args.epochs, tol=0)
    epochs: list[float] = []
    last = [time.perf_counter()]

    def on_step(p: Any) -> None:
        if p.epoch_done:
            now = time.perf_counter()
            epochs.append(now - last[0])
            last[0] = now
            print(f"  epoch {p.epoch}: {epochs[-1]:.1f} s, loss {p.loss:.6g}")
            sys.stdout.flush()

    with connect(workers=2) as client:
        t0 = time.perf_counter()
        last[0] = t0
        result = learn_corpus(tmp / "big.zarr", tmp / "big_model.zarr", config=cfg, client=client,
                              on_step=on_step)  # fmt: skip
        wall = time.perf_counter() - t0
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    steady = float(np.mean(epochs[1:] if len(epochs) > 1 else epochs))  # epoch 0 holds the setup
    print(f"  dnmf learn, 2 workers, {args.epochs} epochs: {wall:.1f} s in all (setup and the "
          f"validating pass over V in the first), {steady:.1f} s per later epoch, "
          f"{n_frames / steady:,.0f} frames/s")  # fmt: skip
    print("  peak resident memory: workers " + ", ".join(f"{v / 2**30:.2f} GiB" for v in peaks.values())
          + f"; this process {me / 2**30:.2f} GiB; libnmfd would need {need / 2**30:.1f} GiB")  # fmt: skip
    print(f"  losses {result.losses}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["compare", "corpus", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=60.0, help="audio of the compare spectrogram")
    ap.add_argument("--iter", type=int, default=50, help="iterations in the comparison")
    ap.add_argument("--epochs", type=int, default=2, help="epochs on the large corpus")
    ap.add_argument("--over", type=float, default=1.2,
                    help="the large corpus is this many times what libnmfd can hold")  # fmt: skip
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dnmf-nmfd-bench-"))
    try:
        if args.part in ("compare", "both"):
            part_compare(args, tmp)
        if args.part in ("corpus", "both"):
            part_corpus(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
