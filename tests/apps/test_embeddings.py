"""Embeddings out (npz and Parquet round trips) and mirdata as a dataset source, on real GTZAN tracks."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from testkit import run_cli, small_recipe

from genrevision import embed, load_mirdata
from genrevision.evaluation.dataset import DatasetError, load_dataset
from genrevision.apps.embeddings import load_embeddings
from genrevision.features.extraction import extract_cached


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.getbasetemp() / "feature-cache")  # shared with test_model / test_experiment


@pytest.fixture(scope="module")
def three(gtzan_root):
    ds = load_dataset(str(gtzan_root / "genres"))
    return ds.subset([next(i for i, lab in enumerate(ds.labels) if lab == g) for g in ("classical", "hiphop", "metal")])


def test_embed_tracks_and_windows_round_trip(three, cache, tmp_path):
    rec = small_recipe()  # the default recipe on 2 windows per track
    extract_cached(three.paths, rec.features, cache=cache, jobs=0, progress=False)
    # Now every call reads the same cache entries (stored more compactly than the in-memory arrays).
    feats = extract_cached(three.paths, rec.features, cache=cache, jobs=0, progress=False).features
    tracks = embed(three, recipe=rec, cache=cache, jobs=0, progress=False)
    wins = embed(three, recipe=rec, windows=True, cache=cache, jobs=0, progress=False)
    d = sum(feats[three.paths[0]][v].shape[1] for v in ("original", "harmonic", "percussive"))
    assert tracks.embedding.shape == (3, d) and tracks.embedding.dtype == np.float32
    assert wins.embedding.shape == (6, d) and wins.track.tolist() == [0, 0, 1, 1, 2, 2]
    assert tracks.label.tolist() == ["classical", "hiphop", "metal"] and tracks.path.tolist() == three.paths
    for i, p in enumerate(three.paths):
        f = feats[p]
        # A window row is the three views' features side by side; the track row is their mean.
        np.testing.assert_array_equal(wins.embedding[2 * i], np.concatenate([f[v][0] for v in ("original", "harmonic", "percussive")]))
        np.testing.assert_array_equal(wins.window_start[2 * i : 2 * i + 2], f["starts"])
        np.testing.assert_allclose(tracks.embedding[i], wins.embedding[2 * i : 2 * i + 2].mean(axis=0), rtol=1e-6)
    assert wins.window_start[1] > 20  # the cap of 2 windows spreads them to the end of the track
    for emb in (tracks, wins):
        for ext in (".npz", ".parquet"):
            back = load_embeddings(emb.save(tmp_path / f"{emb.meta['level']}{ext}"))
            np.testing.assert_array_equal(back.embedding, emb.embedding)
            for col in ("path", "label", "group"):
                assert getattr(back, col).tolist() == getattr(emb, col).tolist()
            if emb.track is not None:
                np.testing.assert_array_equal(back.track, emb.track)
                np.testing.assert_array_equal(back.window_start, emb.window_start)
            else:
                assert back.track is None
            assert back.meta == json.loads(json.dumps(emb.meta)) and back.meta["recipe"] == "default"
    # Plain numpy reads the npz: no pickle anywhere.
    with np.load(tmp_path / "window.npz", allow_pickle=False) as z:
        assert z["embedding"].shape == (6, d)
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "window.parquet")
    assert table.column_names == ["path", "label", "group", "track", "window_start", "embedding"]
    with pytest.raises(ValueError, match=".npz or .parquet"):
        tracks.save(tmp_path / "x.csv")


def _mirdata_home(gtzan_root, root, present):
    """A data home in mirdata's gtzan_genre layout holding ``present``, and an index naming one track more."""
    tracks = {}
    for tid in present + ["hiphop.00099"]:
        genre = tid.split(".")[0]
        rel = f"gtzan_genre/genres/{genre}/{tid}.wav"
        if tid in present:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(gtzan_root / "genres" / genre / f"{tid}.wav", root / rel)
        tracks[tid] = {"audio": [rel, "0" * 32], "beats": [None, None], "tempo": [None, None]}
    index = root / "gtzan_genre_index.json"
    index.write_text(json.dumps({"version": "1.0", "tracks": tracks}))
    return index


