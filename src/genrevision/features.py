"""Per-track features and feature extraction for whole datasets.

:func:`extract_track` is a pure function of (audio bytes or path, settings) →
arrays, so the same code runs in a local process pool and on a cluster.
:func:`extract_dataset` runs it over many files: decoding, HPSS and
spectrograms in worker processes while the CNN batches images of several
tracks in the main process, with an on-disk :class:`~genrevision.store.FeatureStore`
so nothing is computed twice and an interrupted run resumes.

Arrays of one track: one per view, ``(n_windows, D)`` CNN features of each
window image (``n_windows = 1`` for the paper's whole-track image), and
``"mfcc"``, the engineered baseline vector.
"""
from __future__ import annotations

import json
import os
import sys
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context

import numpy as np

from .audio import SAMPLE_RATE, AudioError, load_audio, normalise
from .separation import VIEWS, separate
from .spectrogram import SpectrogramConfig, frequency_scale, log_image, resize, to_png, window_images

__all__ = [
    "FeatureSettings",
    "view_images",
    "track_images",
    "images_to_features",
    "extract_signal",
    "extract_track",
    "extract_dataset",
    "ExtractionResult",
    "pool_windows",
    "feature_matrix",
]


@dataclass(frozen=True)
class FeatureSettings:
    """Everything that decides a track's feature numbers.

    Parameters
    ----------
    sr, normalisation : audio decoding (see :func:`genrevision.audio.load_audio`)
    excerpt_seconds : float or None
        Only this many seconds from the start of each file (GTZAN tracks are
        30 s); None = the whole file. Prediction on long files uses segments.
    n_fft, hop_length : STFT shared by HPSS and the images.
    hpss_kernel, hpss_margin : (harmonic, percussive) median filter lengths and margins.
    spectrogram : SpectrogramConfig
    backbone : registry name (see :mod:`genrevision.backbone`)
    layers : {"last", "all", "all+max"} penultimate layer only, or every stage
        pooled by its spatial mean (and maximum), see :func:`genrevision.backbone.pool_stages`.
    channels : {"views", "stacked"}
        ``"views"``: one grey image per view, three CNN passes. ``"stacked"``:
        original/harmonic/percussive as the R/G/B channels of one image, one pass.
    """

    sr: int = SAMPLE_RATE
    normalisation: str = "peak"
    excerpt_seconds: float | None = 30.0
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
        if self.excerpt_seconds is not None and self.excerpt_seconds < 1:
            raise ValueError(f"excerpt_seconds must be >= 1 s or None, got {self.excerpt_seconds}")
        object.__setattr__(self, "hpss_kernel", tuple(int(k) for k in np.broadcast_to(self.hpss_kernel, 2)))
        object.__setattr__(self, "hpss_margin", tuple(float(m) for m in np.broadcast_to(self.hpss_margin, 2)))
        if isinstance(self.spectrogram, dict):
            object.__setattr__(self, "spectrogram", SpectrogramConfig(**_tuples(self.spectrogram)))

    @property
    def view_names(self) -> tuple[str, ...]:
        return ("stacked",) if self.channels == "stacked" else VIEWS

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


# ----------------------------------------------------------------------------- one track


def view_images(y: np.ndarray, settings: FeatureSettings) -> dict[str, np.ndarray]:
    """Full-length log spectrogram image of each view, (height, n_frames) in [0, 1]."""
    mags = separate(y, n_fft=settings.n_fft, hop_length=settings.hop_length,
                    kernel_size=settings.hpss_kernel, margin=settings.hpss_margin)
    cfg = settings.spectrogram
    return {v: log_image(frequency_scale(S, sr=settings.sr, n_fft=settings.n_fft, config=cfg), top_db=cfg.top_db)
            for v, S in mags.items()}


def track_images(y: np.ndarray, settings: FeatureSettings) -> dict[str, np.ndarray]:
    """The images the CNN sees, per view (or one ``"stacked"`` RGB set).

    Returns
    -------
    dict view → float32 array (n_images, H, W) or, stacked, (n_images, H, W, 3)
    """
    cfg = settings.spectrogram
    full = view_images(y, settings)
    out = {}
    for view, img in full.items():
        if cfg.layout == "whole":
            size = cfg.image_size or (256, 256)  # the paper's square picture of the whole track
            out[view] = resize(img, size)[None]
        else:
            frames = max(1, int(round(cfg.window_seconds * settings.sr / settings.hop_length)))
            hop = max(1, int(round(cfg.window_hop_seconds * settings.sr / settings.hop_length)))
            wins = window_images(img, frames_per_window=frames, hop_frames=hop, max_windows=cfg.max_windows)
            if cfg.image_size:
                wins = np.stack([resize(w, cfg.image_size) for w in wins])
            out[view] = wins
    if settings.channels == "stacked":
        return {"stacked": np.stack([out[v] for v in VIEWS], axis=-1)}
    return out


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


