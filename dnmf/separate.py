"""Source separation with a learned dictionary: soft masks on the mixture's STFT.

For a mixture ``x`` the model's activations ``H`` are solved with ``W`` fixed
(:mod:`dnmf.nmf.solver`, the frames computed as at ingest),
and each source ``s`` (a component, or a named group of components) gets the
model spectrogram ``Λ_s = W[:, s] @ H[s]``, in the model's feature domain
(``|X|**power``). Its α-Wiener mask, as libnmfd's ``alpha_wiener_filter``, is::

    M_s = Λ_s^α / Σ_t Λ_t^α

the sum running over every source of the partition: all groups (the
components in no named group forming the group ``rest``), or, without
groups, every component of the model. ``M_s ⊙ X`` (``X`` the complex STFT of
the mono mixture at the model's rate) is inverted with ``librosa.istft`` (so
with the mixture's phase), resampled back to the input's rate with soxr and
written as one WAV per source.

The masks of a partition add up to 1 in every bin (where all ``Λ_t`` vanish,
each source gets an equal share), and the STFT is linear, so the written
sources add up to the mono mixture: to float rounding when the input is at
the model's rate; otherwise to the accuracy of the soxr round trip, and only
below the model's Nyquist frequency (``sr / 2``), the band the model sees.

With magnitude features (``power=1``, the default), ``alpha=1`` is the
ratio-of-magnitudes mask of the usual NMF resynthesis and ``alpha=2`` the
classic Wiener filter; with power features (``power=2``), ``alpha=1`` is the
Wiener filter.

Examples
--------
>>> paths = separate("model.zarr", "mix.wav", "parts/",
...                  groups={"drums": [0, 1, 2], "bass": [3]})  # doctest: +SKIP
>>> [p.name for p in paths]  # doctest: +SKIP
['mix_drums.wav', 'mix_bass.wav', 'mix_rest.wav']
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from dnmf.errors import DnmfPathError, DnmfUsageError
from dnmf.io.dictionary import Dictionary, ModelLike, load_dictionary
from dnmf.io.store import StorePath
from dnmf.nmf.lags import conv_model
from dnmf.transform import BLOCK_FRAMES, check_solver, open_audio, solve_in_blocks

__all__ = [
    "REST",
    "alpha_masks",
    "component_name",
    "parse_components",
    "parse_groups",
    "separate",
    "sources_for",
]

#: The group that collects every component no named group lists.
REST = "rest"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# --------------------------------------------------------------------------- what to write


def parse_components(text: str, *, option: str = "--components") -> list[int]:
    """Component indices from ``"0,3,5"`` or with ranges ``"0-3,7"`` (``0-3`` is 0, 1, 2, 3).

    Examples
    --------
    >>> parse_components("0-2,5")
    [0, 1, 2, 5]
    """
    from dnmf.ranges import parse_ranges

    return parse_ranges(text, option=option)  # type: ignore[return-value]


def parse_groups(specs: Sequence[str]) -> dict[str, list[int]]:
    """Named groups from ``["drums=0,1,2", "bass=3-5"]``.

    Examples
    --------
    >>> parse_groups(["drums=0-2", "bass=3"])
    {'drums': [0, 1, 2], 'bass': [3]}
    """
    groups: dict[str, list[int]] = {}
    for spec in specs:
        name, sep, indices = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise DnmfUsageError(
                f"--group {spec!r} is not NAME=INDICES; pass e.g. --group drums=0,1,2"
            )
        if name in groups:
            raise DnmfUsageError(f"--group {name!r} is given twice; give each group once")
        groups[name] = parse_components(indices, option=f"--group {name}=")
    return groups


def sources_for(
    rank: int,
    *,
    groups: Mapping[str, Sequence[int]] | None = None,
    components: Sequence[int] | None = None,
) -> dict[str, list[int]]:
    """The sources :func:`separate` writes, in order: name → component indices.

    * neither: every component, named ``component00``, ``component01``, ...;
    * `components`: those components alone, named the same way (their masks
      are still shares of the whole model, so they do not add up to the input);
    * `groups`: the groups as given, then ``rest`` with every component no
      group lists (a group named ``rest`` takes them in).

    Raises
    ------
    DnmfUsageError
        An index out of range or listed twice, both `groups` and `components`,
        an empty group, or a group name that is not a plain file-name word.

    Examples
    --------
    >>> sources_for(4, groups={"low": [0, 2]})
    {'low': [0, 2], 'rest': [1, 3]}
    >>> sources_for(12, components=[3])
    {'component03': [3]}
    """
    if groups is not None and components is not None:
        raise DnmfUsageError(
            "--components and --group were both given; pass one of them (a group of one "
            "component is --group name=INDEX)"
        )
    if groups is None:
        chosen = list(range(rank)) if components is None else list(components)
        if not chosen:
            raise DnmfUsageError("components=[] names no component; pass e.g. 0,3,5")
        _check_indices(chosen, rank, "--components")
        return {component_name(r, rank): [r] for r in chosen}
    if not groups:
        raise DnmfUsageError("groups={} names no group; pass e.g. --group drums=0,1,2")
    out: dict[str, list[int]] = {}
    owner: dict[int, str] = {}
    for name, members in groups.items():
        if not _NAME.match(name):
            raise DnmfUsageError(
                f"group name {name!r} is not a plain word (letters, digits, '_', '-', '.', '+'); "
                "pass e.g. --group drums=0,1,2"
            )
        members = [int(r) for r in members]
        if not members:
            raise DnmfUsageError(f"group {name!r} has no components; pass e.g. {name}=0,1")
        _check_indices(members, rank, f"--group {name}=")
        for r in members:
            if r in owner:
                raise DnmfUsageError(
                    f"component {r} is in group {owner[r]!r} and in group {name!r}; put each "
                    "component in one group, so the parts add up to the input"
                )
            owner[r] = name
        out[name] = members
    rest = [r for r in range(rank) if r not in owner]
    if rest:
        out[REST] = [*out.get(REST, []), *rest]
    return out


def component_name(r: int, rank: int) -> str:
    """``component07``: the name of one component's output, zero-padded to the rank."""
    return f"component{r:0{len(str(max(rank - 1, 0)))}d}"


