"""The Dask scheduler's cost per task, measured on a real LocalCluster with many small tasks.

Run from the repository root::

    python benchmarks/scheduler_overhead.py
    python benchmarks/scheduler_overhead.py --tasks 500 2000 8000 --repeats 3

The committed run: ``benchmarks/results/scheduler_overhead.txt``; docs/scaling.md
extrapolates from it to 100 workers.

Each step is one graph shaped as ``DaskBackend.step`` builds it: the step's W
(``--bins`` x ``--rank`` float32) scattered to every worker, N visit tasks
(one layer per home worker, annotated ``workers=[home]``,
``allow_other_workers=True``, the blocks in contiguous runs per worker), each
returning statistics of the size a visit returns (two arrays of bins x rank,
allocated, not computed: the task does no work), and the fixed tree of N - 1
sums over block indices; computed at once, the root gathered. The cluster is
what ``dnmf.cluster.connect(workers=2)`` starts (dnmf's settings). For each N
the script runs ``--repeats`` steps after a warm-up and records the median
wall time of a step, the CPU seconds of this process (the client and the
LocalCluster's scheduler, which runs in it) and of the workers per step, and
the peak RSS of this process during a step above its level before it; and,
once per N, the Python memory this process (client and scheduler) allocated
for a step whose tasks all wait on the scheduler (behind a task that waits
for an Event), traced by ``tracemalloc`` from the graph's submission: what the
graph of a step takes there. A line
fitted through (N, seconds) gives the cost per task: the scheduler handles
tasks one at a time in one thread, so its CPU per task bounds the tasks per
second any cluster of it can run. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORKERS = 2


def visit(W: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, float]:
    """A visit that does no work: statistics of the right size and a loss."""
    return np.zeros_like(W), np.zeros_like(W), float(block)


def add(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray, float]:
    return x[0] + y[0], x[1] + y[1], x[2] + y[2]


def tree(leaves: list[str], sums: dict[str, Any], key: str) -> str:
    """The fixed pairwise tree over the leaves, in index order (dnmf's ``tree_sum``)."""
    level = leaves
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            k = f"{key}-sum-{len(sums)}"
            sums[k] = (add, level[i], level[i + 1])
            nxt.append(k)
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def gate(name: str) -> int:
    """A task that waits for the distributed Event ``name``: the graph behind it stays held."""
    from distributed import Event

    Event(name).wait()
    return 0


def visit_after(W: np.ndarray, block: int, _gate: int) -> tuple[np.ndarray, np.ndarray, float]:
    return visit(W, block)


def step(client: Any, W: np.ndarray, n: int, tag: str, *, held: bool = False) -> None:
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

    key = f"bench-{tag}"
    W_f = client.scatter({f"{key}-W": W}, broadcast=True)[f"{key}-W"]
    workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
    layers: dict[str, dict[str, Any]] = {}
    leaves = []
    for b in range(n):
        w = workers[b * len(workers) // n]
        leaf = f"{key}-visit-{b}"
        task = (visit_after, W_f, b, f"{key}-gate") if held else (visit, W_f, b)
        layers.setdefault(w, {})[leaf] = task
        leaves.append(leaf)
    sums: dict[str, Any] = {}
    root = tree(leaves, sums, key)
    graph = {
        f"{key}-visit-on-{w}": MaterializedLayer(d, annotations={"workers": [w], "allow_other_workers": True})
        for w, d in layers.items()
    }  # fmt: skip
    deps: dict[str, set[str]] = {name: set() for name in graph}
    if sums:
        graph[f"{key}-sum"] = MaterializedLayer(sums)
        deps[f"{key}-sum"] = set(deps) - {f"{key}-sum"}
    if held:
        graph[f"{key}-gate"] = MaterializedLayer({f"{key}-gate": (gate, f"{key}-event")})
        deps[f"{key}-gate"] = set()
        for name in layers:
            deps[f"{key}-visit-on-{name}"] = {f"{key}-gate"}
    if held:
        gc.collect()
        tracemalloc.start()
    future = client.get(HighLevelGraph(graph, deps), root, sync=False)
    if held:
        held_bytes(client, 2 * n, f"{key}-event")
    future.result()


HELD: list[int] = []


def held_bytes(client: Any, n_tasks: int, event: str) -> None:
    """With the step's tasks waiting on the scheduler: this process's RSS over its level before."""
    from distributed import Event

    s = client.cluster.scheduler
    while len(s.tasks) < n_tasks:
        time.sleep(0.01)
    time.sleep(0.2)
    gc.collect()
    HELD.append(tracemalloc.get_traced_memory()[0])
    tracemalloc.stop()
    Event(event, client=client).set()


class Peak(threading.Thread):
    """Peak RSS of this process while running, sampled every 10 ms."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.me = psutil.Process()
        self.base = self.peak = self.me.memory_info().rss
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            self.peak = max(self.peak, self.me.memory_info().rss)
            self.halt.wait(0.01)

    def stop(self) -> int:
        self.halt.set()
        self.join()
        return self.peak - self.base


def cpu(procs: list[psutil.Process]) -> list[float]:
    return [sum(p.cpu_times()[:2]) for p in procs]


def measure(client: Any, n: int, repeats: int, W: np.ndarray) -> dict[str, float]:
    me = psutil.Process()
    workers = [psutil.Process(pid) for pid in client.run(os.getpid).values()]
    step(client, W, n, f"warm{n}")
    step(client, W, n, f"held{n}", held=True)
    held = HELD[-1]
    walls, own, wcpu, mem = [], [], [], []
    for r in range(repeats):
        c0, t0 = cpu([me, *workers]), time.perf_counter()
        peak = Peak()
        peak.start()
        step(client, W, n, f"n{n}-{r}")
        mem.append(peak.stop())
        t1, c1 = time.perf_counter(), cpu([me, *workers])
        walls.append(t1 - t0)
        own.append(c1[0] - c0[0])
        wcpu.append(sum(c1[1:]) - sum(c0[1:]))
    return {
        "tasks": 2 * n - 1,
        "wall": statistics.median(walls),
        "client_cpu": statistics.median(own),
        "worker_cpu": statistics.median(wcpu),
        "rss": statistics.median(mem),
        "held": held,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tasks", type=int, nargs="+", default=[250, 1000, 4000, 16000],
                    help="visits per step (the graph holds twice as many tasks, with the sums)")  # fmt: skip
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bins", type=int, default=1025)
    ap.add_argument("--rank", type=int, default=64)
    args = ap.parse_args()
    from dnmf.cluster import connect

    W = np.ones((args.bins, args.rank), dtype=np.float32)
    rows = []
    t0 = time.perf_counter()
    with connect(workers=WORKERS) as client:
        for n in args.tasks:
            rows.append(measure(client, n, args.repeats, W))
            print(f"{n} visits: {rows[-1]}", file=sys.stderr, flush=True)
    tasks = np.array([r["tasks"] for r in rows], dtype=float)

    def slope(key: str) -> tuple[float, float]:
        b, a = np.polyfit(tasks, [r[key] for r in rows], 1)
        return float(b), float(a)

    print(
        f"Dask scheduler overhead: steps of N no-op visits + N-1 sums, statistics of "
        f"{args.bins} x {args.rank} float32 x 2, {WORKERS} worker processes "
        f"(dnmf.cluster.connect), niceness {os.nice(0)}, {psutil.cpu_count()} cores"
    )
    print(f"  {'visits':>7} {'tasks':>7} {'wall s':>8} {'client+sched CPU s':>19} "
          f"{'workers CPU s':>14} {'wall ms/task':>13} {'RSS MiB':>8} {'held MiB (traced)':>18}")  # fmt: skip
    for n, r in zip(args.tasks, rows, strict=True):
        print(f"  {n:>7} {r['tasks']:>7.0f} {r['wall']:>8.3f} {r['client_cpu']:>19.3f} "
              f"{r['worker_cpu']:>14.3f} {1e3 * r['wall'] / r['tasks']:>13.3f} "
              f"{r['rss'] / 2**20:>8.1f} {r['held'] / 2**20:>18.1f}")  # fmt: skip
    for key, what in (("wall", "wall time of a step"), ("client_cpu", "CPU of the client + scheduler"),
                      ("worker_cpu", "CPU of the workers, both"), ("rss", "peak RSS of the client + scheduler during a step"),
                      ("held", "memory (tracemalloc) of the client + scheduler with a step's tasks held")):  # fmt: skip
        b, a = slope(key)
        unit = (f"{b / 1024:.2f} KiB per task, {a / 2**20:+.1f} MiB fixed" if key in ("rss", "held")
                else f"{1e6 * b:.0f} us per task, {1e3 * a:+.0f} ms fixed")  # fmt: skip
        print(f"  fitted {what}: {unit}")
    print(f"  machine load average at the end (1 min): {os.getloadavg()[0]:.2f}; "
          f"benchmark wall time {time.perf_counter() - t0:.0f} s")  # fmt: skip


if __name__ == "__main__":
    main()
