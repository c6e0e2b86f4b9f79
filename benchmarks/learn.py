"""Learning speed against scikit-learn (issue 13): time to a loss, for every β, on real audio.

Run from the repository root::

    python benchmarks/learn.py --corpus 20min           # 20 minutes, beta 0, 1 and 2
    python benchmarks/learn.py --corpus both --plot benchmarks/results/learn_loss_vs_time.png \\
        --json benchmarks/results/learn.json
    python benchmarks/learn.py --quick --beta 1          # about 3 minutes of audio
    python benchmarks/learn.py --corpus 20min --dnmf-args "--batch-chunks 4 --inner 3"

The corpora are rendered by ``benchmarks/render_corpus.py`` (seeded random
General MIDI played by fluidsynth: 20 or 120 one-minute pieces, WAV and FLAC)
and ingested with ``pipelines.ingest.ingest``, both off every clock;
``--workdir DIR`` keeps them for the next run. Rank 64, n_fft 2048, sr 22050.
For each corpus and each β (``--beta 0,1,2``), every reference measured in
the same run on the same machine:

* scikit-learn ``NMF(solver='mu', max_iter=200, tol=0)`` from ``init='random'``
  and from ``init='nndsvda'`` (both timed, both reported) on ``X = V.T`` in
  memory; the better of the two gives L* (its loss after 200 iterations) and
  T_sk (its wall time, init included). For β = 2 the same for
  ``solver='cd'`` (L*_cd, T_cd). The curve of the better init: the same run
  replayed in segments (``init='custom'`` warm starts; MU and HALS keep no
  state besides W and H), checked against the timed fit after 200 iterations,
  each point's time the segment times scaled to the timed fit's T_sk.
* scikit-learn ``MiniBatchNMF`` with its defaults (besides ``beta_loss``,
  ``n_components``, ``random_state``) on the frames shuffled once, replaying
  the steps of ``MiniBatchNMF.fit`` (its own stopping rule included; checked
  against ``fit`` for one epoch), with a time stamp and the dictionary kept
  (off the clock) after every epoch; its best loss is the best of the epochs
  evaluated (``--mb-points`` of them, spaced geometrically, the last always).
* ``dnmf learn STORE --rank 64 --beta B --output MODEL`` with the learner's
  defaults as a subprocess (``python -m dnmf`` of this checkout), timed as a
  whole command, cluster start included; ``--dnmf-args`` appends options. The
  curve: more whole commands with ``--epochs`` cut to fractions of the
  default run's epochs (``--dnmf-points``), each its own timed point.
  ``--dnmf-schedule-full`` also times ``--schedule full`` where ``dnmf learn``
  has that option.
* the chunk kernel against numpy float32 GEMMs of the same shapes, one thread.

Every loss is measured the same way, whoever learned the dictionary: the
activations are refitted on every frame with the dictionary fixed
(:func:`refit_loss`: its columns scaled to unit sum, H from a constant start,
``--refit-iter`` multiplicative updates, HALS sweeps for β = 2, frame blocks
of 8192), then the
β-divergence summed over all entries (float64; scikit-learn's
``_beta_divergence`` without the square root). The headline dictionaries
(each init's 200-iteration result, MiniBatchNMF's best, dnmf's default run)
are also refitted with twice the iterations, and the change is printed: it
must stay under 0.1 %.

Targets (issue 13; printed beside the figures): at a loss ≤ L*, dnmf's whole
command ≥ 3× faster than T_sk on the 20-minute corpus and ≥ 10× on the
2-hour corpus for β = 0 and 1; for β = 2 at least as fast as ``cd``; ≤ 1/3 of
MiniBatchNMF's time to its best loss; the chunk kernel ≥ 0.8 of the GEMM
rate. A time to a loss is the time of the first point at or below it.
Before each phase the script waits (``--wait-idle``) for the machine's other
processes to leave the CPU and reports what they still took. Nothing here is
a test.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from render_corpus import render_corpus  # noqa: E402

RANK = 64
NMF_ITER = 200
SK_LOSS = {0.0: "itakura-saito", 1.0: "kullback-leibler", 2.0: "frobenius"}
BETA_NAME = {0.0: "IS", 1.0: "KL", 2.0: "Euclidean"}
CORPORA = {"quick": 3.0, "20min": 20.0, "2h": 120.0}
#: T_sk / T_dnmf at a loss <= L*, beta 0 and 1 (the quick corpus is held to the 20-minute one)
SK_TARGET = {"quick": 3.0, "20min": 3.0, "2h": 10.0}
CD_TARGET = 1.0  # T_cd / T_dnmf, beta 2
MB_TARGET = 3.0  # MiniBatchNMF time to its best / dnmf time to that loss
GEMM_TARGET = 0.8
REFIT_BLOCK = 8192
EPS = float(np.finfo(np.float32).eps)


# -- the machine may be shared: measure what other processes take ---------------------------
def _busy_seconds() -> float:
    """CPU seconds all processes of the machine have used (from /proc/stat)."""
    import psutil

    c = psutil.cpu_times()
    return sum(getattr(c, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def _own_seconds() -> float:
    """CPU seconds of this process and its reaped children (dnmf learn and its workers)."""
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


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def first_below(times: list[float], losses: list[float], target: float) -> float | None:
    """The time of the first loss at or below ``target`` (points in time order)."""
    for t, loss in sorted(zip(times, losses, strict=True)):
        if loss <= target:
            return t
    return None


# -- the one loss: activations refitted on every frame, the dictionary fixed -----------------
def refit_loss(
    V: np.ndarray, W: np.ndarray, beta: float, n_iter: int, *, check: bool = False
) -> dict[str, float]:
    """d_beta(V | W H) with H refitted on every frame for the fixed dictionary ``W``.

    Parameters
    ----------
    V : ndarray of shape (n_bins, n_frames)
        The corpus, float32.
    W : ndarray of shape (n_bins, rank)
        The dictionary (any column scale: the columns are scaled to unit sum
        first, so the result does not depend on it).
    beta : float
        The beta-divergence.
    n_iter : int
        Iterations on H, float32, from H constant over components with
        ``sum(W h) = sum(v)`` on every frame, in blocks of frames:
        multiplicative updates (Févotte & Idier's exponent for beta < 1), and
        for beta = 2 HALS sweeps (exact coordinate descent on the Gram forms,
        which converges far sooner than MU there).
    check : bool
        Also the loss after ``2 * n_iter`` updates (the run continued).

    Returns
    -------
    dict
        ``loss`` (float64 sum over every entry, as scikit-learn's
        ``_beta_divergence`` without the square root), ``seconds``, and with
        ``check`` ``loss_2x`` and ``change_2x`` (relative).
    """
    from dnmf.nmf.divergence import beta_divergence

    t0 = time.perf_counter()
    W = np.asarray(W, dtype=np.float64)
    W = (W / np.maximum(W.sum(axis=0), EPS)).astype(np.float32)
    gamma = 1.0 / (2.0 - beta) if beta < 1 else 1.0 / (beta - 1.0) if beta > 2 else 1.0
    stops = (n_iter, 2 * n_iter) if check else (n_iter,)
    total = dict.fromkeys(stops, 0.0)
    col = W.sum(axis=0)[:, None]
    WtW = W.T @ W
    for a in range(0, V.shape[1], REFIT_BLOCK):
        Vb = V[:, a : a + REFIT_BLOCK]
        h0 = (Vb.sum(axis=0, dtype=np.float64) / float(W.sum())).astype(np.float32)
        H = np.repeat(np.maximum(h0, EPS)[None, :], W.shape[1], axis=0)
        WtV = W.T @ Vb if beta == 2 else None
        for it in range(1, stops[-1] + 1):
            if WtV is not None:  # HALS: exact coordinate descent, one component at a time
                for k in range(H.shape[0]):
                    H[k] += (WtV[k] - WtW[k] @ H) / max(float(WtW[k, k]), EPS)
                    np.maximum(H[k], 0.0, out=H[k])
            else:
                WH = np.maximum(W @ H, EPS)
                if beta == 1:
                    np.divide(Vb, WH, out=WH)
                    H *= (W.T @ WH) / col
                else:
                    P = WH ** (beta - 2.0)
                    num = W.T @ (Vb * P)
                    den = W.T @ (P * WH)
                    u = num / np.maximum(den, EPS)
                    H *= u if gamma == 1.0 else u**gamma
            if it in total:
                total[it] += beta_divergence(Vb, W, H, beta)
    out = {"loss": total[n_iter], "refit_seconds": time.perf_counter() - t0}
    if check:
        out["loss_2x"] = total[2 * n_iter]
        out["change_2x"] = (total[n_iter] - total[2 * n_iter]) / total[n_iter]
    return out


# -- corpora ---------------------------------------------------------------------------------
def prepare_corpus(workdir: Path, name: str, minutes: float, load: Load) -> dict[str, Any]:
    """Render (fluidsynth) and ingest a corpus once; later runs with the same workdir reuse it."""
    import soundfile as sf

    from dnmf.io.corpus import CorpusStore
    from pipelines.ingest import ingest

    audio, store = workdir / f"audio-{name}", workdir / f"corpus-{name}.zarr"
    done = workdir / f"audio-{name}.done"
    if not done.exists():
        shutil.rmtree(audio, ignore_errors=True)
        shutil.rmtree(store, ignore_errors=True)
        with load.phase(f"{name} render"):
            render_corpus(audio, minutes, seed=0)
        done.write_text("rendered\n")
    if not (store / "zarr.json").exists():
        with load.phase(f"{name} ingest"):
            ingest(audio, store)
    corpus = CorpusStore.open(store)
    files = sorted(p for p in audio.rglob("*") if p.suffix in (".wav", ".flac"))
    return {
        "name": name,
        "store": str(store),
        "files": len(files),
        "minutes": sum(sf.info(p).duration for p in files) / 60,
        "frames": int(corpus.n_frames),
        "bins": int(corpus.V.shape[0]),
        "chunk_frames": int(corpus.chunk_frames),
    }


def load_V(store: str) -> np.ndarray:
    """The whole spectrogram (bins, frames) float32, once, for the in-memory references."""
    from dnmf.io.corpus import CorpusStore

    corpus = CorpusStore.open(store)
    return np.ascontiguousarray(corpus.V[:, : corpus.n_frames])


# -- efficiency of the chunk kernel ------------------------------------------------------
def _timeit(fn: Callable[[], Any], reps: int) -> float:
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return min(ts)


def gemm_efficiency(
    V: np.ndarray, chunk_frames: int, betas: list[float], reps: int
) -> dict[str, Any]:
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
        for beta in betas:
            per: dict[str, Any] = {}
            for n_inner in (1, 2):
                t_k = _timeit(partial(chunk_stats, Vc, W, Hc, beta=beta, n_inner=n_inner), reps)
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
                    "ratio": t_g / t_k,
                }
            out[f"beta={beta:g}"] = per
    return out


# -- scikit-learn NMF --------------------------------------------------------------------------
def _nmf(beta: float, solver: str, init: str, max_iter: int) -> Any:
    from sklearn.decomposition import NMF

    return NMF(
        n_components=RANK, solver=solver, beta_loss=SK_LOSS.get(beta, beta), init=init,
        max_iter=max_iter, tol=0.0, random_state=0,
    )  # fmt: skip


def sklearn_fit(X: np.ndarray, beta: float, solver: str, init: str) -> dict[str, Any]:
    """NMF(solver, init, max_iter=200, tol=0): wall time (init included) and its dictionary."""
    est = _nmf(beta, solver, init, NMF_ITER)
    t0 = time.perf_counter()
    A = est.fit_transform(X)
    seconds = time.perf_counter() - t0
    del A
    return {"seconds": seconds, "n_iter": int(est.n_iter_), "W": est.components_.T.copy()}


def sklearn_curve(
    X: np.ndarray, beta: float, solver: str, init: str, points: list[int]
) -> dict[str, Any]:
    """The same NMF replayed in segments ending at ``points`` and at 200 iterations.

    The first segment starts from ``init``, the others warm-started with
    ``init='custom'``: MU and HALS (``shuffle=False``) carry no state besides
    (W, H), so the segments follow the one long run (checked by the caller).
    Each segment's wall time is kept; the dictionaries are returned.
    """
    ends = sorted({p for p in points if 0 < p < NMF_ITER} | {NMF_ITER})
    seg_seconds: list[float] = []
    dicts: list[np.ndarray] = []
    A = Hd = None
    done = 0
    for end in ends:
        est = _nmf(beta, solver, init if A is None else "custom", end - done)
        t0 = time.perf_counter()
        A = est.fit_transform(X) if Hd is None else est.fit_transform(X, W=A, H=Hd)
        seg_seconds.append(time.perf_counter() - t0)
        Hd = est.components_
        dicts.append(Hd.T.copy())
        done = end
    assert A is not None
    return {"iterations": ends, "segment_seconds": seg_seconds, "dicts": dicts, "A": A}


def sklearn_solver(
    X: np.ndarray, V: np.ndarray, beta: float, solver: str, args: argparse.Namespace,
    load: Load, tag: str,
) -> dict[str, Any]:  # fmt: skip
    """Both inits timed and refitted; the better one's curve."""
    out: dict[str, Any] = {"solver": solver, "inits": {}}
    fits = {}
    for init in ("random", "nndsvda"):
        with load.phase(f"{tag} sklearn {solver} {init}"):
            fit = sklearn_fit(X, beta, solver, init)
        ref = refit_loss(V, fit["W"], beta, args.refit_iter, check=True)
        fits[init] = fit
        out["inits"][init] = {"seconds": fit["seconds"], "n_iter": fit["n_iter"], **ref}
        _log(f"{tag} NMF({solver}, {init}): {fit['seconds']:.1f} s, loss {ref['loss']:.6g} "
             f"(refit x2 changes it by {ref['change_2x']:.2e})")  # fmt: skip
    best = min(out["inits"], key=lambda k: out["inits"][k]["loss"])
    out.update(best_init=best, L=out["inits"][best]["loss"], T=out["inits"][best]["seconds"])
    times, losses, iters = [], [], []
    if args.sk_points:
        with load.phase(f"{tag} sklearn {solver} {best} curve"):
            cur = sklearn_curve(X, beta, solver, best, args.sk_points)
        fit = fits[best]
        out["curve_check_max_abs_diff"] = float(np.max(np.abs(cur["dicts"][-1] - fit["W"])))
        out["curve_check_rel_diff"] = out["curve_check_max_abs_diff"] / float(np.max(fit["W"]))
        total = sum(cur["segment_seconds"])
        cum = np.cumsum(cur["segment_seconds"]) / total * out["T"]
        for it, t, W in zip(cur["iterations"][:-1], cum[:-1], cur["dicts"][:-1], strict=True):
            iters.append(it)
            times.append(float(t))
            losses.append(refit_loss(V, W, beta, args.refit_iter)["loss"])
    out.update(curve_iterations=[*iters, NMF_ITER], curve_times=[*times, out["T"]],
               curve_losses=[*losses, out["L"]])  # fmt: skip
    return out


# -- scikit-learn MiniBatchNMF ---------------------------------------------------------------
def sklearn_minibatch(
    X: np.ndarray, V: np.ndarray, beta: float, n_points: int, refit_iter: int
) -> dict[str, Any]:
    """MiniBatchNMF with its defaults, epoch by epoch: the steps of ``MiniBatchNMF.fit``.

    ``fit`` cycles through ``gen_batches`` calling ``_minibatch_step`` and
    ``_minibatch_convergence`` (which may end it) for at most ``max_iter``
    epochs; this loop makes the same calls on the frames shuffled once, with a
    time stamp and a copy of the dictionary (off the clock) after every epoch
    and where it stops. The best loss is the least of ``n_points`` epochs
    spaced geometrically, the last one always among them.
    """
    from sklearn.decomposition import MiniBatchNMF
    from sklearn.utils import gen_batches

    n = X.shape[0]
    perm = np.random.default_rng(0).permutation(n)
    Xp = np.ascontiguousarray(X[perm])

    def make(**kw: Any) -> Any:
        return MiniBatchNMF(n_components=RANK, beta_loss=SK_LOSS.get(beta, beta), random_state=0,
                            **kw)  # fmt: skip

    est = make()
    off_clock = 0.0
    t0 = time.perf_counter()
    est._validate_params()
    est._check_params(Xp)
    A, H = est._check_w_h(Xp, None, None, True)
    H_buffer = H.copy()
    est._components_numerator = H.copy()
    est._components_denominator = np.ones(H.shape, dtype=H.dtype)
    est._ewa_cost, est._ewa_cost_min, est._no_improvement = None, None, 0
    steps_per_epoch = math.ceil(n / est._batch_size)
    n_steps = est.max_iter * steps_per_epoch
    times: list[float] = []
    dicts: list[np.ndarray] = []
    step, converged = 0, False
    for _ in range(est.max_iter):
        for batch in gen_batches(n, est._batch_size):
            c = est._minibatch_step(Xp[batch], A[batch], H, True)
            if est._minibatch_convergence(Xp[batch], c, H, H_buffer, n, step, n_steps):
                converged = True
                break
            H_buffer[:] = H
            step += 1
        now = time.perf_counter()
        times.append(now - t0 - off_clock)
        dicts.append(H.T.copy())
        off_clock += time.perf_counter() - now
        if converged:
            break
    epochs = len(times)
    # the loop is MiniBatchNMF.fit, step for step: one epoch of fit itself
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = make(max_iter=1).fit(Xp)
    check = float(np.max(np.abs(ref.components_.T - dicts[0])))
    idx = sorted(
        {round(float(x)) - 1 for x in np.geomspace(1, epochs, max(1, n_points))} | {epochs - 1}
    )
    losses = [refit_loss(V, dicts[i], beta, refit_iter)["loss"] for i in idx]
    b = int(np.argmin(losses))
    best = refit_loss(V, dicts[idx[b]], beta, refit_iter, check=True)
    return {
        "epochs": epochs,
        "stopped": "its convergence rule" if converged else f"max_iter ({est.max_iter})",
        "steps_per_epoch": steps_per_epoch,
        "batch_size": est._batch_size,
        "epoch_times": times,
        "eval_epochs": [i + 1 for i in idx],
        "times": [times[i] for i in idx],
        "losses": losses,
        "best_epoch": idx[b] + 1,
        "best_time": times[idx[b]],
        "best_loss": losses[b],
        "best_change_2x": best["change_2x"],
        "fit_check_max_abs_diff": check,
    }


# -- dnmf learn, a whole command -------------------------------------------------------------
def dnmf_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "dnmf", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def dnmf_learn_help() -> str:
    r = subprocess.run(dnmf_cmd("learn", "--help"), capture_output=True, text=True, env=_env(),
                       check=False, cwd=ROOT)  # fmt: skip
    return r.stdout + r.stderr


def read_W(model: Path) -> np.ndarray:
    """The dictionary (bins, rank) of a model store."""
    import zarr

    arr: Any = zarr.open_group(str(model), mode="r")["W"]
    W = np.asarray(arr[...], dtype=np.float32)
    if W.ndim == 3 and W.shape[2] == 1:
        W = W[:, :, 0]
    return W


def dnmf_learn(store: str, model: Path, beta: float, extra: list[str], log: Path) -> dict[str, Any]:
    """``dnmf learn STORE --rank 64 --beta B --output MODEL --json [extra]``, timed whole."""
    cmd = dnmf_cmd("learn", store, "--rank", str(RANK), "--beta", f"{beta:g}", "--output",
                   str(model), "--json", *extra)  # fmt: skip
    shutil.rmtree(model, ignore_errors=True)
    with log.open("w") as err:
        t0 = time.perf_counter()
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=_env(),
                           check=False, cwd=ROOT)  # fmt: skip
        seconds = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{shlex.join(cmd)} exited {r.returncode}; see {log}")
    try:
        summary = json.loads(r.stdout)
    except json.JSONDecodeError:
        summary = {}
    return {
        "cmd": shlex.join(["dnmf", *cmd[3:]]),
        "seconds": seconds,
        "epochs": summary.get("epochs"),
        "converged": summary.get("converged"),
        "learner_seconds": summary.get("wall_seconds"),
        "W": read_W(model),
    }


