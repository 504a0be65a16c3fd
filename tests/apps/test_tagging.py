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

from testkit import SR, ctrl_c_reaches_it, genre_paths, real_excerpt, run_cli

mutagen = pytest.importorskip("mutagen")  # the `tag` extra: pip install 'genrevision[tag]'

from genrevision._utils.audiohash import audio_digest  # noqa: E402
from genrevision.apps.engine import PredictionEngine  # noqa: E402
from genrevision.model.genre_model import load_model  # noqa: E402
from genrevision.apps.tagging import choose_genres, load_mapping, read_genres, tag_files, undo  # noqa: E402

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


def test_ctrl_c_stops_cleanly_and_the_rerun_resumes(library, model_file, gtzan_root, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    # Ten more files (distinct audio: the engine predicts equal audio once). The engine keeps at
    # most 2 answers per worker ahead of the tags written, so when the first log line appears at
    # least 16 - 1 - 4 files still need a prediction: Ctrl-C lands mid-run, however slow the
    # parent was to write its first tag (with the 6 files alone it could finish first under load).
    for i, genre in enumerate(("blues", "country", "disco", "jazz", "pop") * 2):
        path = library / "more" / f"{genre}{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, real_excerpt(gtzan_root, f"{genre}/{genre}.0000{4 + i // 5}.wav", 10.0), SR)
    taggable = 6 + 10
    cache, log = tmp_path / "answers", tmp_path / "log.jsonl"
    cmd = [sys.executable, "-m", "genrevision.cli", "tag", str(library), "--model", str(model_file), "--segments",
           str(SEGMENTS), "--prediction-cache", str(cache), "--log", str(log), "--jobs", "2", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_reaches_it)
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
    assert 1 <= done < taggable
    again = run_cli(*cmd[3:], timeout=600)
    # The files tagged before Ctrl-C now have a genre (kept); the rest are tagged now.
    assert f"tagged {taggable - done}, unchanged 0, skipped {1 + done}, failed 2" in again.stdout, again.stdout
    assert len(log.read_text().splitlines()) == taggable


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


# ----------------------------------------------------------------------------- issue #22: the user's files are sacred

_CHILD = r"""
import sys
from genrevision.apps.tagging import tag_files
files, model, cache, log, labels = sys.argv[1].split("|"), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split(",")
print("ready", flush=True)
i = int(sys.argv[6])
while True:  # a genre 150 kB longer each time (mostly): more than the padding mutagen leaves (1 kB + 1 %), so a rewrite
    name = f"g{i} " + "x" * (150_000 * (i % 8 + 1))
    tag_files(files, model, mode="force", top=1, mapping={lab: name for lab in labels}, segments=1, cache=cache,
              log=log, jobs=1, progress=False)
    i += 1
"""


def _title(f):
    return str(f.tags["TIT2"].text[0]) if hasattr(f.tags, "getall") else f.tags["TITLE"][0]


def test_kill_9_while_writing_leaves_the_old_or_the_new_file(model_file, gtzan_root, tmp_path):
    """Big files without padding room, a child writing tags killed with SIGKILL at a random instant
    after one of its log lines (a file is being written):
    every file afterwards decodes to the same samples, has its title and either no genre (old) or one
    whole genre the child wrote (new); the leftovers of killed writes are removed; undo then
    restores every file."""
    import random
    import signal
    import subprocess
    import sys
    import time

    lib = tmp_path / "big"
    lib.mkdir()
    y, _ = sf.read(genre_paths(gtzan_root, "metal")[5], dtype="float32")
    y = np.stack([np.tile(y, 3), np.tile(y[::-1], 3)], axis=1)  # 90 s of stereo: 7.9 MB as WAV
    files = {"a.wav": dict(format="WAV"), "b.flac": dict(format="FLAC"), "c.mp3": dict(format="MP3")}
    for name, how in files.items():
        sf.write(lib / name, y, SR, **how)
        f = mutagen.File(lib / name)
        if f.tags is None:
            f.add_tags()
        if name.endswith(".flac"):
            f.tags["TITLE"] = [f"Title of {name}"]
        else:
            f.tags.add(mutagen.id3.TIT2(encoding=3, text=[f"Title of {name}"]))
        f.save(padding=lambda info: 0)  # no room: a longer tag moves the audio
    paths = [str(lib / n) for n in files]
    samples = {p: sf.read(p, dtype="float32")[0] for p in paths}
    digests = {p: audio_digest(p) for p in paths}
    pcache, log = tmp_path / "answers", tmp_path / "log.jsonl"
    labels = load_model(model_file).labels
    tag_files(paths, model_file, segments=1, cache=str(pcache), pretend=True, progress=False, jobs=1)  # fill the cache
    (tmp_path / "child.py").write_text(_CHILD)
    rng = random.Random(22)
    written_in_some_state, t_end = 0, time.monotonic() + 120
    trials = 0
    while trials < 20 and time.monotonic() < t_end:
        child = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), "|".join(paths), str(model_file),
                                  str(pcache), str(log), ",".join(map(str, labels)), str(trials * 1000)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready", child.stderr.read()
            # The log line is appended just before a file is written: kill at a random instant after it.
            size, skip = log.stat().st_size if log.exists() else 0, rng.randrange(3)
            while time.monotonic() < t_end and child.poll() is None:
                now = log.stat().st_size if log.exists() else 0
                if now > size:
                    size, skip = now, skip - 1
                    if skip < 0:
                        break
                time.sleep(0.001)
            time.sleep(rng.uniform(0, 0.3))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        trials += 1
        for p in paths:
            f = mutagen.File(p)
            assert _title(f) == f"Title of {os.path.basename(p)}", p
            genres = read_genres(p)
            assert genres == [] or (len(genres) == 1 and re.fullmatch(r"g\d+ x+", genres[0])), (p, genres[:1])
            if genres:
                i = int(genres[0].split()[0][1:])
                assert len(genres[0]) == len(f"g{i} ") + 150_000 * (i % 8 + 1), p  # whole, not cut
                written_in_some_state += 1
            assert audio_digest(p) == digests[p], p
            assert np.array_equal(sf.read(p, dtype="float32")[0], samples[p]), p
    assert trials == 20, f"only {trials} trials in 120 s"
    assert written_in_some_state > 0  # the kills did land after writes, not only before the first
    # Undo: the log may end in a line cut short by a kill (reported, skipped); every file loses its genre.
    decisions = undo(log)
    assert all(d.action != "failed" or "skipped" in d.reason for d in decisions), decisions
    for p in paths:
        assert read_genres(p) == [] and _title(mutagen.File(p)) == f"Title of {os.path.basename(p)}"
        assert np.array_equal(sf.read(p, dtype="float32")[0], samples[p]), p
    assert sorted(os.listdir(lib)) == sorted(files)  # no copy left behind


def _kw(pcache, log, **extra):
    return dict(segments=SEGMENTS, top=TOP, min_prob=MIN_PROB, cache=str(pcache), progress=False, log=log, jobs=1,
                **extra)


def test_undo_keeps_tags_added_since(library, model_file, pcache, tmp_path):
    """A file without a tag before the run: undo removes the genre only, a title added since stays;
    a forged line saying had_tags=false for a file with a title and an artist removes nothing else."""
    log = tmp_path / "log.jsonl"
    for name in ("metal.mp3", "sub/hiphop.aiff"):
        path = library / name
        assert mutagen.File(path).tags is None
        tag_files([path], model_file, **_kw(pcache, log))
        f = mutagen.File(path)
        f.tags.add(mutagen.id3.TIT2(encoding=3, text=["Added later"]))
        f.save()
    proc = run_cli("tag", "--undo", log)
    assert "restored 2, skipped 0, failed 0" in proc.stdout, proc.stdout + proc.stderr
    for name in ("metal.mp3", "sub/hiphop.aiff"):
        f = mutagen.File(library / name)
        assert f.tags["TIT2"].text == ["Added later"] and not f.tags.getall("TCON"), name
    # A forged line: "we created the tag" for a file whose tag is the user's.
    path = library / "tagged.mp3"
    forged = {"run": "x", "file": str(path), "written": ["Jazz"],
              "old": {"kind": "id3", "had_tags": False, "padding": None, "version": None, "frames": []}}
    (tmp_path / "forged.jsonl").write_text(json.dumps(forged) + "\n")
    (d,) = undo(tmp_path / "forged.jsonl")
    assert d.action == "restored"
    assert mutagen.File(path).tags["TIT2"].text == ["Kind of Blue"] and read_genres(path) == []


def test_malformed_id3_frame_is_refused_not_dropped(library, model_file, pcache, tmp_path):
    path = library / "tagged.mp3"
    data = bytearray(path.read_bytes())
    i = data.index(b"TIT2")
    data[i + 10] = 7  # the text encoding byte: 0-3 are valid; mutagen drops this frame when it saves
    path.write_bytes(bytes(data))
    before = _sha(path)
    proc = _tag(path, model_file, pcache, "--force", "--log", tmp_path / "log.jsonl")
    assert proc.returncode == 1
    (line,) = [x for x in proc.stderr.splitlines() if "tagged.mp3" in x]
    assert "frame(s) mutagen cannot keep as they are (TIT2: malformed or duplicated); not tagged" in line
    assert _sha(path) == before  # byte for byte: nothing written
    # Undo refuses it too (a forged line naming it).
    forged = {"run": "x", "file": str(path), "written": ["Jazz"],
              "old": {"kind": "id3", "had_tags": True, "padding": None, "version": [2, 4, 0], "frames": []}}
    (tmp_path / "forged.jsonl").write_text(json.dumps(forged) + "\n")
    (d,) = undo(tmp_path / "forged.jsonl")
    assert d.action == "failed" and "TIT2" in d.reason and _sha(path) == before


def test_a_file_replaced_during_a_run_gets_no_other_files_genre(library, model_file, pcache, tmp_path, monkeypatch):
    """Replaced while predicted: the answer is not cached under the old digest; replaced between
    the answer and the write: not tagged. The rerun tags it with its own answer."""
    path, other = library / "metal.mp3", library / "classical.wav"
    model = load_model(model_file)
    real_predict = type(model).predict

    class Swapping:
        labels = model.labels

        def predict(self, p, **kw):
            out = real_predict(model, p, **kw)
            shutil.copyfile(library_src_copy, p)  # another song arrives under this name mid-prediction
            return out

    library_src_copy = tmp_path / "other.mp3"
    sf.write(library_src_copy, sf.read(other, dtype="float32")[0], SR, format="MP3")
    cache = tmp_path / "answers"
    engine = PredictionEngine(model_file, segments=SEGMENTS, cache=cache, progress=False, jobs=1, model=Swapping())
    (out,) = list(engine.run([path]))
    assert not out.ok and out.reason == "its audio changed while it was being predicted; not cached, run again"
    assert not [n for _, _, ns in os.walk(cache) for n in ns if n.endswith(".json")]  # nothing cached

    # Between the answer and the write: the engine yields metal.mp3's answer, then the file is replaced.
    shutil.copyfile(library_src_copy, tmp_path / "keep.mp3")
    sf.write(path, sf.read(library / "sub/hiphop.aiff", dtype="float32")[0], SR, format="MP3")
    real_run = PredictionEngine.run

    def run_then_replace(self, paths):
        for o in real_run(self, paths):
            shutil.copyfile(tmp_path / "keep.mp3", o.path)
            yield o

    monkeypatch.setattr(PredictionEngine, "run", run_then_replace)
    res = tag_files([path], model_file, mode="force", **_kw(pcache, tmp_path / "log.jsonl"))
    (d,) = res.decisions
    assert d.action == "failed" and "audio changed since it was predicted" in d.reason
    assert read_genres(path) == [] and _sha(path) == _sha(tmp_path / "keep.mp3")


def test_a_damaged_log_line_blocks_no_undo(library, model_file, pcache, tmp_path):
    log = tmp_path / "log.jsonl"
    a, b = library / "metal.mp3", library / "hiphop.ogg"
    tag_files([a], model_file, **_kw(pcache, log))
    with open(log, "a") as fh:
        fh.write("garbage that is not JSON\n")
        fh.write(json.dumps({"run": "y", "file": str(a), "written": ["x"], "old": {"kind": "id3", "had_tags": True}})
                 + "\n")
        fh.write('{"run": "cut short by a crash", "file": ')  # no newline: the next run must not append onto it
    res = tag_files([b], model_file, **_kw(pcache, log))
    assert res.decisions[0].action == "tagged"
    proc = run_cli("tag", "--undo", log, "--run", "last")
    assert proc.returncode == 1, proc.stderr
    assert f"{b}: " in proc.stdout and read_genres(b) == []
    assert "restored 1, skipped 0, failed 3" in proc.stdout
    err = proc.stderr
    assert f"{log}:2: line 2 skipped: not JSON" in err and f"{log}:3: line 3 skipped: a id3 record with missing" in err
    assert f"{log}:4: line 4 skipped: not JSON" in err and "KeyError" not in err
    proc = run_cli("tag", "--undo", log)  # the whole log: the first run's file too
    assert read_genres(a) == [] and "restored 1, skipped 1, failed 3" in proc.stdout, proc.stdout


def test_an_unwritable_log_stops_the_run_before_predicting(library, model_file, tmp_path):
    (tmp_path / "file").write_text("a file, not a folder")
    t = __import__("time").monotonic()
    proc = run_cli("tag", library, "--model", model_file, "--log", tmp_path / "file" / "log.jsonl",
                   "--prediction-cache", tmp_path / "fresh", "--quiet")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"genrevision: error: {tmp_path / 'file' / 'log.jsonl'}: cannot write the undo log (Not a directory); nothing tagged"]
    assert __import__("time").monotonic() - t < 20 and not (tmp_path / "fresh").exists()  # nothing predicted
    # A full disk (/dev/full takes the open, fails the write): the first file fails, the run stops there.
    before = _snapshot(library)
    res = tag_files([library / "metal.mp3", library / "hiphop.ogg"], model_file, segments=SEGMENTS,
                    cache=None, progress=False, log="/dev/full", jobs=1)
    assert [d.action for d in res.decisions] == ["failed", "failed"]
    assert all(d.reason == "not tagged: cannot write the undo log /dev/full (No space left on device)"
               for d in res.decisions) and res.computed == 1  # stopped after the first answer
    assert _snapshot(library) == before


