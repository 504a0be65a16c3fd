"""Audio input: decode, mix to mono, resample, normalise.

Every reader here goes through :mod:`soundfile` (libsndfile), which decodes WAV
(PCM 8/16/24/32-bit and float), AU, FLAC, OGG/Vorbis and MP3. Errors are
raised as :class:`AudioError` with one line naming the file and the reason, so
a batch can list what failed and go on with the rest.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Union

import numpy as np
import soundfile as sf
import soxr

__all__ = [
    "AudioError",
    "AudioInfo",
    "SAMPLE_RATE",
    "AUDIO_EXTENSIONS",
    "audio_info",
    "load_audio",
    "normalise",
]

#: Sample rate of the whole pipeline (GTZAN's own rate).
SAMPLE_RATE = 22050
#: File extensions treated as audio when a folder is walked.
AUDIO_EXTENSIONS = (".wav", ".au", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
#: Peak below this (full scale = 1) is treated as silence: nothing to classify.
SILENCE_PEAK = 1e-4

Source = Union[str, os.PathLike, bytes]


class AudioError(ValueError):
    """A file that cannot be used as audio; ``str(err)`` is one line naming it."""

    def __init__(self, source, reason: str):
        self.source = _name(source)
        self.reason = reason
        super().__init__(f"{self.source}: {reason}")

    def __reduce__(self):
        # Rebuilt from (source, reason) when it crosses a process boundary.
        return (type(self), (self.source, self.reason))


@dataclass(frozen=True)
class AudioInfo:
    """What the header says, before decoding anything."""

    samplerate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.samplerate if self.samplerate else 0.0


def _name(source) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return os.fspath(source)


def _open(source: Source) -> sf.SoundFile:
    """Open ``source`` (path or bytes) with soundfile, mapping failures to AudioError."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError(source, "empty file (0 bytes)")
        handle = io.BytesIO(bytes(source))
    else:
        path = os.fspath(source)
        if not os.path.exists(path):
            raise AudioError(source, "no such file")
        if os.path.isdir(path):
            raise AudioError(source, "is a directory, not an audio file")
        if os.path.getsize(path) == 0:
            raise AudioError(source, "empty file (0 bytes)")
        handle = path
    try:
        return sf.SoundFile(handle)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        msg = str(err).split("\n")[0]
        # libsndfile's own words ("Format not recognised") are clear enough; keep
        # them after our own summary.
        raise AudioError(source, f"not a readable audio file ({msg.split(': ')[-1]})") from None


def audio_info(source: Source) -> AudioInfo:
    """Sample rate, channel count and length of ``source`` without decoding it."""
    with _open(source) as f:
        return AudioInfo(f.samplerate, f.channels, f.frames)


def normalise(y: np.ndarray, *, method: str = "peak") -> np.ndarray:
    """Scale a signal to a fixed level.

    Parameters
    ----------
    y : np.ndarray, 1-D
    method : {"peak", "rms", "none"}
        ``"peak"`` (default) divides by the largest absolute sample after removing
        the DC offset, so every track spans [-1, 1]; ``"rms"`` scales to an RMS of
        0.1 (-20 dBFS); ``"none"`` returns the input unchanged. Spectrogram images
        are scaled relative to their own maximum later, so this mostly matters for
        the engineered baseline features and for clipping-free resampling.
    """
    if method not in ("peak", "rms", "none"):
        raise ValueError(f"normalise method must be 'peak', 'rms' or 'none', got {method!r}")
    if method == "none":
        return y
    y = y - np.mean(y, dtype=np.float64).astype(y.dtype)
    if method == "peak":
        scale = np.max(np.abs(y)) if y.size else 0.0
    else:
        scale = np.sqrt(np.mean(np.square(y, dtype=np.float64))) / 0.1 if y.size else 0.0
    return y / scale if scale > 0 else y


def _to_mono_float(block: np.ndarray) -> np.ndarray:
    return block.mean(axis=1, dtype=np.float32) if block.ndim == 2 else block.astype(np.float32)


def _check_finite(source, y: np.ndarray) -> None:
    if not np.all(np.isfinite(y)):
        raise AudioError(source, "contains NaN or infinite samples")


def load_audio(
    source: Source,
    *,
    sr: int = SAMPLE_RATE,
    normalisation: str = "peak",
    offset: float = 0.0,
    duration: float | None = None,
    min_duration: float = 1.0,
) -> np.ndarray:
    """Decode ``source`` to a mono float32 signal at ``sr`` Hz, normalised.

    Parameters
    ----------
    source : path or bytes
        Any format libsndfile reads (wav, au, flac, ogg, mp3, aiff).
    sr : int
        Output sample rate; resampling uses soxr (high quality).
    normalisation : {"peak", "rms", "none"}
        See :func:`normalise`. Default ``"peak"``: DC removed, peak scaled to 1.
    offset, duration : float, seconds
        Read only this part of the file (memory stays bounded for long files).
    min_duration : float, seconds
        Shorter inputs raise :class:`AudioError`: a spectrogram window needs
        this much signal to say anything.

    Returns
    -------
    np.ndarray, float32, shape (n,)

    Raises
    ------
    AudioError
        Missing, empty, unreadable, too short, silent or non-finite input.
    """
    if sr <= 0:
        raise ValueError(f"sr must be a positive sample rate in Hz, got {sr}")
    with _open(source) as f:
        native = f.samplerate
        start = int(round(offset * native))
        if start:
            f.seek(min(start, f.frames))
        frames = -1 if duration is None else int(round(duration * native))
        try:
            block = f.read(frames, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise AudioError(source, f"decoding failed ({err})") from None
    y = _to_mono_float(block)
    _check_finite(source, y)
    if native != sr and y.size:
        y = soxr.resample(y, native, sr).astype(np.float32, copy=False)
    if y.size < min_duration * sr:
        raise AudioError(source, f"too short ({y.size / sr:.2f} s; at least {min_duration:g} s needed)")
    if np.max(np.abs(y)) < SILENCE_PEAK:
        raise AudioError(source, "silent (peak below -80 dBFS)")
    return normalise(y, method=normalisation)
