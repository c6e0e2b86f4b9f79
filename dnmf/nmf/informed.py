"""Musically informed initialisation of NMFD: pitched combs, drum samples, a score.

As libnmfd's ``init_templates`` and ``init_activations`` (Driedger et al. 2013;
Dittmar & Müller 2016), on the corpus's own frequency axis and frames:

* :func:`pitched_templates`: for each MIDI pitch a harmonic comb, ``1/h`` on
  the bins of the band ``[h · f(p - tol_down), h · f(p + tol_up)]`` of each
  harmonic ``h``, 0 elsewhere, the same at every lag. Bins are the nearest
  bins of the corpus's ``frequency`` to the band edges (so STFT and mel corpora
  alike); libnmfd's MATLAB-style indexing puts each band one bin lower.
* :func:`drum_templates`: for each class folder, the first ``lags`` frames
  from the onset (largest rise of the frame energy) of each sample file, with
  the corpus's feature settings, each excerpt scaled to unit norm, averaged.
* :func:`read_scores` and :func:`score_intervals`: a CSV of notes
  ``onset, duration, pitch[, file]`` becomes, per component, the frames
  ``round((onset - tol) / Δt) … round((onset + duration + tol) / Δt)`` of its
  notes (``Δt = hop_length / sr``); the activations start as gates there and
  at exactly 0 elsewhere, and multiplicative updates keep those zeros.

Exact zeros in templates and activations stay zero under the updates (libnmfd
starts them at its epsilon, which has the same effect).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dnmf.errors import DnmfPathError, DnmfUsageError

if TYPE_CHECKING:
    from dnmf.audio.features import FeatureConfig
    from dnmf.io.corpus import CorpusStore
    from dnmf.nmf.config import LearnConfig
    from dnmf.nmf.init import Informed

__all__ = [
    "Note",
    "drum_templates",
    "midi_to_hz",
    "pitch_label",
    "pitched_templates",
    "prepare_informed",
    "read_scores",
    "score_intervals",
    "score_labels",
]


def midi_to_hz(pitch: Any) -> Any:
    """Frequency in Hz of a (fractional) MIDI pitch; A4 = 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=np.float64) - 69.0) / 12.0)


def pitch_label(pitch: float) -> str:
    """``'midi60'``: a pitched component's name."""
    return f"midi{float(pitch):g}"


def _check_pitch(p: Any, where: str = "pitch") -> float:
    try:
        value = float(p)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and 0 <= value <= 127):
        raise DnmfUsageError(
            f"{where} {p!r} is not a MIDI pitch; pass numbers from 0 to 127, e.g. 60 for C4"
        )
    return value


def _nearest_bins(frequency: np.ndarray, hz: np.ndarray) -> np.ndarray:
    """Index of the bin whose centre is nearest each frequency (``frequency`` increasing)."""
    idx = np.clip(np.searchsorted(frequency, hz), 1, len(frequency) - 1)
    left = frequency[idx - 1]
    right = frequency[idx]
    return np.where(hz - left <= right - hz, idx - 1, idx)


