"""Audio for the scale benchmark: a few pieces rendered once, then many distinct variants.

:func:`render_pieces` writes a handful of random General MIDI pieces (piano,
strings, bass, a drum kit; a different draw of programs, tempo and notes per
piece) and renders them with FluidSynth and the fluid-soundfont-gm sound font
(``apt-get install -y fluidsynth fluid-soundfont-gm``); where either is
missing it falls back to :func:`dnmf.demo.synth_piece`. :func:`write_variants`
then writes as many files as asked, each a mixture of two pieces with its own
gains, start offsets (not multiples of any hop) and a small DC offset, looped to
its length: no two files share a frame, and each costs a few array operations
and one WAV write.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
)
#: General MIDI programs drawn from: pianos, organ, guitars, basses, strings, brass, reeds, flutes.
PROGRAMS = (0, 1, 4, 16, 24, 25, 26, 32, 33, 40, 42, 48, 56, 61, 65, 68, 71, 73)
DRUMS = (36, 38, 42, 46, 49, 51)  # kick, snare, hi-hats, crash, ride (channel 10)


def soundfont() -> str | None:
    """The General MIDI sound font found on this machine, with fluidsynth, or None."""
    if shutil.which("fluidsynth") is None:
        return None
    return next((p for p in SOUNDFONTS if Path(p).exists()), None)


def fluidsynth(midi: Path, out: Path, sr: int, sf2: str) -> None:
    """Render ``midi`` to ``out`` (format from its suffix) at ``sr`` with sound font ``sf2``,
    reverb and chorus off (``-R 0 -C 0``: separately rendered stems add up to the mix)."""
    subprocess.run(
        ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.6", "-r", str(sr),
         "-F", str(out), sf2, str(midi)],
        check=True, capture_output=True,
    )  # fmt: skip


def _vlq(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def midi_piece(seconds: float, seed: int) -> bytes:
    """A standard MIDI file (format 0) of random notes on three programs and drums."""
    rng = np.random.default_rng(seed)
    ppq, bpm = 480, int(rng.integers(80, 150))
    tick_s = 60.0 / bpm / ppq
    events: list[tuple[int, bytes]] = [
        (0, b"\xff\x51\x03" + struct.pack(">I", 60_000_000 // bpm)[1:])
    ]
    programs = rng.choice(PROGRAMS, size=3, replace=False)
    for ch, prog in enumerate(programs):
        events.append((0, bytes([0xC0 | ch, int(prog)])))
    end = int(seconds / tick_s)
    root = int(rng.integers(40, 56))
    scale = np.array([0, 2, 4, 5, 7, 9, 11])
    for ch in range(3):
        t = 0
        octave = 12 * ch
        while t < end:
            dur = int(rng.choice([ppq // 2, ppq, ppq * 3 // 2, ppq * 2]))
            for _ in range(int(rng.integers(1, 4))):  # a note or a chord
                pitch = root + octave + int(rng.choice(scale)) + 12 * int(rng.integers(0, 2))
                vel = int(rng.integers(50, 110))
                events.append((t, bytes([0x90 | ch, pitch, vel])))
                events.append((t + dur, bytes([0x80 | ch, pitch, 0])))
            t += dur if rng.random() < 0.8 else 2 * dur
    t = 0
    while t < end:  # drums on channel 10 (index 9), eighth notes
        for key in DRUMS:
            if rng.random() < (0.6 if key in (36, 42) else 0.15):
                events.append((t, bytes([0x99, key, int(rng.integers(60, 120))])))
                events.append((t + ppq // 4, bytes([0x89, key, 0])))
        t += ppq // 2
    events.sort(key=lambda e: (e[0], e[1][0] & 0xF0 == 0x90))  # note-offs before note-ons
    track, last = bytearray(), 0
    for tick, msg in events:
        track += _vlq(tick - last) + msg
        last = tick
    track += _vlq(0) + b"\xff\x2f\x00"
    return (
        b"MThd"
        + struct.pack(">IHHH", 6, 0, 1, ppq)
        + b"MTrk"
        + struct.pack(">I", len(track))
        + track
    )


def render_pieces(
    n: int, seconds: float, sr: int, *, seed: int = 0
) -> tuple[list[np.ndarray], str]:
    """``n`` mono float32 pieces of ``seconds`` at ``sr``, and what rendered them."""
    from dnmf.demo import synth_piece

    sf2 = soundfont()
    if sf2 is None:
        return [synth_piece(seconds, sr, seed=seed + i) for i in range(n)], "dnmf.demo.synth_piece"
    pieces = []
    with tempfile.TemporaryDirectory(prefix="dnmf-render-") as tmp:
        for i in range(n):
            mid, wav = Path(tmp) / f"p{i}.mid", Path(tmp) / f"p{i}.wav"
            mid.write_bytes(midi_piece(seconds, seed + i))
            fluidsynth(mid, wav, sr, sf2)
            y, got = sf.read(wav, dtype="float32", always_2d=True)
            assert got == sr, (got, sr)
            y = y.mean(axis=1)
            n_out = round(seconds * sr)
            y = np.pad(y, (0, max(0, n_out - len(y))))[:n_out]
            pieces.append((0.9 * y / max(1e-6, float(np.abs(y).max()))).astype(np.float32))
    return pieces, f"fluidsynth with {Path(sf2).name}"


def write_variants(
    pieces: list[np.ndarray], root: Path, n_files: int, seconds: float, sr: int, *, seed: int = 0
) -> list[Path]:
    """``n_files`` distinct mono WAV files (16-bit) of ``seconds`` each under ``root``.

    File ``i`` is ``g_a * A[o_a:] + g_b * B[o_b:] + dc``, two different pieces
    looped to its length, with its own gains, offsets (in samples, odd) and DC
    offset, drawn from ``(seed, i)``.
    """
    n = round(seconds * sr)
    paths = []
    for i in range(n_files):
        rng = np.random.default_rng([seed, i])
        a, b = rng.choice(len(pieces), size=2, replace=len(pieces) < 2)
        y = np.zeros(n, dtype=np.float32)
        for k, gain in ((a, rng.uniform(0.3, 0.6)), (b, rng.uniform(0.05, 0.4))):
            p = pieces[k]
            offset = int(rng.integers(0, len(p))) | 1
            looped = np.tile(p, -(-(offset + n) // len(p)))[offset : offset + n]
            y += np.float32(gain) * looped
        y += np.float32(rng.uniform(-0.01, 0.01))
        np.clip(y, -1.0, 1.0, out=y)
        path = root / f"d{i % 16:02d}" / f"take{i:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, y, sr, subtype="PCM_16")
        paths.append(path)
    return paths