def dnmf_series(
    corpus: dict[str, Any], V: np.ndarray, beta: float, extra: list[str], fractions: list[float],
    args: argparse.Namespace, load: Load, tag: str, workdir: Path,
) -> dict[str, Any]:  # fmt: skip
    """The default run (its loss checked with twice the refit), then shorter runs for a curve."""
    base = workdir / f"model-{corpus['name']}-b{beta:g}"
    with load.phase(f"{tag} dnmf {' '.join(extra) or 'defaults'}"):
        run = dnmf_learn(corpus["store"], base.with_suffix(".zarr"), beta, extra,
                         base.with_suffix(".log"))  # fmt: skip
    ref = refit_loss(V, run.pop("W"), beta, args.refit_iter, check=True)
    run.update(ref)
    _log(f"{tag} {run['cmd']}: {run['seconds']:.1f} s, {run['epochs']} epochs, "
         f"loss {ref['loss']:.6g}")  # fmt: skip
    points = [{"epochs": run["epochs"], "seconds": run["seconds"], "loss": run["loss"]}]
    E = run["epochs"]
    cuts = sorted({max(1, round(f * E)) for f in fractions} - {E}) if E else []
    for k in cuts:
        with load.phase(f"{tag} dnmf --epochs {k}"):
            r = dnmf_learn(corpus["store"], base.with_name(base.name + f"-e{k}.zarr"), beta,
                           [*extra, "--epochs", str(k)], base.with_name(base.name + f"-e{k}.log"))  # fmt: skip
        points.append({"epochs": k, "seconds": r["seconds"],
                       "loss": refit_loss(V, r["W"], beta, args.refit_iter)["loss"]})  # fmt: skip
        _log(f"{tag} ... --epochs {k}: {r['seconds']:.1f} s, loss {points[-1]['loss']:.6g}")
    points.sort(key=lambda p: p["seconds"])
    run["points"] = points
    return run