def pitched_templates(
    frequency: np.ndarray,
    pitches: Any,
    *,
    lags: int,
    pitch_tol_up: float = 0.75,
    pitch_tol_down: float = 0.75,
    n_harmonics: int = 25,
    dtype: Any = np.float32,
) -> np.ndarray:
    """Harmonic-comb templates for MIDI pitches (libnmfd's ``init_templates('pitched')``).

    Parameters
    ----------
    frequency : ndarray of shape (n_bins,)
        Centre frequency of each bin in Hz, increasing (the corpus's ``frequency``).
    pitches : sequence of float
        MIDI pitches, one template each, in this order (no repeats).
    lags : int
        Frames per template; the comb is the same at every lag.
    pitch_tol_up, pitch_tol_down : float, default=0.75
        Semitones each harmonic's band reaches above and below it.
    n_harmonics : int, default=25
        Harmonics per comb (those above the highest bin are left out).
    dtype : dtype, default=float32

    Returns
    -------
    ndarray of shape (n_bins, len(pitches), lags)
        ``1/h`` on the band of harmonic ``h``, 0 elsewhere.

    Raises
    ------
    DnmfUsageError
        A value that is not a MIDI pitch, a repeated pitch, or a pitch above the
        highest frequency of the corpus.

    Examples
    --------
    >>> import librosa
    >>> freq = librosa.fft_frequencies(sr=22050, n_fft=2048)
    >>> W = pitched_templates(freq, [69], lags=2, n_harmonics=3)
    >>> np.flatnonzero(W[:60, 0, 0]).tolist(), freq[41]  # the band around 440 Hz
    ([39, 40, 41, 42, 43], np.float64(441.4306640625))
    >>> float(W[81, 0, 1]), float(W[122, 0, 1])  # 1/h at 880 and 1320 Hz
    (0.5, 0.3333333432674408)
    """
    freq = np.asarray(frequency, dtype=np.float64)
    values = [_check_pitch(p) for p in pitches]
    if not values:
        raise DnmfUsageError("pitches=[] names no pitch; pass e.g. --pitches 60,62,64")
    seen: set[float] = set()
    for v in values:
        if v in seen:
            raise DnmfUsageError(f"pitch {v:g} is given twice; give each pitch once")
        seen.add(v)
    W = np.zeros((len(freq), len(values), lags), dtype=np.float64)
    top = float(freq[-1])
    for r, p in enumerate(values):
        lo, hi = float(midi_to_hz(p - pitch_tol_down)), float(midi_to_hz(p + pitch_tol_up))
        if lo > top:
            raise DnmfUsageError(
                f"pitch {p:g} ({float(midi_to_hz(p)):.0f} Hz) lies above the corpus's highest "
                f"frequency ({top:.0f} Hz); pass lower pitches or ingest with a higher sr"
            )
        for h in range(1, n_harmonics + 1):
            if h * lo > top:
                break
            a, b = _nearest_bins(freq, np.array([h * lo, h * hi]))
            W[a : b + 1, r, :] = np.maximum(W[a : b + 1, r, :], 1.0 / h)
    return W.astype(dtype)


# --------------------------------------------------------------------------- drums


def _onset_excerpt(V: np.ndarray, lags: int) -> np.ndarray:
    energy = V.sum(axis=0, dtype=np.float64)
    rise = np.diff(energy, prepend=0.0)
    onset = int(np.argmax(rise))
    out = np.zeros((V.shape[0], lags))
    part = V[:, onset : onset + lags]
    out[:, : part.shape[1]] = part
    return out