def test_hostile_names_and_values_are_printed_safely(library, model_file, pcache, tmp_path):
    """A file name with an ANSI escape and a newline, and a 1 MB genre: one escaped line each."""
    bad = library / "evil\x1b[31mred\nline.mp3"
    shutil.copyfile(library / "tagged.mp3", bad)
    f = mutagen.File(bad)
    f.tags.setall("TCON", [mutagen.id3.TCON(encoding=3, text=["G" * 1_000_000])])
    f.save()
    proc = _tag(bad, model_file, pcache, "--force", "--pretend")
    assert "\x1b" not in proc.stdout + proc.stderr
    (line,) = [x for x in proc.stdout.splitlines() if "evil" in x]
    assert "evil\\x1b[31mred\\nline.mp3: " + "G" * 80 + "… (1000000 characters) → " in line and len(line) < 400


def test_damaged_tags_give_a_reason_not_mutagen_internals(library, model_file, pcache, tmp_path):
    """A FLAC cut short in its metadata: mutagen's reason, one line; never a bare "(error)"."""
    path = library / "cut.flac"
    path.write_bytes((library / "classical.flac").read_bytes()[:60])
    proc = _tag(path, model_file, pcache, "--log", tmp_path / "log.jsonl")
    assert proc.returncode == 1
    (line,) = [x for x in proc.stderr.splitlines() if "cut.flac" in x]
    assert line == f"  {path}: cannot read tags (file said 32 bytes, read 10 bytes)", line


