"""GenreModel: train → save → load → predict on real GTZAN tracks; the model file refuses damage."""
from __future__ import annotations

import dataclasses
import json
import zipfile

import numpy as np
import pytest
import soundfile as sf

from genrevision import ModelError, load_model, train_model
from genrevision.dataset import load_dataset
from genrevision.features import FeatureSettings
from genrevision.recipes import get_recipe
from genrevision.spectrogram import SpectrogramConfig

GENRES = ("classical", "metal", "hiphop")
SR = 22050


def small_recipe(**spec):
    """The default recipe, classifiers included, training on 2 windows per track (test speed only)."""
    base = get_recipe("default")
    fs = base.features.with_(**{f"spec_{k}": v for k, v in dict(max_windows=2, **spec).items()})
    return dataclasses.replace(base, features=fs)


def genre_paths(gtzan_root, genre):
    ds = load_dataset(str(gtzan_root / "genres"))
    return [p for p, lab in zip(ds.paths, ds.labels) if lab == genre]


def train_subset(gtzan_root, recipe, cache):
    ds = load_dataset(str(gtzan_root / "genres"))
    pick = []
    for g in GENRES:
        pick += [i for i, lab in enumerate(ds.labels) if lab == g][:4]
    return train_model(ds.subset(pick), recipe=recipe, cache=str(cache), jobs=0, progress=False)


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
    from genrevision.model import meta_checksum

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

    from genrevision.classifiers import SoftmaxHead
    from genrevision.model import meta_checksum

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
        _refused(p, f"refused: {what} holds types outside the allow-list", "genrevision.classifiers.SoftmaxHead")


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
    from conftest import run_cli

    def swap(meta):
        meta["recipe"]["features"]["backbone"] = "efficientnet_lite0"

    bad = _rewrite(model_file, tmp_path / "swapped.model", meta_change=swap)
    _refused(bad, "damaged (its recipe reads backbone efficientnet_lite0, its weights checksum is of efficientnet_lite2)")
    proc = run_cli("predict", "--model", bad, model_file)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "efficientnet_lite0" in proc.stderr