def _baseline(y: np.ndarray, sr: int) -> np.ndarray:
    from .baseline import mfcc_features

    return mfcc_features(y, sr=sr)


def _decode(source, settings: FeatureSettings) -> np.ndarray:
    # One decode for the worker path and the single-track path: training and prediction must match.
    return load_audio(source, sr=settings.sr, normalisation=settings.normalisation, duration=settings.excerpt_seconds)


def prepare_track(source, settings: FeatureSettings, *, save_images: str | None = None):
    """Decode and make images (the CPU-only half of :func:`extract_track`).

    Returns (images dict, baseline vector). Runs in worker processes; needs no CNN.
    """
    y = _decode(source, settings)
    images = track_images(y, settings)
    if save_images:
        save_view_pngs(y, settings, save_images, _stem(source))
    return images, _baseline(y, settings.sr)


def save_view_pngs(y: np.ndarray, settings: FeatureSettings, folder: str, stem: str) -> list[str]:
    """Write the three full-length spectrograms of a track as PNGs (the paper's Fig. 2–4)."""
    os.makedirs(folder, exist_ok=True)
    written = []
    for view, img in view_images(y, settings).items():
        path = os.path.join(folder, f"{stem}.{view}.png")
        to_png(img, path)
        written.append(path)
    return written


def _stem(source) -> str:
    return "track" if isinstance(source, (bytes, bytearray)) else os.path.splitext(os.path.basename(os.fspath(source)))[0]


def extract_signal(y: np.ndarray, settings: FeatureSettings | None = None, *, backbone=None) -> dict[str, np.ndarray]:
    """Features of a decoded signal (mono float32 at ``settings.sr``).

    The signal is cut to ``settings.excerpt_seconds`` and normalised as a
    decoded file would be, so a segment of a long file is treated exactly
    like a training track. Same output as :func:`extract_track`.
    """
    settings = settings or FeatureSettings()
    if settings.excerpt_seconds is not None:
        n = int(round(settings.excerpt_seconds * settings.sr))
        if y.size > n:
            y = normalise(y[:n], method=settings.normalisation)
    feats = images_to_features(track_images(y, settings), settings, backbone=backbone)
    feats["mfcc"] = _baseline(y, settings.sr).astype(np.float32)
    return feats


def extract_track(source, settings: FeatureSettings | None = None, *, backbone=None) -> dict[str, np.ndarray]:
    """Features of one track: a pure function of (audio, settings).

    Parameters
    ----------
    source : path or bytes
    settings : FeatureSettings, default ``FeatureSettings()``
    backbone : Backbone, optional
        An already loaded network (else the process-wide cached one).

    Returns
    -------
    dict: view name → (n_windows, D) float32, and ``"mfcc"`` → (d,) float32.
    """
    settings = settings or FeatureSettings()
    return extract_signal(_decode(source, settings), settings, backbone=backbone)


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


def _failure_reason(path: str, err: BaseException) -> str:
    if isinstance(err, AudioError):
        return err.reason
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".rstrip(": ")


def _prepare_job(path: str, settings_dict: dict, save_images: str | None):
    settings = _settings_from_dict(settings_dict)
    return prepare_track(path, settings, save_images=save_images)


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


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel queued jobs and end the worker processes at once (SIGTERM, then SIGKILL)."""
    procs = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        try:
            proc.terminate()
        except (OSError, ValueError, AttributeError):
            pass
    for proc in procs:
        try:
            proc.join(timeout=2)
            if proc.is_alive():
                proc.kill()
        except (OSError, ValueError, AssertionError, AttributeError):
            pass


def _die_with_parent(parent_pid: int) -> None:
    """End this worker when its parent process dies, even by SIGKILL (which
    runs no cleanup): Linux's PR_SET_PDEATHSIG, else a watchdog thread."""
    import signal

    armed = False
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(1, int(signal.SIGKILL), 0, 0, 0) == 0  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the death signal was armed
        os._exit(1)
    if not armed:
        import threading
        import time

        def watch():
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="genrevision-parent-watchdog", daemon=True).start()


