"""Per-track features and feature extraction for whole datasets.

:func:`extract_track` is a pure function of (audio bytes or path, settings) →
arrays, so the same code runs in a local process pool and on a cluster.
:func:`extract_dataset` runs it over many files: decoding, HPSS and
spectrograms in worker processes while the CNN batches images of several
tracks in the main process, with an on-disk :class:`~genrevision.features.store.FeatureStore`
so nothing is computed twice and an interrupted run resumes.

Windows are the unit, tracks are groups of windows. A file is read in
segments of ``segment_seconds`` (30 s), each normalised on its own as a
track would be (a trailing piece too short for a window is left out, so
GTZAN's 30.01-30.37 s tracks are one segment); each segment is cut
into its real windows (3 s by default: an 8 s clip has 2, a 30 s track 10),
never padded or repeated. For a long file at most ``max_windows`` windows are
kept, spread evenly from its start to its end, and only the segments holding
them are decoded (see :func:`plan_segments`).

Arrays of one track: one per view, ``(n_windows, D)`` CNN features of each
window image (one image per segment for the paper's whole-track layout),
``"starts"``, the start of each window in seconds, and ``"mfcc"``, the
engineered baseline vector.
"""
from __future__ import annotations

import json
import os
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .._utils.progress import progress_bar
from ..signal.audio import SAMPLE_RATE, AudioError, audio_info, load_audio
from .._utils.files import feature_cache, os_reason
from ..signal.separation import VIEWS, separate
from ..signal.spectrogram import (SpectrogramConfig, count_windows, frequency_scale, log_image, pick_windows, resize, to_png,
                          window_images)
from .._utils.workers import start_pool, stop_pool

__all__ = [
    "FeatureSettings",
    "Segment",
    "plan_segments",
    "decode_segments",
    "view_images",
    "track_images",
    "images_to_features",
    "extract_signal",
    "extract_track",
    "prepare_track",
    "prepare_tracks",
    "front_end",
    "separate_views",
    "prepared_features",
    "extract_dataset",
    "extract_cached",
    "extract_many",
    "extract_cached_many",
    "failure_reason",
    "DEFAULT_CACHE",
    "ExtractionResult",
    "pool_windows",
    "feature_matrix",
]

@dataclass(frozen=True)
class FeatureSettings:
    """Everything that decides a track's feature numbers.

    ``FeatureSettings()`` is the *paper's* extractor (EfficientNet-Lite0, ``layers="all"``),
    not the default recipe's: ``get_recipe("default").features`` is EfficientNet-Lite2 with
    ``layers="all+max"``. To change one field of what ``genrevision train`` uses, start from
    the recipe's settings: ``get_recipe("default").features.with_(...)``.

    Parameters
    ----------
    sr, normalisation : audio decoding (see :func:`genrevision.signal.audio.load_audio`)
    segment_seconds : float or None
        Audio is read in segments of this length, each normalised on its own
        and cut into windows (see :func:`plan_segments`). None reads every
        file in one piece (memory then grows with the file). Prediction
        classifies segments of this length.
    n_fft, hop_length : STFT shared by HPSS and the images.
    hpss_kernel, hpss_margin : (harmonic, percussive) median filter lengths and margins.
    spectrogram : SpectrogramConfig (window length, the ``max_windows`` cap per track, ...)
    backbone : registry name (see :mod:`genrevision.features.backbone`)
    layers : {"last", "all", "all+max"} penultimate layer only, or every stage
        pooled by its spatial mean (and maximum), see :func:`genrevision.features.backbone.pool_stages`.
    channels : {"views", "stacked"}
        ``"views"``: one grey image per view, three CNN passes. ``"stacked"``:
        original/harmonic/percussive as the R/G/B channels of one image, one pass.
    """

    sr: int = SAMPLE_RATE
    normalisation: str = "peak"
    segment_seconds: float | None = 30.0
    n_fft: int = 2048
    hop_length: int = 512
    hpss_kernel: tuple[int, int] = (31, 31)
    hpss_margin: tuple[float, float] = (1.0, 1.0)
    spectrogram: SpectrogramConfig = field(default_factory=SpectrogramConfig)
    backbone: str = "efficientnet_lite0"
    layers: str = "all"
    channels: str = "views"

    def __post_init__(self):
        if self.layers not in ("last", "all", "all+max"):
            raise ValueError(f"layers must be 'last', 'all' or 'all+max', got {self.layers!r}")
        if self.channels not in ("views", "stacked"):
            raise ValueError(f"channels must be 'views' or 'stacked', got {self.channels!r}")
        if isinstance(self.spectrogram, dict):
            object.__setattr__(self, "spectrogram", SpectrogramConfig(**_tuples(self.spectrogram)))
        shortest = max(1.0, self.spectrogram.window_seconds if self.spectrogram.layout == "windows" else 1.0)
        if self.segment_seconds is not None and not self.segment_seconds >= shortest:
            raise ValueError(f"segment_seconds must be None or at least {shortest:g} s (one window), "
                             f"got {self.segment_seconds}")
        object.__setattr__(self, "hpss_kernel", tuple(int(k) for k in np.broadcast_to(self.hpss_kernel, 2)))
        object.__setattr__(self, "hpss_margin", tuple(float(m) for m in np.broadcast_to(self.hpss_margin, 2)))

    @property
    def view_names(self) -> tuple[str, ...]:
        return ("stacked",) if self.channels == "stacked" else VIEWS

    @property
    def window_frames(self) -> tuple[int, int]:
        """(frames per window, hop in frames) of the windows layout."""
        cfg = self.spectrogram
        return (max(1, int(round(cfg.window_seconds * self.sr / self.hop_length))),
                max(1, int(round(cfg.window_hop_seconds * self.sr / self.hop_length))))

    def n_windows(self, seconds: float) -> int:
        """Real windows in a piece of audio this long (at least 1; 1 for the whole layout)."""
        if self.spectrogram.layout == "whole":
            return 1
        frames = 1 + int(round(seconds * self.sr)) // self.hop_length
        return count_windows(frames, *self.window_frames)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["spectrogram"] = self.spectrogram.to_dict()
        d["hpss_kernel"], d["hpss_margin"] = list(self.hpss_kernel), list(self.hpss_margin)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureSettings":
        d = dict(d)
        d["spectrogram"] = SpectrogramConfig(**_tuples(d.get("spectrogram", {})))
        return cls(**_tuples(d))

    def with_(self, **changes) -> "FeatureSettings":
        spec_changes = {k[5:]: changes.pop(k) for k in list(changes) if k.startswith("spec_")}
        out = replace(self, **changes)
        return replace(out, spectrogram=replace(out.spectrogram, **spec_changes)) if spec_changes else out