# -- one corpus and one beta -------------------------------------------------------------------
def bench_beta(
    corpus: dict[str, Any], V: np.ndarray, X: np.ndarray, beta: float, args: argparse.Namespace,
    load: Load, workdir: Path, has_schedule: bool,
) -> dict[str, Any]:  # fmt: skip
    tag = f"{corpus['name']} beta={beta:g}"
    t0 = time.perf_counter()
    res: dict[str, Any] = {"beta": beta}
    res["mu"] = sklearn_solver(X, V, beta, "mu", args, load, tag)
    if beta == 2:
        res["cd"] = sklearn_solver(X, V, beta, "cd", args, load, tag)
    with load.phase(f"{tag} MiniBatchNMF"):
        res["minibatch"] = sklearn_minibatch(X, V, beta, args.mb_points, args.refit_iter)
    mb = res["minibatch"]
    _log(f"{tag} MiniBatchNMF: best {mb['best_loss']:.6g} at {mb['best_time']:.1f} s "
         f"(epoch {mb['best_epoch']} of {mb['epochs']}, {mb['stopped']})")  # fmt: skip
    extra = shlex.split(args.dnmf_args or "")
    res["dnmf"] = dnmf_series(corpus, V, beta, extra, args.dnmf_points, args, load, tag, workdir)
    if args.dnmf_schedule_full:
        if has_schedule:
            res["dnmf_schedule_full"] = dnmf_series(
                corpus, V, beta, [*extra, "--schedule", "full"], [], args, load, tag, workdir
            )
        else:
            res["dnmf_schedule_full"] = None
            _log(f"{tag}: dnmf learn has no --schedule option; --dnmf-schedule-full skipped")
    res["seconds"] = time.perf_counter() - t0
    res["ratios"] = ratios(corpus["name"], res)
    return res


