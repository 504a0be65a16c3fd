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

from .._utils.validation import check_scalar

try:  # numba ships with librosa; without it the scipy filter gives the same numbers, slower
    import numba as _numba
except Exception:  # noqa: BLE001 - any import failure means "no JIT"
    _numba = None

__all__ = ["VIEWS", "stft_magnitude", "hpss_masks", "separate", "separate_audio"]

#: The three views of a track, in the order used everywhere.
VIEWS = ("original", "harmonic", "percussive")


def _kernel_length(k, name: str) -> int:
    """A median-filter length in bins/frames: any whole number >= 1 (even lengths are allowed)."""
    return int(check_scalar(k, name, kind=int, min=1, whole_floats=True))


def _running_median_rows_py(x: np.ndarray, k: int, out: np.ndarray) -> np.ndarray:
    """Median of every length-``k`` window along the rows of ``x`` (already padded).

    A sorted copy of the window slides along the row: each step drops the
    value leaving the window and inserts the one entering it (binary search,
    then one shift), O(k) per output instead of a fresh selection of k values.
    The median is one of the window's values, so the result equals any other
    exact median filter bit for bit.
    """
    n_rows, n_pad = x.shape
    n = n_pad - k + 1
    half = k // 2
    win = np.empty(k, dtype=x.dtype)
    for r in range(n_rows):
        row = x[r]
        for j in range(k):
            win[j] = row[j]
        win.sort()
        out[r, 0] = win[half]
        for i in range(1, n):
            old = row[i - 1]
            new = row[i + k - 1]
            # position of the leaving value (any one of equal values will do)
            lo, hi = 0, k
            while lo < hi:
                mid = (lo + hi) >> 1
                if win[mid] < old:
                    lo = mid + 1
                else:
                    hi = mid
            pos = lo
            if new >= old:
                while pos + 1 < k and win[pos + 1] < new:
                    win[pos] = win[pos + 1]
                    pos += 1
            else:
                while pos > 0 and win[pos - 1] > new:
                    win[pos] = win[pos - 1]
                    pos -= 1
            win[pos] = new
            out[r, i] = win[half]
    return out


if _numba is not None:
    try:
        _running_median_rows = _numba.njit(cache=True, nogil=True)(_running_median_rows_py)
    except Exception:  # noqa: BLE001
        _running_median_rows = None
else:
    _running_median_rows = None


def _median_along_rows(S: np.ndarray, k: int) -> np.ndarray:
    """``scipy.ndimage.median_filter(S, size=(1, k), mode="reflect")`` for float32 ``S`` (2-D)."""
    if _running_median_rows is None or k == 1 or not np.all(np.isfinite(S)):
        return scipy.ndimage.median_filter(S, size=(1, k), mode="reflect")
    half = k // 2
    n = S.shape[1]
    if half > n:  # reflection longer than the signal: leave the odd case to scipy
        return scipy.ndimage.median_filter(S, size=(1, k), mode="reflect")
    # scipy's "reflect" = half-sample symmetric: (d c b a | a b c d | d c b a)
    padded = np.empty((S.shape[0], n + 2 * half), dtype=np.float32)
    padded[:, half : half + n] = S
    if half:
        padded[:, :half] = S[:, :half][:, ::-1]
        padded[:, half + n :] = S[:, n - half :][:, ::-1]
    out = np.empty(S.shape, dtype=np.float32)
    try:
        return _running_median_rows(padded, k, out)
    except Exception:  # noqa: BLE001 - a JIT failure must not stop extraction
        return scipy.ndimage.median_filter(S, size=(1, k), mode="reflect")


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
    two median filters run on float32 with 1-D kernels as running medians
    (numba; scipy's ``median_filter`` where numba is missing — same numbers),
    which is what makes it affordable per track.
    """
    if np.ndim(kernel_size) == 0:
        kernel_size = (kernel_size, kernel_size)
    if np.ndim(margin) == 0:
        margin = (margin, margin)
    kh = _kernel_length(kernel_size[0], "kernel_size (harmonic)")
    kp = _kernel_length(kernel_size[1], "kernel_size (percussive)")
    mh, mp = float(margin[0]), float(margin[1])
    if mh < 1 or mp < 1:
        raise ValueError(f"margin must be >= 1, got {margin}")
    if power <= 0:
        raise ValueError(f"power must be > 0, got {power}")
    S = np.ascontiguousarray(S, dtype=np.float32)
    if S.ndim != 2:
        raise ValueError(f"S must be 2-D (n_bins, n_frames), got shape {S.shape}")
    # Both filters run along contiguous rows: the harmonic one along time on S,
    # the percussive one along frequency on the transposed copy.
    harm = _median_along_rows(S, kh)
    perc = np.ascontiguousarray(_median_along_rows(np.ascontiguousarray(S.T), kp).T)
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
