"""Learning speed against scikit-learn: time to a loss, and GEMM efficiency of the chunk kernel.

Run from the repository root::

    python benchmarks/learn.py            # 20 minutes of music-like audio
    python benchmarks/learn.py --quick    # about 3 minutes of audio, a few minutes to run
    python benchmarks/learn.py --plot loss.png --json learn.json

The committed run: ``benchmarks/results/learn.txt`` and ``learn_loss_vs_time.png``
(``--plot benchmarks/results/learn_loss_vs_time.png``).

One corpus store, rank 64, beta = 1 (Kullback-Leibler), n_fft 2048, sr 22050.
The references, all measured in this run on this machine:

* scikit-learn ``NMF(solver='mu', init='random', max_iter=200, tol=0)`` on
  ``X = V.T`` in memory: its loss after 200 iterations is L*, its wall time
  T_sk is its time to L*.
* scikit-learn ``MiniBatchNMF(batch_size=1024, tol=0, max_no_improvement=None)``
  on the frames shuffled once, run epoch by epoch with the very steps of
  ``MiniBatchNMF.fit`` (checked against ``fit`` itself) and a full loss
  evaluation after every epoch, kept off its clock, until it stops improving.
* dnmf ``learn_corpus`` on the corpus store, default LocalCluster, full batch
  (Lee-Seung MU, the same iteration as scikit-learn's) and minibatch, with the
  loss of every epoch from the ``on_step`` callback; stopped once it is at or
  below both L* and MiniBatchNMF's best loss (or at the epoch cap).
* the numpy float32 GEMM rate, single-threaded, for the shapes of one chunk.

dnmf's minibatch defaults here were chosen by trying settings on the quick and
the full corpus (2 workers): blocks of one Zarr chunk (a smaller block reads
the whole chunk anyway), half the blocks per step, ``n_inner=2`` and
``forget_factor=0``; steps of ~1/8 of the data and rho=0.7 were slower to L*.

Losses are all the β-divergence summed over every entry of V (no square root,
no normalisation). dnmf's full-batch epoch loss is d(V | W_e H_{e+1}): every
block's H updated with W_e, summed over blocks; the script checks it against
d(V | W H) recomputed from the model store. Minibatch losses (both libraries)
are d(V | W H) of the dictionary at the end of the epoch with every frame's
activations as the last visit of its batch left them. Every figure is printed
as a ratio against a reference measured alongside it. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import resource
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from dnmf.demo import synth_piece
from dnmf.nmf.divergence import beta_divergence
from pipelines.ingest import ingest

RANK = 64
BETA = 1.0  # --beta sets it
SK_LOSS = {0.0: "itakura-saito", 1.0: "kullback-leibler", 2.0: "frobenius"}
BETA_NAME = {0.0: "IS", 1.0: "KL", 2.0: "Euclidean"}
NMF_ITER = 200
BATCH_SIZE = 1024


def make_corpus(root: Path, minutes: float, seed: int = 0) -> list[Path]:
    """Music-like files of about one minute, alternately 22050 Hz mono WAV and 44100 Hz stereo FLAC."""
    layouts = [(22050, 1, "wav"), (44100, 2, "flac")]
    n_files = max(1, round(minutes))
    seconds = 60.0 * minutes / n_files
    paths = []
    for i in range(n_files):
        sr, ch, ext = layouts[i % len(layouts)]
        y = synth_piece(seconds, sr, seed=seed + i)
        data = np.stack([y, 0.7 * y], axis=1) if ch == 2 else y
        path = root / f"d{i % 4}" / f"track{i:04d}.{ext}"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, data, sr)
        paths.append(path)
    return paths


def load_V(store: Path) -> np.ndarray:
    """The whole spectrogram (bins, frames) float32, once, for the in-memory references."""
    from dnmf.io.corpus import CorpusStore

    corpus = CorpusStore.open(store)
    return np.ascontiguousarray(corpus.V[:, : corpus.n_frames])


def divergence(V: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    """d_beta(V | W H) summed, accumulated in float64 (dnmf's and scikit-learn's definition)."""
    return beta_divergence(V, W, H, BETA)


def first_below(times: list[float], losses: list[float], target: float) -> tuple[float, int] | None:
    """(time, index) of the first loss at or below ``target``."""
    for i, (t, loss) in enumerate(zip(times, losses, strict=True)):
        if loss <= target:
            return t, i
    return None


# -- the machine may be shared: measure what other processes take ---------------------------
def _busy_seconds() -> float:
    """CPU seconds all processes of the machine have used (from /proc/stat)."""
    import psutil

    c = psutil.cpu_times()
    return sum(getattr(c, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def _own_seconds() -> float:
    """CPU seconds of this process and its reaped children (the cluster's workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Load:
    """Per phase: wall seconds and the cores other processes kept busy meanwhile.

    Before each phase it waits (up to ``wait`` seconds, off every clock) for the
    other processes to use less than ``idle`` cores, so that a shared machine
    skews the comparison as little as it can; what is left is reported.
    """

    def __init__(self, wait: float, idle: float = 0.15) -> None:
        self.wait, self.idle = wait, idle
        self.phases: dict[str, dict[str, float]] = {}

    def _other_cores(self, seconds: float) -> float:
        b0, o0, t0 = _busy_seconds(), _own_seconds(), time.perf_counter()
        time.sleep(seconds)
        return ((_busy_seconds() - b0) - (_own_seconds() - o0)) / (time.perf_counter() - t0)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t_wait = time.perf_counter()
        while time.perf_counter() - t_wait < self.wait and self._other_cores(1.0) > self.idle:
            pass
        waited = time.perf_counter() - t_wait
        b0, o0, t0 = _busy_seconds(), _own_seconds(), time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        other = (_busy_seconds() - b0) - (_own_seconds() - o0)
        self.phases[name] = {"seconds": dt, "other_cores": max(0.0, other / dt), "waited": waited}


def _best(ts: list[float]) -> float:
    return min(ts)


def _timeit(fn: Any, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return _best(ts)


# -- efficiency of the chunk kernel ------------------------------------------------------
def gemm_efficiency(V: np.ndarray, chunk_frames: int, reps: int) -> dict[str, Any]:
    """chunk_stats on one full chunk vs numpy float32 GEMMs of its shapes, one thread each."""
    from threadpoolctl import threadpool_limits

    from dnmf.nmf.init import random_H, random_W, scale_for
    from dnmf.nmf.kernels import chunk_stats

    n_bins = V.shape[0]
    cols = np.arange(chunk_frames) % V.shape[1]  # a short corpus is wrapped to a full chunk
    Vc = np.ascontiguousarray(V[:, cols])
    avg = scale_for(float(V.mean(dtype=np.float64)), RANK)
    W = random_W(n_bins, RANK, seed=0, avg=avg)
    Hc = random_H(RANK, chunk_frames, seed=0, block=0, avg=avg)
    R = np.ascontiguousarray(Vc / np.maximum(W @ Hc, 1e-7))
    flop = 2.0 * n_bins * RANK * chunk_frames  # one bins x rank x frames product
    out: dict[str, Any] = {"shape": [n_bins, chunk_frames], "rank": RANK}
    with threadpool_limits(limits=1):
        t_wh = _timeit(lambda: W @ Hc, reps)
        t_wtr = _timeit(lambda: W.T @ R, reps)
        t_rht = _timeit(lambda: R @ Hc.T, reps)
        out["gemm_seconds"] = {"W @ H": t_wh, "W.T @ R": t_wtr, "R @ H.T": t_rht}
        out["gemm_gflops"] = {k: flop / v / 1e9 for k, v in out["gemm_seconds"].items()}
        for beta in dict.fromkeys((BETA, 1.0, 0.0, 2.0)):
            per: dict[str, Any] = {}
            for n_inner in (1, 2):
                t_k = _timeit(
                    lambda n=n_inner, b=beta: chunk_stats(Vc, W, Hc, beta=b, n_inner=n), reps
                )
                # the products of one visit, each bins x rank x frames (kernels.chunk_stats):
                # beta 1: per inner update W @ H and W.T @ (V / WH); then W @ H, (V / WH) @ H.T
                if beta == 1:
                    t_g = (n_inner + 1) * t_wh + n_inner * t_wtr + t_rht
                    n_gemm = 2 * n_inner + 2
                elif beta == 2:  # W.T @ V once, V @ H.T (the rank x rank Gram products not counted)
                    t_g, n_gemm = t_wtr + t_rht, 2
                else:  # per inner update WH, W.T @ numerator, W.T @ denominator; then the same for W
                    t_g = (n_inner + 1) * t_wh + 2 * n_inner * t_wtr + 2 * t_rht
                    n_gemm = 3 * n_inner + 3
                per[f"n_inner={n_inner}"] = {
                    "seconds": t_k,
                    "gemms": n_gemm,
                    "gflops": n_gemm * flop / t_k / 1e9,
                    "gemm_only_seconds": t_g,
                    "gemm_only_gflops": n_gemm * flop / t_g / 1e9,
                    "ratio": t_g / t_k,
                }
            out[f"beta={beta:g}"] = per
        out.update(out[f"beta={BETA:g}"])
    return out


# -- scikit-learn ----------------------------------------------------------------------------
def sklearn_nmf(X: np.ndarray, V: np.ndarray, n_iter: int) -> dict[str, Any]:
    """NMF(mu, random init, tol=0) for ``n_iter`` iterations: its loss L* and wall time."""
    from sklearn.decomposition import NMF

    est = NMF(
        n_components=RANK, solver="mu", beta_loss=SK_LOSS.get(BETA, BETA), init="random",
        max_iter=n_iter, tol=0.0, random_state=0,
    )  # fmt: skip
    t0 = time.perf_counter()
    Wsk = est.fit_transform(X)
    wall = time.perf_counter() - t0
    return {
        "seconds": wall,
        "n_iter": int(est.n_iter_),
        "loss": divergence(V, est.components_.T, Wsk.T),
        "loss_sklearn": float(est.reconstruction_err_) ** 2 / 2,  # its float32 evaluation
        "W": Wsk,
        "H": est.components_,
    }


def sklearn_nmf_trace(X: np.ndarray, V: np.ndarray, n_iter: int, every: int) -> list[float]:
    """The losses of the same NMF every ``every`` iterations (segments warm-started, not timed).

    Multiplicative updates carry no state besides (W, H), so ``init='custom'``
    segments follow the iterates of the one long run.
    """
    from sklearn.decomposition import NMF

    common = dict(
        n_components=RANK, solver="mu", beta_loss=SK_LOSS.get(BETA, BETA), tol=0.0, random_state=0
    )
    est = NMF(init="random", max_iter=every, **common)
    Wsk = est.fit_transform(X)
    H = est.components_
    losses = [divergence(V, H.T, Wsk.T)]
    for _ in range(every, n_iter, every):
        est = NMF(init="custom", max_iter=every, **common)
        Wsk = est.fit_transform(X, W=Wsk, H=H)
        H = est.components_
        losses.append(divergence(V, H.T, Wsk.T))
    return losses


def sklearn_minibatch(
    X: np.ndarray, V: np.ndarray, *, max_epochs: int, patience: int, min_gain: float,
    init: str | None, check: bool,
) -> dict[str, Any]:  # fmt: skip
    """MiniBatchNMF epoch by epoch: the steps of ``MiniBatchNMF.fit`` on frames shuffled once.

    ``fit`` cycles through ``gen_batches`` calling ``_minibatch_step`` and
    ``_minibatch_convergence``; this loop does the same calls, with a time stamp
    and a full loss evaluation (off the clock) after every epoch. It stops at
    ``max_epochs`` or when the best loss has gained less than ``min_gain``
    (relative) over the last ``patience`` epochs.
    """
    from sklearn.decomposition import MiniBatchNMF
    from sklearn.utils import gen_batches

    n = X.shape[0]
    perm = np.random.default_rng(0).permutation(n)
    Xp = np.ascontiguousarray(X[perm])

    def make(max_iter: int) -> Any:
        return MiniBatchNMF(
            n_components=RANK, beta_loss=SK_LOSS.get(BETA, BETA), batch_size=BATCH_SIZE,
            max_iter=max_iter, tol=0.0, max_no_improvement=None, random_state=0, init=init,
        )  # fmt: skip

    est = make(max_epochs)
    off_clock = 0.0
    t0 = time.perf_counter()
    est._validate_params()
    est._check_params(Xp)
    W, H = est._check_w_h(Xp, None, None, True)
    H_buffer = H.copy()
    est._components_numerator = H.copy()
    est._components_denominator = np.ones(H.shape, dtype=H.dtype)
    est._ewa_cost, est._ewa_cost_min, est._no_improvement = None, None, 0
    steps_per_epoch = math.ceil(n / est._batch_size)
    n_steps = max_epochs * steps_per_epoch
    t_init = time.perf_counter() - t0
    times: list[float] = []
    losses: list[float] = []
    online: list[float] = []
    H_first = None
    step = 0
    for epoch in range(max_epochs):
        cost = 0.0
        for batch in gen_batches(n, est._batch_size):
            c = est._minibatch_step(Xp[batch], W[batch], H, True)
            est._minibatch_convergence(Xp[batch], c, H, H_buffer, n, step, n_steps)
            H_buffer[:] = H
            cost += float(c) * (batch.stop - batch.start)
            step += 1
        now = time.perf_counter()
        times.append(now - t0 - off_clock)
        online.append(cost)
        W_frames = np.empty_like(W)
        W_frames[perm] = W
        losses.append(divergence(V, H.T, W_frames.T))
        if epoch == 0:
            H_first = H.copy()
        off_clock += time.perf_counter() - now
        if epoch >= patience:
            before = min(losses[:-patience])
            if before - min(losses[-patience:]) < min_gain * before:
                break
    out: dict[str, Any] = {
        "init": init or "nndsvda (its default)",
        "init_seconds": t_init,
        "epochs": len(losses),
        "steps_per_epoch": steps_per_epoch,
        "times": times,
        "losses": losses,
        "online_losses": online,
    }
    if check:  # the loop above is MiniBatchNMF.fit, step for step
        ref = make(1)
        ref.fit(Xp)
        out["fit_check_max_abs_diff"] = float(np.max(np.abs(ref.components_ - H_first)))
    return out


# -- dnmf ------------------------------------------------------------------------------------
class _Stop(Exception):
    """Raised from the callback to end a run that has reached its targets."""


def model_loss(model_path: Path, V: np.ndarray) -> tuple[float, int]:
    """d(V | W H) of the model store's last checkpoint: its W and the H of its epoch's buffer."""
    import zarr

    from dnmf.io.model import ModelStore

    model = ModelStore.open(model_path)
    state = model.load_checkpoint()
    assert state is not None
    done = len(state.losses)
    H = np.asarray(zarr.open_array(f"{model_path}/state/H{done % 2}", mode="r")[:])
    assert state.pending is not None
    block = int(model.meta["block_frames"])
    scale = np.repeat(state.pending, block, axis=0)[: H.shape[1]].T.astype(H.dtype)
    return divergence(V, state.W, H * scale), done


def dnmf_run(
    store: Path, model_path: Path, config: Any, V: np.ndarray, target: float, *, full_eval: bool,
    max_seconds: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """learn_corpus on the default LocalCluster, recording (time, loss) every epoch.

    ``full_eval``: the loss of an epoch is d(V | W H) recomputed from the model
    store at the next step (off the clock), as for MiniBatchNMF; otherwise the
    epoch loss of the callback. Stops once a loss is at or below ``target``,
    after that epoch's checkpoint, or once ``max_seconds`` of learning are spent.
    """
    from pipelines.learn import learn_corpus

    rec: dict[str, Any] = {"times": [], "learn_times": [], "losses": [], "online_losses": []}
    off_clock = 0.0
    learn0: float | None = None
    stop_next = False
    evaluate_next = False
    t_call = time.perf_counter()

    def on_step(p: Any) -> None:
        nonlocal off_clock, learn0, stop_next, evaluate_next
        now = time.perf_counter()
        if learn0 is None:
            learn0 = now - p.seconds
            rec["start_seconds"] = learn0 - t_call
        stop = stop_next
        if evaluate_next:  # the previous epoch's checkpoint is on disk now
            loss, done = model_loss(model_path, V)
            assert done == len(rec["losses"]) + 1
            rec["losses"].append(loss)
            evaluate_next = False
            stop = stop or loss <= target
        if p.epoch_done:
            rec["times"].append(now - t_call - off_clock)
            rec["learn_times"].append(now - learn0 - off_clock)
            rec["online_losses"].append(float(p.loss))
            over = max_seconds is not None and rec["learn_times"][-1] > max_seconds
            if full_eval:
                evaluate_next = True
                stop_next = over
            else:
                rec["losses"].append(float(p.loss))
                stop_next = p.loss <= target or over
        if stop:  # after the checkpoint of the epoch that reached the target
            off_clock += time.perf_counter() - now
            raise _Stop
        off_clock += time.perf_counter() - now

    stopped = False
    try:
        learn_corpus(store, model_path, config=config, overwrite=True, on_step=on_step)
    except _Stop:
        stopped = True
    rec["wall_seconds"] = time.perf_counter() - t_call - off_clock
    if evaluate_next:  # the last epoch ended the run
        rec["losses"].append(model_loss(model_path, V)[0])
    rec["stopped"] = (
        "epochs" if not stopped else "target" if min(rec["losses"]) <= target else "time"
    )
    rec["epochs"] = len(rec["losses"])
    rec["model_loss"], rec["model_epochs"] = model_loss(model_path, V)
    return rec


def overhead_run(
    store: Path, model_path: Path, config: Any, workers: int, *, processes: bool
) -> dict[str, Any]:
    """Full-batch epochs on a LocalCluster of worker processes, or of threads in this process.

    The same computation both ways (the same tasks, the same W): only where the
    workers live differs. The first epoch (V read from Zarr into the workers'
    caches) is left out of the per-epoch figure.
    """
    from dnmf.cluster import connect
    from dnmf.io.model import ModelStore
    from pipelines.learn import learn_corpus

    ends: list[float] = []

    def on_step(p: Any) -> None:
        if p.epoch_done:
            ends.append(time.perf_counter())

    with connect(workers=workers, processes=processes) as client:
        t0 = time.perf_counter()
        learn_corpus(store, model_path, config=config, overwrite=True, client=client,
                     on_step=on_step)  # fmt: skip
        wall = time.perf_counter() - t0
    state = ModelStore.open(model_path).load_checkpoint()
    assert state is not None
    epochs = np.diff(ends)
    return {
        "epoch_seconds": [float(x) for x in epochs],
        "median_epoch_seconds": float(np.median(epochs)),
        "wall_seconds": wall,
        "W_sha": hashlib.sha256(np.ascontiguousarray(state.W).tobytes()).hexdigest(),
    }


def _config(args: argparse.Namespace, minibatch: bool, epochs: int) -> Any:
    from dnmf.nmf.config import LearnConfig

    if not minibatch:
        return LearnConfig(rank=RANK, beta=BETA, epochs=epochs, tol=0.0)
    return LearnConfig(
        rank=RANK, beta=BETA, epochs=epochs, tol=0.0, block_frames=args.block_frames,
        batch_chunks=args.batch_chunks, n_inner=args.n_inner, forget_factor=args.forget_factor,
    )  # fmt: skip


# -- report ----------------------------------------------------------------------------------
def _t(x: float | None) -> str:
    return "not reached" if x is None else f"{x:.1f} s"


def _ratio(ref: float | None, x: float | None) -> str:
    return "-" if ref is None or x is None or x <= 0 else f"{ref / x:.2f}x"


def plot(path: Path, res: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    nmf = res["sklearn_nmf"]
    if nmf.get("trace"):
        ax.plot(
            _nmf_trace_times(nmf),
            nmf["trace"],
            "-",
            color="C0",
            label="scikit-learn NMF(mu) (time interpolated)",
        )
    ax.plot([nmf["seconds"]], [nmf["loss"]], "o", color="C0")
    mb = res["sklearn_minibatch"]
    ax.plot(mb["times"], mb["losses"], "-", color="C1", label="scikit-learn MiniBatchNMF")
    for key, color, label in (
        ("dnmf_full", "C2", "dnmf full batch"),
        ("dnmf_minibatch", "C3", "dnmf minibatch"),
    ):
        run = res[key]
        ax.plot(
            run["times"], run["losses"], "-", color=color, label=f"{label} (cluster start incl.)"
        )
    ax.axhline(nmf["loss"], color="0.5", ls="--", lw=0.8, label="L* (NMF, 200 it.)")
    ax.axhline(mb["best_loss"], color="C1", ls=":", lw=0.8, label="MiniBatchNMF best")
    ax.set_yscale("log")
    ax.set_ylim(min(nmf["loss"], mb["best_loss"]) * 0.98, nmf["loss"] * 1.5)
    ax.set_xlabel("wall-clock seconds")
    ax.set_ylabel(f"beta-divergence (beta={BETA:g}) d(V | WH)")
    c = res["corpus"]
    ax.set_title(f"rank {RANK}, beta={BETA:g}: {c['files']} files, {c['minutes']:.1f} min, "
                 f"{c['frames']} frames, {res['workers']} workers")  # fmt: skip
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="about 3 minutes of audio")
    ap.add_argument("--minutes", type=float, help="minutes of audio in the corpus")
    ap.add_argument("--nmf-iter", type=int, default=NMF_ITER, help="iterations of NMF(mu): L*")
    ap.add_argument("--trace-every", type=int, default=20,
                    help="NMF's loss curve every this many iterations (0: none)")  # fmt: skip
    ap.add_argument("--mb-epochs", type=int, default=200, help="most MiniBatchNMF epochs")
    ap.add_argument("--mb-init", default=None, help="MiniBatchNMF init (default: its own)")
    ap.add_argument("--patience", type=int, default=10, help="MiniBatchNMF: epochs without ...")
    ap.add_argument("--min-gain", type=float, default=1e-4, help="... this relative gain end it")
    ap.add_argument("--full-epochs", type=int, default=400, help="most dnmf full-batch epochs")
    ap.add_argument("--mb-dnmf-epochs", type=int, default=400, help="most dnmf minibatch epochs")
    ap.add_argument("--max-time", type=float, default=4.0,
                    help="a dnmf run stops after this many times T_sk of learning")  # fmt: skip
    ap.add_argument("--block-frames", type=int,
                    help="dnmf minibatch block (default: the chunk, or a quarter of it when "
                         "the corpus has fewer than 2 chunks per worker)")  # fmt: skip
    ap.add_argument("--batch-chunks", type=int, help="dnmf minibatch blocks per step "
                    "(default: half the blocks, two steps per epoch)")  # fmt: skip
    ap.add_argument("--n-inner", type=int, default=3, help="dnmf minibatch H updates per visit")
    ap.add_argument("--forget-factor", type=float, default=0.0, help="dnmf minibatch rho")
    ap.add_argument("--wait-idle", type=float, default=120.0,
                    help="before each phase, wait up to this many seconds for other "
                         "processes to leave the CPU")  # fmt: skip
    ap.add_argument("--overhead-epochs", type=int, default=12,
                    help="full-batch epochs run on worker processes and on threads of one "
                         "process, to measure the distribution overhead (0: skip)")  # fmt: skip
    ap.add_argument("--beta", type=float, default=1.0, help="the beta-divergence (0, 1, 2, ...)")
    ap.add_argument("--plot", type=Path, help="PNG of loss vs wall-clock time")
    ap.add_argument("--json", type=Path, help="all figures as JSON")
    args = ap.parse_args()
    global BETA
    BETA = args.beta
    minutes = args.minutes or (3 if args.quick else 20)
    warnings.filterwarnings("ignore", category=FutureWarning)
    from dnmf.cluster import default_workers

    workers = default_workers()
    res: dict[str, Any] = {"mode": "quick" if args.quick else "full", "workers": workers}
    load = Load(args.wait_idle)
    t_run = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dnmf-bench-") as tmpdir:
        tmp = Path(tmpdir)
        paths = make_corpus(tmp / "audio", minutes)
        store = tmp / "corpus.zarr"
        with load.phase("ingest"):
            ing = ingest(tmp / "audio", store)
        V = load_V(store)
        X = np.ascontiguousarray(V.T)
        from dnmf.io.corpus import CorpusStore

        chunk_frames = CorpusStore.open(store).chunk_frames
        res["corpus"] = {
            "files": len(paths), "minutes": sum(sf.info(p).duration for p in paths) / 60,
            "frames": V.shape[1], "bins": V.shape[0], "chunk_frames": chunk_frames,
            "ingest_seconds": ing.wall_seconds,
        }  # fmt: skip
        _log(f"corpus: {len(paths)} files, {V.shape} float32, ingested in {ing.wall_seconds:.1f} s")

        with load.phase("gemm"):
            res["gemm"] = gemm_efficiency(V, chunk_frames, reps=7)

        with load.phase("sklearn NMF"):
            nmf = sklearn_nmf(X, V, args.nmf_iter)
        L_star = nmf["loss"]
        _log(f"NMF(mu): L* = {L_star:.6g} in {nmf['seconds']:.1f} s")
        res["sklearn_nmf"] = {k: v for k, v in nmf.items() if k not in ("W", "H")}
        res["sklearn_nmf"]["trace_every"] = every = args.trace_every
        trace = sklearn_nmf_trace(X, V, args.nmf_iter, every) if every else []
        res["sklearn_nmf"]["trace"] = trace
        if trace:
            res["sklearn_nmf"]["trace_end_vs_L*"] = trace[-1] / L_star - 1

        with load.phase("MiniBatchNMF"):
            mb = sklearn_minibatch(
                X, V, max_epochs=args.mb_epochs, patience=args.patience,
                min_gain=args.min_gain, init=args.mb_init, check=True,
            )  # fmt: skip
        best_i = int(np.argmin(mb["losses"]))
        mb.update(best_loss=mb["losses"][best_i], best_epoch=best_i + 1,
                  best_time=mb["times"][best_i])  # fmt: skip
        hit = first_below(mb["times"], mb["losses"], L_star)
        mb["time_to_L*"] = hit[0] if hit else None
        res["sklearn_minibatch"] = mb
        _log(f"MiniBatchNMF: best {mb['best_loss']:.6g} at {mb['best_time']:.1f} s "
             f"({mb['epochs']} epochs)")  # fmt: skip
        target = min(L_star, mb["best_loss"])

        if args.block_frames is None:
            enough = math.ceil(V.shape[1] / chunk_frames) >= 2 * workers
            args.block_frames = chunk_frames if enough else chunk_frames // 4
        n_blocks = math.ceil(V.shape[1] / args.block_frames)
        if args.batch_chunks is None:
            args.batch_chunks = max(1, math.ceil(n_blocks / 2))
        for key, minibatch, epochs in (
            ("dnmf_full", False, args.full_epochs),
            ("dnmf_minibatch", True, args.mb_dnmf_epochs),
        ):
            cfg = _config(args, minibatch, epochs)
            with load.phase(key):
                run = dnmf_run(
                    store, tmp / f"{key}.zarr", cfg, V, target, full_eval=minibatch,
                    max_seconds=args.max_time * nmf["seconds"],
                )  # fmt: skip
            run["config"] = cfg.model_dump(mode="json")
            run["n_blocks"] = math.ceil(V.shape[1] / (cfg.block_frames or chunk_frames))
            for name, goal in (("L*", L_star), ("mb_best", mb["best_loss"])):
                hit = first_below(run["times"], run["losses"], goal)
                run[f"time_to_{name}"] = hit[0] if hit else None
                run[f"learn_time_to_{name}"] = run["learn_times"][hit[1]] if hit else None
                run[f"epochs_to_{name}"] = hit[1] + 1 if hit else None
            run["best_loss"] = min(run["losses"])
            run["median_epoch_seconds"] = float(np.median(np.diff([0.0, *run["learn_times"]])))
            res[key] = run
            _log(f"{key}: {run['epochs']} epochs, best {run['best_loss']:.6g}, "
                 f"to L* {_t(run['time_to_L*'])} (stopped: {run['stopped']})")  # fmt: skip
        if args.overhead_epochs:
            from dnmf.nmf.config import LearnConfig

            ocfg = LearnConfig(rank=RANK, beta=BETA, epochs=args.overhead_epochs, tol=0.0)
            ov: dict[str, Any] = {"epochs": args.overhead_epochs}
            for kind, processes in (("processes", True), ("threads", False)):
                with load.phase(f"overhead_{kind}"):
                    ov[kind] = overhead_run(
                        store, tmp / f"overhead_{kind}.zarr", ocfg, workers, processes=processes
                    )
            ov["ratio"] = (
                ov["processes"]["median_epoch_seconds"] / ov["threads"]["median_epoch_seconds"]
            )
            ov["same_W"] = ov["processes"]["W_sha"] == ov["threads"]["W_sha"]
            res["overhead"] = ov
            _log(f"overhead: processes / threads per epoch {ov['ratio']:.3f}")
    res["bench_seconds"] = time.perf_counter() - t_run
    res["load"] = load.phases
    report(res)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(args.plot, res)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _nmf_trace_times(nmf: dict[str, Any]) -> list[float]:
    """NMF's trace placed on its clock: iteration i at T_sk * i / n_iter (iterations cost alike)."""
    return [
        nmf["seconds"] * (i + 1) * nmf["trace_every"] / nmf["n_iter"]
        for i in range(len(nmf["trace"]))
    ]


def _overhead_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    ov = res.get("overhead")
    if not ov:
        return []
    p, t = ov["processes"], ov["threads"]
    return [
        (f"dnmf full batch, {ov['epochs']} epochs: seconds per epoch, {res['workers']} worker "
         f"processes / {res['workers']} threads in one process",
         f"{p['median_epoch_seconds']:.3f} / {t['median_epoch_seconds']:.3f}"),
        ("ratio worker processes / one process (distribution overhead)",
         f"{ov['ratio']:.2f}x  (the same W: {'yes' if ov['same_W'] else 'NO'})"),
    ]  # fmt: skip


def report(res: dict[str, Any]) -> None:
    c, nmf, mb = res["corpus"], res["sklearn_nmf"], res["sklearn_minibatch"]
    full, mini, g = res["dnmf_full"], res["dnmf_minibatch"], res["gemm"]
    L, T_sk = nmf["loss"], nmf["seconds"]
    per_it = T_sk / nmf["n_iter"]
    sk_to_mb = None
    if nmf["trace"]:
        hit = first_below(_nmf_trace_times(nmf), nmf["trace"], mb["best_loss"])
        sk_to_mb = hit[0] if hit else None
    m = mini["config"]
    g1, g2 = g["n_inner=1"], g["n_inner=2"]
    k = full["model_epochs"]
    hi, lo = full["losses"][k - 1], full["losses"][k] if k < len(full["losses"]) else None
    inside = full["model_loss"] <= hi * (1 + 1e-6) and (
        lo is None or full["model_loss"] >= lo * (1 - 1e-6)
    )
    # the busiest worker's kernel time per full-batch epoch: one task per chunk
    # (blocks go to workers in runs balanced by frames, as DaskBackend._homes places them;
    # a visit's kernel time taken as proportional to its frames)
    n_w, total, cf = res["workers"], c["frames"], c["chunk_frames"]
    share = [0] * n_w
    for a in range(0, total, cf):
        z = min(total, a + cf)
        share[min(n_w - 1, (a + z) * n_w // (2 * total))] += z - a
    bound = max(share) / cf * g1["seconds"]
    frac = m["batch_chunks"] / mini["n_blocks"]

    def run_rows(name: str, run: dict[str, Any]) -> list[tuple[str, str]]:
        return [
            (f"{name}: time to L* (learning only)",
             f"{_t(run['time_to_L*'])}  ({_t(run['learn_time_to_L*'])}; epoch {run['epochs_to_L*']})"),
            (f"{name}: time to MiniBatchNMF best (learning only)",
             f"{_t(run['time_to_mb_best'])}  ({_t(run['learn_time_to_mb_best'])}; epoch {run['epochs_to_mb_best']})"),
            (f"{name}: best loss, epochs run, stopped by",
             f"{run['best_loss']:.6g}  ({run['best_loss'] / L:.4f} x L*), {run['epochs']}, {run['stopped']}"),
            (f"{name}: start before the first step (cluster, store, data check, init)",
             f"{run['start_seconds']:.1f} s"),
            (f"{name}: seconds per epoch / NMF(mu) seconds per iteration",
             f"{run['median_epoch_seconds']:.3f} / {per_it:.3f} = {run['median_epoch_seconds'] / per_it:.2f}"),
        ]  # fmt: skip

    rows = [
        ("corpus", f"{c['files']} files, {c['minutes']:.1f} min, {c['frames']} frames x {c['bins']} bins "
                   f"(Zarr chunks of {c['chunk_frames']} frames)"),
        ("workers (default LocalCluster, 1 thread each) / scikit-learn BLAS threads", f"{res['workers']} / machine default"),
        (f"L* = NMF(mu, init random) loss after {nmf['n_iter']} iterations", f"{L:.6g}  (scikit-learn's float32 value: {nmf['loss_sklearn'] / L:.5f} x L*)"),
        ("scikit-learn NMF(mu): time to L* (T_sk)", f"{T_sk:.1f} s  ({per_it:.3f} s/iteration)"),
        ("scikit-learn NMF(mu): time to MiniBatchNMF best (interpolated)", _t(sk_to_mb)),
        (f"MiniBatchNMF (init {mb['init']}, batch {BATCH_SIZE}): best loss, epochs run",
         f"{mb['best_loss']:.6g}  ({mb['best_loss'] / L:.4f} x L*) at epoch {mb['best_epoch']} of {mb['epochs']}"),
        ("MiniBatchNMF: time to its best", f"{mb['best_time']:.1f} s  ({mb['best_time'] / mb['best_epoch']:.3f} s/epoch)"),
        ("MiniBatchNMF: time to L*", _t(mb["time_to_L*"])),
        *run_rows("dnmf full batch (n_inner 1)", full),
        (f"dnmf minibatch: block {m['block_frames']}, {m['batch_chunks']} of {mini['n_blocks']} blocks "
         f"(~{frac:.2f} of V) per step, n_inner {m['n_inner']}, rho {m['forget_factor']:g}", ""),
        *run_rows("dnmf minibatch", mini),
        ("ratio T_sk / dnmf full batch, time to L* (learning only)",
         f"{_ratio(T_sk, full['time_to_L*'])}  ({_ratio(T_sk, full['learn_time_to_L*'])})"),
        ("ratio T_sk / dnmf minibatch, time to L* (learning only)",
         f"{_ratio(T_sk, mini['time_to_L*'])}  ({_ratio(T_sk, mini['learn_time_to_L*'])})"),
        ("ratio MiniBatchNMF / dnmf full batch, time to MiniBatchNMF best",
         f"{_ratio(mb['best_time'], full['time_to_mb_best'])}  ({_ratio(mb['best_time'], full['learn_time_to_mb_best'])})"),
        ("ratio MiniBatchNMF / dnmf minibatch, time to MiniBatchNMF best",
         f"{_ratio(mb['best_time'], mini['time_to_mb_best'])}  ({_ratio(mb['best_time'], mini['learn_time_to_mb_best'])})"),
        (f"check: d(V|WH) of dnmf full batch's epoch-{k} checkpoint in [loss {k + 1}, loss {k}]",
         f"{full['model_loss']:.6g} in [{'-' if lo is None else f'{lo:.6g}'}, {hi:.6g}]: {'yes' if inside else 'NO'}"),
        ("check: MiniBatchNMF loop vs MiniBatchNMF.fit, 1 epoch, max |dH|", f"{mb.get('fit_check_max_abs_diff', float('nan')):.3g}"),
        (f"chunk_stats(n_inner=1) on {g['shape'][0]} x {g['shape'][1]}, rank {RANK}, 1 thread",
         f"{g1['seconds'] * 1e3:.1f} ms = {g1['gflops']:.1f} GFLOP/s over its {g1['gemms']} products"),
        ("numpy float32 GEMM, same shapes, 1 thread",
         ", ".join(f"{k} {v:.1f}" for k, v in g["gemm_gflops"].items()) + " GFLOP/s"),
        ("ratio kernel GFLOP/s / GEMM GFLOP/s, n_inner 1 / 2", f"{g1['ratio']:.2f} / {g2['ratio']:.2f}"),
        *[(f"  beta={b}: chunk_stats ms (big products) n_inner 1 / 2; ratio to GEMM 1 / 2",
           f"{g[f'beta={b}']['n_inner=1']['seconds'] * 1e3:.1f} ({g[f'beta={b}']['n_inner=1']['gemms']})"
           f" / {g[f'beta={b}']['n_inner=2']['seconds'] * 1e3:.1f} ({g[f'beta={b}']['n_inner=2']['gemms']});"
           f" {g[f'beta={b}']['n_inner=1']['ratio']:.2f} / {g[f'beta={b}']['n_inner=2']['ratio']:.2f}")
          for b in ("1", "0", "2")],
        ("ratio kernel time of the busiest worker / dnmf full-batch epoch",
         f"{bound:.3f} s / {full['median_epoch_seconds']:.3f} s = {bound / full['median_epoch_seconds']:.2f}"),
        *_overhead_rows(res),
        ("other processes' CPU during each phase (cores)",
         ", ".join(f"{k} {v['other_cores']:.2f}" for k, v in res["load"].items())),
        ("benchmark wall time", f"{res['bench_seconds']:.0f} s"),
    ]  # fmt: skip
    width = max(len(k) for k, _ in rows)
    name = BETA_NAME.get(BETA, "beta")
    print(f"dnmf learn benchmark ({res['mode']}): rank {RANK}, beta={BETA:g} ({name}), "
          "n_fft 2048, sr 22050")  # fmt: skip
    for key, v in rows:
        print(f"  {key:<{width}}  {v}".rstrip())


if __name__ == "__main__":
    main()
