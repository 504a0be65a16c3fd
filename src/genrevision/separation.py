"""Harmonic/percussive separation by median filtering (Fitzgerald 2010).

Harmonic sounds are smooth along time (horizontal ridges in a spectrogram),
percussive sounds are smooth along frequency (vertical ridges). Median
filtering the magnitude spectrogram in each direction gives two estimates;
soft masks built from them split the spectrogram into a harmonic and a
percussive view. Gwardys & Grzywczak (2014) use these two views beside the
original one.

References
----------
D. Fitzgerald, "Harmonic/percussive separation using median filtering",
DAFx 2010. B. Gwardys and D. Grzywczak, "Deep Image Features in Music
Information Retrieval", IJET 60(4), 2014.
"""
from __future__ import annotations

import numpy as np
import scipy.ndimage

__all__ = ["VIEWS", "stft_magnitude", "hpss_masks", "separate", "separate_audio"]

#: The three views of a track, in the order used everywhere.
VIEWS = ("original", "harmonic", "percussive")


def _odd_kernel(k, name: str) -> int:
    if int(k) != k or k < 1:
        raise ValueError(f"{name} must be a positive integer number of bins/frames, got {k!r}")
    return int(k)


def stft_magnitude(y: np.ndarray, *, n_fft: int = 2048, hop_length: int = 512) -> np.ndarray:
    """Magnitude STFT (Hann window, centred frames) as float32, shape (1 + n_fft//2, n_frames)."""
    import librosa

    if n_fft < 16 or n_fft & (n_fft - 1):
        raise ValueError(f"n_fft must be a power of two >= 16, got {n_fft}")
    if not 0 < hop_length <= n_fft:
        raise ValueError(f"hop_length must be in (0, n_fft={n_fft}], got {hop_length}")
    S = librosa.stft(np.asarray(y, dtype=np.float32), n_fft=n_fft, hop_length=hop_length)
    return np.abs(S).astype(np.float32, copy=False)


def hpss_masks(
    S: np.ndarray,
    *,
    kernel_size: int | tuple[int, int] = 31,
    margin: float | tuple[float, float] = 1.0,
    power: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Soft harmonic and percussive masks of a magnitude spectrogram.

    Parameters
    ----------
    S : np.ndarray, shape (n_bins, n_frames), non-negative
    kernel_size : int or (harmonic, percussive)
        Median filter lengths: frames along time for the harmonic estimate,
        bins along frequency for the percussive one. 31 as in librosa.
    margin : float or (harmonic, percussive), >= 1
        Separation margin (FitzGerald 2014 / Driedger 2014): with margin > 1 a
        bin must dominate by that factor to enter a view, leaving a residual
        that belongs to neither.
    power : float > 0
        Exponent of the Wiener-like soft mask.

    Returns
    -------
    mask_h, mask_p : np.ndarray, same shape as ``S``, values in [0, 1]

    Notes
    -----
    Same arithmetic as :func:`librosa.decompose.hpss` with ``mask=True``, but the
    two median filters run on float32 with 1-D kernels, which is what makes it
    affordable per track.
    """
    if np.ndim(kernel_size) == 0:
        kernel_size = (kernel_size, kernel_size)
    if np.ndim(margin) == 0:
        margin = (margin, margin)
    kh = _odd_kernel(kernel_size[0], "kernel_size (harmonic)")
    kp = _odd_kernel(kernel_size[1], "kernel_size (percussive)")
    mh, mp = float(margin[0]), float(margin[1])
    if mh < 1 or mp < 1:
        raise ValueError(f"margin must be >= 1, got {margin}")
    if power <= 0:
        raise ValueError(f"power must be > 0, got {power}")
    S = np.asarray(S, dtype=np.float32)
    harm = scipy.ndimage.median_filter(S, size=(1, kh), mode="reflect")
    perc = scipy.ndimage.median_filter(S, size=(kp, 1), mode="reflect")
    # Wiener-style soft masks, as librosa.util.softmask with a tiny floor.
    tiny = np.finfo(np.float32).tiny
    harm_p = harm ** power
    perc_p = perc ** power
    # librosa.util.softmask(X, margin * X_ref): X^p / (X^p + (margin X_ref)^p)
    mask_h = harm_p / (harm_p + (perc_p if mh == 1 else (mh * perc) ** power) + tiny)
    mask_p = perc_p / (perc_p + (harm_p if mp == 1 else (mp * harm) ** power) + tiny)
    return mask_h.astype(np.float32, copy=False), mask_p.astype(np.float32, copy=False)


def separate(
    y: np.ndarray,
    *,
    n_fft: int = 2048,
    hop_length: int = 512,
    kernel_size: int | tuple[int, int] = 31,
    margin: float | tuple[float, float] = 1.0,
) -> dict[str, np.ndarray]:
    """Magnitude spectrograms of the original, harmonic and percussive views.

    The views are masked copies of one STFT: re-synthesising each signal and
    taking its STFT again (as the paper's pipeline did) gives the same picture
    up to overlap-add smoothing, at three times the cost. Use
    :func:`separate_audio` when the signals themselves are wanted.

    Returns
    -------
    dict with keys ``VIEWS`` → float32 arrays (1 + n_fft//2, n_frames)
    """
    S = stft_magnitude(y, n_fft=n_fft, hop_length=hop_length)
    mask_h, mask_p = hpss_masks(S, kernel_size=kernel_size, margin=margin)
    return {"original": S, "harmonic": S * mask_h, "percussive": S * mask_p}


def separate_audio(
    y: np.ndarray,
    *,
    n_fft: int = 2048,
    hop_length: int = 512,
    kernel_size: int | tuple[int, int] = 31,
    margin: float | tuple[float, float] = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic and percussive time-domain signals (masked STFT, inverted)."""
    import librosa

    D = librosa.stft(np.asarray(y, dtype=np.float32), n_fft=n_fft, hop_length=hop_length)
    mask_h, mask_p = hpss_masks(np.abs(D), kernel_size=kernel_size, margin=margin)
    kw = dict(hop_length=hop_length, n_fft=n_fft, length=len(y))
    return librosa.istft(D * mask_h, **kw), librosa.istft(D * mask_p, **kw)
