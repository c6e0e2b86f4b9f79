"""One quick same-run pair for issue 13: scikit-learn's reference against dnmf's whole command.

Run from the repository root (needs the corpus ``benchmarks/learn.py --workdir DIR`` rendered)::

    python benchmarks/learn_pair.py --store /tmp/bench20/corpus-20min.zarr --beta 1 --epochs 56,69

In one run, back to back: scikit-learn ``NMF(solver='mu', init='random', max_iter=200, tol=0)``
on ``V.T`` in memory (L* and T_sk; 'random' was the better init for beta 0 and 1 on the
benchmark corpus; ``--solver cd --init nndsvda`` gives beta 2's L*_cd and T_cd), then
``dnmf learn STORE --rank 64 --beta B --epochs K`` as whole commands for each K, every
dictionary scored as :func:`learn.refit_loss` scores it (H refitted, 100 iterations).
Prints each time, loss / L* and T_sk / time, and the load average before and after. A
shorter check than ``benchmarks/learn.py`` (no MiniBatchNMF, no curve of the reference, one
init); nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learn import dnmf_learn, load_V, refit_loss, sklearn_fit


def pair_parser(doc: str | None, epochs: str) -> argparse.ArgumentParser:
    """The options both pair scripts take: the store, beta and dnmf's ``--epochs`` points."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--beta", type=float, default=1.0)
    ap.add_argument("--epochs", default=epochs, help="dnmf --epochs values, comma-separated")
    return ap


def print_header(script: str) -> None:
    """The command, glibc's malloc settings and the load average, first in the output."""
    print(f"# python benchmarks/{script} {' '.join(sys.argv[1:])}")
    heap = {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}
    print(f"glibc malloc settings: {heap or 'defaults'}")
    print(f"load average before: {load_average()}")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def dnmf_points(
    args: argparse.Namespace, V: np.ndarray, extra: Sequence[str] = ()
) -> Iterator[tuple[int, float, float]]:
    """``(k, seconds, loss)`` of ``dnmf learn --epochs k`` as whole commands, each dictionary
    scored by :func:`learn.refit_loss` (100 iterations)."""
    with tempfile.TemporaryDirectory() as tmp:
        for k in [int(e) for e in args.epochs.split(",")]:
            run = dnmf_learn(args.store, Path(tmp) / f"m{k}.zarr", args.beta,
                             ["--epochs", str(k), *extra], Path(tmp) / f"m{k}.log")  # fmt: skip
            yield k, run["seconds"], refit_loss(V, run["W"], args.beta, 100)["loss"]


def main() -> None:
    ap = pair_parser(__doc__, "56,69")
    ap.add_argument("--dnmf-args", default="", help="more dnmf learn options, e.g. '--tol 0'")
    ap.add_argument("--solver", default="mu", choices=["mu", "cd"], help="scikit-learn's solver")
    ap.add_argument("--init", default="random", choices=["random", "nndsvda"],
                    help="scikit-learn's init")  # fmt: skip
    args = ap.parse_args()
    print_header("learn_pair.py")
    V = load_V(args.store)
    X = np.ascontiguousarray(V.T)
    sk = sklearn_fit(X, args.beta, args.solver, args.init)
    del X
    lstar = refit_loss(V, sk["W"], args.beta, 100)["loss"]
    print(f"NMF({args.solver}, {args.init}, 200 it.): {sk['seconds']:.1f} s, L* {lstar:.6g}",
          flush=True)  # fmt: skip
    for k, seconds, loss in dnmf_points(args, V, args.dnmf_args.split()):
        print(f"dnmf learn --epochs {k}: {seconds:.1f} s whole command, "
              f"{loss / lstar:.4f} L*, T_sk / time {sk['seconds'] / seconds:.2f}x",
              flush=True)  # fmt: skip
    print(f"load average after: {load_average()}")


if __name__ == "__main__":
    main()
