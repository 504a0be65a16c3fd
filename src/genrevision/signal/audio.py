"""Audio input: decode, mix to mono, resample, normalise.

Every reader here goes through :mod:`soundfile` (libsndfile), which decodes WAV
(PCM 8/16/24/32-bit and float), AU, FLAC, OGG/Vorbis, Opus and MP3; what it does
not recognise (AAC in .m4a/.mp4) is decoded with PyAV (FFmpeg) when that is
installed (``pip install av``, the ``tag-test`` extra). Errors are
raised as :class:`AudioError` with one line naming the file and the reason, so
a batch can list what failed and go on with the rest.
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
from dataclasses import dataclass
from typing import Union

import numpy as np
import soundfile as sf
import soxr

from ..errors import AudioError
from .._utils.files import NotRegularFile, open_regular, open_regular_fd

__all__ = [
    "AudioError",
    "AudioInfo",
    "AudioProfile",
    "audio_profile",
    "training_audio",
    "quality_warnings",
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


@dataclass(frozen=True)
class AudioInfo:
    """What the header says, before decoding anything."""

    samplerate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.samplerate if self.samplerate else 0.0


@contextlib.contextmanager
def _quiet_stderr():
    """Silence C-level writes to stderr (libmpg123 prints "Note: Illegal Audio-MPEG-Header ..."
    for damaged mp3 data); our own one-line reason says what went wrong."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (embedded interpreters)
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _decoder_reason(err: BaseException) -> str:
    """libsndfile's words where they are honest, ours where they are not.

    Opening a descriptor of an existing regular file, libsndfile still answers
    "File does not exist or is not a regular file (possibly a pipe?)" for data
    it cannot parse, and nothing at all for some damaged mp3s.
    """
    detail = (getattr(err, "error_string", "") or str(err)).splitlines()[0] if str(err) or getattr(err, "error_string", "") else ""
    detail = detail.split(": ", 1)[-1].strip().rstrip(".") if detail.startswith("Error opening") else detail.strip().rstrip(".")
    for prefix in ("Error : ", "Error: "):  # libFLAC's and libmpg123's own prefix
        if detail.startswith(prefix):
            detail = detail[len(prefix):]
    low = detail.lower()
    if not detail or "does not exist" in low or "pipe" in low or "error opening" in low:
        detail = "unknown format or damaged data"
    elif "format not recognised" in low:
        detail = "format not recognised"
    return f"not a readable audio file ({detail})"


def _open(source: Source) -> sf.SoundFile:
    """Open ``source`` (path or bytes) with soundfile, mapping failures to AudioError.

    Paths are opened through :func:`genrevision._utils.files.open_regular_fd`: a FIFO or
    device is refused at once instead of blocking, and libsndfile gets a
    descriptor, so file names that are not valid UTF-8 work too.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise AudioError(source, "empty file (0 bytes)")
        handle = io.BytesIO(bytes(source))
    else:
        path = os.fspath(source)
        try:
            fd = open_regular_fd(path)
        except FileNotFoundError:
            raise AudioError(source, "no such file") from None
        except NotRegularFile as err:
            raise AudioError(source, "is a directory, not an audio file" if err.kind == "a folder" else str(err)) from None
        except (OSError, ValueError) as err:  # ValueError: a NUL byte in the name
            raise AudioError(source, f"cannot open ({getattr(err, 'strerror', None) or err})") from None
        if os.fstat(fd).st_size == 0:
            os.close(fd)
            raise AudioError(source, "empty file (0 bytes)")
        try:
            # libsndfile owns (and closes, also on failure) a duplicate; we close ours either way.
            handle = os.dup(fd)
        finally:
            os.close(fd)
    try:
        with _quiet_stderr():
            f = sf.SoundFile(handle, closefd=True) if isinstance(handle, int) else sf.SoundFile(handle)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        reason = _decoder_reason(err)
        if _is_mp4(source) and _has_av():
            try:
                return _AVFile(source if isinstance(source, (bytes, bytearray, memoryview)) else os.fspath(source))
            except Exception:  # noqa: BLE001 - not something FFmpeg reads either: libsndfile's reason
                pass
        raise AudioError(source, reason) from None
    if f.frames >= _UNKNOWN_FRAMES:
        # libsndfile's answer for a stream whose header gives no length (a legal FLAC STREAMINFO
        # with 0 samples): taken as a length, every reader would try to allocate it.
        f.close()
        raise AudioError(source, "unknown length (its header gives no sample count, as a stream written "
                                 "without seeking back does); re-encode it to read it")
    return f


#: libsndfile reports this many frames (or more) when a header gives no length: SF_COUNT_MAX.
_UNKNOWN_FRAMES = 1 << 62


def _is_mp4(source) -> bool:
    """An ISO media file (.m4a/.mp4: "ftyp" at byte 4), the only kind handed to FFmpeg: anything else
    keeps libsndfile's answer (FFmpeg would guess a format for almost any bytes)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[4:8]) == b"ftyp"
    try:
        with open_regular(os.fspath(source)) as f:
            return f.read(12)[4:8] == b"ftyp"
    except (OSError, ValueError):
        return False