def _tuples(d: dict) -> dict:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


# ----------------------------------------------------------------------------- where the windows are


@dataclass(frozen=True)
class Segment:
    """A stretch of a file read and normalised as one piece.

    Attributes
    ----------
    start, duration : float, seconds
    windows : tuple of int or None
        Indices of the windows kept among the segment's real windows (None = all).
    to_end : bool
        The segment ends where the file ends: it is read to the end (a
        header's length can be off by a few samples).
    """

    start: float
    duration: float
    windows: tuple[int, ...] | None = None
    to_end: bool = False


def plan_segments(duration: float, settings: FeatureSettings, *, max_windows: int | None = None,
                  max_segments: int | None = None) -> list[Segment]:
    """Which segments of a file to read, and which of their windows to keep.

    Parameters
    ----------
    duration : float
        Length of the file in seconds (from its header).
    settings : FeatureSettings
    max_windows : int, optional
        Keep at most this many windows, spread evenly over the file (windows
        of all its segments in time order, then every k-th); segments holding
        none of them are not read. None keeps every window.
    max_segments : int, optional
        Read at most this many segments (prediction on long files): the one at
        the middle of each of ``max_segments`` equal stretches of the file, so
        a song is sampled from its body, not its intro and outro. None reads all.

    Returns
    -------
    list of Segment, in time order.
    """
    if not duration > 0:
        raise ValueError(f"duration must be > 0 s, got {duration}")
    for name, v in (("max_windows", max_windows), ("max_segments", max_segments)):
        if v is not None and (isinstance(v, bool) or int(v) != v or v < 1):
            raise ValueError(f"{name} must be None or an integer >= 1, got {v!r}")
    seg = settings.segment_seconds
    if seg is None or duration <= seg:
        pieces = [(0.0, float(duration))]
    else:
        pieces = [(float(s), float(min(seg, duration - s))) for s in np.arange(0.0, duration, seg)]
        # A trailing piece too short for one window (half a segment for the
        # whole-track layout) adds nothing a model could read.
        shortest = seg / 2 if settings.spectrogram.layout == "whole" else settings.spectrogram.window_seconds
        pieces = pieces[:1] + [p for p in pieces[1:] if p[1] >= shortest]
    end = pieces[-1][0] + pieces[-1][1] >= duration - 1e-6  # the last kept piece reaches the end
    if max_segments is not None and len(pieces) > max_segments:
        k = int(max_segments)
        picks = np.floor((np.arange(k) + 0.5) * len(pieces) / k).astype(int)
        end = end and picks[-1] == len(pieces) - 1
        pieces = [pieces[i] for i in picks]
    last = len(pieces) - 1 if end else -1
    counts = [settings.n_windows(d) for _, d in pieces]
    if max_windows is None or sum(counts) <= max_windows:
        return [Segment(s, d, None, i == last) for i, (s, d) in enumerate(pieces)]
    chosen = np.round(np.linspace(0, sum(counts) - 1, int(max_windows))).astype(int)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    out = []
    for i, ((s, d), lo, hi) in enumerate(zip(pieces, bounds[:-1], bounds[1:])):
        local = chosen[(chosen >= lo) & (chosen < hi)] - lo
        if local.size:
            out.append(Segment(s, d, tuple(int(k) for k in local), i == last))
    return out


def decode_segments(source, settings: FeatureSettings, segments: list[Segment]):
    """Yield ``(segment, signal)`` for each planned segment, one decoded at a time.

    A file read as one segment raises :class:`~genrevision.signal.audio.AudioError`
    as :func:`~genrevision.signal.audio.load_audio` does. In a file of several, a
    silent or unreadably short segment is skipped; if nothing is left the
    first error is raised.
    """
    if len(segments) == 1 and segments[0].start == 0 and segments[0].to_end:
        yield segments[0], load_audio(source, sr=settings.sr, normalisation=settings.normalisation)
        return
    first_error, yielded = None, 0
    for seg in segments:
        try:
            y = load_audio(source, sr=settings.sr, normalisation=settings.normalisation, offset=seg.start,
                           duration=None if seg.to_end else seg.duration,
                           min_duration=min(1.0, seg.duration) if len(segments) > 1 else 1.0)
        except AudioError as err:
            if not ("silent" in err.reason or "too short" in err.reason):
                raise
            first_error = first_error or err
            continue
        yielded += 1
        yield seg, y
    if not yielded:
        raise first_error or AudioError(source, "silent (peak below -80 dBFS)")


# ----------------------------------------------------------------------------- one track


