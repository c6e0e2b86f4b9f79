"""The mask sources the ingest records: clipped frames and each file's bandwidth, on real
stores ingested from synthesized audio."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr

from dnmf.audio.features import FeatureConfig
from dnmf.io.corpus import CorpusStore
from dnmf.io.records import ATTR, GROUP
from dnmf.io.store import consolidate
from dnmf.nmf.config import LearnConfig
from dnmf.nmf.learner import fit_in_memory
from dnmf.nmf.mask import MaskSpec, block_mask
from tests.conftest import write

SR = 22050
#: Clipped stretches: file -> (rate, channel, [(first sample, stop, value)]).
CLIPS = {
    "clip.wav": (SR, 0, [(10000, 10100, 1.0), (40000, 40030, -1.0)]),
    "stereo.flac": (44100, 1, [(30000, 30040, 1.0)]),  # one channel: clipped before mixdown
}


def noise(sr: int, seconds: float, seed: int) -> np.ndarray:
    return 0.05 * np.random.default_rng(seed).standard_normal(round(sr * seconds))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, cluster_client: object) -> Path:
    import scipy.signal
    import soxr

    from pipelines.ingest import ingest

    root = tmp_path_factory.mktemp("sources") / "audio"
    y = noise(SR, 3.0, 0)
    for a, z, v in CLIPS["clip.wav"][2]:
        y[a:z] = v
    write(root / "clip.wav", y.astype(np.float32), SR, subtype="PCM_16")
    st = np.stack([noise(44100, 2.0, 1), noise(44100, 2.0, 2)], axis=1)
    for a, z, v in CLIPS["stereo.flac"][2]:
        st[a:z, 1] = v
    write(root / "stereo.flac", st.astype(np.float32), 44100)
    # A telephone recording brought to 22.05 kHz: nothing above 4 kHz.
    write(root / "tel.wav", soxr.resample(noise(8000, 2.0, 3), 8000, SR).astype(np.float32), SR)
    write(root / "wide16k.wav", noise(16000, 2.0, 4).astype(np.float32), 16000)  # resampled up
    sos = scipy.signal.ellip(10, 0.5, 80, 5000, fs=44100, output="sos")  # a 5 kHz low-pass
    lp = scipy.signal.sosfilt(sos, noise(44100, 2.0, 5))
    write(root / "lp.flac", (lp / np.abs(lp).max() * 0.3).astype(np.float32), 44100)
    store = root.parent / "corpus.zarr"
    result = ingest(root, store, chunk_frames=64, client=cluster_client)
    assert result.exit_code == 0, result.skipped
    return store


def expected_clipped(name: str, n_frames: int, cfg: FeatureConfig) -> np.ndarray:
    """Brute force: per frame, the clipped samples whose time lies in the frame's window."""
    orig, _, stretches = CLIPS[name]
    offset = cfg.n_fft // 2
    out = np.zeros(n_frames, dtype=np.int64)
    for a, z, _ in stretches:
        t = np.arange(a, z) / orig  # seconds
        for f in range(n_frames):
            w0 = (f * cfg.hop_length - offset) / cfg.sr
            out[f] += np.count_nonzero((t >= w0) & (t < w0 + cfg.n_fft / cfg.sr))
    return out


def test_ingest_counts_the_clipped_samples_of_each_frame(corpus: Path) -> None:
    store = CorpusStore.open(corpus)
    clipped = store.column("clipped")
    assert clipped.shape == (store.n_frames,)
    files = {f.file: f for f in store.files()}
    for name in CLIPS:
        f = files[name]
        want = expected_clipped(name, f.n_frames, store.features)
        got = clipped[f.first_frame : f.first_frame + f.n_frames]
        if CLIPS[name][0] == SR:  # the file's own rate: exact counts
            assert got.tolist() == want.tolist()
        else:  # resampled: the same frames, counts to a sample at the window's edges
            assert (got > 0).tolist() == (want > 0).tolist()
            assert np.abs(got - want).max() <= 1
    others = [f for f in store.files() if f.file not in CLIPS]
    assert all(not clipped[f.first_frame : f.first_frame + f.n_frames].any() for f in others)


def test_ingest_estimates_each_files_bandwidth(corpus: Path) -> None:
    bw = {f.file: f.bandwidth for f in CorpusStore.open(corpus).files()}
    assert bw["clip.wav"] == SR / 2  # white noise: the whole band
    assert 3700 <= bw["tel.wav"] <= 4000  # 8 kHz content
    assert 7500 <= bw["wide16k.wav"] <= 8000  # a 16 kHz file: at most its Nyquist
    assert 5000 <= bw["lp.flac"] <= 5600  # the low-pass's stopband starts by 5.5 kHz
    assert bw["stereo.flac"] >= 10500  # resampled down: only the resampler's own roll-off


def test_block_masks_from_the_corpus(corpus: Path) -> None:
    store = CorpusStore.open(corpus)
    V = np.asarray(store.V[:, :])
    freq = store.column("frequency")
    clipped, rows = store.column("clipped"), store.column("file_index")
    bw = store.column("bandwidth")
    n = store.n_frames
    clip = block_mask(MaskSpec(corpus=str(corpus), clipped=True), V, 0, n)
    assert clip is not None and clip.entries is None
    assert (clip.frames == (clipped == 0)).all()  # type: ignore[union-attr]
    band = block_mask(MaskSpec(corpus=str(corpus), bandwidth=True), V, 0, n)
    assert band is not None and band.frames is None
    assert (band.entries == (freq[:, None] <= bw[rows][None, :])).all()
    # a window of one full-band file, before its first clipped stretch: no mask at all
    first = next(f for f in store.files() if f.file == "clip.wav")
    lo, hi = first.first_frame, first.first_frame + 10
    both = MaskSpec(corpus=str(corpus), clipped=True, bandwidth=True)
    assert block_mask(both, V[:, lo:hi], lo, hi) is None


