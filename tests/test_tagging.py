"""``genrevision tag``: genres written into real files' tags, safely, undoably, cached.

The library is made here from 10 s GTZAN excerpts (tracks the test model was
not trained on), encoded with libsndfile to MP3, FLAC, Ogg Vorbis, Ogg Opus,
WAV and AIFF; MP4 tags are checked on an AAC file encoded with PyAV (this
project decodes no AAC, so an .m4a cannot be predicted). Beside them: a file
that is not audio, a read-only file and a file that already has a genre.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import stat

import numpy as np
import pytest
import soundfile as sf
import soxr

from conftest import run_cli
from test_model import SR, genre_paths

mutagen = pytest.importorskip("mutagen")  # the `tag` extra: pip install 'genrevision[tag]'

from genrevision.audiohash import audio_digest  # noqa: E402
from genrevision.engine import PredictionEngine  # noqa: E402
from genrevision.model import load_model  # noqa: E402
from genrevision.tagging import choose_genres, load_mapping, read_genres, tag_files, undo  # noqa: E402

SEGMENTS = 3
TOP, MIN_PROB = 2, 0.2

# name -> (genre of the excerpt, track index (the model trained on 0-3), how to write it)
FILES = {
    "metal.mp3": ("metal", 6, dict(format="MP3")),
    "classical.flac": ("classical", 6, dict(format="FLAC")),
    "hiphop.ogg": ("hiphop", 6, dict(format="OGG", subtype="VORBIS")),
    "metal.opus": ("metal", 7, dict(format="OGG", subtype="OPUS")),
    "classical.wav": ("classical", 7, dict(format="WAV")),
    "sub/hiphop.aiff": ("hiphop", 7, dict(format="AIFF")),
    "tagged.mp3": ("classical", 8, dict(format="MP3")),  # already has a genre
    "locked.flac": ("metal", 8, dict(format="FLAC")),  # read-only
}


def _sha(path) -> str:
    return hashlib.sha1(open(path, "rb").read()).hexdigest()


def _snapshot(folder) -> dict:
    return {p: _sha(os.path.join(folder, p)) for p in _files(folder)}


def _files(folder) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, n), folder) for d, _, ns in os.walk(folder) for n in ns)


@pytest.fixture(scope="module")
def library_src(gtzan_root, tmp_path_factory):
    """The library as made (copied for each test that writes)."""
    d = tmp_path_factory.mktemp("library")
    for name, (genre, idx, how) in FILES.items():
        path = d / name
        path.parent.mkdir(parents=True, exist_ok=True)
        y, _ = sf.read(genre_paths(gtzan_root, genre)[idx], frames=10 * SR, dtype="float32")
        sr = SR
        if how.get("subtype") == "OPUS":  # Opus runs at 48 kHz
            y, sr = soxr.resample(y, SR, 48000).astype(np.float32), 48000
        sf.write(path, y, sr, **how)
    # Real libraries carry tags already (a FLAC from an encoder has padding too): a title on most.
    for name in ("classical.flac", "hiphop.ogg", "locked.flac", "classical.wav"):
        f = mutagen.File(d / name)
        if f.tags is None:
            f.add_tags()
        if hasattr(f.tags, "add"):
            f.tags.add(mutagen.id3.TIT2(encoding=3, text=[f"Title of {name}"]))
        else:
            f.tags["TITLE"] = [f"Title of {name}"]
        f.save()
    f = mutagen.File(d / "tagged.mp3")
    f.add_tags()
    f.tags.add(mutagen.id3.TIT2(encoding=3, text=["Kind of Blue"]))
    f.tags.add(mutagen.id3.TCON(encoding=3, text=["Jazz"]))
    f.save()
    (d / "broken.mp3").write_bytes(np.random.default_rng(0).integers(0, 256, 30000, dtype=np.uint8).tobytes())
    (d / "notes.txt").write_text("not audio: the folder walk leaves it out")
    return d


@pytest.fixture
def library(library_src, tmp_path):
    d = tmp_path / "lib"
    shutil.copytree(library_src, d)
    os.chmod(d / "locked.flac", stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    return d


@pytest.fixture(scope="module")
def pcache(tmp_path_factory):
    """One prediction cache for the module: each excerpt is predicted once."""
    return tmp_path_factory.mktemp("predictions")


@pytest.fixture(scope="module")
def expected(model_file, library_src):
    """The genres each file should get: the model's own prediction (in this process, as
    predict() gives it), through choose_genres."""
    model = load_model(model_file)
    out = {}
    for name in FILES:
        pred = model.predict(library_src / name, segments=SEGMENTS)
        out[name] = pred
    return out


def _tag(library, model_file, pcache, *extra):
    return run_cli("tag", library, "--model", model_file, "--segments", SEGMENTS, "--top", TOP,
                   "--min-prob", MIN_PROB, "--prediction-cache", pcache, "--quiet", *extra)


def test_pretend_changes_no_byte(library, model_file, pcache, expected, tmp_path):
    before = _snapshot(library)
    proc = _tag(library, model_file, pcache, "--pretend", "--log", tmp_path / "log.jsonl")
    assert proc.returncode == 1, proc.stderr  # one file failed (broken.mp3); the others went on
    assert _snapshot(library) == before
    assert not (tmp_path / "log.jsonl").exists()  # a dry run writes no log either
    for name in ("metal.mp3", "classical.flac", "hiphop.ogg", "metal.opus", "classical.wav", "sub/hiphop.aiff",
                 "locked.flac"):  # read-only is no obstacle to a dry run
        new = [n for n, _ in choose_genres(expected[name].probabilities, top=TOP, min_prob=MIN_PROB)]
        assert f"{library / name}: (none) → {', '.join(new)}" in proc.stdout
    assert "would tag 7 (pretend: nothing written)" in proc.stdout and "skipped 1" in proc.stdout
    assert f"{library / 'broken.mp3'}: cannot read tags" in proc.stderr


def test_tag_run_undo_and_rerun(library, model_file, pcache, expected, tmp_path):
    log, report = tmp_path / "tags.jsonl", tmp_path / "report"
    before = _snapshot(library)
    audio = {n: audio_digest(library / n) for n in FILES}
    samples = {n: sf.read(library / n, dtype="float32")[0] for n in FILES}
    proc = _tag(library, model_file, pcache, "--log", log, "--report", report)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    # Every writable, readable file without a genre now has the model's top genres, in order.
    for name, pred in expected.items():
        if name in ("tagged.mp3", "locked.flac"):
            continue
        want = [n for n, _ in choose_genres(pred.probabilities, top=TOP, min_prob=MIN_PROB)]
        assert read_genres(library / name) == want, name
        f = mutagen.File(library / name)
        if name.endswith((".mp3", ".wav", ".aiff")):
            assert f.tags.version[:2] == (2, 4) and f.tags.getall("TCON")[0].text == want  # one value each
        else:
            assert f.tags["GENRE"] == want  # one Vorbis comment per genre
    assert read_genres(library / "tagged.mp3") == ["Jazz"]  # kept: it had a genre
    assert _sha(library / "locked.flac") == before["locked.flac"]
    assert f"{library / 'locked.flac'}: read-only file" in proc.stderr
    assert f"{library / 'broken.mp3'}: cannot read tags" in proc.stderr
    assert "tagged 6, unchanged 0, skipped 1, failed 2 (of 9 files" in proc.stdout
    # Only tag regions changed: the audio data (and so the decoded samples) are the same.
    for name in FILES:
        assert audio_digest(library / name) == audio[name], name
        assert np.array_equal(sf.read(library / name, dtype="float32")[0], samples[name]), name
    # The log has what undo needs, one line per written file.
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(os.path.relpath(r["file"], library) for r in records) == sorted(
        n for n in FILES if n not in ("tagged.mp3", "locked.flac"))
    assert {r["model_sha256"] for r in records} == {hashlib.sha256(open(model_file, "rb").read()).hexdigest()}
    # The report: the chart, the failures, and a CSV row per decision.
    page = (report / "report.html").read_text()
    assert "<svg" in page and "broken.mp3" in page and "locked.flac" in page
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page  # nothing fetched
    rows = {os.path.relpath(r["path"], library): r for r in csv.DictReader(open(report / "decisions.csv"))}
    assert rows["tagged.mp3"]["action"] == "skipped" and rows["broken.mp3"]["action"] == "failed"
    assert rows["metal.mp3"]["action"] == "tagged"
    assert rows["metal.mp3"]["new_genres"] == "; ".join(read_genres(library / "metal.mp3"))

    # A rerun over everything (--force --pretend: every file needs an answer) computes only the two
    # files the real run did not predict (kept: it had a genre; read-only), then nothing.
    proc = _tag(library, model_file, pcache, "--force", "--pretend")
    assert "predicted" in proc.stdout and "from the cache" in proc.stdout, proc.stdout
    proc = _tag(library, model_file, pcache, "--force", "--pretend")
    assert "0 predicted, 8 from the cache" in proc.stdout, proc.stdout
    # One new song: one computed.
    y, _ = sf.read(library / "classical.wav", dtype="float32")
    sf.write(library / "new.flac", y[: 8 * SR] * 0.5, SR)
    proc = _tag(library, model_file, pcache, "--force", "--pretend")
    assert "1 predicted, 8 from the cache" in proc.stdout, proc.stdout
    os.unlink(library / "new.flac")

    # Undo: every file back, byte for byte (tags region included), the log left as it was.
    proc = run_cli("tag", "--undo", log)
    assert proc.returncode == 0, proc.stderr
    assert "restored 6, skipped 0, failed 0" in proc.stdout
    assert _snapshot(library) == before
    # A second undo finds nothing to do.
    proc = run_cli("tag", "--undo", log)
    assert "restored 0, skipped 6" in proc.stdout and _snapshot(library) == before


def test_keep_force_merge(library, model_file, pcache, expected, tmp_path):
    path = library / "tagged.mp3"
    ours = [n for n, _ in choose_genres(expected["tagged.mp3"].probabilities, top=TOP, min_prob=MIN_PROB)]
    kw = dict(segments=SEGMENTS, top=TOP, min_prob=MIN_PROB, cache=str(pcache), progress=False,
              log=tmp_path / "log.jsonl", jobs=1)
    res = tag_files([path], model_file, **kw)
    assert [d.action for d in res.decisions] == ["skipped"] and read_genres(path) == ["Jazz"]
    before = _sha(path)
    res = tag_files([path], model_file, mode="force", **kw)
    assert [d.action for d in res.decisions] == ["tagged"] and read_genres(path) == ours
    assert mutagen.File(path).tags["TIT2"].text == ["Kind of Blue"]  # other tags untouched
    undo(tmp_path / "log.jsonl")
    assert _sha(path) == before
    res = tag_files([path], model_file, mode="merge", **kw)
    assert read_genres(path) == ["Jazz"] + ours
    assert res.decisions[0].old == ["Jazz"] and res.decisions[0].cached


def test_undo_leaves_a_file_changed_since_alone(library, model_file, pcache, tmp_path):
    path = library / "metal.mp3"
    log = tmp_path / "log.jsonl"
    tag_files([path], model_file, segments=SEGMENTS, cache=str(pcache), progress=False, log=log, jobs=1)
    f = mutagen.File(path)
    f.tags.setall("TCON", [mutagen.id3.TCON(encoding=3, text=["Doom"])])  # the user edits it afterwards
    f.save()
    (d,) = undo(log)
    assert d.action == "skipped" and "changed since" in d.reason and read_genres(path) == ["Doom"]
    (d,) = undo(log, force=True)
    assert d.action == "restored" and read_genres(path) == [] and mutagen.File(path).tags is None


def test_map_several_labels_to_one_name(library, model_file, pcache, expected, tmp_path):
    # choose_genres on a known answer: mapped labels add up, the best is kept, K caps, P filters.
    probs = {"metal": 0.3, "hiphop": 0.25, "classical": 0.45}
    heavy = {"metal": "Heavy", "hiphop": "Heavy"}
    assert choose_genres(probs, top=2, min_prob=0.2, mapping=heavy) == [("Heavy", 0.55), ("classical", 0.45)]
    assert choose_genres(probs, top=1, min_prob=0.0) == [("classical", 0.45)]
    assert choose_genres(probs, top=3, min_prob=0.28) == [("classical", 0.45), ("metal", 0.3)]
    assert choose_genres(probs, top=3, min_prob=0.9) == [("classical", 0.45)]  # at least the best one
    (tmp_path / "map.json").write_text(json.dumps({"metal": "Heavy", "hiphop": "Heavy", "classical": "Classical"}))
    (tmp_path / "map.csv").write_text("label,name\nmetal,Heavy\nhiphop,Heavy\nclassical,Classical\n")
    assert load_mapping(tmp_path / "map.json") == load_mapping(tmp_path / "map.csv")
    proc = _tag(library, model_file, pcache, "--map", tmp_path / "map.csv", "--top", 3, "--min-prob", 0.0,
                "--log", tmp_path / "log.jsonl")
    for name in ("metal.mp3", "hiphop.ogg", "classical.flac"):
        p = expected[name].probabilities
        want = sorted([("Heavy", p["metal"] + p["hiphop"]), ("Classical", p["classical"])], key=lambda x: -x[1])
        assert read_genres(library / name) == [n for n, _ in want], (name, proc.stdout)
    (tmp_path / "bad.json").write_text(json.dumps({"metl": "Heavy"}))
    proc = _tag(library, model_file, pcache, "--map", tmp_path / "bad.json")
    assert proc.returncode == 2 and "the model has no label 'metl'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_id3v23_needs_a_separator(library, model_file, pcache, tmp_path):
    proc = _tag(library / "metal.mp3", model_file, pcache, "--id3v23")
    assert proc.returncode == 2 and "separator" in proc.stderr
    proc = _tag(library / "metal.mp3", model_file, pcache, "--id3v23", "--separator", "; ", "--top", 3,
                "--min-prob", 0.0, "--log", tmp_path / "log.jsonl")
    assert proc.returncode == 0, proc.stderr
    f = mutagen.File(library / "metal.mp3")
    assert f.tags.version[:2] == (2, 3)
    (text,) = f.tags.getall("TCON")[0].text
    assert text.count("; ") == 2  # three genres in one ID3v2.3 value


def test_m4a_predicted_tagged_and_undone(model_file, gtzan_root, pcache, tmp_path):
    """AAC in .m4a (encoded with PyAV; decoded with PyAV as libsndfile reads no AAC): predicted,
    ©gen written and read back, the audio data unchanged, undone byte for byte."""
    av = pytest.importorskip("av")
    path = tmp_path / "song.m4a"
    y, _ = sf.read(genre_paths(gtzan_root, "metal")[9], frames=10 * SR, dtype="float32")
    y = soxr.resample(y, SR, 44100).astype(np.float32)
    with av.open(str(path), "w", format="mp4") as out:
        st = out.add_stream("aac", rate=44100)
        st.layout = "mono"
        for i in range(0, len(y), 1024):
            frame = av.AudioFrame.from_ndarray(y[None, i:i + 1024], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    f = mutagen.File(path)
    f.tags["\xa9nam"] = ["A title"]
    f.save()
    before, digest = _sha(path), audio_digest(path)
    pred = load_model(model_file).predict(path, segments=SEGMENTS)
    want = [n for n, _ in choose_genres(pred.probabilities, top=TOP, min_prob=MIN_PROB)]
    res = tag_files([path], model_file, segments=SEGMENTS, top=TOP, min_prob=MIN_PROB, cache=str(pcache),
                    progress=False, log=tmp_path / "log.jsonl", jobs=1)
    assert [d.action for d in res.decisions] == ["tagged"], res.decisions
    assert mutagen.File(path).tags["\xa9gen"] == want and read_genres(path) == want
    assert audio_digest(path) == digest and _sha(path) != before
    (d,) = undo(tmp_path / "log.jsonl")
    assert d.action == "restored" and _sha(path) == before


def test_audio_digest_ignores_tags_not_audio(library_src, tmp_path):
    for name in ("metal.mp3", "classical.flac", "hiphop.ogg", "classical.wav", "sub/hiphop.aiff"):
        src = library_src / name
        digest = audio_digest(src)
        data = bytearray(open(src, "rb").read())
        data[len(data) // 2] ^= 0xFF  # one byte in the middle: audio in a 10 s file of any format
        flipped = tmp_path / os.path.basename(name)
        flipped.write_bytes(bytes(data))
        assert audio_digest(flipped) != digest, name


def test_bad_cache_entry_is_recomputed(library_src, model_file, tmp_path):
    path = library_src / "classical.wav"
    engine = PredictionEngine(model_file, segments=SEGMENTS, cache=tmp_path, progress=False, jobs=1)
    (first,) = list(engine.run([path]))
    assert engine.stats.computed == 1
    (entry,) = [os.path.join(d, n) for d, _, ns in os.walk(tmp_path) for n in ns if n.endswith(".json")]
    doc = json.load(open(entry))
    doc["prediction"]["probabilities"] = {k: 0.9 for k in doc["prediction"]["probabilities"]}
    json.dump(doc, open(entry, "w"))
    with pytest.warns(UserWarning, match="bad prediction cache entry"):
        (again,) = list(engine.run([path]))
    assert engine.stats.computed == 1 and engine.stats.cached == 0
    assert again.prediction.probabilities == pytest.approx(first.prediction.probabilities)
    (hit,) = list(engine.run([path]))
    assert engine.stats.cached == 1 and hit.cached


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(library, model_file, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    cache, log = tmp_path / "answers", tmp_path / "log.jsonl"
    cmd = [sys.executable, "-m", "genrevision.cli", "tag", str(library), "--model", str(model_file), "--segments",
           str(SEGMENTS), "--prediction-cache", str(cache), "--log", str(log), "--jobs", "2", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        end = time.monotonic() + 300
        while time.monotonic() < end and not (log.exists() and log.read_text().strip()):
            time.sleep(0.2)
        assert log.exists(), "no file tagged in 300 s"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("genrevision: error: interrupted")
    done = len(log.read_text().splitlines())
    assert 1 <= done < 6
    again = run_cli(*cmd[3:], timeout=600)
    # The files tagged before Ctrl-C now have a genre (kept); the rest are tagged now.
    assert f"tagged {6 - done}, unchanged 0, skipped {1 + done}, failed 2" in again.stdout, again.stdout
    assert len(log.read_text().splitlines()) == 6


def test_usage_errors_are_one_line(model_file, tmp_path):
    (tmp_path / "empty").mkdir()
    for args, says in (((tmp_path / "empty", "--model", model_file), "empty: no audio files found"),
                       (("--undo", tmp_path / "nolog.jsonl"), "nolog.jsonl: no such tag log"),
                       ((tmp_path / "empty", "--model", model_file, "--segments", "0"), "segments must be 'all' or"),
                       ((tmp_path / "empty", "--model", model_file, "--top", "0"), "top must be an integer >= 1"),
                       ((tmp_path / "empty", "--model", tmp_path / "no.model"), "no.model: no such model file")):
        proc = run_cli("tag", *args, "--quiet")
        assert proc.returncode == 2 and says in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_undo_one_run(library, model_file, pcache, expected, tmp_path):
    path, log = library / "hiphop.ogg", tmp_path / "log.jsonl"
    kw = dict(segments=SEGMENTS, cache=str(pcache), progress=False, log=log, jobs=1)
    first = tag_files([path], model_file, top=1, **kw)
    after_first = _sha(path)
    second = tag_files([path], model_file, mode="force", top=3, min_prob=0.0, **kw)
    assert first.run != second.run and len(read_genres(path)) == 3
    (d,) = undo(log, run="last")
    assert d.action == "restored" and _sha(path) == after_first
    with pytest.raises(ValueError, match="no run 'nope'"):
        undo(log, run="nope")