def separate_views(y: np.ndarray, settings: FeatureSettings) -> dict[str, np.ndarray]:
    """STFT magnitudes of the original, harmonic and percussive views (what every recipe of the same
    front end, see :func:`front_end`, makes its images from)."""
    return separate(y, n_fft=settings.n_fft, hop_length=settings.hop_length,
                    kernel_size=settings.hpss_kernel, margin=settings.hpss_margin)


def front_end(settings: FeatureSettings) -> tuple:
    """The settings that decide the decoded audio and its HPSS views: settings equal here share them."""
    return (settings.sr, settings.normalisation, settings.segment_seconds, settings.n_fft, settings.hop_length,
            settings.hpss_kernel, settings.hpss_margin)


def view_images(y: np.ndarray, settings: FeatureSettings, *, mags=None) -> dict[str, np.ndarray]:
    """Full-length log spectrogram image of each view, (height, n_frames) in [0, 1].

    ``mags``: the views' magnitudes from :func:`separate_views` when already computed."""
    mags = separate_views(y, settings) if mags is None else mags
    cfg = settings.spectrogram
    return {v: log_image(frequency_scale(S, sr=settings.sr, n_fft=settings.n_fft, config=cfg), top_db=cfg.top_db,
                         band_norm=cfg.band_norm)
            for v, S in mags.items()}


def track_images(y: np.ndarray, settings: FeatureSettings, *, windows=None,
                 mags=None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The images the CNN sees for one decoded segment, per view (or one ``"stacked"`` RGB set).

    Parameters
    ----------
    y : mono float32 signal at ``settings.sr`` (one segment)
    settings : FeatureSettings
    windows : sequence of int, optional
        Keep only these of the segment's real windows (indices past the end
        of a segment shorter than its header said are dropped).
    mags : dict, optional
        The segment's :func:`separate_views` (shared by recipes of one front end).

    Returns
    -------
    images : dict view → float32 array (n_images, H, W) or, stacked, (n_images, H, W, 3)
    starts : (n_images,) float32, start of each image in seconds from the segment's start
    """
    cfg = settings.spectrogram
    full = view_images(y, settings, mags=mags)
    if cfg.layout == "whole":
        size = cfg.image_size or (256, 256)  # the paper's square picture of the whole segment
        out = {view: resize(img, size)[None] for view, img in full.items()}
        starts = np.zeros(1, np.float32)
    else:
        per, hop = settings.window_frames
        idx = pick_windows(next(iter(full.values())).shape[1], per, hop, windows)
        out = {}
        for view, img in full.items():
            wins = window_images(img, frames_per_window=per, hop_frames=hop, indices=idx)
            if cfg.image_size:
                wins = np.stack([resize(w, cfg.image_size) for w in wins])
            out[view] = wins
        starts = (idx * hop * settings.hop_length / settings.sr).astype(np.float32)
    if settings.channels == "stacked":
        return {"stacked": np.stack([out[v] for v in VIEWS], axis=-1)}, starts
    return out, starts


def images_to_features(images: dict[str, np.ndarray], settings: FeatureSettings, *, backbone=None) -> dict[str, np.ndarray]:
    """CNN features of every image, per view: (n_images, D) float32."""
    from .backbone import get_backbone

    bb = backbone or get_backbone(settings.backbone)
    names = list(images)
    stacked = np.concatenate([_fit_input(images[v], settings, bb) for v in names])
    feats = bb.features(stacked, layers=settings.layers)
    counts = np.cumsum([0] + [len(images[v]) for v in names])
    return {v: feats[counts[i] : counts[i + 1]] for i, v in enumerate(names)}


def _fit_input(imgs: np.ndarray, settings: FeatureSettings, bb) -> np.ndarray:
    # The paper's whole-track image goes in at the network's own input size.
    if settings.spectrogram.layout == "whole" and not settings.spectrogram.image_size:
        side = bb.spec.input_size
        if imgs.ndim == 4:
            return np.stack([np.stack([resize(im[..., c], (side, side)) for c in range(3)], -1) for im in imgs])
        return np.stack([resize(im, (side, side)) for im in imgs])
    return imgs


def _baseline(y: np.ndarray, sr: int, *, S: np.ndarray | None = None) -> np.ndarray:
    from ..signal.baseline import mfcc_features

    return mfcc_features(y, sr=sr, S=S).astype(np.float32)


def _baseline_stft(settings: FeatureSettings, mags: dict, n_segments: int) -> np.ndarray | None:
    """The HPSS front end's magnitude STFT when it is the one the MFCC baseline computes: the audio read
    in one segment, with the baseline's STFT size and hop (the same function of the same signal)."""
    from ..signal.baseline import mfcc_features

    kw = mfcc_features.__kwdefaults__
    same = (settings.n_fft, settings.hop_length) == (kw["n_fft"], kw["hop_length"])
    return mags["original"] if same and n_segments == 1 else None


def prepare_track(source, settings: FeatureSettings, *, save_images: str | None = None, baseline: bool = True):
    """Decode and make images (the CPU-only half of :func:`extract_track`).

    Reads the segments :func:`plan_segments` chooses for the file's length
    (at most ``settings.spectrogram.max_windows`` windows, spread over the
    whole file). Runs in worker processes; needs no CNN.

    Returns
    -------
    images : dict view → (n_windows, ...) images of every kept window, in time order
    baseline : MFCC baseline vector of the decoded audio, or None when ``baseline=False``
    starts : (n_windows,) float32, window starts in seconds from the start of the file
    """
    return prepare_tracks(source, [settings], save_images=save_images, baseline=baseline)[0]