def _time_to(run: dict[str, Any], target: float) -> float | None:
    pts = run["points"]
    return first_below([p["seconds"] for p in pts], [p["loss"] for p in pts], target)


def ratios(name: str, res: dict[str, Any]) -> dict[str, Any]:
    """Every ratio of issue 13 for one corpus and beta (None: not reached)."""
    d = res["dnmf"]
    final = d["loss"]  # the default run's
    out: dict[str, Any] = {}

    def one(key: str, ref_time: float, ref_loss: float, target: float | None) -> None:
        t = _time_to(d, ref_loss)
        out[key] = {
            "ref_seconds": ref_time,
            "ref_loss": ref_loss,
            "dnmf_seconds": t,
            "ratio": None if t is None else ref_time / t,
            "dnmf_final_over_ref": final / ref_loss,
            "target": target,
            "met": None if target is None or t is None else ref_time / t >= target,
        }

    beta = res["beta"]
    one("sk_mu", res["mu"]["T"], res["mu"]["L"], SK_TARGET[name] if beta in (0, 1) else None)
    if "cd" in res:
        one("sk_cd", res["cd"]["T"], res["cd"]["L"], CD_TARGET)
    mb = res["minibatch"]
    one("minibatch", mb["best_time"], mb["best_loss"], MB_TARGET)
    return out


