"""``dnmf`` with a clock on the backend: the command line as users run it, for benchmarks/scale.py.

Run as ``python benchmarks/scale_cli.py learn CORPUS --rank 64 ...`` with
``DNMF_BENCH_CLOCK`` naming a file: it runs ``dnmf.cli.main`` unchanged,
after wrapping a few calls (:data:`TARGETS`: the corpus's opening, the Dask
backend's construction, ``summary``, ``sample`` and ``step``) so that each
call appends its start and end (``time.time()``, one JSON object a line)
to that file. In full-batch learning a step is an epoch, so the first
``step-start`` is the first epoch's start; ``summary`` is the pass over V that
the learner's start makes today (what issue 17's per-chunk records remove).
Nothing else changes: the wrappers only read the clock.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CLOCK_ENV = "DNMF_BENCH_CLOCK"
#: What is clocked: (module, class or "", function). A target that is gone is skipped.
TARGETS = [
    ("pipelines.learn", "", "open_for_learning"),  # the corpus opened (its file table)
    ("dnmf.backends", "DaskBackend", "__init__"),  # the cluster is up, the model store made
    ("dnmf.backends", "DaskBackend", "summary"),  # the pass over V
    ("dnmf.backends", "DaskBackend", "sample"),
    ("dnmf.backends", "DaskBackend", "step"),  # one epoch in full batch
]


def main() -> None:
    with open(os.environ[CLOCK_ENV], "a", buffering=1) as log:

        def mark(event: str) -> None:
            log.write(json.dumps({"event": event, "t": time.time()}) + "\n")

        mark("main")
        import importlib

        def clocked(module: str, owner: str, name: str) -> None:
            """Wrap ``module.owner.name`` (``owner`` "" for a module function), if it exists."""
            try:
                obj: Any = importlib.import_module(module)
            except ImportError:
                return
            if owner:
                obj = getattr(obj, owner, None)
            orig = getattr(obj, name, None)
            if orig is None:
                return

            @functools.wraps(orig)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                mark(f"{name}-start")
                try:
                    return orig(*args, **kwargs)
                finally:
                    mark(f"{name}-end")

            setattr(obj, name, wrapper)

        for target in TARGETS:
            clocked(*target)
        from dnmf.cli import main as dnmf_main

        sys.argv[0] = "dnmf"
        try:
            dnmf_main()
        finally:
            mark("exit")


if __name__ == "__main__":
    main()