def _check_indices(indices: Sequence[int], rank: int, option: str) -> None:
    seen: set[int] = set()
    for r in indices:
        if not 0 <= r < rank:
            raise DnmfUsageError(
                f"component {r} ({option}) is out of range for a model of rank {rank}; "
                f"pass indices from 0 to {rank - 1}"
            )
        if r in seen:
            raise DnmfUsageError(f"component {r} is listed twice in {option}; list it once")
        seen.add(r)


def _partition(rank: int, sources: dict[str, list[int]], grouped: bool) -> list[list[int]]:
    """The sources whose masks share each bin: the groups, or every component."""
    return list(sources.values()) if grouped else [[r] for r in range(rank)]


# --------------------------------------------------------------------------- masks


def _model_parts(W: np.ndarray, H: np.ndarray, members: list[int], scale: float) -> np.ndarray:
    """``Λ_s / scale`` in float64: the model spectrogram of the components ``members``."""
    part = conv_model(W[:, members], H[members]).astype(np.float64)
    part /= scale
    return part


def alpha_masks(
    W: np.ndarray,
    H: np.ndarray,
    sources: Sequence[Sequence[int]],
    partition: Sequence[Sequence[int]],
    *,
    alpha: float = 1.0,
) -> list[np.ndarray]:
    """The α-Wiener masks of `sources` among the sources of `partition`.

    ``M_s = Λ_s^α / Σ_{t ∈ partition} Λ_t^α`` with ``Λ_s`` the model of the components ``s``
    (libnmfd's ``alpha_wiener_filter``). Over a partition of the components
    the masks add up to 1 in every bin; where every ``Λ_t`` is 0 each source of
    the partition gets ``1 / len(partition)``. Λ is scaled by its maximum
    before the power, so no α overflows.

    Parameters
    ----------
    W : ndarray of shape (n_bins, n_components, n_lags)
    H : ndarray of shape (n_components, n_frames)
    sources : sequence of sequence of int
        The components of each mask to return.
    partition : sequence of sequence of int
        The sources that share each bin (every component exactly once).
    alpha : float, default=1.0
        The exponent α > 0.

    Returns
    -------
    list of ndarray of shape (n_bins, n_frames), float32
        One mask per source, in [0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> W = np.eye(2, dtype=np.float32)[:, :, None]
    >>> H = np.array([[1.0, 0.0], [3.0, 0.0]], np.float32)
    >>> masks = alpha_masks(W, H, [[0], [1]], [[0], [1]])
    >>> (masks[0] + masks[1]).tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    scale = float(conv_model(W, H).max(initial=0.0)) or 1.0

    def powered(members: Sequence[int]) -> np.ndarray:
        part = _model_parts(W, H, list(members), scale)
        if alpha != 1.0:
            np.power(part, alpha, out=part)
        return part

    den = np.zeros((W.shape[0], H.shape[1]), dtype=np.float64)
    for members in partition:
        den += powered(members)
    tiny = np.finfo(np.float64).tiny
    share = tiny / len(partition)
    den += tiny
    masks = []
    for members in sources:
        m = powered(members)
        m += share
        m /= den
        masks.append(m.astype(np.float32))
    return masks


# --------------------------------------------------------------------------- separate


def separate(
    model: ModelLike | Dictionary,
    audio_path: StorePath,
    out_dir: StorePath,
    *,
    groups: Mapping[str, Sequence[int]] | None = None,
    components: Sequence[int] | None = None,
    alpha: float = 1.0,
    n_iter: int = 200,
    tol: float = 1e-4,
    subtype: str = "FLOAT",
    block_frames: int = BLOCK_FRAMES,
    progress: bool = False,
) -> list[Path]:
    """Separate an audio file into components or groups of a model, one WAV each.

    Parameters
    ----------
    model : ModelStore or path
        A model store learned on STFT features (not mel: masks apply to STFT bins).
    audio_path : path
        The mixture; any channels (mixed to mono) and any sample rate.
    out_dir : path
        Folder for the outputs (created), named ``<stem>_<source>.wav``.
    groups : dict of str to list of int, optional
        Named groups of components, e.g. ``{"drums": [0, 1, 2]}``; components
        in no group form the group ``rest``. The outputs add up to the mixture.
    components : list of int, optional
        Write these components alone (``<stem>_component03.wav``, ...). By
        default (neither option) every component is written, and the outputs
        add up to the mixture.
    alpha : float, default=1.0
        Exponent of the α-Wiener masks (:func:`alpha_masks`).
    n_iter, tol, block_frames :
        The activation solve, as :func:`dnmf.transform.activations_for_file`.
    subtype : str, default='FLOAT'
        The WAV sample format (soundfile's subtype: 'FLOAT', 'PCM_16', 'PCM_24', ...);
        32-bit float neither clips nor rounds.
    progress : bool, default=False
        Say on stderr what is separated once the model and options are checked.

    Returns
    -------
    list of Path
        The written files, in the order of :func:`sources_for`, at the input's
        sample rate and length.

    Raises
    ------
    DnmfError
        A model that is not a model store or was learned on mel features, a
        component out of range, a bad group, or an audio file that cannot be
        used (one sentence, exit code 2).

    Examples
    --------
    >>> separate("model.zarr", "mix.wav", "parts/", components=[0, 3])  # doctest: +SKIP
    [PosixPath('parts/mix_component00.wav'), PosixPath('parts/mix_component03.wav')]
    """
    import soundfile as sf

    check_solver(n_iter, tol)
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, int | float)
        or not (math.isfinite(alpha) and alpha > 0)
    ):
        raise DnmfUsageError(
            f"alpha={alpha!r} must be a positive number (1: ratio of model spectrograms, "
            "2 with magnitude features: Wiener)"
        )
    if not sf.check_format("WAV", subtype):
        raise DnmfUsageError(
            f"subtype={subtype!r} is not a WAV sample format soundfile writes; pass FLOAT, "
            "PCM_16 or PCM_24"
        )
    d = load_dictionary(model)
    cfg = d.features
    if cfg.features != "stft":
        raise DnmfUsageError(
            f"model {d.path!r} was learned on {cfg.features} features, and separation needs an "
            "STFT model (masks apply to STFT bins); learn one on a corpus ingested with "
            "--features stft"
        )
    sources = sources_for(d.rank, groups=groups, components=components)
    partition = _partition(d.rank, sources, grouped=groups is not None)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DnmfPathError(f"output folder {str(out_dir)!r} is a file; pass a folder")
    stem = Path(audio_path).stem
    paths = [out / f"{stem}_{name}.wav" for name in sources]
    source_real = os.path.realpath(audio_path)
    for p in paths:
        if os.path.realpath(p) == source_real:
            raise DnmfUsageError(
                f"the output {str(p)!r} would overwrite the input; pass another -o folder"
            )

    if progress:  # decoding, the STFT (librosa) and the solve take the time
        from dnmf.progress import announce
        from dnmf.words import count

        announce(f"separating {audio_path} into {count(len(paths), 'source')} under {d.path}...")
    import librosa

    found, reader, n_frames = open_audio(audio_path, cfg)
    y = reader.read(0, reader.n_out)  # mono, at the model's rate, as ingest reads it
    X = librosa.stft(
        y, n_fft=cfg.n_fft, hop_length=cfg.hop_length, win_length=cfg.win_length,
        window=cfg.window, center=cfg.center, pad_mode=cfg.pad_mode,
    )  # fmt: skip
    V = np.abs(X)
    if cfg.power != 1.0:
        np.power(V, cfg.power, out=V)
    V = V.astype(np.float32, copy=False)
    if V.shape[1] != n_frames:  # pragma: no cover - librosa and n_frames_for agree
        raise RuntimeError(f"STFT gave {V.shape[1]} frames, expected {n_frames}")

    H = _activations(V, d, n_iter=n_iter, tol=tol, block=block_frames)
    del V

    masks = alpha_masks(d.W, H, list(sources.values()), partition, alpha=alpha)
    out.mkdir(parents=True, exist_ok=True)
    for path, mask in zip(paths, masks, strict=True):
        part = librosa.istft(
            X * mask, hop_length=cfg.hop_length, win_length=cfg.win_length, n_fft=cfg.n_fft,
            window=cfg.window, center=cfg.center, length=len(y),
        )  # fmt: skip
        part = _to_rate(part, cfg.sr, found.samplerate, found.n_samples, cfg.res_type)
        sf.write(str(path), part, found.samplerate, subtype=subtype, format="WAV")
    return paths


def _activations(
    V: np.ndarray, d: Dictionary, *, n_iter: int, tol: float, block: int
) -> np.ndarray:
    """H of ``V`` (in memory) solved as :func:`dnmf.transform.activations_for_file` does."""
    H = np.empty((d.rank, V.shape[1]), dtype=np.float32)
    for a, b, H_b, _, _ in solve_in_blocks(
        lambda a, b: V[:, a:b], V.shape[1], d, n_iter=n_iter, tol=tol, block=block
    ):
        H[:, a:b] = H_b
    return H


def _to_rate(y: np.ndarray, sr: int, orig_sr: int, n_samples: int, quality: str) -> np.ndarray:
    """``y`` at `sr` resampled to `orig_sr` with soxr, cut or padded to `n_samples`."""
    if sr != orig_sr:
        import soxr

        y = soxr.resample(y, sr, orig_sr, quality=quality)
    if len(y) >= n_samples:
        return np.ascontiguousarray(y[:n_samples], dtype=np.float32)
    return np.pad(y, (0, n_samples - len(y))).astype(np.float32)
