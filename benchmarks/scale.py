"""A corpus larger than RAM, ingested and learned with the dnmf commands, against a 20-minute one.

Run from the repository root::

    nice -n 19 python benchmarks/scale.py --out benchmarks/results/scale.txt   # 100 h, ~1 h
    python benchmarks/scale.py --hours 0.5                                    # a quick check
    nice -n 19 python benchmarks/scale.py --order small,large,small           # the small one twice

The committed run: ``benchmarks/results/scale.txt``.

Two corpora, built in this run the same way, ingested and learned by the same
commands, in the order ``--order`` names them (``small,large``; a small corpus
before and after the large one brackets a shared machine's load):
``--small-minutes`` (20) of audio, the reference, and ``--hours``
(100) of it, whose V (n_fft 1024: 513 bins, hop 512 at 22050 Hz, float32;
about 32 GB for 100 hours) does not fit in this machine's memory. The audio is
a few General MIDI pieces rendered once by FluidSynth (benchmarks/render.py;
``dnmf.demo.synth_piece`` where FluidSynth is missing) and written as distinct
variants: mixtures of two pieces with their own gains, start offsets and DC
offsets, in files of ``--file-minutes``. Each corpus is then, as whole
commands in subprocesses:

1. ``dnmf ingest AUDIO -o corpus.zarr --n-fft 1024 --workers 2 --json``: the
   command's wall time (cluster start included) and its realtime factor;
   the audio is deleted after it (unless ``--keep``) to make room for H;
2. ``dnmf learn corpus.zarr --rank 64 --workers 2 --epochs E --tol 0 --json``
   (full batch: one step is one epoch), run through benchmarks/scale_cli.py,
   which is ``dnmf``'s entry point with a clock on the backend's calls. From
   it: the time from the command's start (this script's ``Popen``) to the
   first epoch's start, and the part of it spent in the pass over V the
   learner's start makes (``summary``); each epoch's seconds (the step: W
   broadcast, one task per chunk, the tree reduce; and start to start, with
   the checkpoint), per million frames, median from the second epoch on (the
   first also fills the workers' caches).

While each command runs, a thread samples every 0.25 s the RSS of the
command's process (the client, with the LocalCluster's scheduler and nannies)
and of each worker process (psutil). Worker peaks are set against the block
cache's budget per worker (``DNMF_CACHE_MB`` or a quarter of the memory shared
among the CPUs, what the workers compute): the target is the budget plus a
constant, the same constant for both corpora. The cores the machine's other
processes kept busy during each command are reported beside it. Stores are
deleted at the end unless ``--keep``. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT))

RANK = 64
WORKERS = 2
GiB = 2**30


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- measuring a command ------------------------------------------------------------------------
class Sampler(threading.Thread):
    """Peak RSS of a process and of its worker processes, sampled every ``period`` seconds."""

    def __init__(self, pid: int, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.period = pid, period
        self.peak: dict[int, int] = {}
        self.role: dict[int, str] = {}
        self.series: list[tuple[float, int, int]] = []  # (time, pid, rss)
        self.cpu: list[tuple[float, int, float]] = []  # (time, pid, CPU seconds so far)
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._halt.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            now = time.time()
            for p in procs:
                try:
                    rss = p.memory_info().rss
                    used = sum(p.cpu_times()[:2])
                    if p.pid not in self.role:
                        self.role[p.pid] = _role(p, self.pid)
                except psutil.Error:
                    continue
                self.peak[p.pid] = max(self.peak.get(p.pid, 0), rss)
                self.series.append((now, p.pid, rss))
                self.cpu.append((now, p.pid, used))
            self._halt.wait(self.period)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def cpu_between(self, role: str, t0: float, t1: float) -> float:
        """CPU seconds the processes of ``role`` used between two times (interpolated
        between the samples, 10 ms clock ticks)."""
        import numpy as np

        total = 0.0
        for pid in {pid for _, pid, _ in self.cpu if self.role.get(pid) == role}:
            ts, cs = zip(*[(t, c) for t, q, c in self.cpu if q == pid], strict=True)
            total += float(np.interp(t1, ts, cs) - np.interp(t0, ts, cs))
        return total

    def peaks(self, role: str, after: float = 0.0, before: float = float("inf")) -> list[int]:
        """Peak RSS of each process of ``role`` between two times."""
        out: dict[int, int] = {}
        for t, pid, rss in self.series:
            if self.role.get(pid) == role and after <= t <= before:
                out[pid] = max(out.get(pid, 0), rss)
        return [out[p] for p in sorted(out)]


def _role(p: psutil.Process, root: int) -> str:
    if p.pid == root:
        return "client"
    cmd = " ".join(p.cmdline())
    if "spawn_main" in cmd or "multiprocessing-fork" in cmd:
        return "worker"
    return "other"


def _busy() -> float:
    """CPU seconds all processes of the machine have used."""
    c = psutil.cpu_times()
    return sum(getattr(c, f, 0.0) for f in ("user", "nice", "system", "irq", "softirq", "steal"))


def _children_cpu() -> float:
    """CPU seconds of this process's reaped descendants (a finished command and its workers)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


