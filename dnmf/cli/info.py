"""``dnmf info``: what a store holds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from dnmf.cli._common import JsonOpt, handle_errors, print_json
from dnmf.words import count


@handle_errors
def info_command(
    store: Annotated[Path, typer.Argument(help="A corpus, model or activations store.")],
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Read every chunk and check it against the store's chunk records."
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Summarise a dnmf store: files, frames, hours of audio, settings, skipped files.

    **Examples**

        dnmf info recordings.dnmf/corpus.zarr

        dnmf info recordings.dnmf/corpus.zarr --json | jq .hours

        dnmf info recordings.dnmf/model.zarr --check
    """
    from dnmf.info import describe

    summary = describe(store)
    if check:
        from dnmf.io.checked import verify_store

        checked = verify_store(store)
        summary["checked_chunks"] = sum(checked.values())
        summary["checked_arrays"] = len(checked)
    if json_out:
        print_json(summary)
        return
    _print(summary)


def _print(s: dict[str, Any]) -> None:
    echo = typer.echo
    echo(f"{s['store']}: dnmf {s['kind']} store (format {s['format_version']}, "
         f"written by dnmf {s['dnmf_version']})")  # fmt: skip
    if "checked_chunks" in s:
        echo(f"  checked    {count(s['checked_chunks'], 'chunk')} of "
             f"{count(s['checked_arrays'], 'array')}: every one matches its record")  # fmt: skip
    if s["kind"] == "corpus":
        by_status = ", ".join(f"{n} {k}" for k, n in s["files_by_status"].items())
        echo(f"  files      {s['files']} ({by_status or 'none'})")
        echo(f"  audio      {s['hours']:.3f} h, {s['frames']} frames in {s['chunks']} chunks "
             f"of {s['chunk_frames']}")  # fmt: skip
        f = s["features"]
        echo(f"  features   {f['features']} sr={f['sr']} n_fft={f['n_fft']} "
             f"hop_length={f['hop_length']} power={f['power']} ({s['bins']} bins)")  # fmt: skip
        if s.get("v_mean") is not None:
            echo(f"  values     mean {s['v_mean']:.6g}, min {s['v_min']:.6g}, "
                 f"max {s['v_max']:.6g}, {s['nonfinite']} non-finite")  # fmt: skip
        echo(f"  source     {s['source']}")
        echo(f"  ingests    {s['ingest_runs']}")
        for r in s["skipped"]:
            echo(f"  skipped    {r['file']}: {r['error']}")
        for name in ("changed", "removed"):
            for path in s[name]:
                echo(f"  {name:<10} {path}")
    elif s["kind"] == "activations":
        echo(
            f"  activations H ({s['components']} components x {s['frames']} frames, "
            f"{count(s['files'], 'file')})"
        )
        echo(f"  model      {s['model']}")
        echo(f"  corpus     {s['corpus']}")
    elif s["kind"] == "model":
        c = s["config"]
        loss = f"{s['loss']:.6g}" if s["loss"] is not None else "-"
        echo(f"  status     {s['status']}{' (converged)' if s['converged'] else ''}")
        lags = f" x {s['lags']} lags" if s["lags"] > 1 else ""
        echo(f"  dictionary W ({s['bins']} bins x {s['rank']} components{lags})")
        echo(f"  learning   beta={c['beta']:g} init={c['init']} batch_chunks={c['batch_chunks']} "
             f"n_inner={c['n_inner']} norm={c['norm']} seed={c['seed']}")  # fmt: skip
        echo(f"  progress   {s['epochs']} of {c['epochs']} epochs, loss {loss}")
        echo(f"  corpus     {s['corpus']['path']} ({s['corpus']['n_frames']} frames)")
        if s.get("mask"):
            m = s["mask"]
            total = max(m.get("entries", 0.0), 1.0)
            for name in ("store", "silence", "boundaries", "clipped", "bandwidth", "holdout",
                         "all"):  # fmt: skip
                if name in m:
                    what = "masked in all" if name == "all" else f"removed by {_SOURCE[name]}"
                    echo(f"  mask       {int(m[name])} entries {what} ({m[name] / total:.2%})")


#: How ``dnmf info`` names a mask source (the keys of :func:`dnmf.nmf.mask.source_counts`).
_SOURCE = {
    "store": "store", "silence": "silence", "boundaries": "boundaries",
    "clipped": "clipping", "bandwidth": "bandwidth", "holdout": "holdout",
}  # fmt: skip
