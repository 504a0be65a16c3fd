"""Tests for the engineered-feature baseline (genrevision.signal.baseline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genrevision.signal.baseline import BASELINE_NAME, mfcc_feature_names, mfcc_features

SR = 22050
DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "gtzan-mini"
if not DATA.is_dir():  # checkout not next to shared/
    DATA = Path("/work/shared/data/gtzan-mini")
# The shared GTZAN tracks are required: a missing folder must fail, not skip.
def needs_data(test):
    assert (DATA / "genres").is_dir(), f"{DATA}: shared GTZAN tracks missing"
    return test


def _load(rel: str, seconds: float = 10.0) -> np.ndarray:
    import soundfile as sf
    y, sr = sf.read(DATA / "genres" / rel, dtype="float32",
                    frames=int(seconds * SR), always_2d=False)
    assert sr == SR
    return y


def test_name_constant():
    assert BASELINE_NAME == "mfcc+spectral"


@needs_data
def test_real_track_shape_and_finite():
    y = _load("blues/blues.00000.wav")
    f = mfcc_features(y, SR)
    assert f.dtype == np.float32
    assert f.ndim == 1 and f.shape == (170,)
    assert f.shape[0] == len(mfcc_feature_names())
    assert np.all(np.isfinite(f))
    # stds (second half) are non-negative and not all zero on real music
    assert np.all(f[85:] >= 0) and np.any(f[85:] > 0)
    # deterministic
    np.testing.assert_array_equal(f, mfcc_features(y, SR))


@needs_data
@pytest.mark.parametrize("n_fft, hop_length", [(2048, 512), (1024, 256)])
def test_a_given_stft_gives_the_same_vector(n_fft, hop_length):
    from genrevision.signal.separation import stft_magnitude

    y = _load("jazz/jazz.00002.wav", seconds=5.0)
    S = stft_magnitude(y, n_fft=n_fft, hop_length=hop_length)
    np.testing.assert_array_equal(mfcc_features(y, SR, n_fft=n_fft, hop_length=hop_length, S=S),
                                  mfcc_features(y, SR, n_fft=n_fft, hop_length=hop_length))
    with pytest.raises(ValueError, match="magnitude STFT of y"):
        mfcc_features(y[: len(y) // 2], SR, n_fft=n_fft, hop_length=hop_length, S=S)


def test_dimension_follows_n_mfcc():
    y = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    f = mfcc_features(y, SR, n_mfcc=13, n_fft=1024, hop_length=256)
    assert f.shape == (2 * (3 * 13 + 25),) == (len(mfcc_feature_names(13)),)


def test_sine_vs_noise_known_answer():
    t = np.arange(2 * SR) / SR
    sine = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    noise = np.random.default_rng(0).standard_normal(t.size)
    names = mfcc_feature_names()
    fs, fn = mfcc_features(sine, SR), mfcc_features(noise, SR)
    c = names.index("centroid_mean")
    # sine centroid sits near 440 Hz; white noise near sr/4
    assert 300 < fs[c] < 700
    assert 4500 < fn[c] < 6500
    assert fs[c] < fn[c]
    flat = names.index("flatness_mean")
    assert fs[flat] < 0.01 < 0.1 < fn[flat]
    zcr = names.index("zcr_mean")
    assert fs[zcr] == pytest.approx(2 * 440 / SR, rel=0.05)
    # all chroma energy of a pure A goes to pitch class A (index 9, C=0)
    chroma = [names.index(f"chroma{i}_mean") for i in range(12)]
    assert int(np.argmax(fs[chroma])) == 9
    rms = names.index("rms_mean")
    assert fs[rms] == pytest.approx(0.5 / np.sqrt(2), rel=0.05)


def test_silence_is_finite():
    f = mfcc_features(np.zeros(SR), SR)
    assert f.shape == (170,) and np.all(np.isfinite(f))
    # shortest allowed input also works
    assert np.all(np.isfinite(mfcc_features(np.zeros(2048), SR)))


def test_low_sample_rate_keeps_dimension():
    y = np.random.default_rng(1).standard_normal(8000)
    f = mfcc_features(y, 8000)
    assert f.shape == (170,) and np.all(np.isfinite(f))


@pytest.mark.parametrize(
    "y, kwargs, match",
    [
        (np.zeros((2, 4096)), {}, "1-D"),
        (np.zeros(100), {}, "at least n_fft"),
        (np.r_[np.zeros(4096), np.nan], {}, "NaN"),
        (np.r_[np.zeros(4096), np.inf], {}, "NaN or infinite"),
        (np.zeros(4096), {"sr": 0}, "sr"),
        (np.zeros(4096), {"hop_length": -1}, "hop_length"),
        (np.zeros(4096), {"n_mfcc": 2.5}, "n_mfcc"),
        (np.zeros(4096, dtype=complex), {}, "real"),
    ],
)
def test_invalid_input_raises(y, kwargs, match):
    with pytest.raises(ValueError, match=match):
        mfcc_features(y, **kwargs)


@needs_data
def test_cv_accuracy_above_chance():
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    genres = ["classical", "metal", "hiphop", "blues"]
    X, labels = [], []
    for g in genres:
        for i in range(10):
            X.append(mfcc_features(_load(f"{g}/{g}.{i:05d}.wav"), SR))
            labels.append(g)
    X = np.stack(X)
    clf = make_pipeline(StandardScaler(), SVC(kernel="rbf", C=10.0))
    cv = StratifiedKFold(n_splits=10, shuffle=True, random_state=0)
    acc = cross_val_score(clf, X, np.array(labels), cv=cv).mean()
    assert acc >= 0.6, acc  # chance is 0.25