def _has_av() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


class _AVFile:
    """What libsndfile does not read (AAC in .m4a/.mp4) decoded with PyAV (FFmpeg), when it is installed.

    The small part of :class:`soundfile.SoundFile` the readers here use
    (``samplerate``, ``channels``, ``frames``, ``subtype``, ``seek``, ``read``),
    decoding only what is read: a seek restarts decoding a second before the
    position and drops the samples before it, so memory follows the audio read.
    """

    def __init__(self, source):
        import av

        self._av = av
        self._c = av.open(io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source)
        try:
            if not self._c.streams.audio:
                raise ValueError("no audio stream")
            self._st = self._c.streams.audio[0]
            cc = self._st.codec_context
            self.samplerate = int(cc.sample_rate or 0)
            self.channels = int(getattr(cc, "channels", 0) or len(cc.layout.channels) or 1)
            tb = self._st.time_base
            seconds = float(self._st.duration * tb) if self._st.duration else float(self._c.duration or 0) / 1e6
            self.frames = int(round(seconds * self.samplerate))
            self.subtype = str(cc.name).upper()
        except BaseException:
            self._c.close()
            raise
        self._pos, self._decoded, self._pending = 0, None, None

    def seek(self, pos: int) -> None:
        self._pos, self._decoded, self._pending = int(pos), None, None

    def _next_block(self):
        """(first sample index, (n, channels) float32) of the next decoded frame, or None at the end."""
        if self._decoded is None:
            start = self._pos / self.samplerate if self.samplerate else 0.0
            self._c.seek(int(max(0.0, start - 1.0) / self._st.time_base), stream=self._st, backward=True)
            self._decoded = self._c.decode(self._st)
            self._resampler = self._av.AudioResampler(format="fltp")
            self._counter = None
        for frame in self._decoded:
            for out in self._resampler.resample(frame):
                arr = out.to_ndarray().T.astype(np.float32, copy=False)
                at = (int(round(float(out.pts * out.time_base) * self.samplerate)) if out.pts is not None
                      else (self._counter or 0))
                self._counter = at + len(arr)
                return at, arr
        return None

    def read(self, frames: int, dtype: str = "float32", always_2d: bool = True) -> np.ndarray:
        blocks, need = [], frames
        try:
            while need != 0:
                block = self._pending or self._next_block()
                self._pending = None
                if block is None:
                    break
                at, arr = block
                if at + len(arr) <= self._pos:
                    continue  # before the position sought
                arr = arr[max(0, self._pos - at):]
                if 0 < need < len(arr):
                    self._pending = (self._pos + need, arr[need:])
                    arr = arr[:need]
                blocks.append(arr)
                self._pos += len(arr)
                need = need - len(arr) if need > 0 else need
        except self._av.error.FFmpegError as err:
            raise RuntimeError(f"FFmpeg: {err}") from None
        y = np.concatenate(blocks) if blocks else np.zeros((0, self.channels), np.float32)
        return y if always_2d else y[:, 0]

    def close(self) -> None:
        self._c.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def audio_info(source: Source) -> AudioInfo:
    """Sample rate, channel count and length of ``source`` without decoding it."""
    with _open(source) as f:
        return AudioInfo(f.samplerate, f.channels, f.frames)


