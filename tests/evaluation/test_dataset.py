"""genrevision.evaluation.dataset: label folders, CSV manifests, problems, errors."""
from __future__ import annotations

import collections
import os
import shutil

import numpy as np
import pytest

from genrevision.evaluation.dataset import DatasetError, find_audio, gtzan_track_number, load_dataset

from testkit import run_cli

EXPECTED_COUNTS = {"blues": 10, "classical": 10, "disco": 10, "hiphop": 10, "metal": 10, "rock": 10,
                   "country": 14, "jazz": 12, "pop": 12, "reggae": 11}


def test_gtzan_mini_folder(gtzan_root):
    ds = load_dataset(str(gtzan_root))  # descends through the single "genres" wrapper
    assert len(ds) == 109
    assert ds.classes == sorted(EXPECTED_COUNTS)
    assert dict(collections.Counter(ds.labels.tolist())) == EXPECTED_COUNTS
    assert ds.groups is None and ds.splits is None and ds.problems == []
    for p, label in zip(ds.paths, ds.labels):
        assert os.path.basename(os.path.dirname(p)) == label
        assert os.path.basename(p).startswith(label + ".")
    assert ds.paths == sorted(ds.paths)
    ids = ds.track_ids
    assert ids.tolist() == [int(os.path.basename(p).split(".")[1]) for p in ds.paths]
    assert (ids >= 0).all()
    # the genres folder itself gives the same dataset
    assert load_dataset(str(gtzan_root / "genres")).paths == ds.paths


def test_gtzan_manifest_csv_with_genre_column(gtzan_root, gtzan_manifest):
    ds = load_dataset(str(gtzan_root / "manifest.csv"))
    assert len(ds) == len(gtzan_manifest) == 109
    assert dict(collections.Counter(ds.labels.tolist())) == EXPECTED_COUNTS
    assert all(os.path.isfile(p) for p in ds.paths)  # relative paths resolved against the manifest
    assert ds.root == str(gtzan_root)


def test_subset(gtzan_root):
    ds = load_dataset(str(gtzan_root))
    sub = ds.subset([0, 5, 108])
    assert len(sub) == 3
    assert sub.paths == [ds.paths[0], ds.paths[5], ds.paths[108]]
    np.testing.assert_array_equal(sub.labels, ds.labels[[0, 5, 108]])