# -- report ----------------------------------------------------------------------------------
def _ratio_text(r: dict[str, Any]) -> str:
    tgt = (
        ""
        if r["target"] is None
        else f"  [target >= {r['target']:g}x: " + ("met]" if r["met"] else "MISSED]")
    )
    if r["ratio"] is None:
        return f"not reached (dnmf final loss = {r['dnmf_final_over_ref']:.4f} x the reference loss){tgt}"
    return f"{r['ref_seconds']:.1f} s / {r['dnmf_seconds']:.1f} s = {r['ratio']:.2f}x{tgt}"


def report_beta(corpus: dict[str, Any], res: dict[str, Any], args: argparse.Namespace) -> None:
    beta = res["beta"]
    mu, mb, d = res["mu"], res["minibatch"], res["dnmf"]
    L = mu["L"]
    rows: list[tuple[str, str]] = []
    for solver in ("mu", "cd"):
        if solver not in res:
            continue
        s = res[solver]
        for init, r in s["inits"].items():
            mark = "  <- the better" if init == s["best_init"] else ""
            rows.append((f"NMF({solver}, init {init}, 200 it.): time, loss",
                         f"{r['seconds']:.1f} s, {r['loss']:.6g} ({r['loss'] / L:.4f} x L*){mark}"))  # fmt: skip
        if "curve_check_rel_diff" in s:
            pts = ", ".join(f"{i}: {t:.1f} s {x / L:.4f}" for i, t, x in
                            zip(s["curve_iterations"], s["curve_times"], s["curve_losses"], strict=True))  # fmt: skip
            rows.append((f"NMF({solver}) curve (iteration: time, loss / L*)", pts))
            rows.append((f"check: NMF({solver}) segments vs one fit, max |dW| / max W",
                         f"{s['curve_check_rel_diff']:.2e}"))  # fmt: skip
    rows.append((f"L* (NMF mu, {mu['best_init']}) / T_sk", f"{L:.6g} / {mu['T']:.1f} s"))
    if "cd" in res:
        rows.append(
            (
                "L*_cd / T_cd",
                f"{res['cd']['L']:.6g} ({res['cd']['L'] / L:.4f} x L*) / {res['cd']['T']:.1f} s",
            )
        )
    rows += [
        (f"MiniBatchNMF defaults (batch {mb['batch_size']}): epochs, stopped by",
         f"{mb['epochs']}, {mb['stopped']}"),
        ("MiniBatchNMF: best loss (of epochs " + ",".join(map(str, mb["eval_epochs"])) + "), time to it",
         f"{mb['best_loss']:.6g} ({mb['best_loss'] / L:.4f} x L*) at epoch {mb['best_epoch']}, {mb['best_time']:.1f} s"),
        ("MiniBatchNMF curve (time, loss / L*)",
         ", ".join(f"{t:.1f} s {x / L:.4f}" for t, x in zip(mb["times"], mb["losses"], strict=True))),
        ("check: MiniBatchNMF loop vs MiniBatchNMF.fit, 1 epoch, max |dW|", f"{mb['fit_check_max_abs_diff']:.3g}"),
    ]  # fmt: skip
    for key, run in (("dnmf", d), ("dnmf_schedule_full", res.get("dnmf_schedule_full"))):
        if key not in res:
            continue
        if run is None:
            rows.append(("dnmf --schedule full", "skipped: dnmf learn has no --schedule option"))
            continue
        rows.append((f"{run['cmd']}",
                     f"{run['seconds']:.1f} s whole command (learner {run['learner_seconds'] or float('nan'):.1f} s), "
                     f"{run['epochs']} epochs, converged {run['converged']}, loss {run['loss']:.6g} ({run['loss'] / L:.4f} x L*)"))  # fmt: skip
        if len(run["points"]) > 1:
            rows.append(("  curve: whole commands --epochs k (k: time, loss / L*)",
                         ", ".join(f"{p['epochs']}: {p['seconds']:.1f} s {p['loss'] / L:.4f}" for p in run["points"])))  # fmt: skip
    checks = [("NMF mu " + i, r["change_2x"]) for i, r in mu["inits"].items()]
    if "cd" in res:
        checks += [("NMF cd " + i, r["change_2x"]) for i, r in res["cd"]["inits"].items()]
    checks += [("MiniBatchNMF best", mb["best_change_2x"]), ("dnmf", d["change_2x"])]
    worst = max(abs(c) for _, c in checks)
    rows.append((f"check: refit {args.refit_iter} -> {2 * args.refit_iter} iterations, relative change",
                 ", ".join(f"{k} {v:.2e}" for k, v in checks) + f"; worst {worst:.2e} "
                 + ("< 1e-3: ok" if worst < 1e-3 else ">= 1e-3: RAISE --refit-iter")))  # fmt: skip
    r = res["ratios"]
    rows.append(("ratio T_sk / dnmf at a loss <= L*", _ratio_text(r["sk_mu"])))
    if "sk_cd" in r:
        rows.append(("ratio T_cd / dnmf at a loss <= L*_cd", _ratio_text(r["sk_cd"])))
    rows.append(
        ("ratio MiniBatchNMF time to its best / dnmf to that loss", _ratio_text(r["minibatch"]))
    )
    rows.append(("this beta's benchmark time (in units of T_sk, to scale to other corpora)",
                 f"{res['seconds']:.0f} s = {res['seconds'] / mu['T']:.1f} T_sk"))  # fmt: skip
    print(f"\n{corpus['name']}, beta={beta:g} ({BETA_NAME.get(beta, 'beta')}), rank {RANK}")
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}".rstrip())


