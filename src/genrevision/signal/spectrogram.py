"""Spectrogram images: log-magnitude STFT of a view, made into a picture.

Two layouts:

* ``"whole"`` — the paper's: the whole track squeezed into one square image
  (256×256 in Gwardys & Grzywczak 2014), one CNN pass per view.
* ``"windows"`` — the track cut into windows of a few seconds along time; each
  window is one image at the spectrogram's own resolution (no stretching of
  the time axis), and the CNN features of the windows are pooled per track.

Images are float32 in [0, 1], low frequencies at the bottom row, 0 = ``top_db``
below the view's maximum, 1 = the maximum.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .._utils.validation import check_scalar

__all__ = ["SpectrogramConfig", "log_image", "frequency_scale", "count_windows", "pick_windows", "window_images",
           "resize", "to_png"]


@dataclass(frozen=True)
class SpectrogramConfig:
    """How a magnitude STFT becomes images.

    Parameters
    ----------
    scale : {"mel", "linear"}
        Frequency axis. ``"linear"`` keeps the STFT bins (the paper), ``"mel"``
        projects on ``n_mels`` mel bands.
    n_mels : int
        Mel bands (image height for the mel scale).
    fmax : float or None
        Highest frequency shown; None = Nyquist.
    top_db : float
        Dynamic range of the image: values more than ``top_db`` dB below the
        view's maximum are black.
    layout : {"windows", "whole"}
    window_seconds, window_hop_seconds : float
        Window length and hop along time for ``layout="windows"``.
    max_windows : int
        Most windows (``layout="windows"``) or segment images
        (``layout="whole"``) kept per track when a dataset is extracted,
        spread evenly over the whole file: a 30 s track gives its 10 windows
        of 3 s, an 8 s clip its 2, a 4-minute song 20 windows from start to
        end. Prediction is not capped (it reads the segments it is asked for).
    image_size : (height, width) or None
        Resize every image to this size; None keeps the native resolution
        (for windows: ``n_mels`` × frames per window).
    band_norm : {"none", "mean"}
        ``"mean"`` removes each frequency band's mean level (dB, over the
        decoded segment) before the image is drawn: the segment's long-term
        average spectrum, which carries the recording chain's EQ and
        mastering as much as the music, becomes flat (cepstral mean
        normalisation applied to the image; cf. the "producer effect" of
        Flexer & Schnitzer, JNMR 2010).
    """

    scale: str = "mel"
    n_mels: int = 128
    fmax: float | None = None
    top_db: float = 80.0
    layout: str = "windows"
    window_seconds: float = 3.0
    window_hop_seconds: float = 3.0
    max_windows: int = 20
    image_size: tuple[int, int] | None = None
    band_norm: str = "none"

    def __post_init__(self):
        if self.band_norm not in ("none", "mean"):
            raise ValueError(f"band_norm must be 'none' or 'mean', got {self.band_norm!r}")
        if self.scale not in ("mel", "linear"):
            raise ValueError(f"scale must be 'mel' or 'linear', got {self.scale!r}")
        if self.layout not in ("windows", "whole"):
            raise ValueError(f"layout must be 'windows' or 'whole', got {self.layout!r}")
        check_scalar(self.n_mels, "n_mels", kind=int, min=8, max=512, whole_floats=True)
        check_scalar(self.top_db, "top_db", kind=float, min=10, max=200)
        if self.window_seconds <= 0 or self.window_hop_seconds <= 0:
            raise ValueError("window_seconds and window_hop_seconds must be > 0")
        check_scalar(self.max_windows, "max_windows", kind=int, min=1, whole_floats=True)
        if self.image_size is not None:
            h, w = self.image_size
            if h < 16 or w < 16:
                raise ValueError(f"image_size must be at least 16×16, got {self.image_size}")
            object.__setattr__(self, "image_size", (int(h), int(w)))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["image_size"] = list(self.image_size) if self.image_size else None
        if d["band_norm"] == "none":
            del d["band_norm"]  # settings from before the option keep their cache keys
        return d


def frequency_scale(S: np.ndarray, *, sr: int, n_fft: int, config: SpectrogramConfig) -> np.ndarray:
    """Project magnitude bins onto the configured frequency axis (power spectrum)."""
    P = np.square(S, dtype=np.float32)
    if config.scale == "linear":
        if config.fmax:
            P = P[: int(np.ceil(config.fmax / (sr / n_fft))) + 1]
        return P
    return _mel_basis(sr, n_fft, config.n_mels, config.fmax) @ P


_MEL_CACHE: dict = {}


def _mel_basis(sr, n_fft, n_mels, fmax):
    key = (sr, n_fft, n_mels, fmax)
    if key not in _MEL_CACHE:
        import librosa

        _MEL_CACHE[key] = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmax=fmax).astype(np.float32)
    return _MEL_CACHE[key]


def log_image(P: np.ndarray, *, top_db: float = 80.0, ref: float | None = None, band_norm: str = "none") -> np.ndarray:
    """Power spectrogram → image in [0, 1] (dB, clipped ``top_db`` below ``ref``).

    ``ref`` defaults to the spectrogram's own maximum. Rows are flipped so low
    frequencies are at the bottom, as people draw spectrograms. With
    ``band_norm="mean"`` every row (band) is shifted so that its mean dB level
    over time equals the image's overall mean (see :class:`SpectrogramConfig`).
    """
    ref = float(np.max(P)) if ref is None else float(ref)
    if ref <= 0:
        return np.zeros(P.shape, dtype=np.float32)[::-1].copy()
    # In place, the same operations in the same order (a third faster on the paper's 1025-row images).
    db = np.maximum(P, ref * 10.0 ** (-top_db / 10.0))
    db /= ref
    np.log10(db, out=db)
    db *= 10.0
    if band_norm == "mean":
        db = db - db.mean(axis=1, keepdims=True) + db.mean()
    db += top_db
    db /= top_db
    np.clip(db, 0.0, 1.0, out=db)
    return np.ascontiguousarray(db[::-1], dtype=np.float32)


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a 2-D image (bilinear, antialiased) to ``size`` = (height, width)."""
    import torch
    import torch.nn.functional as F

    if image.shape == tuple(size):
        return image
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    out = F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)
    return out[0, 0].numpy()


