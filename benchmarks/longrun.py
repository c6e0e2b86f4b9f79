"""Long runs: the client stays flat, the block cache helps past its budget, the profiler is off.

Run from the repository root::

    python benchmarks/longrun.py                       # all three parts
    python benchmarks/longrun.py --part flat --epochs 200
    python benchmarks/longrun.py --part cache
    python benchmarks/longrun.py --part profiler

The committed run: ``benchmarks/results/longrun.txt``.

flat
    ``learn_corpus`` (rank 64, beta = 1, full batch, tol 0) on the 20-minute
    corpus of ``benchmarks/learn.py`` for ``--epochs`` epochs on a LocalCluster
    of 2 worker processes (what ``dnmf learn --rank 64 --beta 1 --workers 2``
    runs). After every epoch it records this process's RSS (the client, and
    the LocalCluster's scheduler, which runs in the client's process), the
    epoch's seconds (the learner's own clock: what the ``on_step`` callback
    does is off it) and the scheduler's records that could grow: task states,
    task groups, spans, computations, the transition log, the messages kept by
    the batched streams, and every 10 epochs the number of Python objects the
    garbage collector tracks. The figures: RSS growth after epoch 10, its
    slope, and the drift of the median epoch time between epochs 10-20 and the
    last ten.

cache
    The same learning on a 60-minute corpus (19 chunks of 8192 frames, 9 or 10
    per worker) with each worker's cache budget set to its share of V divided
    by 0.5, 1 and 3, under the scan-resistant policy dnmf uses and under plain
    LRU (what dnmf had before), plus the cache off, each case ``--repeats``
    times in turn. Hit rates are counted by the workers' caches from the
    second epoch on (the first one only fills them) and set beside the rate of
    a fixed set of whole blocks within the budget; seconds per epoch are
    medians from the second epoch on, and the busiest worker's seconds spent
    reading V (the misses) per epoch, each the best of the repeats.

profiler
    Seconds per epoch on the 20-minute corpus with Dask's sampling profiler
    on (Dask's default: a 10 ms sample of every thread's stack) and off (what
    dnmf's LocalCluster does now): what turning it off costs or saves.

The corpora are synthesized and ingested once and cached under
``--cache-dir`` (default ``/tmp/dnmf-bench-corpora``). The machine may be
shared: ratios measured in one run matter, absolute times less. Nothing
here is a test.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RANK = 64
BETA = 1.0
WORKERS = 2


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def corpus(cache_dir: Path, minutes: float) -> Path:
    """The corpus store of ``minutes`` of music-like audio, ingested once and kept."""
    from learn import make_corpus

    from pipelines.ingest import ingest

    root = cache_dir / f"music-{minutes:g}min"
    store = root / "corpus.zarr"
    if (root / "done").exists():
        return store
    shutil.rmtree(root, ignore_errors=True)
    _log(f"synthesizing and ingesting {minutes:g} minutes of audio into {store}")
    make_corpus(root / "audio", minutes)
    ingest(root / "audio", store, workers=WORKERS)
    shutil.rmtree(root / "audio")
    (root / "done").write_text("")
    return store


def _config(epochs: int, **kw: Any) -> Any:
    from dnmf.nmf.config import LearnConfig

    return LearnConfig(rank=RANK, beta=BETA, epochs=epochs, tol=0.0, **kw)


# -- flat -----------------------------------------------------------------------------------
def scheduler_records(client: Any) -> dict[str, int]:
    """Sizes of what the (in-process) scheduler and the client keep that could grow."""
    s = client.cluster.scheduler
    spans = s.extensions.get("spans")
    streams = [*s.stream_comms.values(), *s.client_comms.values(), client.scheduler_comm]
    return {
        "tasks": len(s.tasks),
        "task_groups": len(s.task_groups),
        "task_prefixes": len(s.task_prefixes),
        "spans": len(spans.spans) if spans is not None else 0,
        "computations": len(s.computations),
        "transition_log": len(s.transition_log),
        "stream_messages": sum(len(b.recent_message_log) for b in streams),
        "client_futures": len(client.futures),
    }


def flat_run(store: Path, tmp: Path, epochs: int) -> dict[str, Any]:
    import psutil

    from dnmf.cluster import connect
    from pipelines.learn import learn_corpus

    me = psutil.Process()
    rec: dict[str, Any] = {"rss_mib": [], "seconds": [], "records": [], "objects": {},
                           "client_cpu": [], "worker_cpu": [], "other_cores": []}  # fmt: skip
    with connect(workers=WORKERS) as client:
        pids0 = client.run(os.getpid)
        procs = [me, *(psutil.Process(pid) for pid in pids0.values())]
        last: list[Any] = [_cpu(procs), _busy(), time.perf_counter()]

        def on_step(p: Any) -> None:
            if not p.epoch_done:
                return
            cpu, busy, now = _cpu(procs), _busy(), time.perf_counter()
            rec["client_cpu"].append(cpu[0] - last[0][0])
            rec["worker_cpu"].append(sum(cpu[1:]) - sum(last[0][1:]))
            # other processes' cores over the epoch (nannies included: they idle)
            own = sum(cpu) - sum(last[0])
            rec["other_cores"].append(max(0.0, busy - last[1] - own) / (now - last[2]))
            rec["seconds"].append(p.seconds)
            rec["rss_mib"].append(me.memory_info().rss / 2**20)
            rec["records"].append(scheduler_records(client))
            if p.epoch % 10 == 0 or p.epoch == epochs - 1:
                gc.collect()
                rec["objects"][p.epoch] = len(gc.get_objects())
                _log(f"epoch {p.epoch}: {p.seconds:.3f} s, RSS {rec['rss_mib'][-1]:.1f} MiB, "
                     f"{rec['records'][-1]}")  # fmt: skip
            last[:] = [_cpu(procs), _busy(), time.perf_counter()]

        learn_corpus(store, tmp / "flat.zarr", config=_config(epochs), overwrite=True,
                     client=client, on_step=on_step)  # fmt: skip
        rec["same_workers"] = client.run(os.getpid) == pids0
        rec["workers_config"] = client.run(_worker_settings)
    return rec


def _cpu(procs: list[Any]) -> list[float]:
    """CPU seconds (user + system) of each process."""
    return [sum(p.cpu_times()[:2]) for p in procs]


def _busy() -> float:
    """CPU seconds all processes of the machine have used."""
    import psutil

    c = psutil.cpu_times()
    return sum(getattr(c, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def _worker_settings() -> dict[str, Any]:
    import dask

    return {
        "profile": dask.config.get("distributed.worker.profile.enabled"),
        "log_length": dask.config.get("distributed.admin.low-level-log-length"),
    }


def flat_rows(rec: dict[str, Any], epochs: int) -> list[tuple[str, str]]:
    rss = np.asarray(rec["rss_mib"])
    sec = np.asarray(rec["seconds"])
    first = 10
    growth = rss[-1] - rss[first]
    slope = np.polyfit(np.arange(first, len(rss)), rss[first:], 1)[0] if len(rss) > first + 2 else 0
    early = float(np.median(sec[first : first + 10]))
    late = float(np.median(sec[-10:]))
    r0, r1 = rec["records"][first], rec["records"][-1]
    objs = rec["objects"]
    o0, o1 = objs.get(first), objs[max(objs)]
    return [
        ("epochs run; the same 2 worker processes at the end", f"{len(rss)}; "
         f"{'yes' if rec['same_workers'] else 'NO'}"),
        ("client RSS at epoch 0 / 10 / last (MiB)", f"{rss[0]:.1f} / {rss[first]:.1f} / {rss[-1]:.1f}"),
        (f"client RSS growth after epoch {first} (target <= 5 MiB)",
         f"{growth:+.2f} MiB  ({slope * 1024:+.1f} KiB/epoch fitted)"),
        (f"median epoch seconds, epochs {first}-{first + 10} / last 10",
         f"{early:.3f} / {late:.3f}"),
        ("epoch time drift (target <= 5 %)", f"{100 * (late / early - 1):+.1f} %"),
        ("median CPU s per epoch, client (+ scheduler) / workers, epochs 10-20 and last 10",
         f"{_med(rec['client_cpu'], first)} / {_med(rec['worker_cpu'], first)}"),
        ("other processes' cores (mean), epochs 10-20 and last 10",
         f"{np.mean(rec['other_cores'][first:first + 10]):.2f} and "
         f"{np.mean(rec['other_cores'][-10:]):.2f}"),
        (f"objects tracked by gc at epoch {first} / last", f"{o0} / {o1} ({o1 - o0:+d})"),
        (f"scheduler records at epoch {first}", _fmt(r0)),
        ("scheduler records at the last epoch", _fmt(r1)),
        ("worker settings (profiler, low-level log length)", str(rec["workers_config"])),
    ]  # fmt: skip


def _med(xs: list[float], first: int) -> str:
    a, b = float(np.median(xs[first : first + 10])), float(np.median(xs[-10:]))
    return f"{a:.3f} and {b:.3f} ({100 * (b / a - 1):+.1f} %)"


def _fmt(d: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in d.items())


# -- cache ----------------------------------------------------------------------------------
def _set_cache(budgets: dict[str, int], policy: str, dask_worker: Any = None) -> None:
    from dnmf.io.blocks import BlockCache, set_block_cache

    set_block_cache(BlockCache(budgets[dask_worker.address], policy=policy))


def _default_cache(dask_worker: Any = None) -> None:
    from dnmf.io.blocks import set_block_cache

    set_block_cache(None)


def _cache_stats(dask_worker: Any = None) -> dict[str, float]:
    from dnmf.io.blocks import block_cache

    return block_cache().stats()


def _reset_stats(dask_worker: Any = None) -> None:
    from dnmf.io.blocks import block_cache

    block_cache().reset_stats()


def shares(backend: Any, client: Any) -> dict[str, list[int]]:
    """Bytes of each block of V, per worker the blocks are home to."""
    home = backend._homes()
    itemsize = np.dtype(backend.dtype).itemsize
    out: dict[str, list[int]] = {}
    for b, (a, z) in enumerate(backend.blocks()):
        out.setdefault(home(b)["workers"][0], []).append(backend.n_bins * (z - a) * itemsize)
    return out


def fixed_set_rate(blocks: dict[str, list[int]], budgets: dict[str, int]) -> float:
    """The hit rate of a cache that keeps the first blocks that fit (whole blocks)."""
    kept = 0
    for w, sizes in blocks.items():
        room = budgets[w]
        for size in sizes:
            if size > room:
                break
            room -= size
            kept += 1
    return kept / sum(len(sizes) for sizes in blocks.values())


def cache_run(
    store: Path, tmp: Path, epochs: int, ratios: list[float], load: Any, repeats: int
) -> list[dict[str, Any]]:
    """Every case ``repeats`` times, the cases in turn (off, keep and lru at each ratio)."""
    from dnmf.backends import DaskBackend
    from dnmf.cluster import connect
    from dnmf.io.corpus import CorpusStore
    from pipelines.learn import learn_corpus

    corpus_ = CorpusStore.open(store)
    out: dict[tuple[str, float | None], dict[str, Any]] = {}
    with connect(workers=WORKERS) as client:
        backend = DaskBackend(client, f"{store}/V", block_frames=corpus_.chunk_frames,
                              n_frames=corpus_.n_frames)  # fmt: skip
        blocks = shares(backend, client)
        share = {w: sum(sizes) for w, sizes in blocks.items()}
        cases: list[tuple[str, float | None]] = [("off", None)]
        cases += [(policy, r) for r in ratios for policy in ("keep", "lru")]
        for rep in range(repeats):
            for policy, ratio in cases:
                budgets = {w: 0 if ratio is None else int(s / ratio) for w, s in share.items()}
                client.run(_set_cache, budgets, "keep" if policy == "off" else policy)
                secs: list[float] = []

                def on_step(p: Any, secs: list[float] = secs) -> None:
                    if p.epoch_done:
                        secs.append(p.seconds)
                        if p.epoch == 0:  # the first epoch fills the caches: count from the next
                            client.run(_reset_stats)

                name = f"cache {policy} {ratio} #{rep}"
                with load.phase(name):
                    learn_corpus(store, tmp / "cache.zarr", config=_config(epochs),
                                 overwrite=True, client=client, on_step=on_step)  # fmt: skip
                stats = client.run(_cache_stats)
                row = out.setdefault((policy, ratio), {
                    "policy": policy, "ratio": ratio,
                    "share_mib": {w: s / 2**20 for w, s in share.items()},
                    "budget_mib": {w: b / 2**20 for w, b in budgets.items()},
                    "expected": fixed_set_rate(blocks, budgets), "hits": 0, "misses": 0,
                    "epoch_seconds": [], "read_seconds": [], "other_cores": [], "held_mib": [],
                })  # fmt: skip
                row["hits"] += sum(s["hits"] for s in stats.values())
                row["misses"] += sum(s["misses"] for s in stats.values())
                row["held_mib"].append(sum(s["used"] for s in stats.values()) / 2**20)
                row["epoch_seconds"].append(float(np.median(secs[1:])))
                # the busiest worker's seconds reading V (the misses), per counted epoch
                row["read_seconds"].append(
                    max(s["read_seconds"] for s in stats.values()) / (len(secs) - 1)
                )
                row["other_cores"].append(load.phases[name]["other_cores"])
                _log(f"{name}: {stats}, {row['epoch_seconds'][-1]:.3f} s/epoch")
        client.run(_default_cache)  # back to the default budget
    for row in out.values():
        row["hit_rate"] = row["hits"] / max(1, row["hits"] + row["misses"])
    return list(out.values())


def cache_rows(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    r0 = rows[0]
    share = ", ".join(f"{s:.0f}" for s in r0["share_mib"].values())
    out = [
        ("share of V per worker (MiB)", share),
        ("columns: hit rate from epoch 2 (that of a fixed set of whole blocks within the "
         "budget) / median s per epoch, best of the repeats / busiest worker's s reading V "
         "per epoch, best of the repeats / MiB held / other processes' cores in each repeat",
         ""),
    ]  # fmt: skip
    for r in rows:
        kind = "dnmf's scan-resistant cache" if r["policy"] == "keep" else "plain LRU (before)"
        name = (
            "cache off (budget 0)"
            if r["ratio"] is None
            else f"share {r['ratio']:g} x budget, {kind}"
        )
        out.append((
            name,
            f"{r['hit_rate']:.3f} ({r['expected']:.3f}) / "
            f"{min(r['epoch_seconds']):.3f} / {min(r['read_seconds']):.3f} / "
            f"{max(r['held_mib']):.0f} / "
            + ", ".join(f"{x:.2f}" for x in r["other_cores"]),
        ))  # fmt: skip
    return out


# -- profiler -------------------------------------------------------------------------------
def profiler_run(store: Path, tmp: Path, epochs: int, load: Any) -> dict[str, Any]:
    from dnmf.cluster import connect
    from pipelines.learn import learn_corpus

    out: dict[str, Any] = {}
    for name, enabled in (("on", True), ("off", False), ("on_again", True)):
        secs: list[float] = []

        def on_step(p: Any, secs: list[float] = secs) -> None:
            if p.epoch_done:
                secs.append(p.seconds)

        with connect(workers=WORKERS, profile=enabled) as client, load.phase(f"profiler {name}"):
            seen = client.run(_worker_settings)
            learn_corpus(store, tmp / "prof.zarr", config=_config(epochs), overwrite=True,
                         client=client, on_step=on_step)  # fmt: skip
        out[name] = {"epoch_seconds": float(np.median(secs[1:])), "workers": seen,
                     "other_cores": load.phases[f"profiler {name}"]["other_cores"]}  # fmt: skip
        _log(f"profiler {name}: {out[name]}")
    return out


def profiler_rows(res: dict[str, Any]) -> list[tuple[str, str]]:
    on = (res["on"]["epoch_seconds"] + res["on_again"]["epoch_seconds"]) / 2
    off = res["off"]["epoch_seconds"]
    return [
        ("median s per epoch, profiler on / off / on again",
         f"{res['on']['epoch_seconds']:.3f} / {off:.3f} / {res['on_again']['epoch_seconds']:.3f}"),
        ("ratio off / on (mean of the two on runs)", f"{off / on:.3f}"),
        ("other processes' cores, on / off / on again",
         " / ".join(f"{res[k]['other_cores']:.2f}" for k in ("on", "off", "on_again"))),
    ]  # fmt: skip


def _own_seconds() -> float:
    """CPU seconds of this process and of its children, live (the workers) or reaped."""
    import resource

    import psutil

    me = resource.getrusage(resource.RUSAGE_SELF)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    live = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            live += sum(child.cpu_times()[:2])
        except psutil.Error:
            pass
    return me.ru_utime + me.ru_stime + reaped.ru_utime + reaped.ru_stime + live


class Load:
    """Per phase: the cores other processes kept busy (as in benchmarks/learn.py).

    Before each phase it waits (up to ``wait`` seconds, off every clock) for the
    other processes to use less than ``idle`` cores.
    """

    def __init__(self, wait: float, idle: float = 0.15) -> None:
        self.wait, self.idle = wait, idle
        self.phases: dict[str, dict[str, float]] = {}

    def _other_cores(self, seconds: float) -> float:
        b0, o0, t0 = _busy(), _own_seconds(), time.perf_counter()
        time.sleep(seconds)
        return (_busy() - b0 - (_own_seconds() - o0)) / (time.perf_counter() - t0)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t_wait = time.perf_counter()
        while time.perf_counter() - t_wait < self.wait and self._other_cores(1.0) > self.idle:
            pass
        waited = time.perf_counter() - t_wait
        b0, o0, t0 = _busy(), _own_seconds(), time.perf_counter()
        yield
        dt = time.perf_counter() - t0
        other = _busy() - b0 - (_own_seconds() - o0)
        self.phases[name] = {"seconds": dt, "other_cores": max(0.0, other / dt), "waited": waited}


# -- main -----------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--part", choices=("all", "flat", "cache", "profiler"), default="all")
    ap.add_argument("--epochs", type=int, default=200, help="epochs of the flat run")
    ap.add_argument("--cache-epochs", type=int, default=8, help="epochs of each cache case")
    ap.add_argument("--profiler-epochs", type=int, default=21, help="epochs of each profiler case")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each cache case")
    ap.add_argument("--ratios", type=float, nargs="+", default=[0.5, 1.0, 3.0],
                    help="share of V per worker / cache budget")  # fmt: skip
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/dnmf-bench-corpora"))
    ap.add_argument("--wait-idle", type=float, default=30.0,
                    help="before each phase, wait up to this many seconds for other "
                         "processes to leave the CPU")  # fmt: skip
    ap.add_argument("--json", type=Path, help="all figures as JSON")
    args = ap.parse_args()
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    load = Load(args.wait_idle)
    t0 = time.perf_counter()
    res: dict[str, Any] = {}
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="dnmf-longrun-") as tmpdir:
        tmp = Path(tmpdir)
        if args.part in ("all", "flat"):
            store = corpus(args.cache_dir, 20)
            with load.phase("flat"):
                res["flat"] = flat_run(store, tmp, args.epochs)
            rows += [("-- flat: 20 min corpus (51680 frames, 7 blocks), full batch", "")]
            rows += flat_rows(res["flat"], args.epochs)
        if args.part in ("all", "cache"):
            res["cache"] = cache_run(corpus(args.cache_dir, 60), tmp, args.cache_epochs,
                                     args.ratios, load, args.repeats)  # fmt: skip
            rows += [(f"-- cache: 60 min corpus (19 blocks), {args.cache_epochs} epochs per "
                      f"case, {args.repeats} repeats", "")]  # fmt: skip
            rows += cache_rows(res["cache"])
        if args.part in ("all", "profiler"):
            res["profiler"] = profiler_run(
                corpus(args.cache_dir, 20), tmp, args.profiler_epochs, load
            )
            rows += [(f"-- profiler: 20 min corpus, {args.profiler_epochs} epochs per case", "")]
            rows += profiler_rows(res["profiler"])
    rows.append(("benchmark wall time", f"{time.perf_counter() - t0:.0f} s"))
    print(f"dnmf long-run benchmark: rank {RANK}, beta={BETA:g}, {WORKERS} worker processes")
    width = max(len(k) for k, v in rows if v) + 2
    for k, v in rows:
        print(f"  {k:<{width}}{v}" if v else k)
    if args.json:
        args.json.write_text(json.dumps(res, indent=1, default=str))


if __name__ == "__main__":
    main()