@dataclass
class Run:
    """One command: its wall time, output, clock marks, memory and the others' load."""

    argv: list[str]
    t_start: float = 0.0
    wall: float = 0.0
    rc: int = 0
    stdout: str = ""
    marks: list[tuple[str, float]] = field(default_factory=list)
    sampler: Sampler | None = None
    other_cores: float = 0.0

    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)  # type: ignore[no-any-return]

    def times(self, event: str) -> list[float]:
        return [t for e, t in self.marks if e == event]


def run_command(
    argv: list[str], log: Path, clock: Path | None = None, env_extra: dict[str, str] | None = None
) -> Run:
    """Run ``argv`` (stderr to ``log``), sampling its memory; fail loudly on a non-zero exit."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))  # fmt: skip
    env.update(env_extra or {})
    if clock is not None:
        clock.unlink(missing_ok=True)
        env["DNMF_BENCH_CLOCK"] = str(clock)
    run = Run(argv)
    _log("$ " + " ".join(argv))
    busy0, own0 = _busy(), _children_cpu()
    with log.open("a") as err:
        run.t_start = time.time()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env, text=True)
        run.sampler = Sampler(proc.pid)
        run.sampler.start()
        out, _ = proc.communicate()
        run.wall = time.time() - run.t_start
        run.sampler.stop()
    run.rc, run.stdout = proc.returncode, out
    run.other_cores = max(0.0, (_busy() - busy0) - (_children_cpu() - own0)) / run.wall
    if clock is not None and clock.exists():
        for line in clock.read_text().splitlines():
            d = json.loads(line)
            run.marks.append((d["event"], d["t"]))
    if run.rc not in (0, 3):
        raise SystemExit(f"{argv[:4]} exited with {run.rc}; see {log}")
    _log(f"  done in {run.wall:.1f} s (others kept {run.other_cores:.2f} cores busy)")
    return run


# -- one corpus ---------------------------------------------------------------------------------
@dataclass
class Corpus:
    name: str
    hours: float
    seed: int
    files: int = 0
    render_seconds: float = 0.0
    audio_bytes: int = 0
    ingest: Run | None = None
    learn: Run | None = None
    summary: dict[str, Any] = field(default_factory=dict)


def feature_args(args: argparse.Namespace) -> list[str]:
    return ["--sr", str(args.sr), "--n-fft", str(args.n_fft), "--hop-length", str(args.hop)]


def build(c: Corpus, pieces: list[Any], args: argparse.Namespace, work: Path, log: Path) -> None:
    from render import write_variants

    seconds = c.hours * 3600
    c.files = max(4, round(seconds / (60 * args.file_minutes)))
    audio = work / c.name / "audio"
    shutil.rmtree(work / c.name, ignore_errors=True)
    _log(f"{c.name}: writing {c.files} files, {c.hours:g} h of audio, under {audio}")
    t0 = time.perf_counter()
    paths = write_variants(pieces, audio, c.files, seconds / c.files, args.sr, seed=c.seed)
    c.render_seconds = time.perf_counter() - t0
    c.audio_bytes = sum(p.stat().st_size for p in paths)
    store, model = work / c.name / "corpus.zarr", work / c.name / "model.zarr"
    c.ingest = run_command(
        [sys.executable, "-m", "dnmf.cli", "ingest", str(audio), "-o", str(store),
         *feature_args(args), "--workers", str(WORKERS), "--json"], log,
    )  # fmt: skip
    if not args.keep:
        shutil.rmtree(audio)
    epochs = args.epochs if c.name == "large" else args.small_epochs
    c.learn = run_command(
        [sys.executable, str(HERE / "scale_cli.py"), "learn", str(store), "-o", str(model),
         "--rank", str(RANK), "--workers", str(WORKERS), "--epochs", str(epochs), "--tol", "0",
         "--json"], log, clock=work / c.name / "clock.jsonl",
        env_extra=cache_env(args),
    )  # fmt: skip
    c.summary = summarize(c, store)
    _log(f"{c.name}: {json.dumps(c.summary)}")
    if not args.keep:
        shutil.rmtree(work / c.name)


def cache_env(args: argparse.Namespace) -> dict[str, str]:
    """The learn commands' environment: ``DNMF_CACHE_MB`` when ``--cache-mb`` is given."""
    return {} if args.cache_mb is None else {"DNMF_CACHE_MB": str(args.cache_mb)}