def _worker_init(parent_pid: int | None = None) -> None:
    """One thread per worker process: the workers already fill the cores, and
    BLAS/OpenMP threads inside each of them only fight the CNN in the parent.

    Ctrl-C reaches the whole process group: workers ignore it and let the
    parent stop them, so a batch stops with one message, not a traceback per
    worker; and they die with the parent (see :func:`_die_with_parent`).
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except Exception:  # noqa: BLE001 - threadpoolctl is optional (scikit-learn brings it)
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    try:  # compile (or load from numba's cache) the running median before the first track
        from .separation import hpss_masks

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
        Worker processes for decoding/HPSS/spectrograms (default: CPU count - 1,
        at least 1; ``0`` = all in this process). The CNN runs here, batching
        the images of several tracks.
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
    from tqdm.auto import tqdm

    settings = settings or FeatureSettings()
    views = settings.view_names
    result = ExtractionResult({}, [])
    layout_written: list = [] if store is None or store.read_json(_LAYOUT) is None else [True]
    todo = []
    digests = {}
    first_with: dict[str, str] = {}  # content digest → first path holding that audio
    for p in paths:
        try:
            digest = _digest(p)
        except OSError as err:
            result.failures.append((p, _os_reason(err)))
            continue
        except ValueError as err:  # e.g. a NUL byte in a path given through the API
            result.failures.append((p, f"cannot read ({err})"))
            continue
        if digest in first_with:
            # One audio under two names would land on both sides of a fold.
            result.failures.append((p, f"same audio as {first_with[digest]}"))
            continue
        first_with[digest] = p
        digests[p] = digest
        cached = store.get(digest, validate=lambda a: check_entry(a, views), about=p) if store is not None else None
        if cached is not None and not save_images:
            result.features[p] = cached
            result.cached += 1
        else:
            todo.append(p)
    if store is not None and result.cached:
        # Widths are checked against the store's recorded layout (or, before one
        # is recorded, the widths most entries share): a valid-looking entry of
        # another width would only fail later, in a classifier, naming no file.
        layout = store.read_json(_LAYOUT) or _common_widths(result.features.values())
        for p in list(result.features):
            reason = _width_mismatch(result.features[p], layout)
            if reason:
                warnings.warn(f"{store._file(digests[p])}: bad cache entry for {p} ({reason}); recomputing",
                              stacklevel=2)
                del result.features[p]
                result.cached -= 1
                todo.append(p)

    bar = tqdm(total=len(paths), initial=len(paths) - len(todo), desc="extract", unit="track",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    pending: list[tuple[str, dict, np.ndarray]] = []

    def flush():
        if not pending:
            return
        merged, index = {}, []
        for p, imgs, _ in pending:
            for v, arr in imgs.items():
                index.append((p, v, len(arr)))
                merged.setdefault("all", []).append(arr)
        # One forward pass over the images of several tracks (fuller batches).
        feats = _batched_features(merged["all"], settings, backbone)
        pos = 0
        per_track: dict[str, dict] = {p: {} for p, _, _ in pending}
        for p, v, n in index:
            per_track[p][v] = feats[pos : pos + n]
            pos += n
        for p, _, base in pending:
            arrays = per_track[p]
            arrays["mfcc"] = base.astype(np.float32)
            if store is not None:
                if store.put(digests[p], arrays) and not layout_written:
                    store.write_json(_LAYOUT, _widths(arrays))
                    layout_written.append(p)
            result.features[p] = arrays
            result.computed += 1
            bar.update(1)
        pending.clear()

    def accept(p, imgs, base):
        pending.append((p, imgs, base))
        if sum(len(a) for _, i, _ in pending for a in i.values()) >= batch_images:
            flush()

    def fail(p, err):
        result.failures.append((p, _failure_reason(p, err)))
        bar.update(1)

    n_jobs = max(1, (os.cpu_count() or 2) - 1) if jobs is None else int(jobs)
    if n_jobs <= 0 or len(todo) <= 1:
        try:
            for p in todo:
                try:
                    imgs, base = prepare_track(p, settings, save_images=save_images)
                except Exception as err:  # noqa: BLE001 - one bad file must not stop the batch
                    fail(p, err)
                    continue
                accept(p, imgs, base)
        except BaseException as err:
            _flush_on_interrupt(err, flush, bar)
            raise
    else:
        # spawn: workers must not inherit the parent's torch/OpenMP thread state.
        pool = ProcessPoolExecutor(max_workers=n_jobs, mp_context=get_context("spawn"),
                                   initializer=_worker_init, initargs=(os.getpid(),))
        try:
            sdict = settings.to_dict()
            queue = list(reversed(todo))
            running = {}
            while queue or running:
                while queue and len(running) < 2 * n_jobs + 1:
                    p = queue.pop()
                    running[pool.submit(_prepare_job, p, sdict, save_images)] = p
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    p = running.pop(fut)
                    try:
                        imgs, base = fut.result()
                    except Exception as err:  # noqa: BLE001
                        fail(p, err)
                        continue
                    accept(p, imgs, base)
        except BaseException as err:
            # Ctrl-C, SIGTERM (the CLI turns it into KeyboardInterrupt) or an
            # error: stop the workers now instead of waiting for their tracks,
            # and keep (in the cache) the tracks whose images are already made.
            _stop_pool(pool)
            _flush_on_interrupt(err, flush, bar)
            raise
        pool.shutdown(wait=True)
    flush()
    bar.close()
    if store is not None and store.unstored:
        result.unstored = [p for p in result.features if digests.get(p) in set(store.unstored)]
        warnings.warn(f"{store.root}: features of {len(result.unstored)} track{'s' * (len(result.unstored) != 1)} "
                      f"could not be stored in the cache ({store.write_error}); they were used in this run and "
                      "will be computed again next time", stacklevel=2)
    return result


#: Side file of a store folder recording each array's width (written from the first computed track).
_LAYOUT = "layout.json"


def check_entry(arrays: dict, views) -> str | None:
    """Why a track's feature arrays are unusable, or None.

    Expected: every view as a finite float array (n_windows, D) with the same
    n_windows ≥ 1 in every view, ``"mfcc"`` finite (d,), and, when present,
    ``"starts"`` (n_windows,) window start times.
    """
    missing = [k for k in (*views, "mfcc") if k not in arrays]
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
    extra = {"mfcc": None, "starts": n}
    for k, length in extra.items():
        if k in arrays:
            a = arrays[k]
            if a.ndim != 1 or a.dtype.kind != "f" or (length is not None and a.shape[0] != length):
                return f"{k} has shape {a.shape} {a.dtype}, expected ({length if length is not None else 'd'},) floats"
    bad = [k for k in (*views, "mfcc", "starts") if k in arrays and not np.all(np.isfinite(arrays[k]))]
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


def _digest(path: str) -> str:
    from .store import content_digest

    return content_digest(path)


def _os_reason(err: OSError) -> str:
    from .files import NotRegularFile

    if isinstance(err, FileNotFoundError):
        return "no such file"
    if isinstance(err, NotRegularFile):
        return "is a directory, not an audio file" if err.kind == "a folder" else str(err)
    return f"cannot read ({err.strerror or err})"


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
    (how the features vary along the track); ``"none"`` → the windows
    flattened (n_windows·D,), for window-level classifiers.
    """
    if how == "mean":
        return windows.mean(axis=0)
    if how == "meanstd":
        return np.concatenate([windows.mean(axis=0), windows.std(axis=0)])
    if how == "none":
        return windows.reshape(-1)
    raise ValueError(f"pooling must be 'mean', 'meanstd' or 'none', got {how!r}")


def feature_matrix(
    features: list[dict[str, np.ndarray]],
    *,
    views: tuple[str, ...] = VIEWS,
    pooling: str = "meanstd",
    columns: slice | np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[tuple[str, int, int], ...]]:
    """Stack per-track features into X (n_tracks, sum of view widths) and its view layout.

    ``columns`` picks a subset of each window's feature columns (e.g. the
    penultimate layer only) before pooling. The layout is the ``views``
    parameter of :class:`genrevision.fusion.LateFusionClassifier`:
    ``((name, start, stop), ...)``.
    """
    blocks, layout, start = [], [], 0
    for v in views:
        rows = []
        for f in features:
            arr = f[v]
            if arr.ndim == 2 and columns is not None:
                arr = arr[:, columns]
            rows.append(pool_windows(arr, pooling) if arr.ndim == 2 else arr)
        block = np.stack(rows).astype(np.float32)
        blocks.append(block)
        layout.append((v, start, start + block.shape[1]))
        start += block.shape[1]
    return np.concatenate(blocks, axis=1), tuple(layout)
