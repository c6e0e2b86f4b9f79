"""Early points of dnmf's curve: whole ``dnmf learn --epochs K`` commands on a kept corpus.

Run after ``benchmarks/learn.py --workdir DIR`` (which renders and ingests the
corpus and prints L*), from the repository root::

    python benchmarks/learn_early_points.py --store DIR/corpus-20min.zarr --lstar 2.42003e6 12 20 30

Each point is timed as a whole command and its dictionary scored as
``benchmarks/learn.py`` scores every dictionary (:func:`learn.refit_loss`, 100
iterations), printed against the given L*.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import learn as bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("epochs", type=int, nargs="+")
    ap.add_argument("--store", required=True)
    ap.add_argument("--lstar", type=float, required=True, help="L* printed by benchmarks/learn.py")
    ap.add_argument("--beta", type=float, default=1.0)
    args = ap.parse_args()
    V = bench.load_V(args.store)
    work = Path(args.store).parent
    for e in args.epochs:
        model, log = work / f"early-e{e}.zarr", work / f"early-e{e}.log"
        r = bench.dnmf_learn(args.store, model, args.beta, ["--epochs", str(e)], log)
        loss = bench.refit_loss(V, r["W"], args.beta, 100)["loss"]
        print(
            f"dnmf learn --epochs {e}: {r['seconds']:.1f} s whole command, loss {loss:.6g} "
            f"({loss / args.lstar:.4f} x L*)",
            flush=True,
        )


if __name__ == "__main__":
    main()