def summarize(c: Corpus, store: Path) -> dict[str, Any]:
    assert c.ingest is not None and c.learn is not None
    ing, lrn = c.ingest.json(), c.learn.json()
    import zarr

    V = zarr.open_array(str(store / "V"), mode="r")
    n_bins, n_frames = int(V.shape[0]), int(lrn_frames(store))
    starts, ends = c.learn.times("step-start"), c.learn.times("step-end")
    steps = [e - s for s, e in zip(starts, ends, strict=True)]
    between = [b - a for a, b in itertools.pairwise(starts)]
    mframes = n_frames / 1e6
    assert c.learn.sampler is not None
    worker_cpu = [
        c.learn.sampler.cpu_between("worker", a, b) for a, b in zip(starts, ends, strict=True)
    ]
    later = steps[1:] or steps
    s_sum, e_sum = c.learn.times("summary-start"), c.learn.times("summary-end")
    assert c.ingest.sampler is not None and c.learn.sampler is not None
    first = starts[0] if starts else float("inf")
    return {
        "files": c.files, "hours": ing["hours_added"], "frames": n_frames, "bins": n_bins,
        "V_bytes": n_bins * n_frames * 4, "audio_bytes": c.audio_bytes,
        "render_seconds": c.render_seconds,
        "ingest_wall": c.ingest.wall, "ingest_own_wall": ing["wall_seconds"],
        "ingest_rtf": ing["seconds_added"] / c.ingest.wall, "ingest_own_rtf": ing["realtime_factor"],
        "ingest_other_cores": c.ingest.other_cores,
        "ingest_client_peak": max(c.ingest.sampler.peaks("client"), default=0),
        "ingest_worker_peaks": c.ingest.sampler.peaks("worker"),
        "learn_wall": c.learn.wall, "learn_other_cores": c.learn.other_cores,
        "epochs": lrn["epochs"], "steps": len(steps), "step_seconds": steps,
        "start_to_start": between,
        "s_per_epoch_per_mframe": statistics.median(later) / mframes if steps else None,
        "worker_cpu_per_epoch_per_mframe": (
            statistics.median(worker_cpu[1:] or worker_cpu) / mframes if worker_cpu else None
        ),
        "s_per_epoch_per_mframe_with_checkpoint": (
            statistics.median(between[1:] or between) / mframes if between else None
        ),
        "time_to_first_epoch": first - c.learn.t_start,
        "python_start_to_main": c.learn.times("main")[0] - c.learn.t_start,
        "startup": startup(c.learn, first),
        "summary_seconds": sum(e - s for s, e in zip(s_sum, e_sum, strict=True)),
        "summary_calls": len(s_sum),
        "client_peak": max(c.learn.sampler.peaks("client"), default=0),
        "worker_peaks": c.learn.sampler.peaks("worker"),
        "worker_peaks_epochs": c.learn.sampler.peaks("worker", after=first),
        "worker_peaks_before_first_epoch": c.learn.sampler.peaks("worker", before=first),
        "loss": lrn["loss"],
    }  # fmt: skip


