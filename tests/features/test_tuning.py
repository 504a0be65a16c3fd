"""Fine-tuning the last stage on cached frozen activations (genrevision.features.tuning)."""
from __future__ import annotations

import numpy as np
import pytest

from genrevision.features import tuning as T
from genrevision.features.backbone import Backbone
from genrevision.features.extraction import prepare_track


@pytest.fixture(scope="module")
def lite0():
    return Backbone("efficientnet_lite0", engine="torch")


def test_tail_start_is_the_last_stage(lite0):
    ends = T.stage_ends(lite0.module)
    assert len(ends) == 7 and ends[-1] == len(lite0.module._blocks) - 1
    assert T.tail_start(lite0.module) == ends[-2] + 1
    assert T.tail_start(lite0.module, n_stages=2) == ends[-3] + 1
    with pytest.raises(ValueError, match="n_stages must be an integer from 1 to 6"):
        T.tail_start(lite0.module, n_stages=0)


def test_untrained_tail_gives_the_frozen_features_of_real_windows(gtzan_root, small_settings, lite0):
    path = next((gtzan_root / "genres" / "blues").glob("*.wav"))
    start = T.tail_start(lite0.module)
    arrays = T.track_activations(path, small_settings, backbone=lite0, start=start)
    images, _, _ = prepare_track(path, small_settings, baseline=False)
    base, shifted = T.shifted_track_images(path, small_settings)
    views = small_settings.view_names
    for v in views:  # offset-0 windows are exactly the default pipeline's images
        np.testing.assert_array_equal(base[v], images[v])
        assert shifted[v].shape[1:] == images[v].shape[1:] and 1 <= len(shifted[v]) <= 2
        assert not np.array_equal(shifted[v][0], images[v][0])
    pooled, act = T.track_tensor(arrays, views)
    assert act.shape[:3] == (len(images["original"]), 3, lite0.module._blocks[start]._block_args.input_filters)
    feats = T.tail_features(T.TunedTail(lite0.module, start), pooled, act)
    ref = np.concatenate([lite0.features(images[v], layers="all+max") for v in views], axis=1)
    assert feats.shape == ref.shape
    np.testing.assert_allclose(feats, ref, rtol=1e-5, atol=1e-4 * np.abs(ref).max())