def prepare_tracks(source, settings_list, *, save_images: str | None = None, baseline: bool = True) -> list:
    """:func:`prepare_track` for several feature settings with one decode and one HPSS.

    Settings with the same :func:`front_end` that read the same segments of the
    file share the decoded audio, its separation into views and the MFCC
    baseline vector; each gets its own images. Returns one
    ``(images, baseline, starts)`` per settings, each exactly what
    :func:`prepare_track` returns for it. ``save_images`` applies to the first settings.
    """
    settings_list = list(settings_list)
    duration = audio_info(source).duration
    shared: dict = {}
    for i, st in enumerate(settings_list):
        plan = plan_segments(duration, st, max_windows=st.spectrogram.max_windows)
        shared.setdefault((front_end(st), tuple(plan)), []).append(i)
    out: list = [None] * len(settings_list)
    for (_, plan), members in shared.items():
        first = settings_list[members[0]]
        parts: dict = {i: [] for i in members}
        starts: dict = {i: [] for i in members}
        audio = []
        for seg, y in decode_segments(source, first, list(plan)):
            mags = separate_views(y, first)
            for i in members:
                imgs, st_ = track_images(y, settings_list[i], windows=seg.windows, mags=mags)
                parts[i].append(imgs)
                starts[i].append(seg.start + st_)
                if save_images and i == 0 and len(parts[i]) == 1:  # the first segment's three spectrograms
                    save_view_pngs(y, settings_list[i], save_images, _stem(source))
            if baseline:
                audio.append(y)
        base = _baseline(np.concatenate(audio), first.sr, S=_baseline_stft(first, mags, len(audio))) if baseline else None
        for i in members:
            images = {v: np.concatenate([p[v] for p in parts[i]]) for v in parts[i][0]}
            out[i] = (images, base, np.concatenate(starts[i]).astype(np.float32))
    return out


def save_view_pngs(y: np.ndarray, settings: FeatureSettings, folder: str, stem: str) -> list[str]:
    """Write the three full-length spectrograms of a signal as PNGs (the paper's Fig. 2–4)."""
    os.makedirs(folder, exist_ok=True)
    written = []
    for view, img in view_images(y, settings).items():
        path = os.path.join(folder, f"{stem}.{view}.png")
        to_png(img, path)
        written.append(path)
    return written


def _stem(source) -> str:
    return "track" if isinstance(source, (bytes, bytearray)) else os.path.splitext(os.path.basename(os.fspath(source)))[0]


def _with_features(images, starts, base, settings, backbone) -> dict[str, np.ndarray]:
    feats = images_to_features(images, settings, backbone=backbone)
    feats["starts"] = np.asarray(starts, np.float32)
    if base is not None:
        feats["mfcc"] = base
    return feats


def extract_signal(y: np.ndarray, settings: FeatureSettings | None = None, *, backbone=None,
                   baseline: bool = True) -> dict[str, np.ndarray]:
    """Features of one decoded segment (mono float32 at ``settings.sr``), every real window.

    What prediction runs on each segment of a file. ``"starts"`` are
    relative to the signal's start; ``baseline=False`` skips the MFCC
    baseline (a model does not use it).
    """
    settings = settings or FeatureSettings()
    mags = separate_views(y, settings)
    images, starts = track_images(y, settings, mags=mags)
    base = _baseline(y, settings.sr, S=_baseline_stft(settings, mags, 1)) if baseline else None
    return _with_features(images, starts, base, settings, backbone)


def extract_track(source, settings: FeatureSettings | None = None, *, backbone=None,
                  baseline: bool = True) -> dict[str, np.ndarray]:
    """Features of one track: a pure function of (audio, settings).

    Parameters
    ----------
    source : path or bytes
    settings : FeatureSettings, default ``FeatureSettings()``
    backbone : Backbone, optional
        An already loaded network (else the process-wide cached one).
    baseline : bool
        Also compute the MFCC baseline vector.

    Returns
    -------
    dict: view name → (n_windows, D) float32, ``"starts"`` → (n_windows,)
    window starts in seconds, and ``"mfcc"`` → (d,) float32.
    """
    settings = settings or FeatureSettings()
    images, base, starts = prepare_track(source, settings, baseline=baseline)
    return _with_features(images, starts, base, settings, backbone)


# ----------------------------------------------------------------------------- datasets


@dataclass
class ExtractionResult:
    """Features per input path, and the paths that failed with their reason."""

    features: dict[str, dict[str, np.ndarray]]
    failures: list[tuple[str, str]]
    computed: int = 0
    cached: int = 0
    #: Paths whose features were computed but could not be stored (a read-only or full cache).
    unstored: list[str] = field(default_factory=list)
    #: SHA-1 of each readable path's bytes (what the cache is keyed by).
    digests: dict[str, str] = field(default_factory=dict)
    #: Paths whose features were computed in this run (not read from the cache).
    computed_paths: list[str] = field(default_factory=list)
    #: Worker processes used (0: all in this process).
    workers: int = 0
    #: With the default ``jobs``: the measured seconds per track of each half and the workers chosen.
    probe: dict = field(default_factory=dict)


def failure_reason(path: str, err: BaseException) -> str:
    """One line saying why ``path`` gave no features: an AudioError's reason, else the error's type and
    first line (what :class:`ExtractionResult` failures hold, for every engine)."""
    if isinstance(err, AudioError):
        return err.reason
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")


#: Tracks to compute before the worker count is measured instead of taken as cores - 1.
_PROBE_MIN_TRACKS = 16


