"""Time from process start to the first stderr line of ``dnmf ingest``, ``learn``, ``export``,
``run``, ``rank``, ``transform``, ``separate`` and ``demo`` (the promise: within one second).

Run from the repository root::

    python benchmarks/startup.py              # median of 5 starts per command
    python benchmarks/startup.py --repeat 9
    python benchmarks/startup.py --repo ../other-checkout   # that checkout's code, same script

Two one-second tones are written with NumPy and soundfile, ingested and learned
once (one worker) so that every command has real inputs; then each command is
started ``--repeat`` times as ``python -m dnmf.cli ...``, timed from just before
the process is spawned to the arrival of its first stderr line, and killed there
(its outputs are thrown away). A command that says nothing on stderr is timed to
its end (its line shows as ''). Printed: the median and range per command and the
load average, since the machine may be shared. Nothing here is a test.

The environment is passed on as it is: with ``PYTHONDONTWRITEBYTECODE=1`` every
dnmf module a command imports is compiled from source at each start, as in a
fresh checkout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


#: The checkout whose code is timed (``--repo``); this script's own by default.
CODE = REPO


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DNMF_SCHEDULER"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(CODE), env.get("PYTHONPATH")]))
    return env


def _dnmf(*args: object) -> None:
    subprocess.run([sys.executable, "-m", "dnmf.cli", *map(str, args)], check=True, env=_env())


def first_line_seconds(args: list[object]) -> tuple[float, str]:
    """Seconds from spawning ``dnmf ARGS`` to its first stderr line, and that line."""
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [sys.executable, "-m", "dnmf.cli", *map(str, args)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    assert p.stderr is not None
    line = p.stderr.readline().rstrip("\n")
    seconds = time.perf_counter() - t0
    p.kill()
    p.wait()
    return seconds, line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout whose code runs")
    parsed = parser.parse_args()
    repeat = parsed.repeat
    global CODE
    CODE = parsed.repo.resolve()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sr = 22050
        t = np.arange(sr, dtype=np.float32) / sr
        (root / "audio").mkdir()
        for name, freq in (("a.wav", 440.0), ("b.wav", 660.0)):
            sf.write(root / "audio" / name, 0.3 * np.sin(2 * np.pi * freq * t), sr)
        corpus, model = root / "corpus.zarr", root / "model.zarr"
        _dnmf("ingest", root / "audio", "-o", corpus, "--workers", "1", "-q")
        _dnmf("learn", corpus, "-o", model, "--rank", "2", "--epochs", "1", "--workers", "1", "-q")
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
        print(f"code of {CODE}")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        for name, args in commands.items():
            times, line = [], ""
            for _ in range(repeat):
                seconds, line = first_line_seconds(args)
                times.append(seconds)
                shutil.rmtree(out, ignore_errors=True)
                shutil.rmtree(root / "pipe", ignore_errors=True)
            print(
                f"dnmf {name:9s} first stderr line after {statistics.median(times):.3f} s "
                f"(median of {repeat}; {min(times):.3f}-{max(times):.3f}): {line!r}"
            )
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
