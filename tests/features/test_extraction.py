"""genrevision.features.extraction: per-track features, cached dataset extraction, matrices."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from genrevision.features.backbone import get_backbone
from genrevision.features.extraction import (
    FeatureSettings,
    Segment,
    extract_dataset,
    extract_track,
    feature_matrix,
    plan_segments,
    pool_windows,
    track_images,
)
from genrevision.features.store import FeatureStore, content_digest
from genrevision.features.ragged import Ragged
from genrevision.signal.separation import VIEWS
from genrevision.signal.spectrogram import SpectrogramConfig

from testkit import TINY, Unblock, make_fifo, run_cli

SR = 22050
TRACKS = ["blues/blues.00000.wav", "classical/classical.00001.wav", "metal/metal.00002.wav"]
D = 2064


@pytest.fixture(scope="module")
def real_paths(gtzan_root):
    return [str(gtzan_root / "genres" / t) for t in TRACKS]


@pytest.fixture(scope="module")
def single(real_paths, small_settings):
    """extract_track of each real track (in-process, no cache)."""
    return {p: extract_track(p, small_settings) for p in real_paths}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    corrupt = d / "corrupt.wav"
    corrupt.write_bytes(np.random.default_rng(0).bytes(20000))
    empty = d / "empty.wav"
    empty.write_bytes(b"")
    short = d / "short.wav"
    t = np.arange(int(0.2 * SR)) / SR
    sf.write(short, 0.5 * np.sin(2 * np.pi * 440 * t), SR, subtype="PCM_16")
    return [str(corrupt), str(empty), str(short)]


def test_extract_track_views_and_shapes(single):
    for p, feats in single.items():
        assert set(feats) == set(VIEWS) | {"mfcc", "starts"}
        # 6 s segments, at most 2 windows spread over the 30 s track: its first and its last
        np.testing.assert_allclose(feats["starts"], [0.0, 24 + 129 * 512 / SR], atol=1e-4)
        for v in VIEWS:
            assert feats[v].shape == (2, D), (p, v)
            assert feats[v].dtype == np.float32
            assert np.all(np.isfinite(feats[v]))
        assert feats["mfcc"].ndim == 1 and feats["mfcc"].size > 10
        assert feats["mfcc"].dtype == np.float32 and np.all(np.isfinite(feats["mfcc"]))
        # the three views are different pictures, so different features
        assert not np.allclose(feats["original"], feats["harmonic"])
        assert not np.allclose(feats["harmonic"], feats["percussive"])
    # different genres give different features
    a, b, c = (single[p]["original"].mean(axis=0) for p in single)
    assert not np.allclose(a, b) and not np.allclose(b, c)


def test_extract_track_from_bytes_matches_path(real_paths, single, small_settings):
    with open(real_paths[0], "rb") as f:
        from_bytes = extract_track(f.read(), small_settings, backbone=get_backbone())
    for k in (*VIEWS, "starts", "mfcc"):
        np.testing.assert_allclose(from_bytes[k], single[real_paths[0]][k], rtol=1e-4, atol=1e-4)


def test_short_clip_yields_its_real_windows_only(gtzan_root, write_wav):
    # An 8 s clip has 2 real 3 s windows: neither padded nor repeated to the cap.
    from testkit import real_excerpt

    settings = FeatureSettings()
    assert settings.spectrogram.max_windows == 20
    clip = write_wav("clip.wav", real_excerpt(gtzan_root, "rock/rock.00003.wav", 8.0), subtype="PCM_16")
    images, base, starts = __import__("genrevision.features.extraction", fromlist=["prepare_track"]).prepare_track(
        str(clip), settings)
    assert {v: a.shape[0] for v, a in images.items()} == {v: 2 for v in VIEWS}
    np.testing.assert_allclose(starts, [0.0, 129 * 512 / SR], atol=1e-4)
    assert not np.allclose(images["original"][0], images["original"][1])
    assert base.ndim == 1
    # The same two windows as cutting the first 8 s of the track by hand.
    y = __import__("genrevision.signal.audio", fromlist=["load_audio"]).load_audio(str(clip))
    by_hand, _ = track_images(y, settings)
    np.testing.assert_array_equal(images["harmonic"], by_hand["harmonic"])


@pytest.mark.parametrize("segment_seconds", [None, 4.0])
def test_baseline_takes_the_front_ends_stft_and_keeps_its_numbers(gtzan_root, write_wav, monkeypatch,
                                                                   segment_seconds):
    # Read in one piece, the MFCC baseline uses the HPSS front end's STFT (one STFT per file, not
    # two); read in segments it computes its own over the joined audio. Same vector either way.
    import librosa

    from genrevision.features.extraction import decode_segments, prepare_track
    from genrevision.signal.baseline import mfcc_features
    from testkit import real_excerpt

    settings = FeatureSettings(segment_seconds=segment_seconds)
    clip = write_wav("clip.wav", real_excerpt(gtzan_root, "jazz/jazz.00002.wav", 8.0), subtype="PCM_16")
    plan = plan_segments(8.0, settings, max_windows=settings.spectrogram.max_windows)
    joined = np.concatenate([y for _, y in decode_segments(str(clip), settings, plan)])
    expected = mfcc_features(joined, SR)
    calls = []
    real_stft = librosa.stft
    monkeypatch.setattr(librosa, "stft", lambda *a, **k: calls.append(1) or real_stft(*a, **k))
    _, base, _ = prepare_track(str(clip), settings)
    np.testing.assert_array_equal(base, expected)
    assert len(calls) == (1 if len(plan) == 1 else len(plan) + 1), (len(plan), len(calls))


def test_long_file_contributes_windows_from_start_to_end(gtzan_root, write_wav):
    # A 3-minute file made of six different tracks: the windows kept for
    # training come from all of it, its end as well as its start.
    from testkit import real_excerpt

    parts = ["classical/classical.00000.wav", "metal/metal.00000.wav", "jazz/jazz.00001.wav",
             "disco/disco.00002.wav", "reggae/reggae.00003.wav", "blues/blues.00004.wav"]
    y = np.concatenate([real_excerpt(gtzan_root, p, 30.0) for p in parts])
    path = write_wav("three-minutes.wav", y, subtype="PCM_16")
    settings = FeatureSettings(spectrogram=SpectrogramConfig(max_windows=6))
    plan = plan_segments(180.0, settings, max_windows=6)
    assert [s.start for s in plan] == [0, 30, 60, 90, 120, 150]  # 60 windows, every 12th kept
    assert sum(len(s.windows) for s in plan) == 6 and plan[-1].to_end
    images, _, starts = __import__("genrevision.features.extraction", fromlist=["prepare_track"]).prepare_track(
        str(path), settings, baseline=False)
    assert images["original"].shape[0] == 6 and starts[0] == 0.0 and starts[-1] > 170.0
    assert np.all(np.diff(starts) > 25)
    # The last window is the file's last 3 s: the same picture as cutting it from the last 30 s.
    from genrevision.signal.audio import load_audio

    last, _ = track_images(load_audio(str(path), offset=150.0), settings)
    np.testing.assert_allclose(images["original"][-1], last["original"][-1], atol=1e-5)


def test_decode_segments_of_a_long_file(write_wav):
    from genrevision.features.extraction import decode_segments

    rng = np.random.default_rng(0)
    path = write_wav("long.wav", (0.1 * rng.standard_normal(70 * SR)).astype(np.float32), subtype="PCM_16")
    settings = FeatureSettings()
    segs = list(decode_segments(str(path), settings, plan_segments(70.0, settings)))
    assert [s.start for s, _ in segs] == [0.0, 30.0, 60.0]
    assert [len(y) for _, y in segs] == [30 * SR, 30 * SR, 10 * SR]
    for _, y in segs:  # each segment normalised on its own
        assert y.dtype == np.float32 and np.max(np.abs(y)) == pytest.approx(1.0, abs=1e-6)


def test_decode_segments_skips_a_silent_stretch(write_wav):
    from genrevision.features.extraction import decode_segments

    rng = np.random.default_rng(1)
    y = (0.1 * rng.standard_normal(25 * SR)).astype(np.float32)
    y[10 * SR : 20 * SR] = 0.0
    path = write_wav("gap.wav", y, subtype="PCM_16")
    settings = FeatureSettings(segment_seconds=10.0)
    assert [s.start for s, _ in decode_segments(str(path), settings, plan_segments(25.0, settings))] == [0.0, 20.0]


def test_plan_segments():
    s = FeatureSettings()
    assert plan_segments(30.37, s) == [Segment(0.0, 30.0, None, False)]  # GTZAN: its first 30 s, one segment
    assert plan_segments(8.0, s) == [Segment(0.0, 8.0, None, True)]
    # 65 s: two full segments and a 5 s tail (one window); 62 s: the 2 s tail holds no window.
    assert [(p.start, p.duration, p.to_end) for p in plan_segments(65.0, s)] == [
        (0.0, 30.0, False), (30.0, 30.0, False), (60.0, 5.0, True)]
    assert [p.to_end for p in plan_segments(62.0, s)] == [False, False]
    # At most max_windows windows, spread evenly over the file.
    plan = plan_segments(300.0, s, max_windows=20)
    assert sum(len(p.windows) for p in plan) == 20 and plan[0].windows[0] == 0 and plan[-1].windows[-1] == 9
    # Prediction samples segments instead, keeping all their windows: the middle one of each
    # third of the file, not its intro and outro.
    sampled = plan_segments(300.0, s, max_segments=3)
    assert [p.start for p in sampled] == [30.0, 150.0, 240.0] and all(p.windows is None for p in sampled)
    assert not any(p.to_end for p in sampled)
    assert [p.start for p in plan_segments(240.0, s, max_segments=2)] == [60.0, 180.0]
    assert [p.start for p in plan_segments(65.0, s, max_segments=1)] == [30.0]
    with pytest.raises(ValueError, match="max_windows"):
        plan_segments(30.0, s, max_windows=0)
    # The paper's whole-track layout: one image per segment.
    whole = s.with_(spec_layout="whole", spec_max_windows=1)
    assert plan_segments(300.0, whole, max_windows=1) == [Segment(0.0, 30.0, (0,), False)]


def test_track_images_shapes(real_paths, small_settings):
    from genrevision.signal.audio import load_audio

    y = load_audio(real_paths[1], duration=6.0)
    imgs, starts = track_images(y, small_settings)
    frames = int(round(3.0 * SR / 512))
    np.testing.assert_allclose(starts, [0.0, frames * 512 / SR], atol=1e-5)
    assert set(imgs) == set(VIEWS)
    for v in VIEWS:
        assert imgs[v].shape == (2, 128, frames)
        assert imgs[v].min() >= -1e-6 and imgs[v].max() <= 1 + 1e-6
    stacked, _ = track_images(y, small_settings.with_(channels="stacked"))
    assert set(stacked) == {"stacked"}
    assert stacked["stacked"].shape == (2, 128, frames, 3)
    np.testing.assert_array_equal(stacked["stacked"][..., 2], imgs["percussive"])
    whole, _ = track_images(y, small_settings.with_(spec_layout="whole", spec_image_size=(64, 64)))
    assert whole["original"].shape == (1, 64, 64)


@pytest.fixture(scope="module")
def store_runs(tmp_path_factory, real_paths, bad_files, small_settings):
    """Two extract_dataset runs over good + bad files sharing one FeatureStore."""
    root = tmp_path_factory.mktemp("store")
    paths = [real_paths[0], bad_files[0], real_paths[1], bad_files[1], bad_files[2], real_paths[2]]
    store = FeatureStore(str(root), small_settings.to_dict())
    first = extract_dataset(paths, small_settings, store=store, jobs=0, progress=False)
    second = extract_dataset(paths, small_settings, store=FeatureStore(str(root), small_settings.to_dict()),
                             jobs=0, progress=False)
    return store, paths, first, second


def test_extract_dataset_failures_listed_good_files_extracted(store_runs, real_paths, bad_files):
    store, paths, first, _ = store_runs
    assert sorted(p for p, _ in first.failures) == sorted(bad_files)
    for p, reason in first.failures:
        assert reason and "\n" not in reason
    reasons = dict(first.failures)
    assert "empty" in reasons[bad_files[1]]
    assert "too short" in reasons[bad_files[2]]
    assert "readable" in reasons[bad_files[0]]
    assert sorted(first.features) == sorted(real_paths)
    assert first.computed == 3 and first.cached == 0
    assert len(store) == 3
    for p in real_paths:
        assert content_digest(p) in store


def test_extract_dataset_matches_extract_track(store_runs, single):
    _, _, first, _ = store_runs
    for p, feats in single.items():
        for k in (*VIEWS, "starts", "mfcc"):
            np.testing.assert_allclose(first.features[p][k], feats[k], rtol=1e-4, atol=1e-4)


def test_second_run_is_all_cache(store_runs, real_paths, bad_files):
    _, _, first, second = store_runs
    assert second.computed == 0 and second.cached == 3
    assert sorted(p for p, _ in second.failures) == sorted(bad_files)
    for p in real_paths:
        assert set(second.features[p]) == set(first.features[p])
        for k, arr in first.features[p].items():
            got = second.features[p][k]
            assert got.shape == arr.shape and got.dtype == np.float32
            # Window features are stored as float16, per-track vectors and times exactly.
            expected = arr.astype(np.float16).astype(np.float32) if arr.ndim == 2 else arr
            np.testing.assert_allclose(got, expected, rtol=0, atol=0)
            np.testing.assert_allclose(got, arr, rtol=1e-3, atol=1e-4)


def test_damaged_cache_entry_is_recomputed(store_runs, real_paths, small_settings):
    store, paths, first, _ = store_runs
    victim = real_paths[1]
    entry = store._file(content_digest(victim))
    assert os.path.exists(entry)
    with open(entry, "wb") as f:
        f.write(b"garbage, not a zip file" * 10)
    with pytest.warns(UserWarning, match="damaged"):
        res = extract_dataset(real_paths, small_settings, store=store, jobs=0, progress=False)
    assert res.computed == 1 and res.cached == 2 and res.failures == []
    np.testing.assert_allclose(res.features[victim]["original"], first.features[victim]["original"],
                               rtol=1e-4, atol=1e-4)
    assert store.get(content_digest(victim)) is not None


def test_missing_path_is_a_failure(tmp_path, small_settings):
    missing = str(tmp_path / "gone.wav")
    res = extract_dataset([missing], small_settings, jobs=0, progress=False)
    assert res.failures == [(missing, "no such file")] and res.features == {}


def test_worker_process_gives_same_features(real_paths, single, small_settings):
    two = real_paths[:2]
    res = extract_dataset(two, small_settings, jobs=1, progress=False)
    assert res.failures == [] and res.computed == 2
    for p in two:
        for k in (*VIEWS, "starts", "mfcc"):
            np.testing.assert_allclose(res.features[p][k], single[p][k], rtol=1e-4, atol=1e-4)


def test_feature_matrix_layout(single):
    feats = list(single.values())
    X, layout = feature_matrix(feats)
    assert X.shape == (3, 3 * 2 * D) and X.dtype == np.float32
    assert layout == (("original", 0, 2 * D), ("harmonic", 2 * D, 4 * D), ("percussive", 4 * D, 6 * D))
    for i, f in enumerate(feats):
        np.testing.assert_allclose(X[i, 2 * D : 3 * D], f["harmonic"].mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(X[i, 3 * D : 4 * D], f["harmonic"].std(axis=0), rtol=1e-5, atol=1e-6)
    # last-layer columns, mean pooling, plus the 1-D baseline vector used as is
    Xl, layout_l = feature_matrix(feats, views=("percussive", "mfcc"), pooling="mean", columns=slice(-1280, None))
    m = feats[0]["mfcc"].size
    assert layout_l == (("percussive", 0, 1280), ("mfcc", 1280, 1280 + m))
    np.testing.assert_allclose(Xl[1, :1280], feats[1]["percussive"][:, -1280:].mean(axis=0), rtol=1e-6)
    np.testing.assert_array_equal(Xl[2, 1280:], feats[2]["mfcc"])
    # Every window a row of a ragged matrix; per-track vectors repeat on each window.
    short = dict(feats[1], original=feats[1]["original"][:1])
    Xw, layout_w = feature_matrix([feats[0], short], views=("original", "mfcc"), pooling="windows")
    assert isinstance(Xw, Ragged) and len(Xw) == 2 and list(Xw.lengths) == [2, 1]
    assert layout_w == (("original", 0, D), ("mfcc", D, D + m))
    np.testing.assert_array_equal(Xw.track(0)[1, :D], feats[0]["original"][1])
    np.testing.assert_array_equal(Xw.track(0)[:, D:], np.stack([feats[0]["mfcc"]] * 2))
    np.testing.assert_array_equal(Xw[[1]].data[0, :D], feats[1]["original"][0])


def test_pool_windows():
    w = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(pool_windows(w, "mean"), [4, 5, 6, 7])
    ms = pool_windows(w, "meanstd")
    assert ms.shape == (8,)
    np.testing.assert_allclose(ms[4:], np.full(4, np.std([0, 4, 8])))
    with pytest.raises(ValueError):
        pool_windows(w, "max")


def test_settings_round_trip(small_settings):
    d = small_settings.to_dict()
    assert d["spectrogram"]["max_windows"] == 2 and d["segment_seconds"] == 6.0
    again = FeatureSettings.from_dict(json.loads(json.dumps(d)))
    assert again == small_settings
    assert again.to_dict() == d
    other = FeatureSettings(hpss_kernel=17, hpss_margin=2, spectrogram=SpectrogramConfig(image_size=(64, 64)),
                            channels="stacked", layers="last")
    assert other.hpss_kernel == (17, 17) and other.hpss_margin == (2.0, 2.0)
    assert FeatureSettings.from_dict(json.loads(json.dumps(other.to_dict()))) == other
    # a spectrogram given as a dict is accepted
    assert FeatureSettings(spectrogram=d["spectrogram"]) == small_settings.with_(segment_seconds=30.0)
    # settings that change the numbers change the store key
    assert json.dumps(d, sort_keys=True) != json.dumps(small_settings.with_(spec_n_mels=64).to_dict(), sort_keys=True)


@pytest.mark.parametrize("kwargs", [dict(layers="first"), dict(channels="rgb"), dict(segment_seconds=0.5),
                                    dict(segment_seconds=2.0)])
def test_settings_validation(kwargs):
    with pytest.raises(ValueError):
        FeatureSettings(**kwargs)


def test_store_keys_by_settings(tmp_path, small_settings):
    a = FeatureStore(str(tmp_path), small_settings.to_dict())
    b = FeatureStore(str(tmp_path), small_settings.with_(layers="last").to_dict())
    c = FeatureStore(str(tmp_path), small_settings.to_dict())
    assert a.key != b.key and a.key == c.key
    assert json.loads((tmp_path / a.key / "settings.json").read_text()) == json.loads(json.dumps(small_settings.to_dict()))
    a.put("ab" * 20, {"x": np.array([1.5, 2.25], np.float32), "n": np.array([3])})
    got = a.get("ab" * 20)
    assert got["x"].dtype == np.float32 and got["x"].tolist() == [1.5, 2.25] and got["n"].tolist() == [3]
    assert len(a) == 1 and len(b) == 0 and b.get("ab" * 20) is None
    assert content_digest(b"abc") == "a9993e364706816aba3e25717850c26c9cd0d89d"


def test_worker_processes_report_bad_files_and_go_on(tmp_path, real_paths, bad_files, small_settings):
    # The same bad files through the worker pool: their errors cross a process
    # boundary and must arrive as one line each, without breaking the pool.
    paths = [bad_files[1], real_paths[0], bad_files[0], bad_files[2]]
    res = extract_dataset(paths, small_settings, jobs=1, progress=False)
    reasons = dict(res.failures)
    assert sorted(reasons) == sorted(bad_files)
    assert "empty" in reasons[bad_files[1]] and "too short" in reasons[bad_files[2]]
    assert "readable" in reasons[bad_files[0]]
    assert list(res.features) == [real_paths[0]]


def test_audio_error_survives_pickling():
    import pickle

    from genrevision.signal.audio import AudioError

    err = pickle.loads(pickle.dumps(AudioError("/music/a b.wav", "silent")))
    assert str(err) == "/music/a b.wav: silent" and err.reason == "silent"


def test_a_script_without_main_guard_can_use_worker_pools(gtzan_root, tmp_path):
    """`python script.py` (and `python -`) calling the library at top level, with no
    `if __name__ == "__main__":` guard, extracts features in worker processes: the workers do not
    run the script again (which ended in 'bootstrapping phase' errors and BrokenProcessPool)."""
    import subprocess
    import sys

    paths = sorted(str(p) for p in (gtzan_root / "genres" / "blues").glob("*.wav"))[:2]
    script = tmp_path / "script.py"
    script.write_text(
        "from genrevision.features.extraction import FeatureSettings, extract_cached\n"
        "from genrevision.signal.spectrogram import SpectrogramConfig\n"
        "s = FeatureSettings(segment_seconds=6.0, spectrogram=SpectrogramConfig(max_windows=2))\n"
        f"res = extract_cached({paths!r}, s, cache=None, jobs=2, progress=False)\n"
        "print('extracted', len(res.features), 'failed', len(res.failures))\n")
    for how in ([str(script)], ["-"]):
        proc = subprocess.run([sys.executable, *how], input=script.read_text() if how == ["-"] else None,
                              capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0 and proc.stdout.strip() == "extracted 2 failed 0", (how, proc.stderr[-2000:])
        assert "bootstrapping" not in proc.stderr and "BrokenProcessPool" not in proc.stderr


def test_several_settings_one_pass_equal_separate_runs(real_paths, bad_files, small_settings, tmp_path):
    # Settings of one front end (same decoding, STFT and HPSS) share the decoded audio and its
    # separation; a whole-track layout reads other segments here, so it is decoded on its own.
    # Every settings gets exactly the features and failures of a run of its own.
    from genrevision.features.extraction import extract_cached_many, extract_many, prepare_tracks

    linear = small_settings.with_(spec_scale="linear", layers="last")
    whole = small_settings.with_(spec_layout="whole", spec_image_size=(96, 96), layers="last")
    settings = [small_settings, linear, whole]
    a, b, c = prepare_tracks(real_paths[0], settings)
    assert a[1] is b[1] and c[1] is not a[1]  # one decode (and MFCC vector) for the first two
    np.testing.assert_array_equal(a[1], c[1])
    paths = [real_paths[0], bad_files[0], real_paths[1]]
    together = extract_many(paths, settings, jobs=0, progress=False)
    for st, res in zip(settings, together):
        alone = extract_dataset(paths, st, jobs=0, progress=False)
        assert res.failures == alone.failures and [p for p, _ in res.failures] == [bad_files[0]]
        assert sorted(res.features) == sorted(alone.features) == sorted([real_paths[0], real_paths[1]])
        for p in alone.features:
            for k, arr in alone.features[p].items():
                np.testing.assert_array_equal(res.features[p][k], arr)
    # In a worker process, with a cache: each settings in its own store; a second pass reads nothing.
    cache = str(tmp_path / "cache")
    first = extract_cached_many(real_paths[:1], settings, cache=cache, jobs=1, progress=False)
    again = extract_cached_many(real_paths[:1], settings, cache=cache, jobs=1, progress=False)
    for res, ref, re in zip(first, together, again):
        assert res.computed == 1 and re.cached == 1 and re.computed == 0
        for k, arr in ref.features[real_paths[0]].items():
            np.testing.assert_allclose(res.features[real_paths[0]][k], arr, rtol=1e-4, atol=1e-4)
    assert len({FeatureStore(cache, st.to_dict()).key for st in settings}) == 3


def test_worker_count_follows_the_measured_costs():
    from genrevision.features.extraction import _workers_for

    # Decode/HPSS twice the CNN's cost (8 s MP3s at 48 kHz, one recipe): every core prepares tracks.
    assert _workers_for(0.31, 0.16, 2) == 2
    # As costly as the batched CNN (two recipes' networks, or 30 s WAVs): a worker per core too, as
    # one worker waits while the CNN runs (measured: 1.5x the clips/s of one worker).
    assert _workers_for(0.17, 0.15, 2) == 2 and _workers_for(0.36, 0.36, 2) == 2
    # Many cores: the CNN-bound keep most of them for the CNN's threads, the decode-bound get all.
    assert _workers_for(0.1, 0.9, 16) == 3 and _workers_for(0.5, 0.5, 16) == 9 and _workers_for(0.9, 0.1, 16) == 16
    # Nothing measured: CPU count - 1; a single core: one worker.
    assert _workers_for(0.0, 0.0, 4) == 3 and _workers_for(1.0, 0.0, 1) == 1


def test_default_jobs_measure_the_costs_on_a_batch_and_lose_no_track(tmp_path, gtzan_root, monkeypatch):
    """With 16+ tracks and the default jobs, the first tracks are measured in this process (the
    CNN on one batch of them) and the rest go to the workers chosen from it: every track once.
    On two cores the rule's answer is two workers whatever the costs: nothing is measured."""
    from genrevision.features import extraction
    from genrevision.features.extraction import _workers_for

    y, sr = sf.read(gtzan_root / "genres" / "rock/rock.00003.wav", dtype="float32")
    paths = []
    for i in range(18):  # 18 distinct 3 s excerpts of a real track
        path = tmp_path / f"x{i:02d}.wav"
        sf.write(path, y[i * sr : i * sr + 3 * sr], sr)
        paths.append(str(path))
    ref = extract_dataset(paths, TINY, jobs=0, progress=False)
    for cores in (3, 2):  # the measured rule on any machine, then two cores
        monkeypatch.setattr(extraction.os, "cpu_count", lambda: cores)
        res = extract_dataset(paths, TINY, progress=False)
        if cores == 3:
            probe = res.probe
            assert probe["prepare_s"] > 0 and probe["cnn_s"] > 0
            assert probe["workers"] == _workers_for(probe["prepare_s"], probe["cnn_s"], 3) == res.workers
            assert res.workers in (2, 3)
        else:
            assert not res.probe and res.workers == 2
        assert sorted(res.features) == paths and res.computed == 18 and not res.failures
        for p in paths:
            for view in VIEWS:
                np.testing.assert_allclose(res.features[p][view], ref.features[p][view], rtol=1e-4, atol=1e-4)


def test_fifo_in_dataset_extract_goes_on(tmp_path, excerpt):
    good = tmp_path / "good.wav"
    sf.write(good, excerpt, SR)
    fifo = make_fifo(tmp_path / "x.wav")
    with Unblock(fifo):
        res = extract_dataset([fifo, str(good)], TINY, jobs=0, progress=False)
    assert res.failures == [(fifo, "not a regular file (a named pipe)")]
    assert list(res.features) == [str(good)]


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