def report_corpus(c: dict[str, Any]) -> None:
    print(f"\ncorpus {c['name']}: {c['files']} files, {c['minutes']:.1f} min, {c['frames']} frames "
          f"x {c['bins']} bins (Zarr chunks of {c['chunk_frames']} frames)")  # fmt: skip
    g = c.get("gemm")
    if not g:
        return
    if "error" in g:
        print(f"  chunk kernel vs GEMM: not measured ({g['error']})")
        return
    print(f"  numpy float32 GEMM, {g['shape'][0]} x {g['shape'][1]}, rank {RANK}, 1 thread: "
          + ", ".join(f"{k} {v:.1f}" for k, v in g["gemm_gflops"].items()) + " GFLOP/s")  # fmt: skip
    for key, per in g.items():
        if not key.startswith("beta="):
            continue
        a, b = per["n_inner=1"], per["n_inner=2"]
        ok = "met" if a["ratio"] >= GEMM_TARGET else "MISSED"
        print(f"  chunk kernel {key}: {a['seconds'] * 1e3:.1f} ms ({a['gemms']} products) / "
              f"{b['seconds'] * 1e3:.1f} ms ({b['gemms']}), ratio to GEMM n_inner 1 / 2: "
              f"{a['ratio']:.2f} / {b['ratio']:.2f}  [target >= {GEMM_TARGET}: {ok}]")  # fmt: skip


