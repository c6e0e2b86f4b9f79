"""Opening dnmf stores in analysis scripts: labelled xarray objects.

Every store also opens with a plain ``xarray.open_zarr(path)`` or
``zarr.open_group(path)``; these helpers add a check of the store's kind and
the one-line selection of a file's frames::

    >>> import dnmf
    >>> acts = dnmf.open_activations("rec.dnmf/activations.zarr")  # doctest: +SKIP
    >>> acts.dnmf.file("album/track01.flac").H  # doctest: +SKIP
"""

from __future__ import annotations

import os
from typing import Any

import xarray as xr

from dnmf.errors import DnmfUsageError, StoreFormatError
from dnmf.io.store import damaged, open_group, read_meta

__all__ = ["file_frames", "open_activations", "open_corpus", "open_model"]


def _open(path: str | os.PathLike[str], kind: str) -> xr.Dataset:
    read_meta(open_group(path), kind, path)  # a clear error for the wrong or a damaged store
    try:
        ds = xr.open_zarr(str(path), consolidated=True)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:  # its consolidated copy
        raise damaged(path, exc) from None
    return _checked(ds, str(path))


def _checked(ds: xr.Dataset, path: str) -> xr.Dataset:
    """``ds`` with each lazy array's chunks checked against the store's records when read
    (a damaged chunk raises :class:`~dnmf.errors.StoreDamagedError` at ``.values``)."""
    import dask.array as da

    from dnmf.io.records import load_records

    out = ds
    for name, var in ds.variables.items():
        rec = load_records(path, str(name))
        if rec is None or not isinstance(var.data, da.Array):
            continue
        checked = da.map_blocks(
            _check_block, var.data, rec=rec, dtype=var.dtype, meta=var.data._meta
        )
        out = out.assign({name: var.copy(data=checked)}) if name in ds.data_vars else (
            out.assign_coords({name: var.copy(data=checked)}))  # fmt: skip
    return out


def _check_block(block: Any, rec: Any, block_info: Any = None) -> Any:
    """Check every chunk that lies whole inside this block (a dask block is whole chunks)."""
    if block_info is None or rec.n_chunks == 0:
        return block
    where = block_info[0]["array-location"]
    for j in range(rec.n_chunks):
        region = rec.region(j)
        if all(lo <= r.start and r.stop <= hi for (lo, hi), r in zip(where, region, strict=True)):
            rec.check(j, block[tuple(slice(r.start - lo, r.stop - lo) for (lo, _), r
                                     in zip(where, region, strict=True))])  # fmt: skip
    return block


def open_corpus(path: str | os.PathLike[str]) -> xr.Dataset:
    """The corpus store: ``V (bin, frame)`` with its coordinates and the file table."""
    return _open(path, "corpus")


def open_model(path: str | os.PathLike[str]) -> xr.Dataset:
    """The model store: ``W (bin, component)`` with ``frequency``, and ``loss (epoch)``.

    A convolutive (NMFD) model's templates are ``W (bin, component, lag)``, with the
    coordinates ``label`` (component: a pitch such as ``midi60`` or a drum class) and
    ``lag_time`` (lag, seconds); ``attrs["dnmf"]["model"]`` is ``"nmfd"``.
    """
    return _open(path, "model")


def open_activations(path: str | os.PathLike[str]) -> xr.Dataset:
    """Activations: ``H (component, frame)`` with ``time``, ``file_index``, and the file table."""
    return _open(path, "activations")


def file_frames(ds: xr.Dataset, file: str) -> xr.Dataset:
    """The frames of one file (by its path relative to the corpus folder).

    Examples
    --------
    >>> one = file_frames(open_corpus("rec.dnmf/corpus.zarr"), "a.wav")  # doctest: +SKIP
    >>> one.V.shape  # doctest: +SKIP
    (1025, 143)
    """
    if file not in ds.indexes.get("file", ()):
        raise DnmfUsageError(f"file {file!r} is not in this store; see ds.file for the paths")
    row = ds.sel(file=file)
    start, n = int(row.first_frame), int(row.n_frames)
    return ds.drop_dims("file").isel(frame=slice(start, start + n))


@xr.register_dataset_accessor("dnmf")
class DnmfAccessor:
    """``ds.dnmf.file(path)``: the frames of one file of a corpus or activations store."""

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def file(self, file: str) -> xr.Dataset:
        return file_frames(self._ds, file)

    @property
    def attrs(self) -> dict[str, Any]:
        meta = self._ds.attrs.get("dnmf")
        if not isinstance(meta, dict):
            raise StoreFormatError("this dataset does not come from a dnmf store")
        return meta
