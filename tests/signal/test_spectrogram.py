"""genrevision.signal.spectrogram: log images, windows, config validation, PNG output."""
from __future__ import annotations

import numpy as np
import pytest

from genrevision.signal.separation import stft_magnitude
from genrevision.signal.spectrogram import (SpectrogramConfig, frequency_scale, log_image, resize, to_png,
                                     window_images)

SR = 22050


def test_log_image_range_and_max():
    rng = np.random.default_rng(0)
    P = rng.random((64, 50)).astype(np.float32) ** 4
    img = log_image(P, top_db=80.0)
    assert img.dtype == np.float32 and img.shape == P.shape
    # float32 rounding of the dB arithmetic may leave -1e-7 at the floor
    # (the module promises [0, 1]; see the report), so allow 1e-6
    assert img.min() >= -1e-6 and img.max() <= 1.0 + 1e-6
    assert img.min() == pytest.approx(0.0, abs=1e-6)  # the floor is reached
    # the maximum maps to 1 (at the flipped row)
    i, j = np.unravel_index(np.argmax(P), P.shape)
    assert img[P.shape[0] - 1 - i, j] == pytest.approx(1.0)
    # a value exactly top_db below the max maps to 0; 40 dB below to 0.5
    Q = np.array([[1.0, 1e-8, 1e-4, 1e-12]], dtype=np.float32)
    np.testing.assert_allclose(log_image(Q, top_db=80.0)[0], [1.0, 0.0, 0.5, 0.0], atol=1e-6)


def test_log_image_of_silence_is_black():
    img = log_image(np.zeros((8, 5), np.float32))
    assert img.shape == (8, 5) and not img.any()


def test_low_frequencies_at_the_bottom():
    t = np.arange(2 * SR) / SR
    y = np.sin(2 * np.pi * 100 * t).astype(np.float32)
    S = stft_magnitude(y)
    for cfg in (SpectrogramConfig(scale="mel"), SpectrogramConfig(scale="linear")):
        img = log_image(frequency_scale(S, sr=SR, n_fft=2048, config=cfg))
        h = img.shape[0]
        row_energy = img.mean(axis=1)
        brightest = int(np.argmax(row_energy))
        assert brightest > 0.9 * h, (cfg.scale, brightest, h)
        assert row_energy[-h // 10 :].mean() > row_energy[: h // 2].mean() + 0.05


def test_frequency_scale_shapes():
    S = np.ones((1025, 10), np.float32)
    assert frequency_scale(S, sr=SR, n_fft=2048, config=SpectrogramConfig(n_mels=64)).shape == (64, 10)
    assert frequency_scale(S, sr=SR, n_fft=2048, config=SpectrogramConfig(scale="linear")).shape == (1025, 10)
    lin = frequency_scale(S, sr=SR, n_fft=2048, config=SpectrogramConfig(scale="linear", fmax=5000))
    assert lin.shape[0] == int(np.ceil(5000 / (SR / 2048))) + 1


def test_window_images_are_the_real_windows_only():
    img = np.arange(8 * 100, dtype=np.float32).reshape(8, 100)
    w = window_images(img, frames_per_window=20, hop_frames=20)
    assert w.shape == (5, 8, 20)
    np.testing.assert_array_equal(w[1], img[:, 20:40])
    w = window_images(img, frames_per_window=20, hop_frames=10)
    assert w.shape == (9, 8, 20)  # 9 distinct windows, nothing repeated
    picked = window_images(img, frames_per_window=20, hop_frames=10, indices=[0, 8])
    np.testing.assert_array_equal(picked, w[[0, 8]])


def test_window_images_short_input_is_neither_padded_nor_repeated():
    img = np.arange(4 * 50, dtype=np.float32).reshape(4, 50)
    w = window_images(img, frames_per_window=20, hop_frames=20)
    assert w.shape == (2, 4, 20)
    for k, s in enumerate([0, 20]):
        np.testing.assert_array_equal(w[k], img[:, s : s + 20])


def test_window_images_shorter_than_one_window_tiles():
    img = np.arange(3 * 7, dtype=np.float32).reshape(3, 7)
    w = window_images(img, frames_per_window=20, hop_frames=20)
    assert w.shape == (1, 3, 20)
    np.testing.assert_array_equal(w[0][:, 7:14], img)


@pytest.mark.parametrize("kwargs", [
    dict(scale="bark"), dict(layout="tiles"), dict(n_mels=4), dict(n_mels=1024), dict(top_db=5),
    dict(top_db=500), dict(window_seconds=0), dict(window_hop_seconds=-1), dict(max_windows=0),
    dict(image_size=(8, 224)),
])
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        SpectrogramConfig(**kwargs)


def test_config_to_dict():
    cfg = SpectrogramConfig(image_size=[64, 96])
    assert cfg.image_size == (64, 96)
    d = cfg.to_dict()
    assert d["image_size"] == [64, 96]
    assert SpectrogramConfig(**{**d, "image_size": tuple(d["image_size"])}) == cfg
    assert SpectrogramConfig().to_dict()["image_size"] is None


def test_resize():
    img = np.linspace(0, 1, 32 * 48, dtype=np.float32).reshape(32, 48)
    out = resize(img, (64, 24))
    assert out.shape == (64, 24)
    assert 0 <= out.min() and out.max() <= 1
    assert resize(img, (32, 48)) is img


def test_to_png_writes_valid_png(tmp_path):
    from PIL import Image

    img = np.linspace(0, 1, 40 * 60, dtype=np.float32).reshape(40, 60)
    path = tmp_path / "spec.png"
    to_png(img, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        assert im.size == (60, 40)
        arr = np.asarray(im.convert("RGB"))
    assert arr.std() > 10  # a gradient, not a blank picture
