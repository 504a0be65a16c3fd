"""Attacks of issue 11: bad inputs, damaged files and kills, through the CLI and the API.

Each section is one numbered case of the issue; the fuzz tests at the end feed
random bytes and random truncations of real files to the manifest reader and
the audio decoder. Every answer is a result or one line naming the file.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
import zipfile
import zlib

import numpy as np
import pytest
import soundfile as sf

from conftest import real_excerpt, run_cli
from genrevision import ModelError, load_model
from genrevision.audio import AudioError, audio_info, load_audio
from genrevision.dataset import DatasetError, load_dataset
from genrevision.features import FeatureSettings, extract_dataset
from genrevision.spectrogram import SpectrogramConfig
from genrevision.store import FeatureStore, content_digest

SR = 22050
TINY = FeatureSettings(segment_seconds=3.0, spectrogram=SpectrogramConfig(max_windows=1))


@pytest.fixture(scope="module")
def excerpt(gtzan_root):
    """Four seconds of a real classical track."""
    return real_excerpt(gtzan_root, "classical/classical.00006.wav", 4.0)


def _fifo(path) -> str:
    os.mkfifo(path)
    return str(path)


class _Unblock:
    """Opens a FIFO for writing after a delay, so code that wrongly blocks on it
    fails its assertions instead of hanging the test run."""

    def __init__(self, fifo, after=15.0):
        self.fifo, self.stop = fifo, threading.Event()
        self.thread = threading.Thread(target=self._run, args=(after,), daemon=True)
        self.thread.start()

    def _run(self, after):
        if not self.stop.wait(after):
            try:  # O_RDWR never blocks on Linux; closing it gives a blocked reader EOF
                os.close(os.open(self.fifo, os.O_RDWR))
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop.set()


# ----------------------------------------------------------------------------- 1. FIFOs


def test_fifo_is_refused_by_every_reader(tmp_path, excerpt):
    from genrevision.files import NotRegularFile

    fifo = _fifo(tmp_path / "x.wav")
    with _Unblock(fifo):
        for call in (load_audio, audio_info):
            with pytest.raises(AudioError) as info:
                call(fifo)
            assert str(info.value) == f"{fifo}: not a regular file (a named pipe)"
        with pytest.raises(NotRegularFile, match="not a regular file"):
            content_digest(fifo)
        manifest = _fifo(tmp_path / "m.csv")
        with _Unblock(manifest), pytest.raises(DatasetError, match=r"m\.csv: not a regular file \(a named pipe\)"):
            load_dataset(manifest)
        model = _fifo(tmp_path / "g.model")
        with _Unblock(model), pytest.raises(ModelError) as info:
            load_model(model)
        assert str(info.value) == f"{model}: not a regular file (a named pipe)"


def test_fifo_in_dataset_extract_goes_on(tmp_path, excerpt):
    good = tmp_path / "good.wav"
    sf.write(good, excerpt, SR)
    fifo = _fifo(tmp_path / "x.wav")
    with _Unblock(fifo):
        res = extract_dataset([fifo, str(good)], TINY, jobs=0, progress=False)
    assert res.failures == [(fifo, "not a regular file (a named pipe)")]
    assert list(res.features) == [str(good)]


def test_cli_extract_and_predict_refuse_fifo(tmp_path, excerpt, model_file):
    data = tmp_path / "data"
    for g in ("a", "b"):
        (data / g).mkdir(parents=True)
        sf.write(data / g / "ok.wav", excerpt if g == "a" else excerpt[::-1].copy(), SR)
    fifo = _fifo(data / "a" / "x.wav")
    with _Unblock(fifo, after=60):
        proc = run_cli("extract", data, "--cache", tmp_path / "cache", "--jobs", "0", "--quiet", timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "features for 2/3 tracks" in proc.stdout
        assert f"  {fifo}: not a regular file (a named pipe)" in proc.stderr.splitlines()
        proc = run_cli("predict", fifo, data / "a" / "ok.wav", "--model", model_file, "--quiet", timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert f"  {fifo}: not a regular file (a named pipe)" in proc.stderr.splitlines()
        proc = run_cli("predict", data / "a" / "ok.wav", "--model", fifo, "--quiet", timeout=120)
        assert proc.returncode == 2
        assert proc.stderr.strip() == f"genrevision: error: {fifo}: not a regular file (a named pipe)"


# ----------------------------------------------------------------------------- 2. model zip bombs


def _zeros_member(z: zipfile.ZipFile, name: str, size: int) -> None:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with z.open(info, "w", force_zip64=True) as f:  # compressed as it is written: no 2 GB buffer
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)


def _members(path) -> dict:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def _forge(meta: dict, items: dict) -> dict:
    """What an attacker would do: recompute every checksum meta.json holds."""
    from genrevision.model import _SHA_KEY, meta_checksum

    for member, key in _SHA_KEY.items():
        if member in items:
            meta[key] = hashlib.sha256(items[member]).hexdigest()
    meta["meta_sha256"] = meta_checksum(meta)
    return meta


def _write_model(path, items: dict, *, bombs: dict | None = None) -> str:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n, data in items.items():
            if bombs and n in bombs:
                _zeros_member(z, n, bombs[n])
            else:
                z.writestr(n, data)
    return str(path)


def _nested_bomb(size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        _zeros_member(z, "schema.json", size)
    return buf.getvalue()


def _bomb_models(model_file, folder, size) -> dict:
    """{what: path} of model files whose members inflate to ``size`` bytes of zeros."""
    items = _members(model_file)
    out = {
        "meta.json": _write_model(folder / "meta-bomb.model", items, bombs={"meta.json": size}),
        "classifier.skops": _write_model(folder / "clf-bomb.model", items, bombs={"classifier.skops": size}),
    }
    nested = dict(items, **{"classifier.skops": _nested_bomb(size)})
    nested["meta.json"] = json.dumps(_forge(json.loads(items["meta.json"]), nested)).encode()
    out["nested schema.json"] = _write_model(folder / "nested-bomb.model", nested)
    # A member whose declared size lies (says 1 kB, inflates to `size`).
    liar = folder / "liar.model"
    _write_model(liar, items, bombs={"classifier.skops": size})
    data = bytearray(liar.read_bytes())
    with zipfile.ZipFile(liar) as z:
        info = z.getinfo("classifier.skops")
    # Patch the central directory's (or its zip64 extra field's) uncompressed size.
    pos = 0
    while True:
        pos = data.find(b"PK\x01\x02", pos)
        if pos < 0:
            break
        name_len = int.from_bytes(data[pos + 28 : pos + 30], "little")
        if bytes(data[pos + 46 : pos + 46 + name_len]) == b"classifier.skops":
            extra = pos + 46 + name_len
            if int.from_bytes(data[pos + 24 : pos + 28], "little") == 0xFFFFFFFF:
                # zip64 extra: header id 1, size, then uncompressed size first
                data[extra + 4 : extra + 12] = (1024).to_bytes(8, "little")
            else:
                data[pos + 24 : pos + 28] = (1024).to_bytes(4, "little")
        pos += 4
    liar.write_bytes(bytes(data))
    with zipfile.ZipFile(liar) as z:
        assert z.getinfo("classifier.skops").file_size == 1024 != info.file_size
    out["lying classifier.skops"] = str(liar)
    return out


def test_zip_bombs_are_refused_within_the_cap(model_file, tmp_path):
    from genrevision.model import MAX_MEMBER_BYTES

    size = MAX_MEMBER_BYTES + (16 << 20)
    for what, path in _bomb_models(model_file, tmp_path, size).items():
        with pytest.raises(ModelError) as info:
            load_model(path, check_backbone=False)
        msg = str(info.value)
        assert msg.startswith(f"{path}: ") and "\n" not in msg
        if what == "lying classifier.skops":
            assert "damaged" in msg, msg
        else:
            assert "refused" in msg and "MB a model member may hold" in msg, (what, msg)


def test_zip_bomb_peak_memory(model_file, tmp_path):
    """Loading a 256 MB bomb costs no more memory than loading the real model (measured in a child)."""
    bombs = _bomb_models(model_file, tmp_path, 256 << 20)
    code = (
        "import resource, sys\n"
        "from genrevision import load_model, ModelError\n"
        "load_model(sys.argv[1], check_backbone=False)\n"
        "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for p in sys.argv[2:]:\n"
        "    try:\n"
        "        load_model(p, check_backbone=False)\n"
        "    except ModelError as e:\n"
        "        print('refused', e)\n"
        "print('growth_mb', (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(model_file), *bombs.values()],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert sum(ln.startswith("refused ") for ln in lines) == len(bombs), proc.stdout
    growth = float(lines[-1].split()[1])
    assert growth < 100, f"peak RSS grew by {growth:.0f} MB loading 256 MB bombs"


def test_cli_predict_refuses_bomb_model(model_file, tmp_path, excerpt):
    from genrevision.model import MAX_MEMBER_BYTES

    path = _write_model(tmp_path / "bomb.model", _members(model_file), bombs={"meta.json": MAX_MEMBER_BYTES + (1 << 20)})
    song = tmp_path / "song.wav"
    sf.write(song, excerpt, SR)
    proc = run_cli("predict", song, "--model", path, "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"genrevision: error: {path}: refused: meta.json inflates to 65 MB, "
                                   f"more than the 64 MB a model member may hold")


# ----------------------------------------------------------------------------- 5. edited meta.json


def _edit_meta(model_file, dst, change) -> str:
    items = _members(model_file)
    meta = json.loads(items["meta.json"])
    change(meta)
    items["meta.json"] = json.dumps(meta).encode()
    return _write_model(dst, items)


@pytest.mark.parametrize("field,change", [
    ("n_fft", lambda m: (m["recipe"]["features"].update(n_fft=1024), m["feature_settings"].update(n_fft=1024))),
    ("n_mels", lambda m: m["recipe"]["features"]["spectrogram"].update(n_mels=64)),
    ("labels", lambda m: m.update(labels=list(reversed(m["labels"])))),
    ("recipe pooling", lambda m: m["recipe"].update(pooling="mean")),
    ("views", lambda m: m.update(views=[["original", 0, 10]])),
    ("backbone name", lambda m: m["backbone"].update(name="efficientnet_lite0")),
])
def test_edited_meta_is_refused(model_file, tmp_path, field, change):
    path = _edit_meta(model_file, tmp_path / "edited.model", change)
    with pytest.raises(ModelError) as info:
        load_model(path)
    assert str(info.value) == (f"{path}: damaged (meta.json was changed after saving: its checksum does not "
                               "match, so its settings are not the ones the classifier was trained with)")


def test_model_without_meta_checksum_is_older(model_file, tmp_path, excerpt):
    path = _edit_meta(model_file, tmp_path / "old.model", lambda m: m.pop("meta_sha256"))
    song = tmp_path / "song.wav"
    sf.write(song, excerpt, SR)
    proc = run_cli("predict", song, "--model", path, "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"genrevision: error: {path}: made by an older genrevision (meta.json has no "
                                   "checksum of its settings); retrain it with this version")


def test_saved_meta_checksum_is_stable(model_file, tmp_path):
    from genrevision.model import meta_checksum

    meta = json.loads(_members(model_file)["meta.json"])
    assert meta["meta_sha256"] == meta_checksum(meta)
    # A loaded and re-saved model keeps its fields and loads again (the skops bytes, hence their sha256, differ).
    again = load_model(model_file).save(tmp_path / "again.model")
    meta2 = json.loads(_members(again)["meta.json"])
    plain = lambda m: {k: v for k, v in m.items() if not k.endswith("sha256")}  # noqa: E731
    assert plain(meta2) == plain(meta) and meta2["meta_sha256"] == meta_checksum(meta2)
    assert load_model(again).labels == meta["labels"]


# ----------------------------------------------------------------------------- 3. evaluate without the paper recipe


def test_evaluate_without_the_paper_recipe_writes_its_report(tmp_path, gtzan_root):
    # It used to run every fold, then die with KeyError: 'svm' at the report stage.
    m = tmp_path / "small.csv"
    rows = [f"{gtzan_root}/genres/{g}/{g}.{i:05d}.wav,{g}" for g in ("classical", "metal", "jazz") for i in range(4)]
    m.write_text("path,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    proc = run_cli("evaluate", m, "--protocol", "cv", "--folds", "2", "--repeats", "1", "--no-paper-recipe",
                   "--out", out, "--cache", tmp_path / "cache", "--quiet", timeout=600)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert set(results["recipes"]) == {"default"}
    assert 0.0 <= results["default"] <= 1.0 and 0.0 <= results["baseline_mfcc"] <= 1.0
    assert (out / "report.html").exists() and "recipe default (efficientnet_lite2): fused" in proc.stdout


# ----------------------------------------------------------------------------- 4. duplicates


@pytest.fixture
def three_songs(tmp_path, gtzan_root):
    """Three short real excerpts (two genres) and a byte-identical copy of the first under another name."""
    out = {}
    for name, rel in (("c1.wav", "classical/classical.00000.wav"), ("c2.wav", "classical/classical.00001.wav"),
                      ("m1.wav", "metal/metal.00000.wav"), ("m2.wav", "metal/metal.00001.wav")):
        sf.write(tmp_path / name, real_excerpt(gtzan_root, rel, 3.0), SR)
        out[name] = tmp_path / name
    (tmp_path / "copy of c1.wav").write_bytes(out["c1.wav"].read_bytes())
    out["copy"] = tmp_path / "copy of c1.wav"
    return out


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


def test_same_audio_under_two_names_is_used_once(tmp_path, three_songs):
    paths = [str(three_songs[n]) for n in ("c1.wav", "m1.wav", "copy")]
    res = extract_dataset(paths, TINY, jobs=0, progress=False)
    assert res.failures == [(paths[2], f"same audio as {paths[0]}")]
    assert list(res.features) == paths[:2]
    m = tmp_path / "leak.csv"
    m.write_text("path,label\nc1.wav,classical\nc2.wav,classical\nm1.wav,metal\nm2.wav,metal\n"
                 "copy of c1.wav,classical\n")
    proc = run_cli("extract", m, "--cache", tmp_path / "cache", "--jobs", "0", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "features for 4/5 tracks" in proc.stdout
    assert proc.stderr.splitlines() == ["1 files failed:", f"  {three_songs['copy']}: same audio as {three_songs['c1.wav']}"]


# ----------------------------------------------------------------------------- 10. encodings and decoder words


def test_manifest_with_byte_order_mark(tmp_path, three_songs):
    m = tmp_path / "excel.csv"
    m.write_text("path,label\r\nc1.wav,classical\r\nm1.wav,metal\r\n", encoding="utf-8-sig")
    ds = load_dataset(str(m))
    assert ds.labels.tolist() == ["classical", "metal"] and os.path.exists(ds.paths[0])


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


def test_unreadable_mp3_says_so(tmp_path):
    fake = tmp_path / "song.mp3"
    fake.write_text("this is not an mp3 at all\n" * 40)
    with pytest.raises(AudioError) as info:
        load_audio(fake)
    msg = str(info.value)
    assert msg.startswith(f"{fake}: not a readable audio file (") and "\n" not in msg
    assert "does not exist" not in msg and "pipe" not in msg


# ----------------------------------------------------------------------------- 11. inner CV message


def test_inner_cv_message_names_the_class():
    from genrevision.classifiers import make_inner_cv

    y = np.array(["rock"] * 4 + ["jazz"])
    groups = np.array(["a", "b", "c", "d", "x"])
    with pytest.raises(ValueError) as info:
        make_inner_cv(y, groups)
    assert str(info.value) == ("Inner cross-validation needs at least 2 classes with 2 groups (artists/albums) "
                               "each; class 'jazz' has 1 sample in 1 group. Add tracks of those classes from other "
                               "groups, drop the group column, or fix the hyper-parameters (e.g. Recipe.C) so that "
                               "no inner search is needed.")
    with pytest.raises(ValueError, match="2 samples per class; class 'jazz' has 1 sample. Add tracks"):
        make_inner_cv(y)


def test_train_with_one_group_per_genre_says_what_to_do(tmp_path, three_songs):
    m = tmp_path / "groups.csv"
    m.write_text("path,label,group\nc1.wav,classical,bach\nc2.wav,classical,haydn\nm1.wav,metal,slayer\n"
                 "m2.wav,metal,slayer\n")
    proc = run_cli("train", m, "--model", tmp_path / "g.model", "--recipe", "paper", "--cache", tmp_path / "cache",
                   "--jobs", "0", "--quiet")
    assert proc.returncode == 2 and not (tmp_path / "g.model").exists()
    assert proc.stderr.strip() == (
        f"genrevision: error: {tmp_path}: at least 2 genres need tracks of 2 or more groups (artists/albums) for "
        "the grouped inner cross-validation; one group only: metal (2 tracks, all by slayer); add tracks of other "
        "artists or leave the group column empty")


# ----------------------------------------------------------------------------- 8. bad cache entries


def _rewrite_entry(store, path, change):
    entry = store._file(content_digest(path))
    with np.load(entry) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(entry, "wb") as f:
        np.savez(f, **arrays)
    return entry


def test_bad_cache_entries_are_recomputed(tmp_path, three_songs):
    paths = [str(three_songs[n]) for n in ("c1.wav", "c2.wav", "m1.wav", "m2.wav")]
    store = FeatureStore(str(tmp_path / "cache"), TINY.to_dict())
    first = extract_dataset(paths, TINY, store=store, jobs=0, progress=False)
    assert first.computed == 4 and store.read_json("layout.json")["original"] == first.features[paths[0]]["original"].shape[1]

    def ragged(a):
        a["harmonic"] = np.concatenate([a["harmonic"], a["harmonic"]])

    def nan(a):
        a["percussive"] = a["percussive"].copy()
        a["percussive"][0, 3] = np.nan

    changes = {paths[0]: (lambda a: a.pop("harmonic"), "no harmonic"),
               paths[1]: (lambda a: a.update(original=a["original"][:, :-1]), "original is"),
               paths[2]: (nan, "NaN or infinite values in percussive"),
               paths[3]: (ragged, "harmonic has 2 windows, original 1")}
    entries = {p: _rewrite_entry(store, p, change) for p, (change, _) in changes.items()}
    with pytest.warns(UserWarning) as rec:
        again = extract_dataset(paths, TINY, store=store, jobs=0, progress=False)
    assert again.computed == 4 and again.cached == 0 and again.failures == []
    messages = [str(w.message) for w in rec]
    for p, (_, words) in changes.items():
        hit = [m for m in messages if m.startswith(f"{entries[p]}: bad cache entry for {p} (") and words in m
               and "recomputing" in m]
        assert len(hit) == 1, (p, messages)
        np.testing.assert_allclose(again.features[p]["original"], first.features[p]["original"], atol=2e-3)
    # Stored again, valid: a third run computes nothing.
    third = extract_dataset(paths, TINY, store=store, jobs=0, progress=False)
    assert third.cached == 4 and third.computed == 0


def test_cli_train_on_bad_cache_entry(tmp_path, three_songs):
    m = tmp_path / "songs.csv"
    m.write_text("path,label\nc1.wav,classical\nc2.wav,classical\nm1.wav,metal\nm2.wav,metal\n")
    cache = tmp_path / "cache"
    args = ("train", m, "--model", tmp_path / "s.model", "--recipe", "paper", "--cache", cache, "--jobs", "0", "--quiet")
    assert run_cli(*args).returncode == 0
    from genrevision.recipes import get_recipe

    store = FeatureStore(str(cache), get_recipe("paper").features.to_dict())
    entry = _rewrite_entry(store, three_songs["m1.wav"], lambda a: a.pop("original"))
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert "trained paper model on 4 tracks" in proc.stdout
    assert proc.stderr.splitlines() == [f"genrevision: warning: {entry}: bad cache entry for {three_songs['m1.wav']} "
                                        "(no original); recomputing"]


# ----------------------------------------------------------------------------- 9. unwritable cache


def test_unwritable_cache_goes_on_in_memory(tmp_path, three_songs):
    blocker = tmp_path / "not a folder"
    blocker.write_text("a file where the cache folder should be")
    paths = [str(three_songs[n]) for n in ("c1.wav", "m1.wav")]
    with pytest.warns(UserWarning) as rec:
        store = FeatureStore(str(blocker / "cache"), TINY.to_dict())
        res = extract_dataset(paths, TINY, store=store, jobs=0, progress=False)
    assert sorted(res.features) == sorted(paths) and res.failures == [] and res.unstored == paths
    assert [str(w.message) for w in rec] == [
        f"{blocker / 'cache'}: cannot write to the feature cache (Not a directory); going on without storing "
        "features (this run keeps them in memory)",
        f"{blocker / 'cache'}: features of 2 tracks could not be stored in the cache (Not a directory); they were "
        "used in this run and will be computed again next time"]


def _file_size_limit(limit):
    def apply():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_cli_extract_with_a_full_cache(tmp_path, three_songs):
    """A cache that fills up after settings.json (files limited to 4 kB): every track still extracted."""
    m = tmp_path / "songs.csv"
    m.write_text("path,label\nc1.wav,classical\nc2.wav,classical\nm1.wav,metal\n")
    cache = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-m", "genrevision.cli", "extract", str(m), "--cache", str(cache),
                           "--recipe", "paper", "--jobs", "0", "--quiet"], capture_output=True, text=True,
                          timeout=300, preexec_fn=_file_size_limit(4096))
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "features for 3/3 tracks (3 computed, 0 from cache)" in proc.stdout
    assert proc.stderr.splitlines() == [
        f"genrevision: warning: {cache}: cannot write to the feature cache (File too large); going on without "
        "storing features (this run keeps them in memory)",
        f"genrevision: warning: {cache}: features of 3 tracks could not be stored in the cache (File too large); "
        "they were used in this run and will be computed again next time"]
    assert not [f for _, _, fs in os.walk(cache) for f in fs if f.startswith(".tmp-") or f.endswith(".npz")]


# ----------------------------------------------------------------------------- 7. signals and kills


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.add(int(entry))
    return out


def _alive(pids) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except OSError:
            pass
    return alive


def _wait_for(cond, timeout, step=0.2):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(step)
    return cond()


@pytest.fixture
def twelve_songs(tmp_path, gtzan_root):
    root = tmp_path / "songs"
    for i in range(6):
        for g in ("classical", "metal"):
            (root / g).mkdir(parents=True, exist_ok=True)
            sf.write(root / g / f"{g}{i}.wav", real_excerpt(gtzan_root, f"{g}/{g}.0000{i}.wav", 3.0), SR)
    return root


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_workers_and_keeps_finished_tracks(tmp_path, twelve_songs):
    import signal
    import time

    cache, pngs = tmp_path / "cache", tmp_path / "png"
    cmd = [sys.executable, "-m", "genrevision.cli", "extract", str(twelve_songs), "--cache", str(cache),
           "--recipe", "paper", "--jobs", "2", "--quiet"]
    proc = subprocess.Popen(cmd + ["--save-images", str(pngs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Workers write each finished track's PNGs (3 per track): stop once three tracks are done.
        assert _wait_for(lambda: len(list(pngs.glob("*.png"))) >= 9 if pngs.exists() else False, 240), "no progress"
        workers = _children(proc.pid)
        assert len(workers) >= 2, workers  # two workers (and multiprocessing's resource tracker)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    assert "Traceback" not in err, err
    assert proc.returncode == 143, (proc.returncode, err)
    assert err.strip().splitlines()[-1] == "genrevision: error: terminated; finished tracks are cached, rerun to resume"
    assert took < 30, f"took {took:.1f} s to stop"
    # The workers are gone with it (multiprocessing's resource tracker follows once its pipe closes).
    assert _wait_for(lambda: not _alive(workers), 10), f"{_alive(workers)} outlived the stopped parent by 10 s"
    # Tracks whose images had reached the parent went through the CNN and into the cache before it exited.
    stored = len([f for _, _, fs in os.walk(cache) for f in fs if f.endswith(".npz")])
    assert 1 <= stored < 12
    again = run_cli(*cmd[3:], timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"({12 - stored} computed, {stored} from cache)" in again.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, PR_SET_PDEATHSIG")
def test_workers_die_with_a_killed_parent(tmp_path, twelve_songs):
    import signal

    cmd = [sys.executable, "-m", "genrevision.cli", "extract", str(twelve_songs), "--cache", str(tmp_path / "cache"),
           "--recipe", "paper", "--jobs", "2", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The pool's workers: children that load genrevision.features (spawned python processes).
        workers = _wait_for(lambda: {c for c in _children(proc.pid)
                                     if b"multiprocessing" in open(f"/proc/{c}/cmdline", "rb").read()}
                            if len(_children(proc.pid)) >= 3 else set(), 240)
        assert len(workers) >= 2, workers
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        left = _wait_for(lambda: not _alive(workers), 10)
    finally:
        proc.kill()
    assert left and _alive(workers) == set(), f"workers {_alive(workers)} still running 10 s after kill -9 of their parent"


# ----------------------------------------------------------------------------- 6. poorer audio than trained on


@pytest.fixture(scope="module")
def degraded(gtzan_root, tmp_path_factory):
    """A held-out classical excerpt as 16-bit 22 kHz, 8-bit 22 kHz and 16-bit 8 kHz WAV."""
    import soxr

    d = tmp_path_factory.mktemp("degraded")
    y = real_excerpt(gtzan_root, "classical/classical.00006.wav", 10.0)
    y = 0.95 * y / np.abs(y).max()
    out = {"clean": d / "clean.wav", "8-bit": d / "eight bit.wav", "8 kHz": d / "eight khz.wav"}
    sf.write(out["clean"], y, SR, subtype="PCM_16")
    sf.write(out["8-bit"], y, SR, subtype="PCM_U8")
    sf.write(out["8 kHz"], soxr.resample(y, SR, 8000), 8000, subtype="PCM_16")
    return {k: str(v) for k, v in out.items()}


def test_model_records_its_training_audio(model_file):
    audio = load_model(model_file).training_audio
    assert audio["samplerate_min"] == SR and audio["bit_depth_min"] == 16 and audio["n_tracks"] == 12
    assert 8000 < audio["bandwidth_p10_hz"] <= audio["bandwidth_median_hz"] <= SR / 2


def test_poorer_audio_is_flagged(model_file, degraded):
    model = load_model(model_file)
    preds = {k: model.predict(p) for k, p in degraded.items()}
    assert preds["clean"].warnings == [] and not preds["clean"].low_confidence
    assert preds["8-bit"].warnings == ["8-bit audio; the model was trained on 16-bit or better, so the prediction "
                                       "is less reliable"]
    (w,) = preds["8 kHz"].warnings
    assert w.startswith("sample rate 8000 Hz: nothing above 3.") and "the model was trained on audio up to" in w
    for k in ("8-bit", "8 kHz"):
        assert preds[k].low_confidence and preds[k].to_dict()["low_confidence"] is True
        assert preds[k].to_dict()["warnings"] == preds[k].warnings


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


# ----------------------------------------------------------------------------- fuzz: manifest reader and audio decoder

_DRIVER = r"""
import json, sys, traceback
from genrevision.audio import AudioError, audio_info, audio_profile, load_audio
from genrevision.dataset import DatasetError, load_dataset