def startup(run: Run, first: float) -> list[float]:
    """The time to the first epoch in parts (s): Python's start, imports and parsing, opening
    the corpus, the cluster's start and the model store, the pass over V, the rest (init)."""

    def at(event: str, default: float) -> float:
        ts = run.times(event)
        return ts[0] if ts else default

    t_main = at("main", run.t_start)
    t_open = at("open_for_learning-start", t_main)
    t_opened = at("open_for_learning-end", t_open)
    t_backend = at("__init__-start", t_opened)
    t_sum0 = at("summary-start", t_backend)
    t_sum1 = at("summary-end", t_sum0)
    cuts = [run.t_start, t_main, t_open, t_opened, t_backend, t_sum0, t_sum1, first]
    return [b - a for a, b in itertools.pairwise(cuts)]


def lrn_frames(store: Path) -> int:
    from dnmf.io.corpus import CorpusStore

    return CorpusStore.open(store).n_frames


# -- the report ---------------------------------------------------------------------------------
def rows(cols: list[tuple[str, dict[str, Any]]], budget: int, how: str) -> list[tuple[str, str]]:
    """The report, a column per corpus run (``/`` between them), ratios of the large to each small."""

    def each(fmt: Any) -> str:
        return " / ".join(fmt(d) for _, d in cols)

    def num(key: str, spec: str = "{:.1f}") -> str:
        return each(lambda d: spec.format(d[key]))

    def mib(xs: list[int]) -> str:
        return ", ".join(f"{x / 2**20:.0f}" for x in xs) or "-"

    large = next((d for name, d in cols if name == "large"), None)
    smalls = [(name, d) for name, d in cols if name.startswith("small")]

    def ratio(key: Any) -> str:
        if large is None:
            return "-"
        get = key if callable(key) else (lambda d: d[key])
        return ", ".join(f"{get(large) / get(d):.2f} ({name})" for name, d in smalls)

    mem = psutil.virtual_memory().total
    out = [
        ("corpora: " + " / ".join(name for name, _ in cols), ""),
        ("audio: files, hours", each(lambda d: f"{d['files']}, {d['hours']:.2f} h") + f"  ({how})"),
        ("frames x bins", each(lambda d: f"{d['frames']} x {d['bins']}")),
        ("V (float32), GB; x this machine's RAM", each(lambda d: f"{d['V_bytes'] / 1e9:.2f}; {d['V_bytes'] / mem:.2f} x") + f" {mem / GiB:.1f} GiB"),
        ("writing the audio (s; not part of any figure)", num("render_seconds")),
        ("-- ingest: dnmf ingest ... --workers 2", ""),
        ("wall time of the command (s; cluster start included)", num("ingest_wall")),
        ("realtime factor of the command; by ingest's own clock", each(lambda d: f"{d['ingest_rtf']:.0f}x; {d['ingest_own_rtf']:.0f}x")),
        ("peak RSS, client; each worker (MiB)", each(lambda d: f"{d['ingest_client_peak'] / 2**20:.0f}; {mib(d['ingest_worker_peaks'])}")),
        ("other processes' cores during it", num("ingest_other_cores", "{:.2f}")),
        ("-- learn: dnmf learn ... --rank 64 --workers 2 --tol 0 (full batch)", ""),
        ("epochs", num("epochs", "{}")),
        ("each epoch's step (s)", each(lambda d: " ".join(f"{x:.2f}" for x in d["step_seconds"]))),
        ("s per epoch per million frames (median from epoch 2)", num("s_per_epoch_per_mframe", "{:.2f}")),
        ("  ratio large / small (target within 20 %)", ratio("s_per_epoch_per_mframe")),
        ("  the workers' CPU seconds per epoch per million frames (both; median from epoch 2)", each(lambda d: _f(d.get("worker_cpu_per_epoch_per_mframe")))),
        ("  ratio of those (the load matters less)", ratio(lambda d: d.get("worker_cpu_per_epoch_per_mframe") or float("nan"))),
        ("  the same, epoch start to start (with the checkpoint)", each(lambda d: _f(d["s_per_epoch_per_mframe_with_checkpoint"]))),
        ("time from the command's start to the first epoch's start (s)", num("time_to_first_epoch")),
        ("  ratio large / small (target <= 1.3)", ratio("time_to_first_epoch")),
        ("  less the cluster's start (s)", each(lambda d: f"{_less_cluster(d):.1f}")),
        ("  ratio of those", ratio(_less_cluster)),
        ("  of which the pass over V at the start (summary; s, calls)", each(lambda d: f"{d['summary_seconds']:.1f}, {d['summary_calls']}")),
        ("  in parts: Python start, imports and options, corpus opened, cluster start and model store, (backend), pass over V, init (s)", each(lambda d: " ".join(f"{x:.1f}" for x in d["startup"]))),
        ("block cache budget per worker (MiB); share of V per worker (MiB)", f"{budget / 2**20:.0f}; " + each(lambda d: f"{d['V_bytes'] / WORKERS / 2**20:.0f}")),
        ("peak RSS of the client (MiB; the scheduler runs in it)", each(lambda d: f"{d['client_peak'] / 2**20:.0f}")),
        ("peak RSS of each worker (MiB)", each(lambda d: mib(d["worker_peaks"]))),
        ("  before the first epoch; during the epochs", each(lambda d: f"{mib(d['worker_peaks_before_first_epoch'])}; {mib(d['worker_peaks_epochs'])}")),
        ("  worker peak minus what its cache can hold, min(share, budget) (MiB)", each(lambda d: _over(d, budget))),
        ("wall time of the command (s)", num("learn_wall")),
        ("other processes' cores during it", num("learn_other_cores", "{:.2f}")),
        ("final loss", num("loss", "{:.6g}")),
    ]  # fmt: skip
    return out