def test_mirdata_source(gtzan_root, cache, tmp_path):
    present = ["classical.00000", "classical.00001", "hiphop.00000", "hiphop.00001"]
    home = tmp_path / "mir"
    index = _mirdata_home(gtzan_root, home, present)
    with pytest.warns(UserWarning, match="1 of the 5 tracks of mirdata's gtzan_genre index are missing"):
        ds = load_mirdata("gtzan_genre", data_home=str(home), index=str(index))
    # mirdata says "hip-hop"; genrevision keeps GTZAN's spelling, as the folder reader does.
    assert ds.labels.tolist() == ["classical", "classical", "hiphop", "hiphop"]
    assert [p.split("/")[-1] for p in ds.paths] == [f"{t}.wav" for t in present]
    with pytest.raises(DatasetError, match="download\\(\\['index'\\]\\)|--mirdata-index"):
        load_mirdata("gtzan_genre", data_home=str(home))  # mirdata's own index is not installed here
    with pytest.raises(DatasetError, match="unknown mirdata dataset"):
        load_mirdata("no_such_set", data_home=str(home))

    out = tmp_path / "emb.npz"
    proc = run_cli("embed", "--mirdata", "gtzan_genre", "--data-home", home, "--mirdata-index", index,
                   "--recipe", "paper", "--out", out, "--cache", cache, "--jobs", 0, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "4 track embeddings of 4 tracks" in proc.stdout
    emb = load_embeddings(out)
    assert emb.label.tolist() == ["classical", "classical", "hiphop", "hiphop"]
    assert emb.meta["recipe"] == "paper" and emb.meta["backbone"] == "efficientnet_lite0"
    assert np.isfinite(emb.embedding).all() and emb.embedding.shape[0] == 4


def test_embed_out_is_checked_before_extracting_and_never_overwritten(three, cache, gtzan_root, tmp_path):
    """An existing --out is refused unless --force; a folder, a missing folder and an
    unwritable one are refused before any extraction (the whole GTZAN set, uncached: a refusal
    after extracting would take minutes), naming the user's path; nothing is created."""
    import os
    import stat
    import time

    existing = tmp_path / "mine.npz"
    existing.write_bytes(b"the user's own file")
    from pathlib import Path

    locked = Path("/proc/sys")  # not writable, even for root (the tests may run as root)
    fresh = tmp_path / "fresh-cache"
    for out, says in ((existing, f"{existing}: already exists; --force (force=True) overwrites it"),
                      (tmp_path, f"{tmp_path}: is a folder; name a file in it (e.g. {tmp_path / 'embeddings.parquet'})"),
                      ("/nonexistent/dir/x.npz", "/nonexistent/dir/x.npz: no such folder /nonexistent/dir (create it first)"),
                      (locked / "x.npz", f"{locked / 'x.npz'}: cannot write in {locked} (permission denied)")):
        t = time.monotonic()
        proc = run_cli("embed", gtzan_root, "--out", out, "--cache", fresh, "--quiet")
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [f"genrevision: error: {says}"], proc.stderr
        assert time.monotonic() - t < 30
    assert existing.read_bytes() == b"the user's own file" and not os.path.exists("/nonexistent")
    # The API refuses the same way; force=True overwrites, with the mode a new file gets (not 0600).
    emb = embed(three, recipe=small_recipe(), cache=cache, jobs=0, progress=False)
    with pytest.raises(ValueError, match="already exists"):
        emb.save(existing)
    emb.save(existing, force=True)
    assert load_embeddings(existing).embedding.shape == emb.embedding.shape
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(emb.save(tmp_path / "new.npz")).st_mode) == 0o666 & ~umask
