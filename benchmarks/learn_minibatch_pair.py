"""MiniBatchNMF's best against short dnmf commands, in one run (issue 13's third ratio).

Run from the repository root (needs the corpus ``benchmarks/learn.py --workdir DIR`` rendered)::

    python benchmarks/learn_minibatch_pair.py --store /tmp/bench20/corpus-20min.zarr --beta 0 \\
        --epochs 10,15,20

``benchmarks/learn.py`` takes its dnmf points as fractions of the defaults' epochs (0.3 and
up), and on the 20-minute corpus the first of them is already far below MiniBatchNMF's best
loss, so its ratio is the time of that point, not of the first command that reaches the
loss. Here, back to back: MiniBatchNMF with its defaults, epoch by epoch
(:func:`learn.sklearn_minibatch`: its best loss and the time to it), then
``dnmf learn STORE --rank 64 --beta B --epochs K`` as whole commands for each K, every
dictionary scored as :func:`learn.refit_loss` scores it. Prints each point and
MiniBatchNMF's time to its best over the time of the first dnmf command at or below that
loss. Nothing here is a test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learn import load_V, sklearn_minibatch
from learn_pair import dnmf_points, load_average, pair_parser, print_header


def main() -> None:
    ap = pair_parser(__doc__, "10,15,20")
    ap.add_argument("--mb-points", type=int, default=3, help="MiniBatchNMF epochs scored")
    args = ap.parse_args()
    print_header("learn_minibatch_pair.py")
    V = load_V(args.store)
    X = np.ascontiguousarray(V.T)
    mb = sklearn_minibatch(X, V, args.beta, args.mb_points, 100)
    del X
    best, t_mb = mb["best_loss"], mb["best_time"]
    print(f"MiniBatchNMF defaults: {mb['epochs']} epochs ({mb['stopped']}), best loss {best:.6g} "
          f"at epoch {mb['best_epoch']}, {t_mb:.1f} s", flush=True)  # fmt: skip
    reached = None
    for k, seconds, loss in dnmf_points(args, V):
        print(f"dnmf learn --epochs {k}: {seconds:.1f} s whole command, "
              f"loss {loss:.6g} ({loss / best:.4f} x MiniBatchNMF's best)", flush=True)  # fmt: skip
        if reached is None and loss <= best:
            reached = (k, seconds)
    if reached is None:
        print("ratio MiniBatchNMF time to its best / dnmf to that loss: not reached")
    else:
        k, t = reached
        verdict = "met" if t_mb / t >= 3 else "MISSED"
        print(f"ratio MiniBatchNMF time to its best / dnmf to that loss: {t_mb:.1f} s / {t:.1f} s "
              f"(--epochs {k}) = {t_mb / t:.2f}x  [target >= 3x: {verdict}]")  # fmt: skip
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
