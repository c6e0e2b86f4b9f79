"""Issue 13, beta = 0: which init the fast schedule needs, and the same-run pair with scikit-learn.

Run from the repository root (needs the corpus ``benchmarks/learn.py --workdir DIR`` rendered)::

    python benchmarks/beta0_init.py --store /tmp/bench20/corpus-20min.zarr

Part 1 (``--part diag``): ``dnmf learn --beta 0 --epochs 100 --tol 0`` for the fast and the
full schedule, each from NNDSVDa and from a random dictionary. Part 2 (``--part pair``):
``--beta 1 --epochs 56 --init random`` (is random better for KL too?), then scikit-learn
``NMF(solver='mu', init='random', max_iter=200, tol=0)`` at beta 0 (L*_0 and T_sk) and dnmf's
whole commands ``--epochs 110`` and the defaults. Every dictionary is scored as
:func:`learn.refit_loss` scores it (H refitted, 100 iterations). Nothing here is a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from learn import load_V, read_W, refit_loss, sklearn_fit

L1_STAR = 2.42003e6  # beta 1: NMF(mu, random, 200 it.) on the 20-minute corpus (learn_pair.txt)


def whole(
    store: str, out: Path, V: np.ndarray, beta: float, extra: list[str], lstar: float
) -> float:
    cmd = [sys.executable, "-m", "dnmf", "learn", store, "--rank", "64", "--beta", f"{beta:g}",
           "--output", str(out), "--overwrite", "--json", *extra]  # fmt: skip
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    dt = time.perf_counter() - t
    j = json.loads(r.stdout[r.stdout.index("{") :])
    loss = refit_loss(V, read_W(out), beta, 100)["loss"]
    print(f"dnmf learn --beta {beta:g} {' '.join(extra) or '(defaults)'}: {dt:.1f} s whole command, "
          f"{j['passes']} passes, converged {j['converged']}, {loss / lstar:.4f} L*", flush=True)  # fmt: skip
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--store", required=True)
    ap.add_argument("--part", choices=["diag", "pair", "both"], default="both")
    args = ap.parse_args()
    print(f"# python benchmarks/beta0_init.py {' '.join(sys.argv[1:])}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    V = load_V(args.store)
    with tempfile.TemporaryDirectory() as tmp:
        lstar0 = None
        if args.part in ("pair", "both"):
            whole(
                args.store,
                Path(tmp) / "b1.zarr",
                V,
                1.0,
                ["--epochs", "56", "--init", "random"],
                L1_STAR,
            )
            X = np.ascontiguousarray(V.T)
            sk = sklearn_fit(X, 0.0, "mu", "random")
            del X
            lstar0 = refit_loss(V, sk["W"], 0.0, 100)["loss"]
            print(
                f"beta 0 NMF(mu, random, 200 it.): {sk['seconds']:.1f} s, L*_0 {lstar0:.6g}",
                flush=True,
            )
            for extra in (["--epochs", "110"], []):
                dt = whole(args.store, Path(tmp) / "b0.zarr", V, 0.0, extra, lstar0)
                print(f"  T_sk / time {sk['seconds'] / dt:.2f}x", flush=True)
        if args.part in ("diag", "both"):
            lstar0 = lstar0 or 1.12298e7  # the pair's L*_0 on the 20-minute corpus
            for extra in ([], ["--init", "random"], ["--schedule", "full"],
                          ["--schedule", "full", "--init", "random"]):  # fmt: skip
                whole(args.store, Path(tmp) / "d.zarr", V, 0.0,
                      ["--epochs", "100", "--tol", "0", "--init", "nndsvda", *extra], lstar0)  # fmt: skip
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