def drum_templates(
    folder: str | Path, features: FeatureConfig, *, lags: int, dtype: Any = np.float32
) -> tuple[np.ndarray, list[str]]:
    """Templates averaged from drum samples in class folders (``kick/``, ``snare/``, …).

    Each sample file is decoded, resampled and turned into frames exactly as
    ingest does with `features`; the ``lags`` frames from its onset (the
    frame of the largest rise of the energy) are scaled to unit norm, and a
    class's template is the mean of its files' excerpts.

    Parameters
    ----------
    folder : path
        Holds one subfolder per class, named by the class; audio files in
        each (searched recursively).
    features : FeatureConfig
        The corpus's feature settings.
    lags : int

    Returns
    -------
    W : ndarray of shape (n_bins, n_classes, lags)
    classes : list of str
        The class names (subfolder names, sorted), one per template.

    Raises
    ------
    DnmfPathError, DnmfUsageError
        No such folder, no class folders, a class folder without audio, or a
        sample that cannot be read.
    """
    from dnmf.audio.decode import scan
    from dnmf.audio.features import block_frames
    from dnmf.transform import open_audio

    root = Path(folder)
    if not root.is_dir():
        raise DnmfPathError(
            f"drums folder {str(folder)!r} does not exist; pass a folder with one subfolder of "
            "samples per class (kick/, snare/, ...)"
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DnmfUsageError(
            f"drums folder {str(folder)!r} holds no class folders; put the samples of each class "
            "in a subfolder named by it (kick/, snare/, ...)"
        )
    W = np.zeros((features.n_bins, len(classes), lags))
    for r, name in enumerate(classes):
        found = scan(root / name)
        if not found:
            raise DnmfUsageError(
                f"drum class folder {str(root / name)!r} holds no audio files; add samples or "
                "remove the folder"
            )
        for f in found:
            _, reader, n = open_audio(root / name / f.path, features)
            excerpt = _onset_excerpt(block_frames(reader, 0, n), lags)
            norm = float(np.linalg.norm(excerpt))
            if norm > 0:
                W[:, r, :] += excerpt / norm
        W[:, r, :] /= len(found)
    return W.astype(dtype), classes


# --------------------------------------------------------------------------- scores


@dataclass(frozen=True)
class Note:
    """One row of a score CSV.

    Attributes
    ----------
    onset, duration : float
        Seconds within the file.
    label : str
        The component: :func:`pitch_label` of a MIDI pitch, or a drum class.
    file : str or None
        The file (path relative to the corpus folder), if the CSV names one.
    line : int
        Line in the CSV (for messages).
    """

    onset: float
    duration: float
    label: str
    file: str | None
    line: int


_COLUMNS = ("onset", "duration", "pitch", "file")


def _number(text: str, name: str, where: str, *, positive: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        need = "a positive number of seconds" if positive else "a number of seconds >= 0"
        raise DnmfUsageError(f"{where}: {name}={text!r} must be {need}; fix the row")
    return value


def read_scores(path: str | Path) -> list[Note]:
    """The notes of a score CSV: ``onset, duration, pitch[, file]`` per row.

    A header row naming the columns (any order; ``file`` optional) may come
    first; without one the columns are in that order. ``pitch`` is a MIDI
    number (``60``, ``60.5``) or a drum class name (``kick``). Blank lines and
    lines starting with ``#`` are skipped.

    Raises
    ------
    DnmfPathError, DnmfUsageError
        A missing file, no notes, or a bad row (its line, the value and the fix).

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "n.csv")
    >>> _ = open(p, "w").write("onset,duration,pitch\\n0.5,0.25,60\\n1.0,0.5,64\\n")
    >>> [(n.onset, n.label) for n in read_scores(p)]
    [(0.5, 'midi60'), (1.0, 'midi64')]
    """
    p = Path(path)
    if not p.is_file():
        raise DnmfPathError(f"score file {str(path)!r} does not exist; check the path")
    name = p.name
    with p.open(newline="", encoding="utf-8") as fh:
        rows = [
            (i, row)
            for i, row in enumerate(csv.reader(fh), start=1)
            if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")
        ]
    if not rows:
        raise DnmfUsageError(
            f"score file {name!r} holds no notes; add rows of onset,duration,pitch"
        )
    columns: tuple[str, ...] = _COLUMNS
    first = [c.strip().lower() for c in rows[0][1]]
    try:
        float(first[0])
    except ValueError:
        missing = [c for c in _COLUMNS[:3] if c not in first]
        unknown = [c for c in first if c not in _COLUMNS]
        if missing or unknown:
            raise DnmfUsageError(
                f"{name} line {rows[0][0]}: the header {','.join(first)!r} "
                + (f"lacks {missing[0]!r}" if missing else f"has the unknown column {unknown[0]!r}")
                + "; name the columns onset,duration,pitch[,file]"
            ) from None
        columns = tuple(first)
        rows = rows[1:]
    notes = []
    for line, row in rows:
        where = f"{name} line {line}"
        cells = [c.strip() for c in row]
        if len(cells) not in (len(columns), 3) or len(cells) < 3:
            raise DnmfUsageError(
                f"{where} has {len(cells)} fields; write onset,duration,pitch[,file] per row"
            )
        rec = dict(zip(columns, cells, strict=False))
        onset = _number(rec["onset"], "onset", where, positive=False)
        duration = _number(rec["duration"], "duration", where, positive=True)
        pitch = rec["pitch"]
        try:
            float(pitch)
        except ValueError:
            if not pitch or not pitch.replace("_", "").replace("-", "").isalnum():
                raise DnmfUsageError(
                    f"{where}: pitch={pitch!r} is neither a MIDI number nor a drum class name; "
                    "fix the row"
                ) from None
            label = pitch
        else:
            label = pitch_label(_check_pitch(pitch, where=f"{where}: pitch"))
        notes.append(Note(onset, duration, label, rec.get("file") or None, line))
    if not notes:
        raise DnmfUsageError(
            f"score file {name!r} holds no notes; add rows of onset,duration,pitch"
        )
    return notes


def score_labels(notes: list[Note]) -> list[str]:
    """The components a score names: MIDI pitches ascending, then drum classes by name."""
    labels = {n.label for n in notes}
    pitched = sorted((lab for lab in labels if lab.startswith("midi")), key=lambda s: float(s[4:]))
    return pitched + sorted(lab for lab in labels if not lab.startswith("midi"))


def score_intervals(
    notes: list[Note],
    labels: list[str],
    files: dict[str, tuple[int, int]],
    *,
    hop_length: int,
    sr: int,
    onset_tol: float = 0.025,
    source: str = "score",
) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Per component (``labels``), the corpus frame ranges ``[first, stop)`` of its notes.

    Parameters
    ----------
    notes : list of Note
    labels : list of str
        The informed components, in order.
    files : dict
        Corpus file path → ``(first_frame, n_frames)``.
    hop_length, sr : int
        Frame step: ``Δt = hop_length / sr``.
    onset_tol : float
        Seconds the gate is widened at both ends (libnmfd's ``onset_offset_tol``).
    source : str
        The CSV's name, for messages.

    Raises
    ------
    DnmfUsageError
        A note whose label has no component, names a file not in the corpus, or
        names no file in a corpus of several files.
    """
    dt = hop_length / sr
    index = {lab: r for r, lab in enumerate(labels)}
    spans: list[list[tuple[int, int]]] = [[] for _ in labels]
    only = next(iter(files)) if len(files) == 1 else None
    for n in notes:
        where = f"{source} line {n.line}"
        if n.label not in index:
            shown = n.label[4:] if n.label.startswith("midi") else n.label
            raise DnmfUsageError(
                f"{where}: pitch {shown} has no component (the components are "
                f"{', '.join(labels) or 'none'}); add it to --pitches or remove the row"
            )
        name = n.file if n.file is not None else only
        if name is None:
            raise DnmfUsageError(
                f"{where} names no file and the corpus holds {len(files)} files; add a file "
                "column with the path relative to the corpus folder"
            )
        if name not in files:
            raise DnmfUsageError(
                f"{where}: file {name!r} is not in the corpus; use the path relative to the "
                "corpus folder (see dnmf info)"
            )
        first, n_frames = files[name]
        a = max(0, round((n.onset - onset_tol) / dt))
        z = min(n_frames - 1, round((n.onset + n.duration + onset_tol) / dt))
        if a <= z:
            spans[index[n.label]].append((first + a, first + z + 1))
    return tuple(tuple(sorted(s)) for s in spans)


# --------------------------------------------------------------------------- for the learner


def prepare_informed(cfg: LearnConfig, corpus: CorpusStore) -> Informed:
    """The informed templates, component names and score of ``cfg`` on ``corpus``."""
    from dnmf.io.store import array
    from dnmf.nmf.init import Informed

    W = None
    labels: list[str] = []
    if cfg.init == "pitched":
        freq = np.asarray(array(corpus.group, "frequency")[:])
        W = pitched_templates(
            freq, cfg.pitches, lags=cfg.lags, pitch_tol_up=cfg.pitch_tol_up,
            pitch_tol_down=cfg.pitch_tol_down, n_harmonics=cfg.n_harmonics,
        )  # fmt: skip
        labels = [pitch_label(p) for p in cfg.pitches]
    elif cfg.init == "drums":
        assert cfg.drums is not None
        W, labels = drum_templates(cfg.drums, corpus.features, lags=cfg.lags)
    scores = None
    if cfg.scores is not None:
        notes = read_scores(cfg.scores)
        if not labels:
            labels = score_labels(notes)
        files = {r.file: (r.first_frame, r.n_frames) for r in corpus.files() if r.n_frames}
        feats = corpus.features
        scores = score_intervals(
            notes, labels, files, hop_length=feats.hop_length, sr=feats.sr,
            onset_tol=cfg.onset_tol, source=Path(cfg.scores).name,
        )  # fmt: skip
    return Informed(W=W, labels=tuple(labels), scores=scores)
