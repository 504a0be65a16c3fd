"""``genrevision train`` and ``genrevision predict`` from the command line, on real tracks."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import soundfile as sf

from conftest import run_cli
from test_model import GENRES, SR, genre_paths




@pytest.fixture(scope="module")
def music_dir(gtzan_root, tmp_path_factory):
    """A folder tree: two real tracks (one nested) and a 75 s classical→metal file."""
    d = tmp_path_factory.mktemp("music")
    (d / "nested" / "deeper").mkdir(parents=True)
    y, _ = sf.read(genre_paths(gtzan_root, "classical")[6], dtype="float32")
    sf.write(d / "a classical.wav", y, SR)
    y, _ = sf.read(genre_paths(gtzan_root, "hiphop")[6], dtype="float32")
    sf.write(d / "nested" / "deeper" / "hiphop.flac", y, SR)
    (d / "nested" / "notes.txt").write_text("not audio, skipped by the folder walk")
    return d


def test_predict_table_folder_recursive(model_file, music_dir):
    proc = run_cli("predict", music_dir, "--model", model_file)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"{music_dir / 'a classical.wav'}: classical" in out
    assert f"{music_dir / 'nested' / 'deeper' / 'hiphop.flac'}: hiphop" in out
    assert out.count("probabilities:") == 2 and out.count("views:") == 2
    for g in GENRES:
        assert g in out.split("probabilities:")[1].splitlines()[0]
    # The default joins the views to predict, and still reports each view's own guess.
    assert out.count("views: original=") == 2 and " harmonic=" in out and " percussive=" in out
    assert "predict" in proc.stderr  # tqdm progress bar on stderr
    assert "failed" not in proc.stderr


def test_predict_json_and_csv(model_file, music_dir):
    f = music_dir / "a classical.wav"
    proc = run_cli("predict", f, "--model", model_file, "--format", "json", "--quiet", "--timeline")
    assert proc.returncode == 0 and proc.stderr == ""
    doc = json.loads(proc.stdout)
    (p,) = doc["predictions"]
    assert p["path"] == str(f) and p["genre"] == "classical"
    assert sum(p["probabilities"].values()) == pytest.approx(1.0) and set(p["probabilities"]) == set(GENRES)
    assert list(p["views"]) == ["original", "harmonic", "percussive", "mfcc"] and doc["failures"] == []
    assert p["views"]["original"] == "classical"
    (seg,) = p["segments"]  # a 30 s file is one segment
    assert seg["start"] == 0.0 and seg["genre"] == "classical"
    proc = run_cli("predict", f, "--model", model_file, "--format", "csv", "--quiet")
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert len(rows) == 1 and rows[0]["genre"] == "classical"
    assert sum(float(rows[0][f"p_{g}"]) for g in GENRES) == pytest.approx(1.0, abs=1e-5)
    assert all(rows[0][f"view_{v}"] in GENRES for v in ("original", "harmonic", "percussive"))


def test_predict_timeline(model_file, gtzan_root, tmp_path):
    parts = [sf.read(genre_paths(gtzan_root, g)[i], frames=30 * SR, dtype="float32")[0]
             for g, i in (("classical", 6), ("classical", 7), ("metal", 4), ("metal", 5))]
    path = tmp_path / "mix.wav"
    sf.write(path, np.concatenate(parts), SR)
    proc = run_cli("predict", path, "--model", model_file, "--timeline", "--quiet")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.split("timeline:")[1].strip().splitlines()
    assert len(lines) == 4
    assert lines[0].split()[0] == "0:00-0:30" and lines[0].split()[1] == "classical"
    assert lines[-1].split()[0] == "1:30-2:00" and lines[-1].split()[1] == "metal"


def test_usage_errors(model_file, tmp_path):
    proc = run_cli("predict", tmp_path, "--model", tmp_path / "missing.model")
    assert proc.returncode == 2 and "missing.model: no such model file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    (tmp_path / "empty").mkdir()
    proc = run_cli("predict", tmp_path / "empty", "--model", model_file)
    assert proc.returncode == 2 and "empty: no audio files found" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    bad = tmp_path / "bad.model"
    bad.write_text("nope")
    f = tmp_path / "x.wav"
    f.write_bytes(b"")
    proc = run_cli("predict", f, "--model", bad)
    assert proc.returncode == 2 and "bad.model: not a genrevision model file" in proc.stderr


def test_train_cli_paper_recipe(gtzan_root, tmp_path):
    """``genrevision train`` on a folder of short real excerpts, then ``predict`` with the file it wrote."""
    data = tmp_path / "data"
    for g in ("classical", "metal"):
        (data / g).mkdir(parents=True)
        for i in range(3):
            y, _ = sf.read(genre_paths(gtzan_root, g)[i], frames=8 * SR, dtype="float32")
            sf.write(data / g / f"{g}{i}.wav", y, SR)
    model = tmp_path / "m.model"
    proc = run_cli("train", data, "--model", model, "--recipe", "paper", "--paper-weights",
                   "--cache", tmp_path / "cache", "--jobs", "0", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "trained paper model on 6 tracks of 2 genres (classical, metal)" in proc.stdout
    assert "original 0.50, harmonic 0.10, percussive 0.40" in proc.stdout
    proc = run_cli("predict", data / "classical" / "classical0.wav", "--model", model, "--quiet")
    assert proc.returncode == 0 and ": classical (" in proc.stdout
