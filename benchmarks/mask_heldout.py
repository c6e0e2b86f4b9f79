"""Held-out entries of real audio: a masked model predicts them, a model fitted to zeros does not.

Two 10-second General MIDI pieces rendered with FluidSynth (``benchmarks/render.py``;
``apt-get install -y fluidsynth fluid-soundfont-gm``), |STFT| with n_fft 1024 and hop
256 at 22.05 kHz, 20 % of the entries held out in seeded tiles. For every tile shape
and holdout seed it fits ``dnmf.NMF(16, KL, 100 iterations)`` twice: with the held-out
entries masked, and on the spectrogram with zeros there (what an unmasked NMF does
with missing data), and prints the KL divergence of each on the held-out entries and
their ratio. The same comparison is ``tests/test_mask_audio.py``.

    python benchmarks/mask_heldout.py [--seeds 5] [--out benchmarks/results/mask_heldout.txt]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def kl(V: np.ndarray, L: np.ndarray) -> float:
    L = np.maximum(L, 1e-12)
    ratio = np.divide(V, L, out=np.ones_like(V), where=V > 0)
    return float(np.sum(V * np.log(ratio) - V + L))


def main() -> None:
    import librosa
    from render import render_pieces

    import dnmf
    from dnmf.nmf.mask import Holdout

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # max_iter reached: the same budget for both fits
    pieces, how = render_pieces(2, 10.0, 22050, seed=3)
    X = np.concatenate(
        [np.abs(librosa.stft(p, n_fft=1024, hop_length=256)) for p in pieces], axis=1
    ).astype(np.float64)
    lines = [f"audio: 2 x 10 s, {how}; V {X.shape}; rank 16, KL, 100 iterations; 20 % held out"]
    lines.append(f"{'tile':>6} {'seed':>4} {'masked':>10} {'zeros':>10} {'ratio':>7}")
    for bins, frames in ((1, 1), (4, 4), (8, 16)):
        for seed in range(1, args.seeds + 1):
            held = Holdout(share=0.2, seed=seed, bins=bins, frames=frames).held(
                X.shape[0], np.arange(X.shape[1])
            )
            out = []
            for data, mask in ((X, (~held).T), (np.where(held, 0.0, X), None)):
                model = dnmf.NMF(16, beta_loss="kullback-leibler", max_iter=100, random_state=0)
                H = model.fit_transform(data.T, mask=mask)
                out.append(kl(X[held], (H @ model.components_).T[held]))
            lines.append(
                f"{bins:>2}x{frames:<3} {seed:>4} {out[0]:>10.3g} {out[1]:>10.3g} {out[0] / out[1]:>7.3f}"
            )
            print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