def plot(path: Path, results: dict[str, Any]) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(results["corpora"].values())
    betas = sorted({b for c in corpora for b in c["betas"]}, key=float)
    fig, axes = plt.subplots(len(corpora), len(betas), figsize=(5 * len(betas), 4 * len(corpora)),
                             squeeze=False)  # fmt: skip
    for row, c in zip(axes, corpora, strict=True):
        for ax, b in zip(row, betas, strict=True):
            res = c["betas"].get(b)
            if res is None:
                ax.set_visible(False)
                continue
            L = res["mu"]["L"]
            for solver, color in (("mu", "C0"), ("cd", "C4")):
                if solver in res:
                    s = res[solver]
                    ax.plot(s["curve_times"], np.divide(s["curve_losses"], L), "o-", color=color,
                            ms=3, label=f"NMF({solver}, {s['best_init']})")  # fmt: skip
                    for init, r in s["inits"].items():
                        if init != s["best_init"]:
                            ax.plot([r["seconds"]], [r["loss"] / L], "x", color=color,
                                    label=f"NMF({solver}, {init}), 200 it.")  # fmt: skip
            mb = res["minibatch"]
            ax.plot(mb["times"], np.divide(mb["losses"], L), "s-", color="C1", ms=3,
                    label="MiniBatchNMF")  # fmt: skip
            for key, color, label in (("dnmf", "C2", "dnmf learn (whole command)"),
                                      ("dnmf_schedule_full", "C3", "dnmf --schedule full")):  # fmt: skip
                run = res.get(key)
                if run:
                    ax.plot([p["seconds"] for p in run["points"]],
                            [p["loss"] / L for p in run["points"]], "D-", color=color, ms=4,
                            label=label)  # fmt: skip
            ax.axhline(1.0, color="0.5", ls="--", lw=0.8, label="L*")
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            lows = [float(np.min(ln.get_ydata())) for ln in ax.get_lines() if len(ln.get_ydata())]
            ax.set_ylim(min(0.97, 0.99 * min(lows)), 1.6)
            ax.set_xlabel("wall-clock seconds")
            ax.set_ylabel("loss / L* (H refitted)")
            ax.set_title(
                f"{c['corpus']['name']}, beta={float(b):g} ({BETA_NAME.get(float(b), '')})"
            )
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# -- main ------------------------------------------------------------------------------------
def _floats(s: str) -> list[float]:
    return [float(x) for x in s.split(",") if x.strip()]


