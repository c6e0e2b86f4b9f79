"""β = 2: dnmf's HALS and MU against scikit-learn's ``cd`` (HALS) and ``mu`` solvers, one core.

Run from the repository root::

    python benchmarks/beta2_hals.py                 # 60 s of synthetic music, rank 32
    python benchmarks/beta2_hals.py --seconds 120 --rank 64

A spectrogram ``|STFT|²`` of synthesized notes (harmonic tones with decays at
random pitches) and noise hits, n_fft 2048, hop 512, sr 22050. Every solver
runs in this process with BLAS on one thread, from scikit-learn's random init
of the same seed (dnmf draws the same dictionary; its activations are seeded
per block at the same scale):

* scikit-learn ``NMF(solver='cd', init='random', max_iter=200, tol=0)``: its
  loss L* and time T_cd; ``NMF(solver='mu')`` likewise, for reference;
* dnmf's in-process learner (:func:`dnmf.nmf.learner.learn`, one block, full
  batch, ``norm=None``) with ``solver='hals'`` and ``solver='mu'``, the loss of
  every epoch taken with its time (the epoch loss is ``d(V | W_e H_{e+1})``,
  the dictionary before that epoch's update: a conservative lag).

Printed: each solver's time to reach L* (or its best loss) and the ratios to
T_cd. Losses are half the squared Frobenius norm, summed. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def synth(seconds: float, sr: int = 22050, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    y = np.zeros(n)
    t = np.arange(int(0.8 * sr)) / sr
    for onset in rng.uniform(0, seconds - 0.8, size=int(6 * seconds)):
        f0 = 110.0 * 2 ** (rng.integers(0, 36) / 12)
        note = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 12) if f0 * h < sr / 2)
        note *= np.exp(-t * rng.uniform(2, 8)) * rng.uniform(0.2, 1.0)
        a = int(onset * sr)
        y[a : a + len(t)] += note
    for onset in rng.uniform(0, seconds - 0.1, size=int(3 * seconds)):
        a = int(onset * sr)
        burst = rng.standard_normal(int(0.08 * sr)) * np.exp(-np.arange(int(0.08 * sr)) / 300)
        y[a : a + len(burst)] += 0.3 * burst
    import librosa

    return (np.abs(librosa.stft(y.astype(np.float32), n_fft=2048, hop_length=512)) ** 2).astype(
        np.float64
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--iter", type=int, default=200)
    args = ap.parse_args()

    from sklearn.decomposition import NMF
    from sklearn.decomposition._nmf import _initialize_nmf
    from threadpoolctl import threadpool_limits

    from dnmf.backends import MemoryBackend
    from dnmf.nmf.config import LearnConfig
    from dnmf.nmf.learner import learn, start_state

    V = synth(args.seconds)
    V /= V.mean()
    X = V.T.copy()
    n_bins, n_frames = V.shape
    print(
        f"V {n_bins} x {n_frames} (|STFT|^2, {args.seconds:g} s), rank {args.rank}, one BLAS thread"
    )
    rows = []
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Wsk, Hsk = _initialize_nmf(X, args.rank, init="random", random_state=0)
        sk = {}
        for solver in ("cd", "mu"):
            m = NMF(args.rank, solver=solver, beta_loss=2, init="custom", max_iter=args.iter, tol=0)
            t0 = time.perf_counter()
            A = m.fit_transform(X, W=Wsk.copy(), H=Hsk.copy())
            dt = time.perf_counter() - t0
            loss = 0.5 * float(np.sum((X - A @ m.components_) ** 2))
            sk[solver] = (loss, dt)
        L_star, T_cd = sk["cd"]
        rows.append(("scikit-learn NMF(cd)", T_cd, L_star))
        rows.append(("scikit-learn NMF(mu)", sk["mu"][1], sk["mu"][0]))
        for solver in ("hals", "mu"):
            cfg = LearnConfig(
                rank=args.rank, beta=2, solver=solver, epochs=args.iter, init="custom",
                norm=None, tol=0,
            )  # fmt: skip
            be = MemoryBackend(np.ascontiguousarray(V), n_frames)
            state = start_state(cfg, be, W_init=Hsk.T.copy())
            marks: list[tuple[float, float]] = []
            t0 = time.perf_counter()
            learn(
                cfg, be, state, on_step=lambda p, m=marks: m.append((time.perf_counter(), p.loss))
            )
            times = np.array([t for t, _ in marks]) - t0
            losses = np.array([loss for _, loss in marks])
            hit = np.flatnonzero(losses <= L_star)
            t_hit = float(times[hit[0]]) if hit.size else float("nan")
            rows.append((f"dnmf {solver} to L*", t_hit, float(losses.min())))
    print(f"L* = {L_star:.6g} (scikit-learn cd after {args.iter} iterations, {T_cd:.2f} s)")
    print(f"{'solver':<24} {'seconds':>9} {'loss / L*':>10} {'T_cd / seconds':>15}")
    for name, secs, loss in rows:
        ratio = T_cd / secs if secs == secs else float("nan")
        print(f"{name:<24} {secs:9.2f} {loss / L_star:10.4f} {ratio:15.2f}")


if __name__ == "__main__":
    main()
