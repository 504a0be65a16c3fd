"""``genrevision train`` and ``genrevision predict`` from the command line, on real tracks."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from genrevision.evaluation.dataset import load_dataset
from genrevision.signal.audio import load_audio

from testkit import GENRES, SR, fuzz_cases, genre_paths, model_members, run_cli, write_model_zip


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


def test_cli_predict_refuses_bomb_model(model_file, tmp_path, excerpt):
    from genrevision.model.genre_model import MAX_MEMBER_BYTES

    path = write_model_zip(tmp_path / "bomb.model", model_members(model_file), bombs={"meta.json": MAX_MEMBER_BYTES + (1 << 20)})
    song = tmp_path / "song.wav"
    sf.write(song, excerpt, SR)
    proc = run_cli("predict", song, "--model", path, "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"genrevision: error: {path}: refused: meta.json inflates to 65 MB, "
                                   f"more than the 64 MB a model member may hold")


def _latin1_dataset(tmp_path, three_songs) -> tuple[bytes, bytes]:
    """A label-folder dataset and a manifest whose file names are Latin-1 bytes (not UTF-8)."""
    root = os.fsencode(tmp_path / "latin")
    for genre, names in (("classical", ("c1.wav", "c2.wav")), ("metal", ("m1.wav", "m2.wav"))):
        os.makedirs(os.path.join(root, genre.encode()))
        for n in names:
            dst = os.path.join(root, genre.encode(), b"caf\xe9 " + n.encode())
            with open(dst, "wb") as f:
                f.write(three_songs[n].read_bytes())
    manifest = os.path.join(root, b"latin.csv")
    with open(manifest, "wb") as f:
        f.write(b"path,label\nclassical/caf\xe9 c1.wav,classical\nclassical/caf\xe9 c2.wav,classical\n"
                b"metal/caf\xe9 m1.wav,metal\nmetal/caf\xe9 m2.wav,metal\n")
    return root, manifest


def _run_bytes(*args, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "genrevision.cli", *args], capture_output=True, timeout=timeout)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode("utf-8", "replace")
    return proc


def test_non_utf8_file_names_are_carried_through(tmp_path, three_songs, model_file):
    root, manifest = _latin1_dataset(tmp_path, three_songs)
    ds = load_dataset(os.fsdecode(manifest))
    assert all(os.path.exists(p) for p in ds.paths) and "\udce9" in ds.paths[0]
    assert load_audio(ds.paths[0]).size == 3 * SR
    assert sorted(load_dataset(os.fsdecode(root)).paths) == sorted(ds.paths)
    proc = _run_bytes("extract", manifest, "--cache", os.fsencode(tmp_path / "cache"), "--jobs", "0", "--quiet")
    assert proc.returncode == 0 and b"features for 4/4 tracks" in proc.stdout, proc.stderr
    song = os.path.join(root, b"classical", b"caf\xe9 c1.wav")
    missing = os.path.join(root, b"caf\xe9 gone.wav")
    for fmt in ("table", "json", "csv"):
        proc = _run_bytes("predict", song, missing, "--model", model_file, "--format", fmt, "--quiet")
        assert proc.returncode == 0, proc.stderr
        assert (song in proc.stdout) if fmt != "json" else (json.loads(proc.stdout)["predictions"][0]["path"]
                                                          == os.fsdecode(song))
        assert missing + b": no such file" in proc.stderr


def test_cli_marks_low_confidence_in_every_format(model_file, degraded):
    import csv

    paths = list(degraded.values())
    table = run_cli("predict", *paths, "--model", model_file, "--quiet")
    assert table.returncode == 0, table.stderr
    heads = {ln.split(": ", 1)[0]: ln for ln in table.stdout.splitlines() if not ln.startswith(" ")}
    assert not heads[degraded["clean"]].endswith("[low confidence]")
    assert heads[degraded["8-bit"]].endswith("[low confidence]") and heads[degraded["8 kHz"]].endswith("[low confidence]")
    assert "  warning: 8-bit audio; the model was trained on 16-bit or better" in table.stdout
    warned = [ln for ln in table.stderr.splitlines() if ln.startswith("genrevision: warning: ")]
    assert [ln.split(": ")[2] for ln in warned] == [degraded["8-bit"], degraded["8 kHz"]]
    js = json.loads(run_cli("predict", *paths, "--model", model_file, "--format", "json", "--quiet").stdout)
    flags = {p["path"]: (p["low_confidence"], len(p["warnings"])) for p in js["predictions"]}
    assert flags == {degraded["clean"]: (False, 0), degraded["8-bit"]: (True, 1), degraded["8 kHz"]: (True, 1)}
    rows = list(csv.DictReader(io.StringIO(run_cli("predict", *paths, "--model", model_file, "--format", "csv",
                                                   "--quiet").stdout)))
    assert {r["path"]: r["low_confidence"] for r in rows} == {degraded["clean"]: "0", degraded["8-bit"]: "1",
                                                             degraded["8 kHz"]: "1"}
    assert rows[1]["warnings"].startswith("8-bit audio")


def test_fuzz_through_the_cli(tmp_path, excerpt, model_file):
    rng = np.random.default_rng(7)
    cases = fuzz_cases(tmp_path, excerpt, rng)
    audio = [p for k, p in cases if k == "audio"][::4]
    proc = run_cli("predict", *audio, "--model", model_file, "--quiet", timeout=600)
    assert proc.returncode in (0, 1), proc.stderr
    predicted = {ln.split(": ", 1)[0] for ln in proc.stdout.splitlines() if not ln.startswith(" ")}
    failed = [ln for ln in proc.stderr.splitlines() if ln.startswith("  ")]
    assert sorted(predicted | {ln[2:].split(": ", 1)[0] for ln in failed}) == sorted(audio)
    assert all(ln.count(": ") >= 1 and len(ln.split(": ", 1)[1]) > 3 for ln in failed)
    manifests = [p for k, p in cases if k == "manifest"][::8]
    for m in manifests:
        proc = run_cli("extract", m, "--cache", tmp_path / "cache", "--jobs", "0", "--quiet", timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode in (0, 1, 2)
        if proc.returncode == 2:
            assert len(lines) == 1 and lines[0].startswith(f"genrevision: error: {m}: "), proc.stderr


def test_cli_predict_hard_inputs(model_file, hard_files):
    good, bad = hard_files
    proc = run_cli("predict", *good, *bad, "--model", model_file, "--quiet")
    assert proc.returncode == 0, proc.stderr
    for path, genre in good.items():
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(f"{path}: ")), None)
        assert line is not None, (path, proc.stdout, proc.stderr)
        assert line.split(": ", 1)[1].split()[0] == (genre or line.split(": ", 1)[1].split()[0])
        assert line.split(": ", 1)[1].split()[0] in GENRES
    err = proc.stderr.splitlines()
    assert f"{len(bad)} files failed:" in err
    for path, words in bad.items():
        hits = [ln for ln in err if ln.startswith(f"  {path}: ")]
        assert len(hits) == 1 and words in hits[0], (path, proc.stderr)


def test_cli_only_failures_exit_1(model_file, hard_files):
    _, bad = hard_files
    proc = run_cli("predict", *bad, "--model", model_file, "--quiet")
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"{len(bad)} files failed:" in proc.stderr


def test_cli_directory_without_audio(model_file, tmp_path):
    (tmp_path / "readme.txt").write_text("no audio here")
    proc = run_cli("predict", tmp_path, "--model", model_file)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"genrevision: error: {tmp_path}: no audio files found " \
                                  "(looked for .wav, .au, .flac, .ogg, .mp3, .aiff, .aif)"