def count_windows(n_frames: int, frames_per_window: int, hop_frames: int) -> int:
    """Real windows in an image ``n_frames`` long: 1 when it is shorter than one window (tiled)."""
    return 1 if n_frames < frames_per_window else (n_frames - frames_per_window) // hop_frames + 1


def pick_windows(n_frames: int, frames_per_window: int, hop_frames: int, windows=None) -> np.ndarray:
    """Indices of the windows to cut: all of them, or those of ``windows`` that exist (the last
    window when none does)."""
    available = count_windows(n_frames, frames_per_window, hop_frames)
    if windows is None:
        return np.arange(available)
    return np.asarray([i for i in windows if i < available] or [available - 1])


def window_images(image: np.ndarray, *, frames_per_window: int, hop_frames: int, indices=None) -> np.ndarray:
    """Cut a (height, n_frames) image into windows along time.

    Returns an array (n_windows, height, frames_per_window) of the real
    windows only (no padding, no repetition), or of the windows at
    ``indices`` among them. An image shorter than one window (a clip of a
    second or two) is tiled along time into one window.
    """
    if frames_per_window < 1 or hop_frames < 1:
        raise ValueError(f"frames_per_window and hop_frames must be >= 1, got {frames_per_window}, {hop_frames}")
    h, n = image.shape
    if n < frames_per_window:
        reps = int(np.ceil(frames_per_window / max(n, 1)))
        image = np.tile(image, (1, reps))[:, :frames_per_window]
        n = frames_per_window
    starts = np.arange(count_windows(n, frames_per_window, hop_frames)) * hop_frames
    if indices is not None:
        starts = starts[np.asarray(indices, dtype=np.int64)]
    return np.stack([image[:, s : s + frames_per_window] for s in starts])


def to_png(image: np.ndarray, path, *, colormap: str = "magma") -> None:
    """Write a [0, 1] spectrogram image as a PNG a person can look at."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.imsave(path, np.clip(image, 0, 1), cmap=colormap, vmin=0, vmax=1)
