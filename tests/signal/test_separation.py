"""genrevision.signal.separation: median-filter HPSS against a known answer and librosa."""
from __future__ import annotations

import librosa
import numpy as np
import pytest

from testkit import real_excerpt
from genrevision.signal.separation import VIEWS, hpss_masks, separate, separate_audio, stft_magnitude

SR = 22050
N_FFT, HOP = 2048, 512


@pytest.fixture(scope="module")
def tone_and_clicks():
    n = 4 * SR
    t = np.arange(n) / SR
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    clicks = np.zeros(n)
    click_idx = np.arange(int(0.125 * SR), n, int(0.25 * SR))
    clicks[click_idx] = 1.0
    return (tone + clicks).astype(np.float32), click_idx


def test_views_and_shapes(tone_and_clicks):
    y, _ = tone_and_clicks
    out = separate(y)
    assert tuple(out) == VIEWS
    n_frames = 1 + len(y) // HOP
    for v in VIEWS:
        assert out[v].shape == (1 + N_FFT // 2, n_frames)
        assert out[v].dtype == np.float32
        assert np.all(out[v] >= 0)
    np.testing.assert_allclose(out["original"], stft_magnitude(y), rtol=1e-6)


def test_tone_goes_harmonic_clicks_go_percussive(tone_and_clicks):
    y, click_idx = tone_and_clicks
    out = separate(y)
    H, P = out["harmonic"], out["percussive"]
    k440 = int(round(440 * N_FFT / SR))
    tone_rows = slice(k440 - 1, k440 + 2)
    # energy of the sustained tone: harmonic view holds (nearly) all of it
    e_h = float(np.sum(H[tone_rows] ** 2))
    e_p = float(np.sum(P[tone_rows] ** 2))
    assert e_h > 20 * e_p
    # broadband energy away from the tone, at click frames vs between clicks
    far = np.r_[np.arange(100, k440 - 20), np.arange(k440 + 20, 900)]
    click_frames = np.unique(np.round(click_idx / HOP).astype(int))
    between = np.unique(np.round((click_idx[:-1] + int(0.125 * SR)) / HOP).astype(int))
    p_click = float(np.sum(P[far][:, click_frames] ** 2))
    p_between = float(np.sum(P[far][:, between] ** 2))
    h_click = float(np.sum(H[far][:, click_frames] ** 2))
    assert p_click > 100 * p_between
    assert p_click > 10 * h_click
    # the clicks' energy mostly lands in the percussive view
    o_click = float(np.sum(out["original"][far][:, click_frames] ** 2))
    assert p_click > 0.7 * o_click


def test_masks_range_and_sum(tone_and_clicks):
    y, _ = tone_and_clicks
    S = stft_magnitude(y)
    mh, mp = hpss_masks(S)
    assert mh.shape == S.shape and mp.shape == S.shape
    assert mh.min() >= 0 and mh.max() <= 1
    assert mp.min() >= 0 and mp.max() <= 1
    np.testing.assert_allclose(mh + mp, 1.0, atol=1e-5)


def test_margin_leaves_residual(tone_and_clicks):
    y, _ = tone_and_clicks
    S = stft_magnitude(y)
    mh, mp = hpss_masks(S, margin=2.0)
    total = mh + mp
    assert np.all(total <= 1 + 1e-5)
    assert float(np.mean(total)) < 0.95
    assert float(np.min(total)) < 0.5
    # asymmetric margins are accepted
    mh2, mp2 = hpss_masks(S, margin=(1.0, 3.0))
    mh1, _ = hpss_masks(S)
    np.testing.assert_allclose(mh2, mh1, atol=1e-6)
    assert np.all(mp2 <= mp + 1e-6)


@pytest.mark.parametrize("kernel,margin", [(31, 1.0), ((17, 31), (1.0, 2.0))])
def test_matches_librosa(gtzan_root, kernel, margin):
    y = real_excerpt(gtzan_root, "rock/rock.00004.wav", 3.0)
    S = stft_magnitude(y)
    mh, mp = hpss_masks(S, kernel_size=kernel, margin=margin)
    lh, lp = librosa.decompose.hpss(S, kernel_size=kernel, margin=margin, mask=True)
    np.testing.assert_allclose(mh, lh, atol=1e-5)
    np.testing.assert_allclose(mp, lp, atol=1e-5)


@pytest.mark.parametrize("kwargs", [dict(kernel_size=0), dict(kernel_size=(31, 0)), dict(kernel_size=2.5),
                                    dict(margin=0.5), dict(margin=(1.0, 0.9)), dict(power=0)])
def test_invalid_mask_parameters(kwargs):
    S = np.abs(np.random.default_rng(0).standard_normal((65, 40))).astype(np.float32)
    with pytest.raises(ValueError):
        hpss_masks(S, **kwargs)


@pytest.mark.parametrize("kwargs", [dict(n_fft=1000), dict(n_fft=8), dict(hop_length=0), dict(hop_length=4096)])
def test_invalid_stft_parameters(kwargs):
    y = np.random.default_rng(0).standard_normal(SR).astype(np.float32)
    with pytest.raises(ValueError):
        stft_magnitude(y, **kwargs)
    with pytest.raises(ValueError):
        separate(y, **kwargs)


def test_separate_audio_sums_to_input(gtzan_root):
    y = real_excerpt(gtzan_root, "disco/disco.00002.wav", 3.0)
    h, p = separate_audio(y)
    assert h.shape == y.shape and p.shape == y.shape
    resid = y - (h + p)
    assert np.linalg.norm(resid) < 1e-3 * np.linalg.norm(y)
    # and neither part is trivially the whole or nothing
    assert 0.05 < np.linalg.norm(h) / np.linalg.norm(y) < 0.99
    assert 0.05 < np.linalg.norm(p) / np.linalg.norm(y) < 0.99


def test_separate_audio_odd_length(tone_and_clicks):
    y, _ = tone_and_clicks
    y = y[: 3 * SR + 123]
    h, p = separate_audio(y)
    assert len(h) == len(y) == len(p)