def _workers_for(prepare_s: float, cnn_s: float, cores: int) -> int:
    """Worker processes for decoding/HPSS/images so that both halves keep the cores busy.

    ``prepare_s``/``cnn_s``: one track's CPU seconds in each half, measured in
    this process (the CNN's on a batch of tracks, as the run batches them). The
    workers get the cores in proportion to their share of the work, rounded up,
    **plus one**: while this process runs a CNN batch it collects no finished
    track, so workers holding exactly their share wait for it and leave cores
    idle; an idle worker costs only memory. Measured on a 2-core machine: two
    recipes on 8 s MP3s at 48 kHz, 5.5–6.2 clips/s with 2 workers against
    3.9–4.4 with 1 (600 clips, interleaved). At most ``cores``: on one or two
    cores every core whatever the costs; on many, decode/HPSS-bound audio and
    balanced halves get every core, very CNN-bound tracks leave most of them to
    the CNN's threads.
    """
    total = prepare_s + cnn_s
    if not total > 0:
        return max(1, cores - 1)
    import math

    return int(min(cores, max(1, math.ceil(cores * prepare_s / total - 1e-9) + 1)))


#: Tracks whose CNN runs as one batch when the costs are measured (after one that loads the networks).
_PROBE_BATCH_TRACKS = 6


def _prepare_job(path: str, settings_dicts: list, save_images: str | None):
    return prepare_tracks(path, [_settings_from_dict(d) for d in settings_dicts], save_images=save_images)


_SETTINGS_CACHE: dict = {}


def _settings_from_dict(d: dict) -> FeatureSettings:
    key = json.dumps(d, sort_keys=True, default=str)
    if key not in _SETTINGS_CACHE:
        _SETTINGS_CACHE[key] = FeatureSettings.from_dict(d)
    return _SETTINGS_CACHE[key]


def _flush_on_interrupt(err: BaseException, flush, bar) -> None:
    # After Ctrl-C/SIGTERM, one CNN pass over the images already made (< batch_images)
    # stores their tracks; a second interrupt during it stops at once.
    try:
        if isinstance(err, KeyboardInterrupt):
            flush()
    except Exception:  # noqa: BLE001 - the interrupt is what the caller must see
        pass
    finally:
        bar.close()


def _warm_hpss() -> None:
    """Compile (or load from numba's cache) the running median before the first track."""
    try:
        from ..signal.separation import hpss_masks

        hpss_masks(np.ones((4, 40), np.float32), kernel_size=3)
    except Exception:  # noqa: BLE001
        pass


def extract_dataset(
    paths: list[str],
    settings: FeatureSettings | None = None,
    *,
    store=None,
    jobs: int | None = None,
    batch_images: int = 64,
    progress: bool = True,
    save_images: str | None = None,
    backbone=None,
) -> ExtractionResult:
    """Features for many files, cached, resumable, in parallel.

    Parameters
    ----------
    paths : list of str
    settings : FeatureSettings
    store : FeatureStore, optional
        Cache; each finished track is written at once, so an interrupted run
        resumes where it stopped.
    jobs : int, optional
        Worker processes for decoding/HPSS/spectrograms (``0`` = all in this
        process). The CNN runs here, batching the images of several tracks.
        Default: with 16 tracks or more to compute, the cost of each half is
        measured on the first tracks (the CNN's on one batch of six) and the
        workers get the cores in proportion to their half's share plus one
        (every core for decode/HPSS-bound audio and balanced halves, fewer for
        very CNN-bound tracks on many cores, see :func:`_workers_for`;
        ``ExtractionResult.probe`` says what was measured); on one or two
        cores that rule gives every core whatever the costs, so nothing is
        measured; fewer tracks: CPU count - 1, at least 1.
    batch_images : int
        Images per CNN batch.
    progress : bool
        Show a progress bar (on stderr).
    save_images : str, optional
        Folder for PNGs of each track's three spectrograms.

    Returns
    -------
    ExtractionResult; failed files are listed, the rest go on.
    """
    settings = settings or FeatureSettings()
    return extract_many(paths, [settings], stores=[store], jobs=jobs, batch_images=batch_images, progress=progress,
                        save_images=save_images, backbones=[backbone])[0]


def _cached_or_needed(paths, settings_list, stores, results, *, save_images) -> tuple[dict, dict]:
    """Each file's digest, and for each file the settings it must be computed for: fills
    ``results`` with the cached entries (width-checked) and the files that cannot be read or
    repeat another's audio; returns ``(needs, digests)``, needs: path → sorted settings indices."""
    needs: dict[str, list[int]] = {}  # path → settings indices it must be computed for, in path order
    digests = {}
    first_with: dict[str, str] = {}  # content digest → first path holding that audio

    def fail_all(p, reason):
        for r in results:
            r.failures.append((p, reason))

    for p in paths:
        try:
            digest = _digest(p)
        except OSError as err:
            fail_all(p, os_reason(err))
            continue
        except ValueError as err:  # e.g. a NUL byte in a path given through the API
            fail_all(p, f"cannot read ({err})")
            continue
        if digest in first_with:
            # One audio under two names would land on both sides of a fold.
            fail_all(p, f"same audio as {first_with[digest]}")
            continue
        first_with[digest] = p
        digests[p] = digest
        for k, (st, store, result) in enumerate(zip(settings_list, stores, results)):
            views = st.view_names
            cached = (store.get(digest, validate=lambda a, views=views: check_entry(a, views), about=p)
                      if store is not None else None)
            if cached is not None and not (save_images and k == 0):
                result.features[p] = cached
                result.cached += 1
            else:
                needs.setdefault(p, []).append(k)
    for k, (store, result) in enumerate(zip(stores, results)):
        result.digests = dict(digests)
        if store is not None and result.cached:
            # Widths are checked against the store's recorded layout (or, before one
            # is recorded, the widths most entries share): a valid-looking entry of
            # another width would only fail later, in a classifier, naming no file.
            layout = store.read_json(_LAYOUT) or _common_widths(result.features.values())
            for p in list(result.features):
                reason = _width_mismatch(result.features[p], layout)
                if reason:
                    warnings.warn(f"{store._file(digests[p])}: bad cache entry for {p} ({reason}); recomputing",
                                  stacklevel=3)
                    del result.features[p]
                    result.cached -= 1
                    needs.setdefault(p, []).append(k)
    for p in needs:
        needs[p] = sorted(set(needs[p]))
    return needs, digests