for line in sys.stdin:
    kind, path = json.loads(line)
    out = {"path": path, "messages": []}
    try:
        if kind == "audio":
            for call in (audio_info, load_audio, audio_profile):
                try:
                    call(path)
                except AudioError as err:
                    out["messages"].append(str(err))
        else:
            try:
                load_dataset(path)
            except DatasetError as err:
                out["messages"].append(str(err))
    except BaseException:
        out["unexpected"] = traceback.format_exc()
    print(json.dumps(out), flush=True)
"""


def _fuzz_cases(folder, excerpt, rng) -> list[tuple[str, str]]:
    """(kind, path) of random bytes, truncations and byte flips of real audio files and manifests."""
    cases = []
    originals = {}
    formats = [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("au", "AU", "PCM_16"), ("ogg", "OGG", "VORBIS")]
    if "MP3" in sf.available_formats():
        formats.append(("mp3", "MP3", "MPEG_LAYER_III"))
    for ext, fmt, subtype in formats:
        buf = io.BytesIO()
        sf.write(buf, excerpt[: 2 * SR], SR, format=fmt, subtype=subtype)
        originals[ext] = buf.getvalue()
    manifest = ("path,label,group,split\n" + "".join(f"song{i}.wav,{g},a{i % 3},{s}\n" for i, (g, s) in
                enumerate(zip(["rock", "jazz", "pop"] * 3, ["train", "test", "valid"] * 3)))).encode()
    n = 0

    def add(kind, ext, data):
        nonlocal n
        p = folder / f"case{n:03d}.{ext}"
        p.write_bytes(data)
        cases.append((kind, str(p)))
        n += 1

    for ext, data in originals.items():
        for _ in range(8):  # truncations, the header included
            add("audio", ext, data[: int(rng.integers(1, len(data)))])
        for _ in range(8):  # flipped bytes, often in the header
            bad = bytearray(data)
            for pos in rng.integers(0, min(len(bad), 4096 if rng.random() < 0.5 else len(bad)), size=int(rng.integers(1, 20))):
                bad[pos] = int(rng.integers(0, 256))
            add("audio", ext, bytes(bad))
        for _ in range(3):  # a valid start, then noise
            add("audio", ext, data[: int(rng.integers(4, 200))] + rng.bytes(int(rng.integers(0, 30000))))
        add("audio", ext, rng.bytes(int(rng.integers(1, 50000))))
    for _ in range(12):
        add("manifest", "csv", rng.bytes(int(rng.integers(0, 3000))))
    alphabet = list(b"path,label,group,split,\"\n\r\t ;./\\abc\x00\xef\xbb\xbf\xe9\xff") + list(range(32, 127))
    for _ in range(20):
        add("manifest", "csv", bytes(rng.choice(alphabet, size=int(rng.integers(0, 400))).astype(np.uint8)))
    for _ in range(12):
        add("manifest", "csv", manifest[: int(rng.integers(0, len(manifest)))])
    for _ in range(12):
        bad = bytearray(manifest)
        for pos in rng.integers(0, len(bad), size=int(rng.integers(1, 10))):
            bad[pos] = int(rng.choice(alphabet))
        add("manifest", "csv", bytes(bad))
    return cases


def test_fuzz_decoder_and_manifest_reader(tmp_path, excerpt):
    import select
    import time

    rng = np.random.default_rng(11)
    cases = _fuzz_cases(tmp_path, excerpt, rng)
    assert len(cases) >= 150
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for kind, path in cases:
            proc.stdin.write(json.dumps([kind, path]) + "\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 20  # per case: a hang fails here, naming the case
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"{kind} case {path} did not finish in 20 s"
            out = json.loads(proc.stdout.readline())
            assert out["path"] == path and "unexpected" not in out, out.get("unexpected")
            for msg in out["messages"]:
                assert "\n" not in msg and msg.startswith(f"{path}: ") and len(msg) > len(path) + 4, msg
                assert "possibly a pipe" not in msg and "does not exist" not in msg, msg
        proc.stdin.close()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    err = proc.stderr.read()
    assert err == "", err  # nothing from the decoders' C libraries either


def test_fuzz_through_the_cli(tmp_path, excerpt, model_file):
    rng = np.random.default_rng(7)
    cases = _fuzz_cases(tmp_path, excerpt, rng)
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
