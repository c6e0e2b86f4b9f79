"""A store is trusted only as far as its commit: per-chunk records, checked by every reader.

Real stores on disk: ingested audio cut into chunks of 32 frames, a model learned
from it and its activations. Each damage is done to a copy: a chunk file deleted,
altered in place or truncated, and an edited ``zarr.json`` shape.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from dnmf.cli import app
from dnmf.io.store import consolidate
from tests.conftest import tone, write
from tests.test_cli_errors import assert_exit_2

runner = CliRunner()


def run(*args: object):  # type: ignore[no-untyped-def]
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def on_cluster(monkeypatch: pytest.MonkeyPatch, scheduler_address: str) -> str:
    monkeypatch.setenv("DNMF_SCHEDULER", scheduler_address)
    return scheduler_address


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory, scheduler_address: str) -> Iterator[Path]:
    """Audio (two files), its corpus in chunks of 32 frames, a rank-2 model, activations."""
    root = tmp_path_factory.mktemp("integrity")
    write(root / "audio" / "a.wav", tone(22050, 1.0), 22050)
    write(root / "audio" / "b.wav", tone(22050, 1.0, 660.0), 22050)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DNMF_SCHEDULER", scheduler_address)
        for args in (
            ["ingest", root / "audio", "-o", root / "corpus.zarr", "--chunk-frames", "32", "-q"],
            ["learn", root / "corpus.zarr", "--rank", "2", "--epochs", "2", "-q"],
            ["export", root / "model.zarr", "-q"],
        ):
            result = run(*args)
            assert result.exit_code == 0, result.output
        yield root


def copy(stores: Path, name: str, tmp_path: Path) -> Path:
    dst = tmp_path / name
    shutil.copytree(stores / name, dst)
    return dst


def delete(path: Path) -> None:
    path.unlink()


def alter(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:10])


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "missing": (delete, "is missing"),
    "altered": (alter, "does not match the checksum"),
    "truncated": (truncate, "cannot be read"),
}


def pointing_at(model: Path, corpus: Path) -> Path:
    """``model`` made to name ``corpus`` as the corpus it was learned on."""
    g = zarr.open_group(str(model), mode="r+")
    meta = dict(g.attrs["dnmf"])  # type: ignore[arg-type]
    g.attrs["dnmf"] = {**meta, "corpus": {**meta["corpus"], "path": str(corpus)}}  # type: ignore[dict-item]
    consolidate(model)
    return model


def test_every_store_records_its_chunks(stores: Path) -> None:
    import xarray as xr

    from dnmf.io.checked import verify_store
    from dnmf.io.records import checksum

    corpus = zarr.open_group(str(stores / "corpus.zarr"), mode="r")
    V = np.asarray(corpus["V"][:])  # type: ignore[index]
    recs = xr.open_zarr(stores / "corpus.zarr", group="chunks", consolidated=False)
    n = -(-V.shape[1] // 32)
    assert recs.sizes["V_chunk"] == n >= 3
    for j in range(n):
        block = V[:, 32 * j : 32 * (j + 1)]
        assert int(recs.V[j]) == checksum(block)
        assert float(recs.V_sum[j]) == float(block.sum(dtype=np.float64))
        assert float(recs.V_min[j]) == block.min() and float(recs.V_max[j]) == block.max()
        assert int(recs.V_nonfinite[j]) == 0
    assert "chunks" not in xr.open_zarr(stores / "corpus.zarr").data_vars  # not in the dataset
    checked = {name: verify_store(stores / name) for name in
               ("corpus.zarr", "model.zarr", "activations.zarr")}  # fmt: skip
    assert checked["corpus.zarr"]["V"] == n and checked["corpus.zarr"]["file"] == 1
    assert checked["model.zarr"]["W"] == 1 and checked["activations.zarr"]["H"] == n
    # the activation chunks the checkpoint refers to: the latest and the previous buffer
    assert checked["model.zarr"]["state/H2"] == checked["model.zarr"]["state/H1"] == n
    result = run("info", stores / "corpus.zarr", "--check")
    assert result.exit_code == 0, result.output
    assert "every one matches its record" in result.output


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_corpus_chunk_is_one_sentence_and_nothing_is_written(
    stores: Path, tmp_path: Path, how: str, on_cluster: str
) -> None:
    damage, words = DAMAGE[how]
    corpus = copy(stores, "corpus.zarr", tmp_path)
    damage(corpus / "V" / "c" / "0" / "1")
    where = "chunk 1 of V (frames 32-63)"
    result = run("learn", corpus, "--rank", "2", "--epochs", "1", "-o", tmp_path / "new.zarr", "-q")
    assert_exit_2(result, str(corpus), where, words, "re-ingest 'a.wav', 'b.wav'", "--rebuild")
    assert not (tmp_path / "new.zarr").exists()
    model = pointing_at(copy(stores, "model.zarr", tmp_path), corpus)
    assert_exit_2(run("export", model, "-o", tmp_path / "h.zarr", "-q"), where, words)
    assert not (tmp_path / "h.zarr").exists() or not (tmp_path / "h.zarr" / "chunks").exists()
    assert_exit_2(run("info", corpus, "--check"), where, words)


def test_a_damaged_dictionary_stops_every_reader(
    stores: Path, tmp_path: Path, on_cluster: str
) -> None:
    model = copy(stores, "model.zarr", tmp_path)
    delete(model / "W" / "c" / "0" / "0")
    wav = stores / "audio" / "a.wav"
    for args in (
        ["export", model, "-o", tmp_path / "h.zarr", "-q"],
        ["transform", model, wav, "-o", tmp_path / "t.zarr", "-q"],
        ["separate", model, wav, "-o", tmp_path / "parts", "-q"],
        ["info", model, "--check"],
    ):
        assert_exit_2(run(*args), str(model), "chunk 0 of W is missing", "learn the model again")
    for name in ("h.zarr", "t.zarr", "parts"):
        assert not (tmp_path / name).exists(), name


def test_a_damaged_activations_chunk_is_found_by_info_check(stores: Path, tmp_path: Path) -> None:
    acts = copy(stores, "activations.zarr", tmp_path)
    alter(acts / "H" / "c" / "0" / "2")
    assert_exit_2(run("info", acts, "--check"), "chunk 2 of H (frames 64-87)", "export")


def test_an_edited_shape_is_refused(stores: Path, tmp_path: Path, on_cluster: str) -> None:
    import dnmf
    from dnmf.errors import StoreDamagedError

    corpus = copy(stores, "corpus.zarr", tmp_path)
    meta = json.loads((corpus / "V" / "zarr.json").read_text())
    meta["shape"][1] -= 20
    (corpus / "V" / "zarr.json").write_text(json.dumps(meta))
    consolidate_free = "the metadata of V says shape"
    for args in (["info", corpus], ["learn", corpus, "--rank", "2", "-o", tmp_path / "m.zarr"]):
        assert_exit_2(run(*args), str(corpus), consolidate_free)
    with pytest.raises(StoreDamagedError, match=consolidate_free):
        dnmf.open_corpus(corpus)


def test_a_store_without_records_gets_them_once(
    stores: Path, tmp_path: Path, on_cluster: str
) -> None:
    corpus = copy(stores, "corpus.zarr", tmp_path)
    shutil.rmtree(corpus / "chunks")  # as an older dnmf wrote it
    consolidate(corpus)  # records every array again, but V's statistics: not these
    shutil.rmtree(corpus / "chunks")
    first = run("learn", corpus, "--rank", "2", "--epochs", "1", "-o", tmp_path / "m1.zarr", "-q")
    assert first.exit_code == 0, first.output
    assert first.stderr.splitlines() == [
        f"note: corpus {str(corpus)!r} has no chunk records (written by an older dnmf); "
        "computed them once, in one pass over the store, and recorded them"
    ]
    again = run("learn", corpus, "--rank", "2", "--epochs", "1", "-o", tmp_path / "m2.zarr", "-q")
    assert again.exit_code == 0 and again.stderr == "", again.output
    a, b = (zarr.open_group(str(tmp_path / m), mode="r") for m in ("m1.zarr", "m2.zarr"))
    np.testing.assert_array_equal(a["W"][:], b["W"][:])  # type: ignore[index]


@pytest.mark.parametrize("scale", [1, 10])
def test_learning_starts_without_reading_V(tmp_path: Path, scale: int) -> None:
    """The learner's start takes V's mean and checks from the records: zero V chunk reads
    before the first step, for a corpus of 4 chunks and one of 40."""
    from distributed import Client, LocalCluster
    from zarr.storage import LocalStore

    from dnmf.backends import DaskBackend
    from dnmf.nmf.config import LearnConfig
    from pipelines.learn import learn_corpus
    from tests.test_learn import write_corpus

    rng = np.random.default_rng(scale)
    V = (rng.random((17, 3)) @ rng.random((3, 64 * scale)) + 0.01).astype(np.float32)
    corpus = write_corpus(tmp_path / "corpus.zarr", V, chunk_frames=16)
    reads: list[str] = []
    before_step: list[int] = []
    get = LocalStore.get

    async def counting_get(self, key, *args, **kwargs):  # type: ignore[no-untyped-def]
        path = f"{self.root}/{key}"
        if "corpus.zarr/V/c/" in path:
            reads.append(path)
        return await get(self, key, *args, **kwargs)

    class Started(Exception):
        pass

    def first_step(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        before_step.append(len(reads))
        raise Started

    cfg = LearnConfig(rank=2, epochs=1, seed=0)
    with pytest.MonkeyPatch.context() as mp, LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster, Client(cluster) as client:  # fmt: skip
        mp.setattr(LocalStore, "get", counting_get)
        mp.setattr(DaskBackend, "step", first_step)
        with pytest.raises(Started):
            learn_corpus(corpus, tmp_path / "m.zarr", config=cfg, client=client)
    assert before_step == [0], reads


def test_open_functions_check_the_chunks_they_read(stores: Path, tmp_path: Path) -> None:
    import dnmf
    from dnmf.errors import StoreDamagedError

    assert float(dnmf.open_corpus(stores / "corpus.zarr").V.sum()) > 0
    corpus = copy(stores, "corpus.zarr", tmp_path)
    delete(corpus / "V" / "c" / "0" / "2")
    ds = dnmf.open_corpus(corpus)
    _ = ds.V[:, :64].values  # chunks 0 and 1 are whole
    with pytest.raises(StoreDamagedError, match="chunk 2 of V"):
        _ = ds.V.values


@pytest.mark.parametrize("how", list(DAMAGE))
@pytest.mark.parametrize("name", ["W", "pending"])
def test_a_damaged_checkpoint_is_refused_by_resume(
    stores: Path, tmp_path: Path, how: str, name: str, on_cluster: str
) -> None:
    """The checkpoint slot that --resume reads is checked, never read as zeros."""
    damage, words = DAMAGE[how]
    model = copy(stores, "model.zarr", tmp_path)
    slot = zarr.open_group(str(model), mode="r").attrs["dnmf"]["checkpoint"]["slot"]  # type: ignore[index,call-overload]
    (chunk,) = [p for p in (model / "state" / f"slot{slot}" / name / "c").rglob("*") if p.is_file()]
    damage(chunk)
    before = {p: p.read_bytes() for p in model.rglob("*") if p.is_file()}
    where = f"chunk 0 of state/slot{slot}/{name}"
    corpus = stores / "corpus.zarr"
    result = run("learn", corpus, "-o", model, "--rank", "2", "--epochs", "3", "--resume", "-q")
    assert_exit_2(result, str(model), where, words, "learn again without --resume")
    assert {p: p.read_bytes() for p in model.rglob("*") if p.is_file()} == before


# -- the activation buffers state/H0..H2: records kept by the client, saved per checkpoint --
def checkpoint_of(model: Path) -> dict:  # type: ignore[type-arg]
    return zarr.open_group(str(model), mode="r").attrs["dnmf"]["checkpoint"]  # type: ignore[index,return-value,call-overload]


def test_the_checkpoint_records_the_activation_chunks_it_refers_to(stores: Path) -> None:
    """The slot's table holds the crc of each chunk as its visit wrote it; the slot's own
    records cover the table; the activations read through it."""
    from dnmf.io.model import ModelStore
    from dnmf.io.records import checksum, load_records

    model = ModelStore.open(stores / "model.zarr")
    ck = checkpoint_of(stores / "model.zarr")
    assert ck["has_H_records"] and ck["epoch"] == 2  # the fast schedule: three buffers
    state = model.load_checkpoint()
    assert state is not None and state.H_crc is not None and state.H_crc.shape == (3, 3)
    live = model.buffer_chunks(state)
    # every block's latest activations (buffer 2 % 3) and its previous ones (buffer 1)
    assert sorted((k, b) for k, b, _ in live) == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    for k, b, crc in live:
        H = zarr.open_array(str(stores / "model.zarr" / "state" / f"H{k}"), mode="r")
        assert crc == checksum(np.asarray(H[:, 32 * b : 32 * (b + 1)]))
    assert load_records(model.path, f"state/slot{ck['slot']}/H_crc") is not None
    assert model.activations().shape == (2, 88)


@pytest.mark.parametrize("how", list(DAMAGE))
@pytest.mark.parametrize("which", ["latest", "previous"])
def test_a_damaged_activation_chunk_is_refused_by_resume(
    stores: Path, tmp_path: Path, how: str, which: str, on_cluster: str
) -> None:
    """A chunk of the buffers a checkpoint refers to (the latest activations, and the
    previous ones the fast schedule extrapolates from) is checked before the resumed run
    writes anything: one sentence naming the store, the buffer and the chunk."""
    damage, words = DAMAGE[how]
    model = copy(stores, "model.zarr", tmp_path)
    epoch = checkpoint_of(model)["epoch"]
    k = epoch % 3 if which == "latest" else (epoch - 1) % 3
    damage(model / "state" / f"H{k}" / "c" / "0" / "1")
    before = {p: p.read_bytes() for p in model.rglob("*") if p.is_file()}
    corpus = stores / "corpus.zarr"
    result = run("learn", corpus, "-o", model, "--rank", "2", "--epochs", "3", "--resume", "-q")
    where = f"chunk 1 of state/H{k} (frames 32-63)"
    assert_exit_2(result, str(model), where, words, "learn again without --resume")
    assert {p: p.read_bytes() for p in model.rglob("*") if p.is_file()} == before


def test_a_damaged_activation_chunk_stops_its_readers(stores: Path, tmp_path: Path) -> None:
    """ModelStore.activations(), dnmf rank's per-block task and dnmf info --check check
    the activation chunks they read."""
    from dnmf.errors import StoreDamagedError
    from dnmf.io.model import ModelStore
    from dnmf.nmf.mask import MaskSpec
    from dnmf.rank import split_losses_task

    model = copy(stores, "model.zarr", tmp_path)
    epoch = checkpoint_of(model)["epoch"]
    alter(model / "state" / f"H{epoch % 3}" / "c" / "0" / "2")
    where = f"chunk 2 of state/H{epoch % 3} (frames 64-87) does not match"
    store = ModelStore.open(model)
    with pytest.raises(StoreDamagedError, match=re.escape(where)):
        store.activations()
    state = store.load_checkpoint()
    assert state is not None and state.H_crc is not None and state.pending is not None
    k = epoch % 3
    item = (64, 88, k, state.pending[2], None, {2: int(state.H_crc[k, 2])})
    with pytest.raises(StoreDamagedError, match=re.escape(where)):
        split_losses_task(item, state.W, str(stores / "corpus.zarr" / "V"), str(model / "state"),
                          MaskSpec(), 1.0)  # fmt: skip
    assert_exit_2(run("info", model, "--check"), str(model), where, "without --resume")


def test_two_buffers_mid_epoch_checks_what_resume_reads_and_not_what_it_rewrites(
    tmp_path: Path, cluster_client: object
) -> None:
    """Minibatch (two buffers), a checkpoint in mid-epoch, then a step whose H writes the
    crash left behind: a damaged chunk the checkpoint refers to (a block done this epoch,
    in the other buffer) is refused; damage to a chunk it does not refer to (that block's
    older activations, rewritten before they are read) is not, and the resumed run ends
    bitwise where an uninterrupted one ends."""
    from dnmf.errors import StoreDamagedError
    from dnmf.io.model import ModelStore
    from dnmf.nmf.config import LearnConfig
    from dnmf.nmf.plan import epoch_steps
    from pipelines.learn import learn_corpus
    from tests.test_learn import Crash, crash_at, write_corpus

    rng = np.random.default_rng(9)
    V = (rng.random((17, 3)) @ rng.random((3, 96)) + 0.01).astype(np.float32)
    corpus = write_corpus(tmp_path / "corpus.zarr", V, chunk_frames=16)  # 6 blocks
    cfg = LearnConfig(rank=2, epochs=3, batch_chunks=2, checkpoint_every=2, tol=0,
                      schedule="full", solver="mu")  # fmt: skip
    whole = learn_corpus(corpus, tmp_path / "whole.zarr", config=cfg, client=cluster_client)
    cut = tmp_path / "cut.zarr"
    with pytest.raises(Crash):  # 3 steps an epoch: the checkpoint is step 4 (epoch 1, step 1)
        learn_corpus(corpus, cut, config=cfg, client=cluster_client, on_step=crash_at(5))
    ck = checkpoint_of(cut)
    assert (ck["epoch"], ck["step_in_epoch"], ck["global_step"]) == (1, 1, 4)
    done = epoch_steps(6, 2, seed=cfg.seed, epoch=1)[0]
    b = done[0]  # its latest H is in buffer (1 + 1) % 2 = 0; buffer 1 holds its older H
    good = {p: p.read_bytes() for p in cut.rglob("*") if p.is_file()}
    for j in done:  # both blocks of the epoch's first step: the first named, one counted
        alter(cut / "state" / "H0" / "c" / "0" / str(j))
    damaged = {p: p.read_bytes() for p in cut.rglob("*") if p.is_file()}
    with pytest.raises(StoreDamagedError) as err:
        learn_corpus(corpus, cut, config=cfg, resume=True, client=cluster_client)
    assert re.search(f"chunk {b} of state/H0 .* \\(and 1 more damaged chunks\\); its resume",
                     str(err.value)), err.value  # fmt: skip
    assert {p: p.read_bytes() for p in cut.rglob("*") if p.is_file()} == damaged  # untouched
    for p, data in good.items():
        p.write_bytes(data)
    alter(cut / "state" / "H1" / "c" / "0" / str(b))  # not referred to: rewritten first
    resumed = learn_corpus(corpus, cut, config=cfg, resume=True, client=cluster_client)
    assert resumed.resumed_from_step == 4 and resumed.losses == whole.losses
    a, c = ModelStore.open(tmp_path / "whole.zarr"), ModelStore.open(cut)
    assert a.W.tobytes() == c.W.tobytes()
    assert a.activations().tobytes() == c.activations().tobytes()


def test_the_records_an_ingest_makes_are_those_of_what_it_wrote(
    tmp_path: Path, cluster_client: object
) -> None:
    """The tasks record the chunks they write from the values in hand; an append into a
    partly filled chunk, and chunks laid out again around a file found silent, too."""
    from dnmf.io.records import chunk_record, load_records
    from pipelines.ingest import ingest

    audio = tmp_path / "audio"
    write(audio / "a.wav", tone(22050, 1.0), 22050)
    store = tmp_path / "corpus.zarr"
    ingest(audio, store, chunk_frames=32, client=cluster_client)  # 44 frames: 1.4 chunks
    write(audio / "b.wav", tone(22050, 1.0, 660.0), 22050)
    write(audio / "c.wav", np.zeros(22050, np.float32), 22050)  # silent: laid out again
    write(audio / "d.wav", tone(44100, 1.5, 880.0, channels=2), 44100)
    result = ingest(audio, store, client=cluster_client)
    assert result.added == ["b.wav", "d.wav"] and result.skipped[0]["file"] == "c.wav"
    group = zarr.open_group(str(store), mode="r")
    for name in ("V", "time", "file_index", "clipped"):
        rec = load_records(str(store), name)
        assert rec is not None and rec.n_chunks == -(-int(group[name].shape[-1]) // 32) > 3
        for j in range(rec.n_chunks):
            want = chunk_record(np.asarray(group[name][rec.region(j)]), stats=name == "V")  # type: ignore[index]
            got = {"crc": int(rec.crc[j])}
            if rec.stats is not None:
                got.update({k: v[j].item() for k, v in rec.stats.items()})
            assert got == want, (name, j)


def test_an_array_replaced_at_its_path_is_opened_anew(tmp_path: Path) -> None:
    """open_array keeps a handle per path only while its zarr.json is unchanged: an
    array replaced, resized or given new attributes there is what the next open sees."""
    from dnmf.io.blocks import open_array

    url = str(tmp_path / "a")
    zarr.create_array(url, shape=(2, 8), chunks=(2, 4), dtype="f4", fill_value=0.0)
    first = open_array(url, mode="r+")
    assert open_array(url, mode="r+") is first
    first[:, :] = 1.0
    zarr.create_array(url, shape=(3, 6), chunks=(3, 3), dtype="f8", fill_value=0.0, overwrite=True)
    again = open_array(url, mode="r+")
    assert again is not first
    assert (again.shape, again.dtype) == ((3, 6), np.dtype("f8"))
    assert not np.asarray(again[:]).any()
    again.resize((3, 9))
    assert open_array(url, mode="r").shape == (3, 9)
    again.attrs["note"] = "x"
    assert open_array(url, mode="r").attrs["note"] == "x"


def test_activations_are_served_from_memory_only_as_their_records_say(tmp_path: Path) -> None:
    """A worker's visit reads back the block it wrote from memory only while the crc the
    visit expects is the one of what was written; otherwise (another writer, a chunk
    damaged or rewritten meanwhile) it reads the store and checks it there."""
    from dnmf.errors import StoreDamagedError
    from dnmf.io.blocks import ActivationCache, ZarrBlockIO, activation_cache, create_H_buffers

    H_url = str(tmp_path / "state")
    create_H_buffers(H_url, 3, 8, 4, "f4")
    H = np.arange(12, dtype=np.float32).reshape(3, 4) + 1
    io = ZarrBlockIO("", H_url)
    io.write_H(1, 4, 8, H)
    crc = io.written[1]
    cache = activation_cache()
    hits = cache.hits
    # the chunk is altered on disk: a read that expects the written crc gets what was written
    zarr.open_array(f"{H_url}/H1", mode="r+")[:, 4:8] = 0.0
    got = ZarrBlockIO("", H_url, expect={(1, 1): crc}).read_H(1, 4, 8)
    assert cache.hits == hits + 1 and np.array_equal(got, H)
    got[:] = -1  # a copy: the next read is not changed by what a caller does with it
    assert np.array_equal(ZarrBlockIO("", H_url, expect={(1, 1): crc}).read_H(1, 4, 8), H)
    # another crc expected (another writer's): the store is read, and checked
    with pytest.raises(StoreDamagedError):
        ZarrBlockIO("", H_url, expect={(1, 1): crc ^ 1}).read_H(1, 4, 8)
    assert cache.misses >= 1

    small = ActivationCache(2 * H.nbytes)
    small.put(("u", 0, 0, 4), {0: 7}, H)
    small.put(("u", 1, 0, 4), {0: 8}, H)
    small.put(("u", 2, 0, 4), {0: 9}, H)  # the oldest gives way
    assert small.get(("u", 0, 0, 4), {0: 7}) is None
    assert small.get(("u", 2, 0, 4), {0: 9}) is not None
    small.put(("u", 3, 0, 4), {0: -1}, H)  # written in part: not kept
    assert small.get(("u", 3, 0, 4), {0: -1}) is None and small.used == 2 * H.nbytes