# ----------------------------------------------------------------------------- input quality


@dataclass(frozen=True)
class AudioProfile:
    """What a file can carry: its sample rate, PCM bit depth and the band it really fills.

    ``bit_depth`` is None for lossy codecs (mp3, ogg), whose quality shows in
    ``bandwidth`` instead; floats count as 32/64 bits.
    """

    samplerate: int
    bit_depth: int | None
    bandwidth: float


def _bit_depth(subtype: str) -> int | None:
    subtype = (subtype or "").upper()
    if subtype in ("ULAW", "ALAW"):
        return 8
    if subtype == "FLOAT":
        return 32
    if subtype == "DOUBLE":
        return 64
    if "ADPCM" in subtype:
        return 4
    digits = subtype.rsplit("_", 1)[-1].lstrip("SU")  # PCM_16, PCM_S8, PCM_U8, DWVW_12, ALAC_20, ...
    return int(digits) if digits.isdigit() and subtype.startswith(("PCM", "DWVW", "DPCM", "ALAC", "NMS")) else None


#: The band of a file ends where its long-term spectrum falls this far below its peak.
BANDWIDTH_DB = 60.0


def effective_bandwidth(y: np.ndarray, sr: int, *, n_fft: int = 2048) -> float:
    """Highest frequency (Hz) where the long-term spectrum of ``y`` is within
    :data:`BANDWIDTH_DB` of its peak (smoothed over ~9 bins).

    On the shared GTZAN tracks it reads 9.2-11 kHz; the same tracks through an
    8 kHz sample rate read 3.9 kHz.
    """
    if y.size < n_fft:
        return sr / 2
    frames = np.lib.stride_tricks.sliding_window_view(y, n_fft)[:: n_fft // 2]
    power = np.mean(np.abs(np.fft.rfft(frames * np.hanning(n_fft).astype(np.float32), axis=1)) ** 2, axis=0)
    db = 10 * np.log10(power + 1e-20)
    db = np.convolve(db, np.ones(9) / 9, mode="same")
    above = np.nonzero(db > db.max() - BANDWIDTH_DB)[0]
    return float(above[-1] * sr / n_fft) if above.size else 0.0


def audio_profile(source: Source, *, seconds: float = 10.0) -> AudioProfile:
    """Sample rate and bit depth from the header, bandwidth from ``seconds`` in the middle of the file.

    Cheap (one short decode at the native rate, one averaged spectrum).
    """
    with _open(source) as f:
        sr, subtype, frames = f.samplerate, f.subtype, f.frames
        n = int(seconds * sr) if sr > 0 else 0
        try:
            with _quiet_stderr():
                if frames > n:
                    f.seek((frames - n) // 2)
                y = _read_mono(f, n)
        except (sf.LibsndfileError, RuntimeError, ValueError) as err:
            raise AudioError(source, f"damaged audio data ({_decoder_reason(err).split('(', 1)[-1].rstrip(')')})") from None
    y = y[np.isfinite(y)] if not np.all(np.isfinite(y)) else y
    return AudioProfile(int(sr), _bit_depth(subtype), effective_bandwidth(y, sr) if sr > 0 else 0.0)


def training_audio(paths, *, max_spectra: int = 200) -> dict:
    """What a model's training audio was: recorded in the model, compared with each input.

    Sample rates and bit depths come from every file's header; the band from
    at most ``max_spectra`` files spread over the list. Unreadable files are
    skipped (extraction already reported them).
    """
    paths = list(paths)
    step = max(1, -(-len(paths) // max_spectra)) if paths else 1
    rates, bits, bands = [], [], []
    for i, p in enumerate(paths):
        try:
            if i % step == 0:
                prof = audio_profile(p)
                bands.append(prof.bandwidth)
                rate, depth = prof.samplerate, prof.bit_depth
            else:
                with _open(p) as f:
                    rate, depth = f.samplerate, _bit_depth(f.subtype)
        except AudioError:
            continue
        rates.append(rate)
        if depth is not None:
            bits.append(depth)
    if not rates:
        return {}
    return {
        "n_tracks": len(rates),
        "samplerate_min": int(min(rates)),
        "samplerate_median": float(np.median(rates)),
        "bit_depth_min": int(min(bits)) if bits else None,
        "bandwidth_p10_hz": round(float(np.percentile(bands, 10)), 1) if bands else None,
        "bandwidth_median_hz": round(float(np.median(bands)), 1) if bands else None,
    }


#: An input whose band ends below this fraction of the training tracks' 10th
#: percentile band is flagged (GTZAN: below ~6.9 kHz).
BANDWIDTH_RATIO = 0.75


def quality_warnings(profile: AudioProfile, training: dict) -> list[str]:
    """Reasons (one short sentence each) why an input is poorer than a model's training audio."""
    out = []
    if not training:
        return out
    bits = training.get("bit_depth_min")
    if bits and profile.bit_depth is not None and profile.bit_depth < bits:
        out.append(f"{profile.bit_depth}-bit audio; the model was trained on {bits}-bit or better, "
                   "so the prediction is less reliable")
    band = training.get("bandwidth_p10_hz")
    if band and profile.bandwidth < BANDWIDTH_RATIO * band:
        cause = (f"sample rate {profile.samplerate} Hz" if profile.samplerate / 2 < BANDWIDTH_RATIO * band
                 else "band-limited audio")
        out.append(f"{cause}: nothing above {profile.bandwidth / 1000:.1f} kHz, the model was trained on audio "
                   f"up to {band / 1000:.1f} kHz or more, so the prediction is less reliable")
    return out


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


#: Samples (frames x channels) decoded per read: memory follows the audio actually
#: decoded (mixed to mono block by block), never a header's claim of length or channels.
_BLOCK_SAMPLES = 1 << 20


def _read_mono(f: sf.SoundFile, frames: int) -> np.ndarray:
    """Up to ``frames`` frames (-1: to the end) of ``f`` as mono float32, read in bounded blocks."""
    blocks, got = [], 0
    step = max(1, _BLOCK_SAMPLES // max(1, f.channels))
    while frames < 0 or got < frames:
        n = step if frames < 0 else min(step, frames - got)
        block = f.read(n, dtype="float32", always_2d=True)
        if not len(block):
            break  # the data ends before the header said it would (a truncated file)
        blocks.append(_to_mono_float(block))
        got += len(block)
    return np.concatenate(blocks) if blocks else np.zeros(0, np.float32)


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
        if native <= 0:
            raise AudioError(source, f"not a readable audio file (sample rate {native} Hz in the header)")
        start = int(round(offset * native))
        frames = -1 if duration is None else int(round(duration * native))
        try:
            with _quiet_stderr():
                if start:
                    f.seek(min(start, f.frames))
                y = _read_mono(f, frames)
        except (sf.LibsndfileError, RuntimeError, ValueError) as err:
            raise AudioError(source, f"damaged audio data ({_decoder_reason(err).split('(', 1)[-1].rstrip(')')})") from None
    _check_finite(source, y)
    if native != sr and y.size:
        y = soxr.resample(y, native, sr).astype(np.float32, copy=False)
    if y.size < min_duration * sr:
        raise AudioError(source, f"too short ({y.size / sr:.2f} s; at least {min_duration:g} s needed)")
    if np.max(np.abs(y)) < SILENCE_PEAK:
        raise AudioError(source, "silent (peak below -80 dBFS)")
    return normalise(y, method=normalisation)
