"""Time from process start to the first stderr line of ``dnmf ingest``, ``learn``, ``export``,
``run``, ``rank``, ``transform``, ``separate`` and ``demo`` (the promise: within one second).

Run from the repository root::

    python benchmarks/startup.py              # median of 5 starts per command
    python benchmarks/startup.py --repeat 9
    python benchmarks/startup.py --repo ../old --repo .   # two checkouts, started in turn

Two one-second tones are written with NumPy and soundfile, ingested and learned
once (one worker) so that every command has real inputs; then each command is
started ``--repeat`` times as ``python -m dnmf.cli ...``, timed from just before
the process is spawned to the arrival of its first stderr line, and killed there
(its outputs are thrown away). A command that says nothing on stderr is timed to
its end (its line shows as ''). Printed: the median and range per command of the
wall time and of the CPU time the process had used (less sensitive to a shared
machine's load), and the load average. With several ``--repo``, each start of
one checkout is followed by the same start of the next, so that all see the same
load. Nothing here is a test.

The environment is passed on as it is: with ``PYTHONDONTWRITEBYTECODE=1`` every
dnmf module a command imports is compiled from source at each start, as in a
fresh checkout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


#: Where the commands run: not a checkout, whose dnmf ``python -m`` would import first.
WORKDIR = Path(tempfile.gettempdir())


def _env(code: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DNMF_SCHEDULER"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    return env


def _dnmf(code: Path, *args: object) -> None:
    subprocess.run(
        [sys.executable, "-m", "dnmf.cli", *map(str, args)], check=True, env=_env(code), cwd=WORKDIR
    )


def first_line_seconds(code: Path, args: list[object]) -> tuple[float, float, str]:
    """Seconds from spawning ``dnmf ARGS`` (``code``'s) to its first stderr line, the CPU
    seconds the process had used by then (to its kill, a moment later), and that line."""
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-m", "dnmf.cli", *map(str, args)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(code),
        cwd=WORKDIR,
    )  # fmt: skip
    assert p.stderr is not None
    line = p.stderr.readline().rstrip("\n")
    seconds = time.perf_counter() - t0
    os.kill(p.pid, signal.SIGKILL)  # not p.kill(): it would reap an exited process first
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stderr.close()
    return seconds, usage.ru_utime + usage.ru_stime, line


def _range(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} s ({min(xs):.3f}-{max(xs):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--repo", type=Path, action="append",
        help="a checkout whose code runs [default: this script's]; give it twice or more to "
        "compare checkouts, started in turn so that they share the machine's load",
    )  # fmt: skip
    parsed = parser.parse_args()
    repeat = parsed.repeat
    codes = [p.resolve() for p in parsed.repo or [REPO]]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sr = 22050
        t = np.arange(sr, dtype=np.float32) / sr
        (root / "audio").mkdir()
        for name, freq in (("a.wav", 440.0), ("b.wav", 660.0)):
            sf.write(root / "audio" / name, 0.3 * np.sin(2 * np.pi * freq * t), sr)
        corpus, model = root / "corpus.zarr", root / "model.zarr"
        _dnmf(codes[0], "ingest", root / "audio", "-o", corpus, "--workers", "1", "-q")
        _dnmf(codes[0], "learn", corpus, "-o", model, "--rank", "2", "--epochs", "1",
              "--workers", "1", "-q")  # fmt: skip
        (root / "pipeline.yaml").write_text(
            f"store: {root / 'pipe'}\ninput: {root / 'audio'}\nlearn:\n  rank: 2\n  epochs: 1\n"
        )
        out = root / "out"
        commands: dict[str, list[object]] = {
            "ingest": ["ingest", root / "audio", "-o", out / "c.zarr", "--workers", "1"],
            "learn": ["learn", corpus, "-o", out / "m.zarr", "--rank", "2", "--workers", "1"],
            "export": ["export", model, "-o", out / "h.zarr", "--workers", "1"],
            "run": ["run", root / "pipeline.yaml", "--workers", "1"],
            "rank": ["rank", corpus, "--ranks", "2", "-o", out / "rank", "--workers", "1"],
            "transform": ["transform", model, root / "audio" / "a.wav", "-o", out / "t.zarr"],
            "separate": ["separate", model, root / "audio" / "a.wav", "-o", out / "parts"],
            "demo": ["demo", "--folder", out / "demo", "--workers", "1"],
        }
        for i, code in enumerate(codes):
            print(f"[{i}] code of {code}" if len(codes) > 1 else f"code of {code}")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        print(f"median of {repeat} starts (range); wall: to the first stderr line; cpu: the "
              "process's user+system seconds by then")  # fmt: skip
        for name, args in commands.items():
            walls: list[list[float]] = [[] for _ in codes]
            cpus: list[list[float]] = [[] for _ in codes]
            lines = [""] * len(codes)
            for _ in range(repeat):
                for i, code in enumerate(codes):
                    seconds, cpu, lines[i] = first_line_seconds(code, args)
                    walls[i].append(seconds)
                    cpus[i].append(cpu)
                    shutil.rmtree(out, ignore_errors=True)
                    shutil.rmtree(root / "pipe", ignore_errors=True)
            for i in range(len(codes)):
                tag = f"[{i}] " if len(codes) > 1 else ""
                print(
                    f"{tag}dnmf {name:9s} wall {_range(walls[i])}  cpu {_range(cpus[i])}: "
                    f"{lines[i].replace(str(root), '$TMP')!r}"
                )
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
