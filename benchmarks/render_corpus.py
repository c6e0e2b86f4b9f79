"""Render a real-audio benchmark corpus: seeded random MIDI pieces played by fluidsynth.

Run from the repository root::

    python benchmarks/render_corpus.py OUT_DIR --minutes 20
    python benchmarks/render_corpus.py OUT_DIR --minutes 120 --seed 1

Each piece is about a minute of General MIDI: a chord instrument, a melody
instrument and a bass (programs drawn per piece from pianos, organs, guitars,
strings, brass, reeds, pipes, synth leads), plus drums on channel 10, in a key
and tempo drawn per piece. fluidsynth renders them (``render.fluidsynth``) with the FluidR3 GM
soundfont, reverb and chorus off (``-R 0 -C 0``), to 22050 Hz mono WAV and,
every other file, 44100 Hz stereo FLAC (as a real corpus mixes formats).
Needs Debian's ``fluidsynth`` and ``fluid-soundfont-gm`` and the ``mido``
package (``apt-get install fluidsynth fluid-soundfont-gm``, ``pip install mido``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from render import fluidsynth, soundfont

CHORD_PROGRAMS = (0, 1, 4, 16, 19, 24, 25, 48, 49, 52, 61, 88, 89)
MELODY_PROGRAMS = (0, 11, 40, 41, 56, 65, 68, 71, 73, 80, 81)
BASS_PROGRAMS = (32, 33, 34, 38, 42)
DRUMS = (36, 38, 42, 46, 49, 51)  # kick, snare, closed/open hat, crash, ride
MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)


def piece_midi(path: Path, seconds: float, seed: int) -> None:
    """Write one seeded piece of about ``seconds`` as a MIDI file."""
    import mido

    rng = np.random.default_rng(seed)
    tpb = 480
    bpm = float(rng.uniform(70, 150))
    beats = max(4, int(seconds * bpm / 60.0))
    root = int(rng.integers(48, 60))
    scale = MAJOR if rng.random() < 0.5 else MINOR
    events: list[tuple[int, int, int, int, int]] = []  # (tick, order, channel, note, velocity)

    def note(ch: int, pitch: int, start: float, dur: float, vel: int) -> None:
        a, z = int(start * tpb), int((start + dur) * tpb)
        events.append((a, 1, ch, pitch, vel))
        events.append((z, 0, ch, pitch, 0))

    degrees = [0, 3, 4, 5, 1, 4, 0, 5]
    for bar in range(0, beats, 4):
        deg = degrees[(bar // 4 + int(rng.integers(0, 2))) % len(degrees)]
        chord = [root + scale[(deg + i) % 7] + 12 * ((deg + i) // 7) for i in (0, 2, 4)]
        for p in chord:  # chord instrument, one chord a bar
            note(0, p, bar, 4.0, int(rng.integers(50, 80)))
        note(2, chord[0] - 12, bar, 2.0, 90)  # bass
        note(2, chord[0] - 12 + (7 if rng.random() < 0.5 else 12), bar + 2, 2.0, 85)
        t = float(bar)
        while t < bar + 4:  # melody
            dur = float(rng.choice([0.5, 1.0, 1.0, 1.5, 2.0]))
            if rng.random() < 0.85:
                deg_m = int(rng.integers(0, 10))
                p = root + 12 + scale[deg_m % 7] + 12 * (deg_m // 7)
                note(1, p, t, min(dur, bar + 4 - t), int(rng.integers(60, 110)))
            t += dur
        for beat in range(4):  # drums
            b = bar + beat
            note(9, 36 if beat % 2 == 0 else 38, b, 0.25, 100)
            note(9, 42, b, 0.25, 70)
            note(9, 42, b + 0.5, 0.25, 60)
            if rng.random() < 0.1:
                note(9, int(rng.choice(DRUMS)), b + 0.5, 0.25, 90)
    mid = mido.MidiFile(ticks_per_beat=tpb)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm)))
    programs = (
        int(rng.choice(CHORD_PROGRAMS)),
        int(rng.choice(MELODY_PROGRAMS)),
        int(rng.choice(BASS_PROGRAMS)),
    )
    for ch, prog in enumerate(programs):
        track.append(mido.Message("program_change", channel=ch, program=prog, time=0))
    now = 0
    for tick, _, ch, pitch, vel in sorted(events):
        kind = "note_on" if vel > 0 else "note_off"
        track.append(mido.Message(kind, channel=ch, note=pitch, velocity=vel, time=tick - now))
        now = tick
    mid.save(path)


def render_corpus(root: Path, minutes: float, *, seed: int = 0) -> list[Path]:
    """About one-minute pieces adding up to ``minutes``; returns their paths."""
    import soundfile as sf

    sf2 = soundfont()
    if sf2 is None:
        raise SystemExit(
            "needs fluidsynth and fluid-soundfont-gm: apt-get install fluidsynth fluid-soundfont-gm"
        )
    n_files = max(1, round(minutes))
    seconds = 60.0 * minutes / n_files
    paths = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n_files):
            stereo = i % 2 == 1
            ext, sr = ("flac", 44100) if stereo else ("wav", 22050)
            path = root / f"d{i % 4}" / f"piece{i:04d}.{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            midi = Path(tmp) / f"{i}.mid"
            piece_midi(midi, seconds, seed * 100003 + i)
            wav = Path(tmp) / f"{i}.wav"
            fluidsynth(midi, wav, sr, sf2)
            y, _ = sf.read(wav, dtype="float32", always_2d=True)
            y = y[: int(seconds * sr)]
            sf.write(path, y if stereo else y.mean(axis=1), sr)
            paths.append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    paths = render_corpus(args.out, args.minutes, seed=args.seed)
    print(f"{len(paths)} files in {args.out}")


if __name__ == "__main__":
    main()