def test_learning_with_the_sources_is_bitwise_the_equivalent_masks(corpus: Path) -> None:
    store = CorpusStore.open(corpus)
    V = np.ascontiguousarray(store.V[:, :])
    cfg = LearnConfig(rank=3, epochs=3, tol=0, seed=2, schedule="full", solver="mu")
    # clipped frames: as the same frames of silence (a frame mask either way)
    a = fit_in_memory(V, cfg, block_frames=64, mask=MaskSpec(corpus=str(corpus), clipped=True))
    silent = np.where(store.column("clipped")[None, :] > 0, 0.0, V).astype(np.float32)
    b = fit_in_memory(silent, cfg, block_frames=64, mask=MaskSpec(silence_db=-300.0))
    assert a.W.tobytes() == b.W.tobytes() and a.losses == b.losses
    # bins above the bandwidth: as a stored mask of the same entries
    freq, bw = store.column("frequency"), store.column("bandwidth")
    M = freq[:, None] <= bw[store.column("file_index")][None, :]
    c = fit_in_memory(V, cfg, block_frames=64, mask=MaskSpec(corpus=str(corpus), bandwidth=True))
    d = fit_in_memory(V, cfg, block_frames=64, M=M)
    assert c.W.tobytes() == d.W.tobytes() and c.losses == d.losses


def test_learn_cli_masks_clipping_and_bandwidth_info_counts_them_export_applies_them(
    corpus: Path, tmp_path: Path, scheduler_address: str, cluster_client: object
) -> None:
    import dnmf
    from pipelines.export import export
    from tests.test_cli import run

    store = CorpusStore.open(corpus)
    n_bins = store.features.n_bins
    freq, bw = store.column("frequency"), store.column("bandwidth")
    clipped = store.column("clipped") > 0
    above = freq[:, None] > bw[store.column("file_index")][None, :]
    out = tmp_path / "m.zarr"
    args = ["--mask-clipped", "--mask-above-bandwidth", "--quiet"]
    result = run("learn", corpus, "--rank", "3", "--epochs", "2", "-o", out, "--scheduler",
                 scheduler_address, *args)  # fmt: skip
    assert result.exit_code == 0, result.output
    info = json.loads(run("info", out, "--json").stdout)
    assert info["mask"] == {
        "clipped": float(clipped.sum() * n_bins), "bandwidth": float(above.sum()),
        "all": float((above | clipped[None, :]).sum()), "entries": float(store.V.size),
    }  # fmt: skip
    text = run("info", out).stdout
    assert f"{int(clipped.sum() * n_bins)} entries removed by clipping" in text
    assert f"{int(above.sum())} entries removed by bandwidth" in text
    # export solves with the same masks: a clipped frame keeps no activation
    done = export(out, tmp_path / "h.zarr", n_iter=5, tol=0, client=cluster_client)
    meta = zarr.open_group(done.store, mode="r").attrs["dnmf"]
    assert meta["settings"]["mask"] == {"store": None, "silence_db": None, "boundaries": False,
                                        "clipped": True, "above_bandwidth": True}  # fmt: skip
    H = dnmf.open_activations(done.store).H.values
    assert (H[:, clipped] == 0).all() and (H[:, ~clipped].sum(axis=0) > 0).all()


def test_a_store_of_an_older_dnmf_is_refused_with_the_fix(
    corpus: Path, tmp_path: Path, cluster_client: object
) -> None:
    """A store without the clipping counts and bandwidths (as an older dnmf wrote them)
    takes appends as it is, and refuses the two masks by name."""
    from pipelines.ingest import ingest
    from tests.test_cli import run

    old = tmp_path / "old.zarr"
    CorpusStore.create(old, FeatureConfig(), chunk_frames=64, source="old")
    group = zarr.open_group(str(old), mode="r+", zarr_format=3)
    index = group[GROUP].attrs[ATTR]
    for name in ("clipped", "bandwidth"):  # the arrays and their records
        del group[name], group[f"{GROUP}/{name}"], index["arrays"][name]
    group[GROUP].attrs[ATTR] = index
    consolidate(old)
    audio = corpus.parent / "audio"
    assert ingest(audio, old, client=cluster_client).exit_code == 0
    store = CorpusStore.open(old)
    assert not store.has("clipped") and store.n_files == 5
    assert all(f.bandwidth == 0.0 for f in store.files())
    new = CorpusStore.open(corpus)
    assert np.asarray(store.V[:, :]).tobytes() == np.asarray(new.V[:, :]).tobytes()
    for option in ("--mask-clipped", "--mask-above-bandwidth"):
        bad = run("learn", old, "--rank", "2", "-o", tmp_path / "m.zarr", option)
        assert bad.exit_code == 2, bad.output
        assert f"ingested by an older dnmf and {option}" in bad.output
        assert "dnmf ingest --rebuild" in bad.output and "Traceback" not in bad.output