def extract_many(
    paths: list[str],
    settings_list,
    *,
    stores=None,
    jobs: int | None = None,
    batch_images: int = 64,
    progress: bool = True,
    save_images: str | None = None,
    backbones=None,
) -> list[ExtractionResult]:
    """:func:`extract_dataset` for several feature settings in one pass over the files.

    Each file is read once and, for settings of one :func:`front_end`,
    decoded and separated once (see :func:`prepare_tracks`); each settings
    gets its own images, CNN features and store entries, exactly as a run of
    :func:`extract_dataset` with it alone. A file cached for every settings is
    not read at all (beyond its digest).

    Parameters
    ----------
    paths : list of str
    settings_list : sequence of FeatureSettings
    stores : sequence of FeatureStore or None, optional
        One per settings (None: not cached).
    jobs, batch_images, progress : see :func:`extract_dataset`.
    save_images : str, optional
        PNGs of the first settings' images.
    backbones : sequence of Backbone or None, optional
        One per settings (None: the process-wide cached network).

    Returns
    -------
    list of ExtractionResult, one per settings.
    """
    settings_list = list(settings_list)
    n = len(settings_list)
    stores = list(stores) if stores is not None else [None] * n
    backbones = list(backbones) if backbones is not None else [None] * n
    if len(stores) != n or len(backbones) != n:
        raise ValueError(f"extract_many needs one store and one backbone per settings ({n})")
    results = [ExtractionResult({}, []) for _ in range(n)]
    layout_written = [[] if st is None or st.read_json(_LAYOUT) is None else [True] for st in stores]
    needs, digests = _cached_or_needed(paths, settings_list, stores, results, save_images=save_images)
    todo = [p for p in paths if p in needs]  # path order, each once

    bar = progress_bar(total=len(paths), initial=len(paths) - len(todo), desc="extract", unit="track",
                       enabled=progress)
    pending: list[list] = [[] for _ in range(n)]
    remaining = {p: len(needs[p]) for p in todo}  # settings still to finish per path (for the bar)

    def done_one(p):
        remaining[p] -= 1
        if remaining[p] == 0:
            bar.update(1)

    def flush(k):
        if not pending[k]:
            return
        for (p, *_), arrays in zip(pending[k], prepared_features([x[1:] for x in pending[k]], settings_list[k],
                                                                 backbone=backbones[k])):
            if stores[k] is not None:
                if stores[k].put(digests[p], arrays) and not layout_written[k]:
                    stores[k].write_json(_LAYOUT, _widths(arrays))
                    layout_written[k].append(p)
            results[k].features[p] = arrays
            results[k].computed += 1
            results[k].computed_paths.append(p)
            done_one(p)
        pending[k].clear()

    def flush_all():
        for k in range(n):
            flush(k)

    def accept(p, prepared_list):
        for k, (imgs, base, starts) in zip(needs[p], prepared_list):
            pending[k].append((p, imgs, base, starts))
            if sum(len(a) for _, i, _, _ in pending[k] for a in i.values()) >= batch_images:
                flush(k)

    def fail(p, err):
        reason = failure_reason(p, err)
        for k in needs[p]:
            results[k].failures.append((p, reason))
        bar.update(1)

    def prepare_here(p):
        return prepare_tracks(p, [settings_list[k] for k in needs[p]], save_images=save_images if 0 in needs[p] else None)

    def consume(stream, *, on_interrupt=None, flush_each=False) -> dict:
        """Accept (or fail) each prepared track of ``stream``, one code path for every way of
        preparing them; returns path → (prepare, accept) CPU seconds of the tracks accepted
        (accept: the CNN batches it ran, ``flush_each``: one batch per track)."""
        seconds = {}
        try:
            for p, prepared, prepare_s in stream:
                if isinstance(prepared, Exception):
                    fail(p, prepared)
                    continue
                t = time.process_time()
                accept(p, prepared)
                if flush_each:
                    flush_all()
                seconds[p] = (prepare_s, time.process_time() - t)
        except BaseException as err:
            # Ctrl-C, SIGTERM (the CLI turns it into KeyboardInterrupt) or an error: keep (in the
            # cache) the tracks whose images are already made.
            if on_interrupt is not None:
                on_interrupt()
            _flush_on_interrupt(err, flush_all, bar)
            raise
        return seconds

    cores = os.cpu_count() or 1
    n_jobs = max(1, cores - 1) if jobs is None else int(jobs)
    if jobs is None and len(todo) >= _PROBE_MIN_TRACKS and cores <= 2:
        n_jobs = cores  # _workers_for's least answer, min(cores, 2), is every core: nothing to measure
    elif jobs is None and len(todo) >= _PROBE_MIN_TRACKS:
        # How many workers: measured on the first tracks, not guessed (see _workers_for). The
        # first track loads the networks (not counted); the next ones' CNN runs as one batch,
        # as the run will batch it: one track alone costs the CNN about twice as much per image.
        consume(_prepare_each(todo[:1], prepare_here), flush_each=True)
        sample, todo = todo[1 : 1 + _PROBE_BATCH_TRACKS], todo[1 + _PROBE_BATCH_TRACKS :]
        seconds = consume(_prepare_each(sample, prepare_here))
        t = time.process_time()
        flush_all()  # the batch's remainder
        if seconds:
            cnn_s = sum(a for _, a in seconds.values()) + time.process_time() - t
            probe = {"prepare_s": sum(p for p, _ in seconds.values()) / len(seconds), "cnn_s": cnn_s / len(seconds)}
            n_jobs = _workers_for(probe["prepare_s"], probe["cnn_s"], cores)
            for r in results:
                r.probe = {**probe, "workers": n_jobs}
    for r in results:
        r.workers = n_jobs if n_jobs > 0 and len(todo) > 1 else 0
    if n_jobs <= 0 or len(todo) <= 1:
        consume(_prepare_each(todo, prepare_here))
    else:
        # One thread per worker: the workers fill the cores, the CNN runs here; on an interrupt
        # the workers stop now instead of finishing their tracks.
        pool = start_pool(n_jobs, threads=1, initializer=_warm_hpss)
        sdicts = [st.to_dict() for st in settings_list]
        submit = lambda p: pool.submit(_prepare_job, p, [sdicts[k] for k in needs[p]],  # noqa: E731
                                       save_images if 0 in needs[p] else None)
        consume(_prepare_in_pool(todo, submit, in_flight=2 * n_jobs + 1), on_interrupt=lambda: stop_pool(pool))
        pool.shutdown(wait=True)
    flush_all()
    bar.close()
    for store, result in zip(stores, results):
        if store is not None and store.unstored:
            result.unstored = [p for p in result.features if digests.get(p) in set(store.unstored)]
            warnings.warn(f"{store.root}: features of {len(result.unstored)} track{'s' * (len(result.unstored) != 1)} "
                          f"could not be stored in the cache ({store.write_error}); they were used in this run and "
                          "will be computed again next time", stacklevel=2)
    return results