def _csv(path, rows, header="path,label,group,split"):
    path.write_text(header + "\n" + "\n".join(",".join(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_csv_manifest_groups_and_splits(tmp_path, gtzan_root):
    g = gtzan_root / "genres"
    local = tmp_path / "audio" / "mine.wav"
    local.parent.mkdir()
    shutil.copy(g / "pop" / "pop.00001.wav", local)
    manifest = _csv(tmp_path / "m.csv", [
        (str(g / "blues/blues.00000.wav"), "blues", "artistA", "train"),
        (str(g / "blues/blues.00001.wav"), "blues", "artistA", "train"),
        (str(g / "jazz/jazz.00005.wav"), "jazz", "artistB", "valid"),
        ("audio/mine.wav", "pop", "artistC", "test"),
    ])
    ds = load_dataset(str(manifest))
    assert len(ds) == 4 and ds.problems == []
    assert ds.paths[3] == os.path.join(str(tmp_path), "audio", "mine.wav")
    assert os.path.isfile(ds.paths[3])
    assert ds.labels.tolist() == ["blues", "blues", "jazz", "pop"]
    assert ds.groups.tolist() == ["artistA", "artistA", "artistB", "artistC"]
    assert ds.splits.tolist() == ["train", "train", "valid", "test"]
    assert ds.classes == ["blues", "jazz", "pop"]
    assert ds.track_ids.tolist() == [0, 1, 5, -1]


def test_csv_without_optional_columns(tmp_path, gtzan_root):
    p = str(gtzan_root / "genres/metal/metal.00002.wav")
    manifest = _csv(tmp_path / "m.csv", [(p, "metal")], header="Path, Label")
    ds = load_dataset(str(manifest))
    assert ds.paths == [p] and ds.groups is None and ds.splits is None


def test_csv_problem_rows(tmp_path, gtzan_root):
    g = gtzan_root / "genres"
    manifest = _csv(tmp_path / "m.csv", [
        (str(g / "blues/blues.00000.wav"), "blues", "a", "train"),
        (str(g / "blues/blues.00001.wav"), "", "a", "train"),
        (str(g / "disco/disco.00001.wav"), "disco", "b", "holdout"),
        ("", "rock", "c", "test"),
    ])
    ds = load_dataset(str(manifest))
    assert ds.paths == [str(g / "blues/blues.00000.wav")]
    assert len(ds.problems) == 3
    where = [p for p, _ in ds.problems]
    reasons = [r for _, r in ds.problems]
    assert where[0] == str(g / "blues/blues.00001.wav") and "no label" in reasons[0]
    assert "holdout" in reasons[1]
    assert "empty path" in reasons[2]
    with pytest.raises(DatasetError) as ei:
        load_dataset(str(manifest), strict=True)
    assert "no label" in str(ei.value)


def test_csv_errors(tmp_path):
    bad_cols = _csv(tmp_path / "cols.csv", [("a.wav", "x")], header="file,genre_name")
    with pytest.raises(DatasetError):
        load_dataset(str(bad_cols))
    all_bad = _csv(tmp_path / "allbad.csv", [("a.wav", "", "", "")])
    with pytest.raises(DatasetError):
        load_dataset(str(all_bad))


def test_missing_and_unusable_paths(tmp_path):
    with pytest.raises(DatasetError) as ei:
        load_dataset(str(tmp_path / "does-not-exist"))
    assert "does-not-exist" in str(ei.value)
    (tmp_path / "list.txt").write_text("x")
    with pytest.raises(DatasetError):
        load_dataset(str(tmp_path / "list.txt"))
    empty = tmp_path / "empty_tree" / "rock"
    empty.mkdir(parents=True)
    (empty / "readme.txt").write_text("no audio here")
    with pytest.raises(DatasetError):
        load_dataset(str(tmp_path / "empty_tree"))
    assert issubclass(DatasetError, ValueError)


def test_find_audio(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    for rel in ["b/2.WAV", "b/1.flac", "a/z.mp3", "a/.hidden.wav", "a/notes.txt", "top.ogg"]:
        (tmp_path / rel).write_bytes(b"x")
    found = [os.path.relpath(p, tmp_path) for p in find_audio(str(tmp_path))]
    assert found == ["top.ogg", os.path.join("a", "z.mp3"), os.path.join("b", "1.flac"), os.path.join("b", "2.WAV")]
    one = str(tmp_path / "top.ogg")
    assert find_audio(one) == [one]


def test_gtzan_track_number():
    assert gtzan_track_number("/x/blues.00012.wav") == 12
    assert gtzan_track_number("reggae.00099.au") == 99
    assert gtzan_track_number("song.wav") == -1


def test_shared_manifest_holds_every_shared_track_with_its_artist(gtzan_root):
    # manifests/gtzan-shared.csv (make evaluate, make model) = gtzan-mini/artists.csv ∪ gtzan-more/manifest.csv.
    import csv
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    ds = load_dataset(str(repo / "manifests" / "gtzan-shared.csv"))
    assert not ds.problems and len(ds) == 243
    expected = {}
    for sub, name in (("gtzan-mini", "artists.csv"), ("gtzan-more", "manifest.csv")):
        folder = gtzan_root.parent / sub
        with open(folder / name, newline="") as f:
            for r in csv.DictReader(f):
                expected[os.path.realpath(folder / r["path"])] = (r["label"], r["group"])
    got = {os.path.realpath(p): (lab, g) for p, lab, g in zip(ds.paths, ds.labels, ds.groups)}
    assert got == expected
    assert all(os.path.isfile(p) for p in got)


def test_manifest_exact_duplicates_are_dropped_with_a_warning(tmp_path, three_songs):
    m = tmp_path / "dup.csv"
    m.write_text("path,label\nc1.wav,classical\nm1.wav,metal\n./c1.wav,classical\nc2.wav,classical\n")
    with pytest.warns(UserWarning) as rec:
        ds = load_dataset(str(m))
    assert [os.path.basename(p) for p in ds.paths] == ["c1.wav", "m1.wav", "c2.wav"]
    assert [str(w.message) for w in rec] == [f"{m}: dropped 1 duplicate row: row 4 (= row 2: ./c1.wav)"]


def test_manifest_contradictory_labels_are_refused(tmp_path, three_songs):
    m = tmp_path / "contra.csv"
    m.write_text("path,label\nc1.wav,classical\nm1.wav,metal\nc1.wav,metal\n")
    with pytest.raises(DatasetError) as info:
        load_dataset(str(m))
    assert str(info.value) == f"{m}:4: {tmp_path / 'c1.wav'} is labelled 'metal' here but 'classical' on row 2"
    proc = run_cli("train", m, "--model", tmp_path / "x.model", "--cache", tmp_path / "cache", "--quiet")
    assert proc.returncode == 2 and not (tmp_path / "x.model").exists()
    assert proc.stderr.strip() == f"genrevision: error: {info.value}"


def test_manifest_with_byte_order_mark(tmp_path, three_songs):
    m = tmp_path / "excel.csv"
    m.write_text("path,label\r\nc1.wav,classical\r\nm1.wav,metal\r\n", encoding="utf-8-sig")
    ds = load_dataset(str(m))
    assert ds.labels.tolist() == ["classical", "metal"] and os.path.exists(ds.paths[0])