def test_symlink_out_of_the_folder_needs_a_flag(library, model_file, pcache, tmp_path):
    """A link in a walked folder that leads out of it is listed, not tagged, unless --follow-symlinks;
    a link within the folder is tagged; a tagged link stays a link (its target is rewritten)."""
    d, outside = tmp_path / "links", tmp_path / "elsewhere"
    d.mkdir()
    outside.mkdir()
    shutil.copyfile(library / "metal.mp3", outside / "metal.mp3")
    shutil.copyfile(library / "classical.wav", d / "real.wav")
    os.symlink(outside / "metal.mp3", d / "link.mp3")
    os.symlink("real.wav", d / "inside.wav")
    before = _sha(outside / "metal.mp3")
    proc = _tag(d, model_file, pcache, "--log", tmp_path / "log.jsonl")
    assert f"  {d / 'link.mp3'}: a symbolic link to {outside / 'metal.mp3'}, outside {d}; not followed " \
           "(--follow-symlinks tags its target)" in proc.stderr.splitlines()
    assert _sha(outside / "metal.mp3") == before and read_genres(d / "real.wav")
    assert os.path.islink(d / "inside.wav")
    proc = _tag(d, model_file, pcache, "--log", tmp_path / "log.jsonl", "--follow-symlinks")
    assert proc.returncode == 0, proc.stderr
    assert read_genres(outside / "metal.mp3") and os.path.islink(d / "link.mp3")