def _prepare_each(paths, prepare):
    """``(path, prepared tracks or the exception, CPU seconds)`` for each path, in this process.

    CPU time of this process (its threads included): other jobs on the machine do not count.
    """
    for p in paths:
        t = time.process_time()
        try:
            prepared = prepare(p)
        except Exception as err:  # noqa: BLE001 - one bad file must not stop the batch
            prepared = err
        yield p, prepared, time.process_time() - t


def _prepare_in_pool(paths, submit, *, in_flight: int):
    """``(path, prepared tracks or the exception, None)`` as worker processes finish them, with
    at most ``in_flight`` tracks submitted at once (``submit(path)`` returns a future)."""
    queue = list(reversed(paths))
    running = {}
    while queue or running:
        while queue and len(running) < in_flight:
            p = queue.pop()
            running[submit(p)] = p
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in done:
            p = running.pop(fut)
            try:
                prepared = fut.result()
            except Exception as err:  # noqa: BLE001
                prepared = err
            yield p, prepared, None


#: Where features are cached unless told otherwise (``GENREVISION_CACHE`` overrides it).
DEFAULT_CACHE = feature_cache()


def extract_cached(paths: list[str], settings: FeatureSettings, *, cache: str | None = DEFAULT_CACHE,
                   jobs: int | None = None, progress: bool = True, save_images: str | None = None) -> ExtractionResult:
    """:func:`extract_dataset` with the feature store of ``settings`` in folder ``cache``.

    Parameters
    ----------
    paths : list of str
    settings : FeatureSettings
    cache : str or None
        Feature store folder (entries are keyed by file content and settings);
        None computes everything in memory.
    jobs, progress, save_images : see :func:`extract_dataset`.
    """
    from .store import FeatureStore

    store = FeatureStore(cache, settings.to_dict()) if cache else None
    return extract_dataset(list(paths), settings, store=store, jobs=jobs, progress=progress, save_images=save_images)


def extract_cached_many(paths: list[str], settings_list, *, cache: str | None = DEFAULT_CACHE,
                        jobs: int | None = None, progress: bool = True) -> list[ExtractionResult]:
    """:func:`extract_cached` for several feature settings in one pass (see :func:`extract_many`):
    each file decoded and separated once per front end, each settings cached in its own store."""
    from .store import FeatureStore

    settings_list = list(settings_list)
    stores = [FeatureStore(cache, st.to_dict()) if cache else None for st in settings_list]
    return extract_many(list(paths), settings_list, stores=stores, jobs=jobs, progress=progress)


#: Side file of a store folder recording each array's width (written from the first computed track).
_LAYOUT = "layout.json"


def check_entry(arrays: dict, views) -> str | None:
    """Why a track's feature arrays are unusable, or None.

    Expected: every view as a finite float array (n_windows, D) with the same
    n_windows ≥ 1 in every view, ``"mfcc"`` finite (d,), and ``"starts"``
    (n_windows,) window start times.
    """
    missing = [k for k in (*views, "mfcc", "starts") if k not in arrays]
    if missing:
        return f"no {', '.join(missing)}"
    n = None
    for v in views:
        a = arrays[v]
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1 or a.dtype.kind != "f":
            return f"{v} has shape {a.shape} {a.dtype}, expected (windows, width) floats"
        if n is not None and a.shape[0] != n:
            return f"{v} has {a.shape[0]} windows, {views[0]} {n}"
        n = a.shape[0]
    for k, length in {"mfcc": None, "starts": n}.items():
        a = arrays[k]
        if a.ndim != 1 or a.dtype.kind != "f" or (length is not None and a.shape[0] != length):
            return f"{k} has shape {a.shape} {a.dtype}, expected ({length if length is not None else 'd'},) floats"
    bad = [k for k in (*views, "mfcc", "starts") if not np.all(np.isfinite(arrays[k]))]
    if bad:
        return f"NaN or infinite values in {', '.join(bad)}"
    return None


