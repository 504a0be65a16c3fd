"""Learning from a library's own genre tags (genrevision.apps.library, issue #23).

The library is built here from shared GTZAN tracks: 7 s excerpts encoded to MP3, FLAC, Ogg
Vorbis and AAC/M4A, genre tags written with mutagen in several spellings and forms (ID3 text,
ID3v1 numeric references, several values, Vorbis GENRE, MP4 ©gen and numeric gnre), artists
from the shared manifests, some files untagged, three deliberately mislabelled, and speech
(espeak-ng) and noise that no genre fits.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import shutil
import struct
import subprocess

import mutagen
import mutagen.id3
import mutagen.mp4
import numpy as np
import pytest
import soundfile as sf
import soxr

from testkit import SR, run_cli

from genrevision._utils.audiohash import audio_digest
from genrevision.apps.library import (LibraryReport, abstention, audit_library, genre_key, read_library, split_genres,
                                      train_library, write_audit, write_report)
from genrevision.model.genre_model import load_model
from genrevision.apps.tagging import read_genres, tag_files, undo

SHARED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared", "data")
if not os.path.isdir(SHARED):
    SHARED = "/work/shared/data"
FORMATS = ("mp3", "flac", "ogg", "m4a")
SECONDS = 10
PRECISION = 0.75


def _artists() -> dict:
    out = {}
    for sub, name in (("gtzan-mini", "artists.csv"), ("gtzan-more", "manifest.csv")):
        with open(os.path.join(SHARED, sub, name), newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                out[os.path.basename(row["path"]).rsplit(".", 1)[0]] = (sub, row["path"], row["group"])
    return out


# (track, genre tag as written or None, the label it should read as or None). A tag is a str (one
# value), a list (several values), ("id3v1", n) (an ID3 "(n)" reference) or ("gnre", n) (MP4 numeric atom).
TRACKS = [
    # Classical: Vivaldi, Haydn, Schubert, Ravel, JS Bach.
    ("classical.00089", "Classical", "Classical"), ("classical.00090", ("id3v1", 32), "Classical"),
    ("classical.00068", "classical", "Classical"), ("classical.00069", ("gnre", 33), "Classical"),
    ("classical.00063", ["Classical", "Orchestral"], "Classical"), ("classical.00064", " CLASSICAL ", "Classical"),
    ("classical.00010", "Baroque", "Classical"),     # mapped: Baroque → Classical
    ("classical.00034", "Classical; Romantic", "Classical"),
    # Jazz: Coleman Hawkins, Dexter Gordon, Tony Williams.
    ("jazz.00033", "Jazz", "Jazz"), ("jazz.00034", "jazz", "Jazz"), ("jazz.00035", ("id3v1", 8), "Jazz"),
    ("jazz.00073", ("gnre", 9), "Jazz"), ("jazz.00074", "Jazz/Swing", "Jazz"), ("jazz.00075", "JAZZ", "Jazz"),
    ("jazz.00083", "Jazz", "Jazz"), ("jazz.00086", "jazz", "Jazz"),
    # Metal: Falconer, Gamma Ray, Iron Maiden, Anthrax, Dark Tranquillity, an unknown artist (no artist tag), Coroner.
    ("metal.00000", "Metal", "Metal"), ("metal.00001", ("id3v1", 9), "Metal"), ("metal.00002", "metal", "Metal"),
    ("metal.00003", ("gnre", 10), "Metal"), ("metal.00004", "Metal; Melodic Death", "Metal"),
    ("metal.00005", "Heavy Metal", "Metal"),         # mapped: Heavy Metal → Metal
    ("metal.00006", "METAL", "Metal"), ("metal.00007", "metal", "Metal"),
    # Hip-hop in five spellings and a numeric reference: merged.
    ("hiphop.00000", "Hip-Hop", "Hip-Hop"), ("hiphop.00001", "hip hop", "Hip-Hop"), ("hiphop.00002", "HipHop", "Hip-Hop"),
    ("hiphop.00003", "Hip Hop", "Hip-Hop"), ("hiphop.00004", "Hip-Hop", "Hip-Hop"), ("hiphop.00005", "hip-hop", "Hip-Hop"),
    ("hiphop.00007", "Hip-Hop", "Hip-Hop"), ("hiphop.00006", ("id3v1", 7), "Hip-Hop"),
    # Planted mislabels: the tag is wrong, and is what the library teaches.
    ("classical.00070", "Metal", "Metal"), ("hiphop.00009", "Classical", "Classical"), ("metal.00009", "Jazz", "Jazz"),
    # Dropped: one Polka (too few files), one Audiobook (mapped to nothing).
    ("country.00000", "Polka", None), ("disco.00000", "Audiobook", None),
    # Untagged music: the ones to tag.
    ("classical.00038", None, None), ("jazz.00076", None, None), ("metal.00008", None, None), ("hiphop.00008", None, None),
]
#: Vivaldi and Schubert share an album (a compilation): one group.
ALBUMS = {"classical.00089": "Strings", "classical.00063": "Strings"}
MISLABELLED = {"classical.00070", "hiphop.00009", "metal.00009"}
MAPPING = {"Baroque": "Classical", "Heavy Metal": "Metal", "Audiobook": ""}
NOT_MUSIC = ("speech-1.mp3", "speech-2.flac", "noise.ogg", "tones.mp3")


def _encode(path, y, fmt):
    if fmt == "m4a":
        import av

        y = soxr.resample(y, SR, 44100).astype(np.float32)
        with av.open(str(path), "w", format="mp4") as out:
            st = out.add_stream("aac", rate=44100)
            st.layout = "mono"
            for i in range(0, len(y), 1024):
                frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(y[None, i:i + 1024]), format="fltp",
                                                   layout="mono")
                frame.sample_rate, frame.pts = 44100, i
                for pkt in st.encode(frame):
                    out.mux(pkt)
            for pkt in st.encode(None):
                out.mux(pkt)
    else:
        sf.write(path, y, SR, format={"mp3": "MP3", "flac": "FLAC", "ogg": "OGG"}[fmt],
                 subtype={"mp3": "MPEG_LAYER_III", "flac": "PCM_16", "ogg": "VORBIS"}[fmt])


def _tag(path, genre, artist="", album=""):
    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    kind = "mp4" if str(path).endswith(".m4a") else "id3" if str(path).endswith(".mp3") else "vorbis"
    if kind == "id3":
        if artist:
            f.tags.add(mutagen.id3.TPE1(encoding=3, text=[artist]))
        if album:
            f.tags.add(mutagen.id3.TALB(encoding=3, text=[album]))
        if genre is not None:
            text = [f"({genre[1]})"] if isinstance(genre, tuple) else genre if isinstance(genre, list) else [genre]
            f.tags.add(mutagen.id3.TCON(encoding=3, text=text))
    elif kind == "vorbis":
        if artist:
            f.tags["ARTIST"] = [artist]
        if album:
            f.tags["ALBUM"] = [album]
        if genre is not None:
            f.tags["GENRE"] = genre if isinstance(genre, list) else [genre]
    else:
        if artist:
            f.tags["\xa9ART"] = [artist]
        if album:
            f.tags["\xa9alb"] = [album]
        if genre is not None and not isinstance(genre, tuple):
            f.tags["\xa9gen"] = genre if isinstance(genre, list) else [genre]
    f.save()
    if kind == "mp4" and isinstance(genre, tuple):
        _write_gnre(mutagen.File(path), genre[1])


def _write_gnre(f, number):
    """An MP4 numeric genre atom as iTunes writes it (``gnre``: a big-endian ID3v1 index + 1);
    mutagen reads it but has no writer for it, so its renderer is lent for this one save."""
    from mutagen.mp4 import MP4Tags

    atoms = MP4Tags._MP4Tags__atoms
    old = atoms[b"gnre"]
    atoms[b"gnre"] = (old[0], lambda self, key, value: self._MP4Tags__render_data(
        key, 0, 0, [struct.pack(">H", v) for v in value]))
    try:
        f.tags["gnre"] = [number]
        f.save()
    finally:
        atoms[b"gnre"] = old


def _fmt(i, genre):
    # A numeric form needs its own container: "(n)" is ID3, gnre is MP4.
    if isinstance(genre, tuple):
        return "mp3" if genre[0] == "id3v1" else "m4a"
    return FORMATS[i % len(FORMATS)]


@pytest.fixture(scope="module")
def library_src(tmp_path_factory):
    """The library as made; ``truth``: file → (tag as written, label it should read as, artist, track)."""
    d = tmp_path_factory.mktemp("music")
    where = _artists()
    truth = {}
    for i, (track, genre, label) in enumerate(TRACKS):
        sub, rel, artist = where[track]
        fmt = _fmt(i, genre)
        path = d / artist.replace("/", "-") / f"{track}.{fmt}"
        path.parent.mkdir(parents=True, exist_ok=True)
        y, sr = sf.read(os.path.join(SHARED, sub, rel), start=5 * SR, frames=SECONDS * SR, dtype="float32")
        assert sr == SR
        _encode(path, y, fmt)
        _tag(path, genre, artist=artist if "unknown" not in artist else "",
             album=ALBUMS.get(track, f"{artist} - Collection"))
        truth[str(path)] = (genre, label, artist, track)
    # Not music, untagged: speech (espeak-ng, two voices), white noise, a synthesiser's tones.
    nm = d / "not music"
    nm.mkdir()
    wav = nm / "speech.wav"
    for name, voice, text in (("speech-1.mp3", "en", "The quarterly report shows that revenue increased by four "
                                                     "percent, while operating costs remained flat in all regions."),
                              ("speech-2.flac", "en-us", "Chapter one. It was a bright cold day in April, and the "
                                                         "clocks were striking thirteen.")):
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, capture_output=True)
        y, sr = sf.read(wav, dtype="float32")
        y = soxr.resample(y, sr, SR).astype(np.float32)[:SECONDS * SR]
        _encode(nm / name, y, name.rsplit(".", 1)[1])
    wav.unlink()
    rng = np.random.default_rng(0)
    _encode(nm / "noise.ogg", (0.2 * rng.standard_normal(SECONDS * SR)).astype(np.float32), "ogg")
    t = np.arange(SECONDS * SR) / SR
    tones = sum(0.1 * np.sin(2 * np.pi * f0 * t) for f0 in (220, 277, 330)) * (np.sin(2 * np.pi * 0.5 * t) > 0)
    _encode(nm / "tones.mp3", tones.astype(np.float32), "mp3")
    for name in NOT_MUSIC:
        truth[str(nm / name)] = (None, None, "", name)
    mapping = d.parent / "genres.json"
    mapping.write_text(json.dumps(MAPPING))
    return d, truth, mapping


@pytest.fixture(scope="module")
def trained(library_src, tmp_path_factory):
    d, truth, mapping = library_src
    lib = read_library(d, mapping=mapping, min_tracks=3, progress=False)
    cache = tmp_path_factory.getbasetemp() / "feature-cache"
    # Precision 0.75: with 35 files of which 3 carry a planted wrong tag (9 %), out-of-fold
    # precision cannot reach 0.9 here (a right guess for a mislabelled file counts as wrong).
    model, report = train_library(lib, recipe=_recipe(), precision=PRECISION, folds=4, cache=str(cache),
                                  jobs=0, progress=False)
    path = model.save(tmp_path_factory.mktemp("libmodel") / "mine.model")
    return lib, model, report, path


def _recipe():
    """The library recipe (train --labels-from-tags) on the 3 windows of a 10 s excerpt (2 leave the audit
    ranking to chance here)."""
    from genrevision.recipes import get_recipe

    r = get_recipe("library")
    return dataclasses.replace(r, features=r.features.with_(spec_max_windows=3))


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _digests(folder) -> dict:
    return {str(p): _sha(p) for p in folder.rglob("*") if p.is_file()}


def _copy_library(src, tmp_path):
    """A copy of the test library to write into, and the SHA-256 of every file in it."""
    lib = tmp_path / "lib"
    shutil.copytree(src, lib)
    return lib, _digests(lib)


def test_genre_spellings_merge():
    assert {genre_key(s) for s in ("Hip-Hop", "hip hop", "HipHop", " HIP_HOP ", "Hip–Hop")} == {"hiphop"}
    assert genre_key("Drum & Bass") == genre_key("drum and bass") != genre_key("Drum")
    assert split_genres(["Rock; Pop", "rock", "Jazz/Swing, Blues", "", " "]) == ["Rock", "Pop", "Jazz", "Swing", "Blues"]


def test_labels_read_equal_the_intended_ones(library_src, trained):
    d, truth, _ = library_src
    lib = trained[0]
    got = dict(zip(lib.dataset.paths, lib.dataset.labels))
    want = {p: t[1] for p, t in truth.items() if t[1] is not None}
    assert {p: genre_key(v) for p, v in got.items()} == {p: genre_key(v) for p, v in want.items()}
    assert sorted(lib.dataset.classes) == ["Classical", "Hip-Hop", "Jazz", "Metal"]
    assert set(lib.spellings["Hip-Hop"]) >= {"Hip-Hop", "hip hop", "HipHop", "Hip Hop", "hip-hop"}
    assert sorted(lib.untagged) == sorted(p for p, t in truth.items() if t[0] is None)
    assert lib.dropped == {"Polka": "1 file, fewer than --min-tracks 3", "Audiobook": "mapped to nothing"}
    assert lib.several == 4  # "Jazz/Swing"-style values and a frame of two values


def test_groups_keep_artists_and_albums_together(library_src, trained):
    d, truth, _ = library_src
    lib, _, report, _ = trained
    ds = lib.dataset
    artist = {p: truth[p][2] for p in ds.paths}
    by_group: dict = {}
    for p, g in zip(ds.paths, ds.groups):
        by_group.setdefault(g, set()).add(artist[p])
    # One group per artist, except the album that joins Vivaldi and Schubert; the track of an
    # unknown artist (no artist tag) is grouped by its album.
    joined = [a for a in by_group.values() if len(a) > 1]
    assert joined == [{"Vivaldi", "Franz Schubert"}]
    assert all(len({g for p2, g in zip(ds.paths, ds.groups) if artist[p2] == a}) == 1 for a in set(artist.values()))
    # No group (artist/album) is ever on both sides: each group's tested files share one test fold.
    for g in np.unique(report.groups):
        folds = set(report.fold_of[(report.groups == g) & report.tested].tolist())
        assert len(folds) == 1, (g, folds)
    assert report.tested.sum() >= 0.8 * len(report.y)


def test_report_says_what_to_expect(trained, tmp_path):
    lib, model, report, _ = trained
    paths = write_report(report, tmp_path / "report")
    page = open(paths["html"], encoding="utf-8").read()
    assert "accuracy" in page and "Polka" in page and "Confusion matrix" in page
    rows = list(csv.DictReader(open(paths["genres"], encoding="utf-8")))
    per = {r["genre"]: r for r in rows}
    assert int(per["Metal"]["artists"]) >= 5 and per["Polka"]["status"].startswith("dropped")
    acc = report.accuracy()
    lo, hi = report.accuracy_ci()
    assert lo <= acc <= hi and 0.5 < acc  # four far-apart genres, new artists: well above chance (0.25)
    a_acc, a_lo, a_hi = report.artist_accuracy()
    assert a_lo <= a_acc <= a_hi and 0.5 < a_acc
    assert any(line.startswith("by artist") for line in report.summary_lines())
    cov, prec = report.coverage()
    assert 0 < cov <= 1 and prec >= PRECISION
    assert model.library["thresholds"].keys() == set(model.labels)


def test_non_music_and_unsure_files_are_left_untagged(library_src, trained, tmp_path):
    d, truth, _ = library_src
    _, model, _, path = trained
    lib, before = _copy_library(d, tmp_path)
    res = tag_files([lib], path, cache=None, progress=False, log=tmp_path / "log.jsonl", jobs=0)
    by = {os.path.basename(x.path): x for x in res.decisions}
    for name in NOT_MUSIC:
        assert by[name].action == "not sure", (name, by[name])
        assert "unlike the music" in by[name].reason
        assert read_genres(os.path.join(lib, "not music", name)) == []
    # Every file written is in the undo log, and undo puts every byte back.
    written = [x for x in res.decisions if x.action == "tagged"]
    logged = [json.loads(line)["file"] for line in open(tmp_path / "log.jsonl")] if written else []
    assert sorted(logged) == sorted(os.path.abspath(x.path) for x in written)
    for x in written:
        assert x.new[0] == x.genre and x.probability >= model.library["thresholds"][x.genre]
    for x in res.decisions:
        if x.action not in ("tagged", "not sure"):
            assert x.action == "skipped"  # the files that have a genre already
    if written:
        undo(tmp_path / "log.jsonl")
    assert _digests(lib) == before


def test_audit_ranks_the_mislabels_first_and_writes_only_through_the_log(library_src, trained, tmp_path):
    d, truth, _ = library_src
    _, _, _, path = trained
    lib, before = _copy_library(d, tmp_path)
    rows, notes = audit_library([lib], path, progress=False, cache=None, jobs=0)
    top = {os.path.basename(r.path).rsplit(".", 1)[0] for r in rows[:len(MISLABELLED)]}
    assert top == MISLABELLED, [(os.path.basename(r.path), r.tagged, r.suggested, round(r.p_tagged, 3)) for r in rows[:6]]
    assert all(r.source == "out-of-fold" for r in rows)  # every tagged file was in training: judged out-of-fold
    assert _digests(lib) == before  # auditing writes nothing
    res = write_audit(rows, path, limit=len(MISLABELLED), log=tmp_path / "log.jsonl")
    assert [x.action for x in res.decisions] == ["tagged"] * len(MISLABELLED)
    for r, x in zip(rows, res.decisions):
        assert read_genres(r.path) == [r.suggested] and audio_digest(r.path) == r.digest
    assert len(open(tmp_path / "log.jsonl").read().splitlines()) == len(MISLABELLED)
    undo(tmp_path / "log.jsonl")
    assert _digests(lib) == before


def test_precision_changes_the_thresholds_and_old_models_cannot_abstain(trained, model_file):
    _, model, _, path = trained
    strict, loose = abstention(path, precision=0.99), abstention(path, precision=0.5)
    assert strict is not None and loose is not None
    with pytest.raises(ValueError, match="cannot abstain"):
        abstention(model_file)
    m = load_model(path)
    assert m.library == model.library and m.library_arrays["oof_proba"].shape == (len(model.library_arrays["oof_label"]),
                                                                                 len(model.labels))


def test_cli_train_audit(library_src, tmp_path):
    """The loop from the command line: train on the tags with a report, audit to CSV."""
    d, truth, mapping = library_src
    # Two genres of it (the named recipe extracts features afresh: fewer files, less time).
    lib = tmp_path / "lib"
    for p, (_, label, _, _) in truth.items():
        if label in ("Classical", "Metal"):
            dst = lib / os.path.relpath(p, d)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dst)
    out = run_cli("train", lib, "--labels-from-tags", "--map", mapping, "--min-tracks", "3", "--folds", "3",
                  "--model", tmp_path / "m.model", "--report", tmp_path / "rep", "--quiet",
                  "--cache", str(tmp_path / "fc"), timeout=900)
    assert out.returncode == 0, out.stderr
    assert "spellings merged" in out.stdout and "grouped 3-fold" in out.stdout
    assert (tmp_path / "rep" / "report.html").exists()
    out = run_cli("audit", lib, "--model", tmp_path / "m.model", "--csv", tmp_path / "a.csv", "--top", "3", "--quiet")
    assert out.returncode == 0, out.stderr
    assert "audited" in out.stdout and (tmp_path / "a.csv").exists()


def test_artist_accuracy_counts_every_artist_once():
    # Artist A: 8 files, all right; artist B: 2 files, both wrong. By file 80 %, by artist 50 %.
    y = np.array(["x"] * 8 + ["y"] * 2)
    groups = np.array(["A"] * 8 + ["B"] * 2)
    proba = np.array([[0.9, 0.1]] * 8 + [[0.8, 0.2]] * 2)
    report = LibraryReport(["x", "y"], [f"f{i}" for i in range(10)], y, groups, proba, np.ones(10, bool),
                           np.zeros(10), 0.9, {"x": None, "y": None}, 1.0, 2)
    assert report.accuracy() == pytest.approx(0.8)
    acc, lo, hi = report.artist_accuracy()
    assert acc == pytest.approx(0.5) and lo == pytest.approx(0.0) and hi == pytest.approx(1.0)