def _less_cluster(d: dict[str, Any]) -> float:
    """Time to the first epoch less the part that does not depend on the corpus (the cluster's start)."""
    return float(d["time_to_first_epoch"] - d["startup"][3])


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _over(d: dict[str, Any], budget: int) -> str:
    held = min(d["V_bytes"] / WORKERS, budget)
    return ", ".join(f"{(x - held) / 2**20:+.0f}" for x in d["worker_peaks"]) or "-"


def need_bytes(hours: float, args: argparse.Namespace) -> int:
    """Disk the large corpus needs at its peak: the audio and V, or V and the two H buffers."""
    frames = hours * 3600 * args.sr / args.hop
    audio = hours * 3600 * args.sr * 2
    V = frames * (args.n_fft // 2 + 1) * 4
    H = 2 * frames * RANK * 4
    return int(audio + V + H if args.keep else max(audio + V, V + H))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--hours", type=float, default=100.0, help="audio of the large corpus")
    ap.add_argument(
        "--small-minutes", type=float, default=20.0, help="audio of the reference corpus"
    )
    ap.add_argument("--epochs", type=int, default=3, help="epochs learned on the large corpus")
    ap.add_argument("--small-epochs", type=int, default=8, help="epochs on the small corpus")
    ap.add_argument("--file-minutes", type=float, default=10.0, help="length of each audio file")
    ap.add_argument("--pieces", type=int, default=6, help="pieces rendered, mixed into variants")
    ap.add_argument("--piece-minutes", type=float, default=4.0)
    ap.add_argument("--sr", type=int, default=22050)
    ap.add_argument("--n-fft", type=int, default=1024)
    ap.add_argument("--hop", type=int, default=512)
    ap.add_argument("--work-dir", type=Path, default=Path("/tmp/dnmf-scale"))
    ap.add_argument("--order", default="small,large",
                    help="corpora built and measured, in turn (small,large,small brackets the "
                         "large run's load)")  # fmt: skip
    ap.add_argument("--cache-mb", type=float,
                    help="DNMF_CACHE_MB of the learn commands' workers (0: the block cache off)")  # fmt: skip
    ap.add_argument("--keep", action="store_true", help="keep the audio and the stores")
    ap.add_argument("--out", type=Path, help="also write the report here")
    ap.add_argument("--json", type=Path, help="all figures as JSON")
    args = ap.parse_args()
    from render import render_pieces

    from dnmf.io.blocks import BlockCache

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    need = need_bytes(args.hours if "large" in args.order else 0.0, args) + 2 * GiB
    free = shutil.disk_usage(work).free
    if free < need:
        raise SystemExit(
            f"{work} has {free / 1e9:.1f} GB free; the large corpus needs {need / 1e9:.1f} GB"
        )
    log = work / "commands.log"
    t0 = time.perf_counter()
    _log(
        f"rendering {args.pieces} pieces of {args.piece_minutes:g} min (stderr of the commands: {log})"
    )
    pieces, how = render_pieces(args.pieces, 60 * args.piece_minutes, args.sr)
    budget = (
        BlockCache.default_budget() if args.cache_mb is None else int(args.cache_mb * 2**20)
    )  # what the workers compute
    res: dict[str, Any] = {}
    cols: list[tuple[str, dict[str, Any]]] = []
    for i, name in enumerate(args.order.split(",")):
        if name not in ("small", "large"):
            raise SystemExit(f"--order {args.order!r}: name small or large, e.g. small,large,small")
        c = Corpus(
            name,
            args.hours if name == "large" else args.small_minutes / 60,
            2 if name == "large" else 1,
        )
        build(c, pieces, args, work, log)
        label = name if name not in res else f"{name}#{i + 1}"
        res[label] = c.summary
        cols.append((label, c.summary))
    nice = os.nice(0)
    lines = [
        f"dnmf scale benchmark: {', '.join(f'{args.hours:g} h' if n == 'large' else f'{args.small_minutes:g} min' for n in args.order.split(','))}, n_fft {args.n_fft} "
        f"hop {args.hop} sr {args.sr}, rank {RANK}, {WORKERS} worker processes, niceness {nice}, "
        f"{psutil.cpu_count()} cores, {psutil.virtual_memory().total / GiB:.1f} GiB RAM",
    ]
    table = rows(cols, budget, how)
    table.append(("benchmark wall time", f"{time.perf_counter() - t0:.0f} s"))
    width = max(len(k) for k, v in table if v) + 2
    lines += [f"  {k:<{width}}{v}" if v else k for k, v in table]
    text = "\n".join(lines)
    print(text)
    if args.out:
        cmd = " ".join(["python", *sys.argv])
        head = f"# {'nice -n ' + str(nice) + ' ' if nice else ''}{cmd}  ({time.strftime('%Y-%m-%d')}, 2-core machine shared with other engineers' test runs)"
        args.out.write_text(head + "\n" + text + "\n")
    if args.json:
        args.json.write_text(json.dumps({"budget": budget, **res}, indent=1, default=str))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