def _widths(arrays: dict) -> dict:
    # Width of each array that has one fixed across tracks: a view's D, mfcc's d.
    return {k: int(a.shape[-1]) for k, a in arrays.items() if k != "starts"}


def _common_widths(entries) -> dict:
    from collections import Counter

    counts: dict = {}
    for arrays in entries:
        for k, w in _widths(arrays).items():
            counts.setdefault(k, Counter())[w] += 1
    return {k: c.most_common(1)[0][0] for k, c in counts.items()}


def _width_mismatch(arrays: dict, layout) -> str | None:
    if not isinstance(layout, dict):
        return None
    for k, w in _widths(arrays).items():
        if k in layout and layout[k] != w:
            return f"{k} is {w} wide, the other tracks {layout[k]}"
    return None


def prepared_features(prepared: list, settings: FeatureSettings, *, backbone=None) -> list[dict[str, np.ndarray]]:
    """CNN features of several prepared tracks in one forward pass (the CNN half, batched).

    What both dataset engines run on the tracks their workers prepared: the
    local process pool in its main process, :mod:`genrevision.apps.ray_engine` in
    its CNN actors.

    Parameters
    ----------
    prepared : list of ``(images, baseline, starts)``
        Outputs of :func:`prepare_track`.
    settings : FeatureSettings
    backbone : Backbone, optional
        An already loaded network (else the process-wide cached one).

    Returns
    -------
    list of dict, one per track, as :func:`extract_track` returns.
    """
    arrays = [arr for imgs, _, _ in prepared for arr in imgs.values()]
    # One forward pass over the images of several tracks (fuller batches).
    feats = _batched_features(arrays, settings, backbone) if arrays else None
    out, pos = [], 0
    for imgs, base, starts in prepared:
        track = {}
        for v, arr in imgs.items():
            track[v] = feats[pos : pos + len(arr)]
            pos += len(arr)
        track["starts"] = np.asarray(starts, np.float32)
        if base is not None:
            track["mfcc"] = base
        out.append(track)
    return out


def _digest(path: str) -> str:
    from .store import content_digest

    return content_digest(path)


def _batched_features(arrays: list[np.ndarray], settings: FeatureSettings, backbone) -> np.ndarray:
    from .backbone import get_backbone

    bb = backbone or get_backbone(settings.backbone)
    shapes = {a.shape[1:] for a in arrays}
    if len(shapes) == 1:
        return bb.features(np.concatenate([_fit_input(a, settings, bb) for a in arrays]), layers=settings.layers)
    return np.concatenate([bb.features(_fit_input(a, settings, bb), layers=settings.layers) for a in arrays])


# ----------------------------------------------------------------------------- matrices


def pool_windows(windows: np.ndarray, how: str = "meanstd") -> np.ndarray:
    """Pool window features (n_windows, D) into one track vector.

    ``"mean"`` → (D,); ``"meanstd"`` → (2D,) mean then standard deviation
    (how the features vary along the track).
    """
    if how == "mean":
        return windows.mean(axis=0)
    if how == "meanstd":
        return np.concatenate([windows.mean(axis=0), windows.std(axis=0)])
    raise ValueError(f"pooling must be 'mean', 'meanstd' or 'windows', got {how!r}")


def feature_matrix(
    features: list[dict[str, np.ndarray]],
    *,
    views: tuple[str, ...] = VIEWS,
    pooling: str = "meanstd",
    columns: slice | np.ndarray | None = None,
):
    """Stack per-track features into X and its view layout.

    Parameters
    ----------
    features : list of per-track dicts (see :func:`extract_track`)
    views : names of the arrays to put side by side, in column order
    pooling : {"mean", "meanstd", "windows"}
        ``"mean"``/``"meanstd"``: one row per track (see :func:`pool_windows`),
        X is an ndarray (n_tracks, sum of view widths). ``"windows"``: every
        window is a row and X is a :class:`~genrevision.features.ragged.Ragged` matrix
        (tracks keep their own window counts; a per-track vector such as
        ``"mfcc"`` is repeated on each of the track's windows).
    columns : slice or index array, optional
        Subset of each window's feature columns (e.g. the penultimate layer
        only), applied to 2-D arrays before pooling.

    Returns
    -------
    X, layout : the layout is the ``views`` parameter of
        :class:`genrevision.learn.fusion.LateFusionClassifier`: ``((name, start, stop), ...)``.
    """
    if pooling not in ("mean", "meanstd", "windows"):
        raise ValueError(f"pooling must be 'mean', 'meanstd' or 'windows', got {pooling!r}")
    if not features:
        raise ValueError("feature_matrix needs at least one track")

    def block(f, v):
        arr = f[v]
        if arr.ndim == 2 and columns is not None:
            arr = arr[:, columns]
        return arr

    if pooling == "windows":
        from .ragged import Ragged

        rows = []
        for f in features:
            blocks = [block(f, v) for v in views]
            n = max(b.shape[0] for b in blocks if b.ndim == 2)
            rows.append(np.concatenate([b if b.ndim == 2 else np.broadcast_to(b, (n, b.size)) for b in blocks],
                                       axis=1).astype(np.float32, copy=False))
        widths = [block(features[0], v).shape[-1] for v in views]
        X = Ragged.from_list(rows)
    else:
        per_view = [np.stack([pool_windows(b, pooling) if b.ndim == 2 else b for b in (block(f, v) for f in features)])
                    .astype(np.float32) for v in views]
        widths = [b.shape[1] for b in per_view]
        X = np.concatenate(per_view, axis=1)
    stops = np.cumsum(widths)
    return X, tuple((v, int(e - w), int(e)) for v, w, e in zip(views, widths, stops))