def _ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x.strip()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--corpus", choices=["20min", "2h", "both"], default="20min",
                    help="the 20-minute corpus, the 2-hour one, or both")  # fmt: skip
    ap.add_argument("--quick", action="store_true", help="a 3-minute corpus instead")
    ap.add_argument("--beta", type=_floats, default=[0.0, 1.0, 2.0], help="e.g. 0,1,2")
    ap.add_argument("--refit-iter", type=int, default=100,
                    help="iterations of the H refit behind every loss (MU; HALS for beta 2)")  # fmt: skip
    ap.add_argument("--sk-points", type=_ints, default=[10, 25, 50, 100],
                    help="iterations of scikit-learn's curve ('' for none)")  # fmt: skip
    ap.add_argument("--mb-points", type=int, default=6, help="MiniBatchNMF epochs evaluated")
    ap.add_argument("--dnmf-points", type=_floats, default=[0.125, 0.25, 0.5],
                    help="dnmf's curve: --epochs cut to these fractions of the default run's")  # fmt: skip
    ap.add_argument("--dnmf-args", default="", help='extra dnmf learn options, e.g. "--inner 3"')
    ap.add_argument("--dnmf-schedule-full", action="store_true",
                    help="also time dnmf learn --schedule full (where it has the option)")  # fmt: skip
    ap.add_argument("--workdir", type=Path,
                    help="keep the rendered corpora and stores here (default: a temporary folder)")  # fmt: skip
    ap.add_argument("--wait-idle", type=float,
                    help="before each phase, wait up to this many seconds for other processes "
                         "to leave the CPU (default 120, 0 with --quick)")  # fmt: skip
    ap.add_argument("--no-gemm", action="store_true", help="skip the kernel / GEMM measurement")
    ap.add_argument("--plot", type=Path, help="PNG: loss against time, one panel per beta")
    ap.add_argument("--json", type=Path, help="all figures as JSON")
    args = ap.parse_args()
    names = ["quick"] if args.quick else ["20min", "2h"] if args.corpus == "both" else [args.corpus]
    wait = args.wait_idle if args.wait_idle is not None else 0.0 if args.quick else 120.0
    warnings.filterwarnings("ignore", category=FutureWarning)
    load = Load(wait)
    has_schedule = "--schedule" in dnmf_learn_help()
    t_run = time.perf_counter()
    results: dict[str, Any] = {
        "command": shlex.join(["python", "benchmarks/learn.py", *sys.argv[1:]]),
        "rank": RANK,
        "refit_iter": args.refit_iter,
        "corpora": {},
    }
    with tempfile.TemporaryDirectory(prefix="dnmf-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in names:
            corpus = prepare_corpus(workdir, name, CORPORA[name], load)
            V = load_V(corpus["store"])
            X = np.ascontiguousarray(V.T)
            _log(f"corpus {name}: {corpus['files']} files, V {V.shape}")
            entry: dict[str, Any] = {"corpus": corpus, "betas": {}}
            if not args.no_gemm:
                try:
                    with load.phase(f"{name} gemm"):
                        corpus["gemm"] = gemm_efficiency(V, corpus["chunk_frames"], args.beta, 5)
                except (ImportError, TypeError, AttributeError) as e:  # the kernel API moved
                    corpus["gemm"] = {"error": f"{type(e).__name__}: {e}"}
            results["corpora"][name] = entry
            for beta in args.beta:
                entry["betas"][f"{beta:g}"] = bench_beta(
                    corpus, V, X, beta, args, load, workdir, has_schedule
                )
            del V, X
    results["seconds"] = time.perf_counter() - t_run
    results["load"] = load.phases
    print(f"dnmf learn benchmark: {results['command']}")
    heap = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(f"glibc malloc settings: {heap or 'defaults'}")
    print(f"rank {RANK}, n_fft 2048, sr 22050; every loss with H refitted ({args.refit_iter} "
          "iterations: MU, HALS for beta 2) on every frame; times to a loss are the first point at or below it")  # fmt: skip
    for entry in results["corpora"].values():
        report_corpus(entry["corpus"])
        for res in entry["betas"].values():
            report_beta(entry["corpus"], res, args)
    print("\nother processes' CPU during each phase (cores): "
          + ", ".join(f"{k} {v['other_cores']:.2f}" for k, v in load.phases.items()))  # fmt: skip
    print(f"benchmark wall time: {results['seconds']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1, default=float))
    if args.plot:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot(args.plot, results)


if __name__ == "__main__":
    main()
