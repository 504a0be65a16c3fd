"""GenreModel: train → save → load → predict on real GTZAN tracks; the model file refuses damage."""
from __future__ import annotations

import hashlib
import io
import json
import resource
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf

from genrevision import ModelError, load_model, train_model
from genrevision.evaluation.dataset import load_dataset
from genrevision.signal.audio import AudioError

from testkit import (
    GENRES,
    SR,
    genre_paths,
    model_members,
    run_cli,
    small_recipe,
    train_subset,
    write_model_zip,
    zeros_member,
)


@pytest.fixture(scope="module")
def model_file(gtzan_root, tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    model = train_subset(gtzan_root, small_recipe(), tmp_path_factory.getbasetemp() / "feature-cache")
    assert model.n_train == 12 and model.failures == []
    return model.save(d / "genres.model")


def test_train_save_load_predict_held_out(model_file, gtzan_root):
    model = load_model(model_file)
    assert model.labels == sorted(GENRES)
    assert model.settings.segment_seconds == 30.0 and model.settings.spectrogram.max_windows == 2
    for genre, index in (("classical", 6), ("hiphop", 6)):  # tracks 0-3 trained, these held out
        pred = model.predict(genre_paths(gtzan_root, genre)[index])
        assert pred.genre == genre, pred
        assert set(pred.probabilities) == set(GENRES)
        assert sum(pred.probabilities.values()) == pytest.approx(1.0)
        assert pred.probabilities[genre] == max(pred.probabilities.values())
        # The default joins O|H|P into one classifier (fused with the MFCC view); per-view heads still
        # report each image view's guess.
        assert model.recipe.view_names() == ("original+harmonic+percussive", "mfcc")
        assert list(pred.views) == ["original", "harmonic", "percussive", "mfcc"]
        assert all(v in GENRES for v in pred.views.values())
        assert pred.views["original"] == genre, pred.views
        assert 29.9 < pred.duration < 30.1 and pred.segments == []


def test_three_line_api(model_file, gtzan_root):
    from genrevision import load_model as lm

    model = lm(model_file)
    assert model.predict(genre_paths(gtzan_root, "classical")[7]).genre == "classical"


def test_meta_is_complete(model_file):
    with zipfile.ZipFile(model_file) as z:
        assert sorted(z.namelist()) == ["classifier.skops", "meta.json", "views.skops"]
        meta = json.loads(z.read("meta.json"))
    assert len(meta["classifier_sha256"]) == 64 and len(meta["view_classifier_sha256"]) == 64
    assert meta["format"] == "genrevision-model" and meta["format_version"] == 2
    assert meta["feature_settings"]["segment_seconds"] == 30.0
    assert meta["backbone"]["name"] == "efficientnet_lite2" and len(meta["backbone"]["weights_sha256"]) == 64
    assert meta["labels"] == sorted(GENRES) and meta["n_train"] == 12
    assert set(meta["versions"]) >= {"genrevision", "numpy", "sklearn", "torch"}
    # One joined image view and the MFCC view, fused 50/50.
    assert meta["fusion_weights"] == pytest.approx({"original+harmonic+percussive": 0.5, "mfcc": 0.5})
    for key in ("pooling", "layers", "hybrid_mfcc", "name"):
        assert key in meta["recipe"]


def _rewrite(src, dst, *, meta_change=None, drop=None):
    from genrevision.model.genre_model import meta_checksum

    with zipfile.ZipFile(src) as z:
        items = {n: z.read(n) for n in z.namelist()}
    if meta_change:
        meta = json.loads(items["meta.json"])
        meta_change(meta)
        meta["meta_sha256"] = meta_checksum(meta)  # a consistent file: the checks below must still refuse it
        items["meta.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(dst, "w") as z:
        for n, data in items.items():
            if n != drop:
                z.writestr(n, data)
    return dst


def _refused(path, *words):
    with pytest.raises(ModelError) as info:
        load_model(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    for w in words:
        assert w in msg, msg
    return msg


def test_damaged_and_foreign_files_are_refused(model_file, tmp_path):
    data = open(model_file, "rb").read()
    for where in (len(data) // 2, len(data) // 3, len(data) - 30):
        bad = bytearray(data)
        bad[where] ^= 0x5A
        p = tmp_path / f"flipped{where}.model"
        p.write_bytes(bytes(bad))
        _refused(p)
    p = tmp_path / "flipped.model"
    bad = bytearray(data)
    bad[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(bad))
    assert "damaged" in _refused(p) or "not a genrevision model" in _refused(p)
    p = tmp_path / "truncated.model"
    p.write_bytes(data[: len(data) // 2])
    _refused(p, "not a genrevision model file")
    p = tmp_path / "text.model"
    p.write_text("hello, I am not a model\n")
    _refused(p, "not a genrevision model file")
    _refused(tmp_path / "missing.model", "no such model file")
    _refused(_rewrite(model_file, tmp_path / "nometa.model", drop="meta.json"), "not a genrevision model file")
    _refused(_rewrite(model_file, tmp_path / "nopayload.model", drop="classifier.skops"), "damaged")
    _refused(_rewrite(model_file, tmp_path / "noviews.model", drop="views.skops"),
             "damaged (views.skops and meta.json disagree)")

    def other_weights(meta):
        meta["backbone"]["weights_sha256"] = "0" * 64

    _refused(_rewrite(model_file, tmp_path / "otherbb.model", meta_change=other_weights),
             "made with backbone efficientnet_lite2 weights " + "0" * 64, "this machine has")

    def newer(meta):
        meta["format_version"] = 99

    _refused(_rewrite(model_file, tmp_path / "newer.model", meta_change=newer),
             "model format version 99 is newer than this genrevision supports")

    def older(meta):
        meta["format_version"] = 1  # fixed-width windows: its heads cannot read today's features

    _refused(_rewrite(model_file, tmp_path / "older.model", meta_change=older),
             "made by an older genrevision (model format 1", "train it again")

    def other_payload(meta):
        meta["classifier_sha256"] = "f" * 64

    _refused(_rewrite(model_file, tmp_path / "sum.model", meta_change=other_payload), "damaged (checksum mismatch)")

    def other_views_payload(meta):
        meta["view_classifier_sha256"] = "f" * 64

    _refused(_rewrite(model_file, tmp_path / "vsum.model", meta_change=other_views_payload),
             "damaged (checksum mismatch)")


def test_untrusted_types_are_refused(model_file, tmp_path):
    import hashlib

    import skops.io as sio

    from genrevision.learn.classifiers import SoftmaxHead
    from genrevision.model.genre_model import meta_checksum

    payload = sio.dumps(SoftmaxHead())  # a type not on the allow-list
    with zipfile.ZipFile(model_file) as z:
        items = {n: z.read(n) for n in z.namelist()}
    for member, key, what in (("classifier.skops", "classifier_sha256", "classifier"),
                              ("views.skops", "view_classifier_sha256", "view classifier")):
        meta = json.loads(items["meta.json"])
        meta[key] = hashlib.sha256(payload).hexdigest()
        meta["meta_sha256"] = meta_checksum(meta)
        p = tmp_path / f"evil-{member}.model"
        with zipfile.ZipFile(p, "w") as z:
            for n, data in dict(items, **{"meta.json": json.dumps(meta).encode(), member: payload}).items():
                z.writestr(n, data)
        _refused(p, f"refused: {what} holds types outside the allow-list", "genrevision.learn.classifiers.SoftmaxHead")


def _with_old_module_names(payload: bytes) -> bytes:
    """A skops payload whose types carry the flat layout's paths (genrevision.classifiers.LinearHead,
    genrevision.fusion.LateFusionClassifier), as models saved before the subpackage move do."""
    src, out = io.BytesIO(payload), io.BytesIO()
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "schema.json":
                data = (data.replace(b'"genrevision.learn.classifiers"', b'"genrevision.classifiers"')
                        .replace(b'"genrevision.learn.fusion"', b'"genrevision.fusion"'))
            zout.writestr(info, data)
    return out.getvalue()


def test_model_saved_before_the_subpackage_move_still_loads(model_file, gtzan_root, tmp_path, recwarn):
    import skops.io as sio

    from genrevision.model.genre_model import _SHA_KEY, meta_checksum

    with zipfile.ZipFile(model_file) as z:
        items = {n: z.read(n) for n in z.namelist()}
    meta = json.loads(items["meta.json"])
    for member in ("classifier.skops", "views.skops"):
        items[member] = _with_old_module_names(items[member])
        meta[_SHA_KEY[member]] = hashlib.sha256(items[member]).hexdigest()
    types = set(sio.get_untrusted_types(data=items["classifier.skops"]))
    assert "genrevision.fusion.LateFusionClassifier" in types and "genrevision.classifiers.LinearHead" in types
    assert not any(t.startswith(("genrevision.learn.", "genrevision.model.")) for t in types)
    meta["meta_sha256"] = meta_checksum(meta)
    items["meta.json"] = json.dumps(meta).encode()
    old = tmp_path / "old-names.model"
    with zipfile.ZipFile(old, "w") as z:
        for n, data in items.items():
            z.writestr(n, data)
    loaded, fresh = load_model(old), load_model(model_file)
    assert type(loaded.classifier).__module__ == "genrevision.learn.fusion"
    assert loaded.labels == fresh.labels
    track = genre_paths(gtzan_root, "classical")[6]
    assert loaded.predict(track).probabilities == pytest.approx(fresh.predict(track).probabilities)
    # Loading an old file is not the user's deprecated import: no DeprecationWarning for it.
    assert not [w for w in recwarn if issubclass(w.category, DeprecationWarning) and "moved to" in str(w.message)]
    # Saved again, it names today's paths and loads as well.
    again = loaded.save(tmp_path / "resaved.model")
    with zipfile.ZipFile(again) as z:
        resaved = set(sio.get_untrusted_types(data=z.read("classifier.skops")))
    assert "genrevision.learn.fusion.LateFusionClassifier" in resaved
    assert load_model(again).labels == fresh.labels


def test_model_with_other_settings_uses_its_own(gtzan_root, tmp_path):
    model = train_subset(gtzan_root, small_recipe(n_mels=64), tmp_path / "cache")
    path = model.save(tmp_path / "mels64.model")
    loaded = load_model(path)
    assert loaded.settings.spectrogram.n_mels == 64
    # The predictor extracts with the model's settings (64 mel bands), not the defaults (128).
    pred = loaded.predict(genre_paths(gtzan_root, "classical")[6])
    assert pred.genre == "classical"
    assert sum(pred.probabilities.values()) == pytest.approx(1.0)


def test_timeline_of_two_genre_concatenation(model_file, gtzan_root, tmp_path):
    parts = []
    for genre, idx in (("classical", 6), ("classical", 7), ("metal", 4), ("metal", 5)):
        y, sr = sf.read(genre_paths(gtzan_root, genre)[idx], frames=30 * SR, dtype="float32")
        assert sr == SR
        parts.append(y)
    path = tmp_path / "classical then metal.wav"
    sf.write(path, np.concatenate(parts), SR)
    pred = load_model(model_file).predict(path, timeline=True)
    assert pred.duration == pytest.approx(120.0, abs=0.01)
    starts = [s[0] for s in pred.segments]
    assert starts == [0.0, 30.0, 60.0, 90.0]
    genres = [s[2] for s in pred.segments]
    assert genres[0] == "classical" and genres[-1] == "metal", genres
    for _, end, g, probs in pred.segments:
        assert sum(probs.values()) == pytest.approx(1.0) and probs[g] == max(probs.values())
    # The whole-file answer is the mean of the segments' probabilities.
    mean = {c: np.mean([s[3][c] for s in pred.segments]) for c in GENRES}
    assert pred.probabilities == pytest.approx(mean)


def test_predict_many_lists_failures(model_file, gtzan_root, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    preds, failures = load_model(model_file).predict_many(
        [genre_paths(gtzan_root, "classical")[6], str(bad), str(tmp_path / "gone.wav")], progress=False)
    assert [p.genre for p in preds] == ["classical"]
    assert [f[0] for f in failures] == [str(bad), str(tmp_path / "gone.wav")]
    assert "not a readable audio file" in failures[0][1] and "no such file" in failures[1][1]


def test_single_track_genre_is_a_clear_error(gtzan_root, tmp_path):
    ds = load_dataset(str(gtzan_root / "genres"))
    pick = [i for i, lab in enumerate(ds.labels) if lab == "classical"][:2]
    pick += [i for i, lab in enumerate(ds.labels) if lab == "metal"][:1]
    with pytest.raises(ValueError, match=r"at least 2 usable tracks; too few for 'metal' \(1\)"):
        train_model(ds.subset(pick), recipe=small_recipe(), cache=str(tmp_path / "c"), jobs=0, progress=False)


def test_recipe_backbone_other_than_the_checked_one_is_refused_at_load(model_file, tmp_path):
    """A consistent meta.json whose recipe reads another backbone than the one whose weights were
    checked: refused when loading (it used to load and then fail every file on the width)."""
    from testkit import run_cli

    def swap(meta):
        meta["recipe"]["features"]["backbone"] = "efficientnet_lite0"

    bad = _rewrite(model_file, tmp_path / "swapped.model", meta_change=swap)
    _refused(bad, "damaged (its recipe reads backbone efficientnet_lite0, its weights checksum is of efficientnet_lite2)")
    proc = run_cli("predict", "--model", bad, model_file)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "efficientnet_lite0" in proc.stderr


def _forge(meta: dict, items: dict) -> dict:
    """What an attacker would do: recompute every checksum meta.json holds."""
    from genrevision.model.genre_model import _SHA_KEY, meta_checksum

    for member, key in _SHA_KEY.items():
        if member in items:
            meta[key] = hashlib.sha256(items[member]).hexdigest()
    meta["meta_sha256"] = meta_checksum(meta)
    return meta


def _nested_bomb(size: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        zeros_member(z, "schema.json", size)
    return buf.getvalue()


def _bomb_models(model_file, folder, size) -> dict:
    """{what: path} of model files whose members inflate to ``size`` bytes of zeros."""
    items = model_members(model_file)
    out = {
        "meta.json": write_model_zip(folder / "meta-bomb.model", items, bombs={"meta.json": size}),
        "classifier.skops": write_model_zip(folder / "clf-bomb.model", items, bombs={"classifier.skops": size}),
    }
    nested = dict(items, **{"classifier.skops": _nested_bomb(size)})
    nested["meta.json"] = json.dumps(_forge(json.loads(items["meta.json"]), nested)).encode()
    out["nested schema.json"] = write_model_zip(folder / "nested-bomb.model", nested)
    # A member whose declared size lies (says 1 kB, inflates to `size`).
    liar = folder / "liar.model"
    write_model_zip(liar, items, bombs={"classifier.skops": size})
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
    from genrevision.model.genre_model import MAX_MEMBER_BYTES

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


def _edit_meta(model_file, dst, change) -> str:
    items = model_members(model_file)
    meta = json.loads(items["meta.json"])
    change(meta)
    items["meta.json"] = json.dumps(meta).encode()
    return write_model_zip(dst, items)


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
    from genrevision.model.genre_model import meta_checksum

    meta = json.loads(model_members(model_file)["meta.json"])
    assert meta["meta_sha256"] == meta_checksum(meta)
    # A loaded and re-saved model keeps its fields and loads again (the skops bytes, hence their sha256, differ).
    again = load_model(model_file).save(tmp_path / "again.model")
    meta2 = json.loads(model_members(again)["meta.json"])
    plain = lambda m: {k: v for k, v in m.items() if not k.endswith("sha256")}  # noqa: E731
    assert plain(meta2) == plain(meta) and meta2["meta_sha256"] == meta_checksum(meta2)
    assert load_model(again).labels == meta["labels"]


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


def test_api_hard_inputs(model_file, hard_files):
    model = load_model(model_file)
    good, bad = hard_files
    for path, genre in good.items():
        pred = model.predict(path)
        assert pred.genre in GENRES and (genre is None or pred.genre == genre), (path, pred)
        assert sum(pred.probabilities.values()) == pytest.approx(1.0)
    for path, words in bad.items():
        with pytest.raises(AudioError) as info:
            model.predict(path)
        msg = str(info.value)
        assert msg.startswith(path) and words in msg and "\n" not in msg


def test_ten_minute_file_bounded_memory(model_file, gtzan_root, tmp_path):
    y, _ = sf.read(genre_paths(gtzan_root, "metal")[4], frames=30 * SR, dtype="float32")
    path = tmp_path / "ten minutes.wav"
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
        for _ in range(20):
            f.write(y)
    del y
    model = load_model(model_file)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    pred = model.predict(path, timeline=True)
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert pred.duration == pytest.approx(600.0, abs=0.01)
    assert len(pred.segments) == 20 and pred.segments[-1][1] == pytest.approx(600.0, abs=0.01)
    assert pred.genre == "metal" and all(s[2] == "metal" for s in pred.segments)
    assert growth_mb < 500, f"peak RSS grew by {growth_mb:.0f} MB"