def _synthetic_pools(c, n_tracks=30, n_classes=3, seed=0):
    """Activation maps whose class shows as a raised block of channels (plus noise)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_tracks) % n_classes
    pools = []
    for label in y:
        x = rng.normal(0, 1, (4, 3, c, 4, 5)).clip(0, None).astype(np.float32)
        x[:, :, label * 8 : label * 8 + 8] += 1.5
        pools.append(x)
    return pools, y


def test_fine_tuning_learns_changes_the_network_and_is_deterministic(lite0):
    start = T.tail_start(lite0.module)
    c = lite0.module._blocks[start]._block_args.input_filters
    pools, y = _synthetic_pools(c)
    params = dict(backbone="efficientnet_lite0", epochs=5, patience=5, windows_per_track=4, batch_size=8, lr=1e-3,
                  threads=1, random_state=0)
    a = T.FineTuner(**params).fit(pools, y)
    losses = [h["train_loss"] for h in a.history_]
    assert losses[-1] < 0.7 * losses[0]
    assert 1 <= a.best_epoch_ <= 5 and len(a.val_tracks_) >= 3
    # The tuned network's own classifier reads the synthetic classes on windows it never saw.
    test_pools, test_y = _synthetic_pools(c, n_tracks=12, seed=1)
    pred = [np.argmax(a.predict_proba_windows(p).mean(0)) for p in test_pools]
    assert np.mean(np.asarray(pred) == test_y) >= 0.9
    # Its features differ from the frozen network's, and keep the default layout.
    pooled = np.zeros((4, 3, 20), np.float32)
    frozen = T.tail_features(T.TunedTail(lite0.module, start), pooled, test_pools[0])
    tuned = a.window_features(pooled, test_pools[0])
    assert tuned.shape == frozen.shape
    assert not np.allclose(tuned, frozen, atol=1e-3)
    np.testing.assert_array_equal(tuned.reshape(4, 3, -1)[:, :, :10], 0)  # frozen columns pass through
    # Same seed, same network; another seed, another one (one epoch is enough to tell).
    short = {**params, "epochs": 1}
    one, two = T.FineTuner(**short).fit(pools, y), T.FineTuner(**short).fit(pools, y)
    np.testing.assert_array_equal(one.window_features(pooled, test_pools[0]), two.window_features(pooled, test_pools[0]))
    other = T.FineTuner(**{**short, "random_state": 1}).fit(pools, y)
    assert not np.array_equal(other.window_features(pooled, test_pools[0]), one.window_features(pooled, test_pools[0]))


@pytest.mark.parametrize("bad, match", [({"epochs": 0}, "epochs must be an integer >= 1"),
                                        ({"mixup": 1.5}, r"mixup must be in \[0, 1\)"),
                                        ({"val_fraction": 0.7}, r"val_fraction must be in \(0, 0.5\)")])
def test_bad_parameters_are_refused_before_training(bad, match):
    with pytest.raises(ValueError, match=match):
        T.FineTuner(**bad).fit([np.zeros((1, 3, 8, 4, 5), np.float32)] * 3, [0, 1, 2])


def test_window_features_need_a_fitted_tuner():
    with pytest.raises(RuntimeError, match="not fitted"):
        T.FineTuner().window_features(np.zeros((1, 3, 4)), np.zeros((1, 3, 8, 4, 5)))


def test_tuned_network_runs_from_images_and_survives_a_model_file(gtzan_root, small_settings, lite0, tmp_path,
                                                                   monkeypatch):
    start = T.tail_start(lite0.module)
    pools, y = _synthetic_pools(lite0.module._blocks[start]._block_args.input_filters)
    tuner = T.FineTuner(backbone="efficientnet_lite0", epochs=1, batch_size=8, lr=1e-3, threads=1).fit(pools, y)
    images, _, _ = prepare_track(next((gtzan_root / "genres" / "rock").glob("*.wav")), small_settings, baseline=False)
    img = images["original"]
    pooled, act = T.frozen_pass(img, backbone=lite0, start=start)
    from_cache = tuner.window_features(pooled[:, None], act[:, None])
    # The same numbers straight from images: a Backbone carrying the tuned tail, in PyTorch and ONNX Runtime.
    torch_bb = T.tuned_backbone(tuner, engine="torch")
    np.testing.assert_allclose(torch_bb.features(img, layers="all+max"), from_cache, rtol=1e-5, atol=1e-4)
    assert not np.allclose(lite0.features(img, layers="all+max"), from_cache, atol=1e-3)
    monkeypatch.setenv("GENREVISION_ONNX_CACHE", str(tmp_path / "onnx"))
    ort_bb = T.tuned_backbone(tuner, engine="onnxruntime")
    assert ort_bb.engine == "onnxruntime" and ort_bb.weights_sha256 != lite0.weights_sha256
    np.testing.assert_allclose(ort_bb.features(img, layers="all+max"), from_cache, rtol=1e-4,
                               atol=1e-4 * np.abs(from_cache).max())
    # Model file: plain arrays with checksums, the same network after loading.
    path = T.save_tuned(tuner, tmp_path / "tuned.npz")
    back = T.load_tuned(path)
    np.testing.assert_array_equal(back.window_features(pooled[:, None], act[:, None]), from_cache)
    np.testing.assert_array_equal(back.predict_proba_windows(pools[0]), tuner.predict_proba_windows(pools[0]))
    assert list(back.classes_) == [str(c) for c in tuner.classes_]
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays["classifier/1.bias"][0] += 1.0
    np.savez(tmp_path / "altered.npz", **arrays)
    with pytest.raises(ValueError, match=r"altered.npz: checksum mismatch for classifier/1.bias"):
        T.load_tuned(tmp_path / "altered.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz: not a tuned-network file"):
        T.load_tuned(tmp_path / "junk.npz")


# ----------------------------------------------------------------------------- the tuned recipe, end to end
# Short real excerpts (6 s: two windows at offset 0, one shifted) of 3 genres × 4 tracks keep these fast.

TUNED_GENRES = ("classical", "hiphop", "metal")


@pytest.fixture(scope="module", autouse=True)
def _torch_engine():
    """PyTorch runs the networks here (CLI runs too): each tuned network would otherwise be exported to ONNX
    once, ~10 s a network on 2 cores. The ONNX path of a tuned network is checked on its own above."""
    import os

    old = os.environ.get("GENREVISION_ENGINE")
    os.environ["GENREVISION_ENGINE"] = "torch"
    yield
    if old is None:
        del os.environ["GENREVISION_ENGINE"]
    else:
        os.environ["GENREVISION_ENGINE"] = old


def _write_excerpts(gtzan_root, folder, index, seconds=6.0):
    import soundfile as sf

    from testkit import SR, real_excerpt

    for g in TUNED_GENRES:
        for k in index:
            rel = f"{g}/{g}.{k:05d}.wav"
            (folder / g).mkdir(parents=True, exist_ok=True)
            sf.write(folder / rel, real_excerpt(gtzan_root, rel, seconds), SR)
    return folder


@pytest.fixture(scope="module")
def tuned_data(gtzan_root, tmp_path_factory):
    """(training folder, held-out folder, feature cache) of short real excerpts."""
    base = tmp_path_factory.mktemp("tuned")
    return (_write_excerpts(gtzan_root, base / "train", range(4)), _write_excerpts(gtzan_root, base / "held", (5,)),
            tmp_path_factory.getbasetemp() / "feature-cache")


@pytest.fixture(scope="module")
def tuned_model_file(tuned_data, tmp_path_factory):
    from testkit import run_cli

    train, _, cache = tuned_data
    path = tmp_path_factory.mktemp("tuned-model") / "tuned.model"
    proc = run_cli("train", train, "--recipe", "tuned", "--model", path, "--cache", cache, "--jobs", "0", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "trained tuned model on 12 tracks of 3 genres" in proc.stdout
    return path


def tiny_tuned(**tune):
    """The tuned recipe with fewer epochs (test speed only)."""
    import dataclasses

    from genrevision.recipes import get_recipe

    rec = get_recipe("tuned")
    return dataclasses.replace(rec, name="tuned-tiny", tune={**rec.tune, "epochs": 2, **tune})


def test_tuned_recipe_is_registered_and_survives_the_model_json():
    import json

    from genrevision.model.genre_model import recipe_from_dict, recipe_to_dict
    from genrevision.recipes import RECIPES, Recipe

    rec = RECIPES["tuned"]
    assert rec.tune["n_stages"] == 1 and rec.tune["epochs"] == 8 and rec.tune["patience"] == 3
    assert rec.tune["threads"] is None and "backbone" not in rec.tune
    assert rec.fine_tuner_params()["backbone"] == rec.features.backbone == RECIPES["default"].features.backbone
    back = recipe_from_dict(json.loads(json.dumps(recipe_to_dict(rec))))
    assert back == rec and hash(back) == hash(rec)
    assert "tune" not in recipe_to_dict(RECIPES["default"])  # recipes without it keep their dict (fold keys)
    with pytest.raises(ValueError, match="unknown fine-tuning parameters epoch;"):
        Recipe(name="x", features=rec.features, tune={"epoch": 3})
    with pytest.raises(ValueError, match="fine-tuning needs window images"):
        Recipe(name="x", features=RECIPES["paper"].features, tune={})


def test_tuned_model_round_trip_and_its_tuned_network_is_used(tuned_model_file, tuned_data, tmp_path):
    # (save_tuned/load_tuned of a tuner fitted in memory give the same network: checked above)
    from genrevision.features.backbone import get_backbone
    from genrevision.model.genre_model import load_model

    _, held, _ = tuned_data
    model = load_model(tuned_model_file)
    assert model.recipe.name == "tuned" and 1 <= model.tuner.best_epoch_ <= len(model.tuner.history_) <= 8
    song = next(held.rglob("metal*.wav"))
    before = model.predict(song)
    again = load_model(model.save(tmp_path / "again.model"))
    assert again.recipe == model.recipe and again.labels == model.labels
    after = again.predict(song)
    assert after.probabilities == before.probabilities and after.genre == before.genre
    # The tuned tail is really what runs: with the frozen network the same classifier answers otherwise.
    tuned_bb = again.feature_backbone()
    assert tuned_bb is again.feature_backbone() and tuned_bb.engine == "torch"
    assert tuned_bb.weights_sha256 != get_backbone(tuned_bb.name).weights_sha256
    again._tuned_backbone = get_backbone(tuned_bb.name)
    frozen = again.predict(song)
    assert max(abs(frozen.probabilities[g] - after.probabilities[g]) for g in TUNED_GENRES) > 1e-3


def test_cli_tuned_model_engine_and_model_agree(tuned_model_file, tuned_data):
    import json

    from testkit import run_cli

    from genrevision.model.genre_model import load_model

    _, held, _ = tuned_data
    model = load_model(tuned_model_file)
    proc = run_cli("predict", held, "--model", tuned_model_file, "--format", "json", "--quiet", "--jobs", "2")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["predictions"]) == 3 and out["failures"] == []
    right = 0
    for d in out["predictions"]:
        mine = model.predict(d["path"])
        assert d["genre"] == mine.genre
        for g, p in mine.probabilities.items():
            # the workers' CNN runs on one thread: float32 sums in another order
            assert d["probabilities"][g] == pytest.approx(p, abs=1e-4)
        right += mine.genre in d["path"]
    assert right >= 2  # held-out excerpts of three clear genres


def _member_offsets(path, name):
    import zipfile

    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    raw = path.read_bytes()
    start = info.header_offset + 30 + int.from_bytes(raw[info.header_offset + 26 : info.header_offset + 28], "little") \
        + int.from_bytes(raw[info.header_offset + 28 : info.header_offset + 30], "little")
    return start, start + info.compress_size


def test_a_damaged_tuned_member_is_refused_in_one_line(tuned_model_file, tmp_path):
    import io
    import json
    import zipfile

    from genrevision.model.genre_model import ModelError, load_model

    # A flipped byte inside tuned.npz: the zip's own check refuses it.
    start, stop = _member_offsets(tuned_model_file, "tuned.npz")
    raw = bytearray(tuned_model_file.read_bytes())
    raw[(start + stop) // 2] ^= 0xFF
    flipped = tmp_path / "flipped.model"
    flipped.write_bytes(bytes(raw))
    with pytest.raises(ModelError) as err:
        load_model(flipped)
    assert str(err.value).startswith(f"{flipped}: damaged") and "\n" not in str(err.value)
    # A consistent forgery of the zip and meta.json checksums: the arrays' own checksums still refuse it.
    with zipfile.ZipFile(tuned_model_file) as z:
        members = {n: z.read(n) for n in z.namelist()}
    with np.load(io.BytesIO(members["tuned.npz"]), allow_pickle=False) as npz:
        arrays = {k: npz[k].copy() for k in npz.files}
    key = next(k for k in arrays if k.startswith("tail/"))
    arrays[key].flat[0] += 1.0
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    meta = json.loads(members["meta.json"])
    forged = tmp_path / "forged.model"
    _write_forged(forged, members, meta, buf.getvalue())
    with pytest.raises(ModelError, match=rf"^{forged}: damaged \(tuned.npz: checksum mismatch for {key}"):
        load_model(forged)
    # A tuned member that inflates beyond the member cap (an npz is a zip too) is refused before numpy reads it.
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("__meta__.npy", bytes(65 * 2**20))
    _write_forged(tmp_path / "bomb.model", members, meta, bomb.getvalue())
    with pytest.raises(ModelError, match=r"refused: the tuned network's npz entries inflate to 65 MB"):
        load_model(tmp_path / "bomb.model")
    # Without its tuned member a tuned model is refused too (not run with the frozen network).
    _write_forged(tmp_path / "stripped.model", members, meta, None)
    with pytest.raises(ModelError, match="damaged \\(tuned.npz and the recipe's tune setting disagree\\)"):
        load_model(tmp_path / "stripped.model")


def _write_forged(path, members, meta, tuned):
    """A model file whose tuned member is ``tuned`` (None: left out), every checksum recomputed."""
    import hashlib
    import json
    import zipfile

    from genrevision.model.genre_model import meta_checksum

    members, meta = dict(members), dict(meta)
    members.pop("tuned.npz", None)
    meta.pop("tuned_sha256", None)
    if tuned is not None:
        members["tuned.npz"] = tuned
        meta["tuned_sha256"] = hashlib.sha256(tuned).hexdigest()
    meta["meta_sha256"] = meta_checksum(meta)
    members["meta.json"] = json.dumps(meta).encode()
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n, b in members.items():
            z.writestr(n, b)


def test_evaluate_tunes_each_fold_on_its_training_tracks_and_resumes(tuned_data, tmp_path, monkeypatch):
    from genrevision.features import tuning
    from genrevision.evaluation.dataset import load_dataset
    from genrevision.evaluation.experiment import evaluate

    train, _, cache = tuned_data
    seen = []
    real = tuning.fit_on_tracks

    def spy(*args, **kw):
        seen.append(list(kw["tracks"]))
        return real(*args, **kw)

    monkeypatch.setattr(tuning, "fit_on_tracks", spy)
    rec = tiny_tuned(epochs=1)
    kw = dict(protocol="cv", folds=2, repeats=1, recipes=(rec,), cache=str(cache), jobs=0, progress=False,
              out=tmp_path / "ev")
    res = evaluate(str(train), **kw)
    paths = load_dataset(str(train)).paths
    assert len(res.folds) == 2 and len(seen) == 2
    for fold, tracks in zip(res.folds, seen):
        assert sorted(tracks) == sorted(paths[i] for i in fold.train)
        assert not set(tracks) & {paths[i] for i in fold.test}
    assert 0.0 <= res.accuracy("tuned-tiny") <= 1.0
    assert res.results["config"]["recipes"]["tuned-tiny"]["tune"]["epochs"] == 1
    again = evaluate(str(train), **kw)
    assert len(seen) == 2 and again.timings["fitting"]["tuned-tiny"]["folds_loaded"] == 2
    np.testing.assert_array_equal(again.fold_accuracies("tuned-tiny"), res.fold_accuracies("tuned-tiny"))


def test_tuned_features_come_from_a_model_not_the_recipe(tuned_model_file, tuned_data, gtzan_root):
    import torch

    from testkit import real_excerpt

    from genrevision.apps import hear
    from genrevision.apps.embeddings import embed
    from genrevision.recipes import get_recipe

    train, _, cache = tuned_data
    with pytest.raises(ValueError, match="trained model"):
        embed(str(train), recipe="tuned", cache=str(cache), jobs=0, progress=False)
    with pytest.raises(ValueError, match="pass the model file to genrevision.apps.hear.load_model"):
        hear.GenrevisionEmbedding(get_recipe("tuned"))
    audio = torch.from_numpy(real_excerpt(gtzan_root, "metal/metal.00007.wav", 3.5))[None]
    tuned = hear.get_scene_embeddings(audio, hear.load_model(str(tuned_model_file)))
    frozen = hear.get_scene_embeddings(audio, hear.load_model())
    assert tuned.shape == frozen.shape
    assert not torch.allclose(tuned, frozen, atol=1e-3)
