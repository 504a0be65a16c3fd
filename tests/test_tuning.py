"""Fine-tuning the last stage on cached frozen activations (genrevision.tuning)."""
from __future__ import annotations

import numpy as np
import pytest

from genrevision import tuning as T
from genrevision.backbone import Backbone
from genrevision.features import prepare_track


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
