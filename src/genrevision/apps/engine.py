"""Prediction over many files: worker processes, sampled segments, a per-file result cache.

What ``genrevision predict FOLDER`` and ``genrevision tag`` run. Each worker
process loads the model once (its pool initializer) and predicts whole files;
together the workers fill the cores (``jobs`` workers x ``cores // jobs``
BLAS/torch/ONNX Runtime threads each). A long file is sampled: ``segments=N``
classifies the middle 30 s segment of each of N equal stretches of it (see
:meth:`genrevision.model.GenreModel.predict`), ``None`` reads them all.

Every answer is cached on disk as soon as it is known, keyed by the file's
audio data (:func:`genrevision._utils.audiohash.audio_digest`, so writing tags does
not invalidate it) and the model file's SHA-256: a rerun computes only new
files, and a run stopped by Ctrl-C resumes where it stopped. Entries are
written atomically and checked when read; a bad one is reported, removed and
recomputed.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass, field

from .._utils.progress import progress_bar
from ..signal.audio import AudioError
from .._utils.files import user_cache

__all__ = [
    "DEFAULT_SEGMENTS",
    "DEFAULT_PREDICTION_CACHE",
    "PredictionEngine",
    "PredictionCache",
    "Outcome",
    "EngineStats",
    "predict_files",
    "predict_paths",
    "model_digest",
    "parse_segments",
]

#: Segments classified per file by default. Measured with benchmarks/tagging.py (40 songs of
#: 3-5 minutes made of held-out GTZAN tracks, the middle segment of each of N stretches):
#: 1 segment gave the all-segment genre on 92.5 %, 2 on 90 %, 3 or more on 100 %; 3 costs
#: 39 % of the all-segment work.
DEFAULT_SEGMENTS = 3
#: Where answers are cached (``$GENREVISION_PREDICTION_CACHE`` overrides).
DEFAULT_PREDICTION_CACHE = os.environ.get("GENREVISION_PREDICTION_CACHE") or user_cache("predictions")
_CACHE_VERSION = 1


def parse_segments(value) -> int | None:
    """``"all"``/None → None (every segment); a positive integer (or its text) → that integer."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "all"):
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n < 1 or (not isinstance(value, str) and n != value):
        raise ValueError(f"segments must be 'all' or an integer >= 1, got {value!r}")
    return n


def model_digest(path) -> str:
    """SHA-256 of a model file's bytes: the model half of the cache key and of the tag log."""
    from .._utils.files import open_regular

    h = hashlib.sha256()
    with open_regular(os.fspath(path)) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- the cache


class PredictionCache:
    """Answers of one model with one sampling, one small JSON file per audio digest.

    Layout: ``ROOT/<model sha256[:16]>/<segments>[-timeline]/<digest[:2]>/<digest>.json``.

    Parameters
    ----------
    root : str
        Folder shared by all models (created when missing).
    model_sha256 : str
    labels : list of str
        The model's labels; an entry naming others is invalid.
    segments : int or None
    timeline : bool
    """

    def __init__(self, root, model_sha256: str, labels, *, segments: int | None, timeline: bool):
        self.root = os.fspath(root)
        self.model_sha256 = model_sha256
        self.labels = [str(x) for x in labels]
        self.segments = segments
        self.timeline = bool(timeline)
        part = ("all" if segments is None else f"s{segments}") + ("-timeline" if timeline else "")
        self.path = os.path.join(self.root, model_sha256[:16], part)
        #: Why entries cannot be written (None while they can).
        self.write_error: str | None = None

    def _file(self, digest: str) -> str:
        return os.path.join(self.path, digest[-2:], digest + ".json")

    def get(self, digest: str, path: str):
        """The cached :class:`~genrevision.model.Prediction` for ``path`` (its audio digest), or None.

        A damaged or invalid entry is reported (a warning naming it), removed and treated as absent.
        """
        from .._utils.files import open_regular
        from ..model.genre_model import Prediction

        entry = self._file(digest)
        if not os.path.lexists(entry):
            return None
        try:
            with open_regular(entry) as f:
                doc = json.loads(f.read(1 << 22).decode("utf-8"))
            reason = self._invalid(doc, digest)
        except (OSError, ValueError, RecursionError) as err:
            reason = f"unreadable ({type(err).__name__})"
        if reason is None:
            try:
                return Prediction.from_dict({**doc["prediction"], "path": path})
            except (KeyError, TypeError, ValueError) as err:
                reason = f"{type(err).__name__}"
        warnings.warn(f"{entry}: bad prediction cache entry for {path} ({reason}); recomputing", stacklevel=2)
        try:
            os.unlink(entry)
        except OSError:
            pass
        return None

    def _invalid(self, doc, digest: str) -> str | None:
        if not isinstance(doc, dict) or doc.get("version") != _CACHE_VERSION:
            return "not a version-1 entry"
        if doc.get("digest") != digest or doc.get("model_sha256") != self.model_sha256:
            return "made for another file or model"
        if doc.get("segments") != self.segments or doc.get("timeline") != self.timeline:
            return "made with other sampling"
        p = doc.get("prediction")
        if not isinstance(p, dict):
            return "no prediction"
        for probs in [p.get("probabilities")] + [s.get("probabilities") if isinstance(s, dict) else None
                                                  for s in p.get("segments", [])]:
            if not isinstance(probs, dict) or sorted(probs) != sorted(self.labels):
                return "probabilities of other labels"
            if not all(isinstance(v, (int, float)) and math.isfinite(v) and 0 <= v <= 1 for v in probs.values()):
                return "probabilities outside [0, 1]"
        if abs(sum(p["probabilities"].values()) - 1) > 1e-6 or p.get("genre") not in self.labels:
            return "inconsistent genre or probabilities"
        if not isinstance(p.get("views"), dict) or not all(v in self.labels for v in p["views"].values()):
            return "bad views"
        if not isinstance(p.get("warnings", []), list) or not all(isinstance(w, str) for w in p.get("warnings", [])):
            return "bad warnings"
        d = p.get("duration")
        if not isinstance(d, (int, float)) or not math.isfinite(d) or d < 0:
            return "bad duration"
        return None

    def put(self, digest: str, prediction) -> bool:
        """Store one answer atomically; False (reported once) when the folder cannot be written."""
        from ..features.store import atomic_write

        if self.write_error is not None:
            return False
        d = prediction.to_dict()
        d.pop("path", None)
        d.pop("low_confidence", None)
        doc = {"version": _CACHE_VERSION, "digest": digest, "model_sha256": self.model_sha256,
               "segments": self.segments, "timeline": self.timeline, "prediction": d}
        try:
            atomic_write(self._file(digest), lambda f: f.write(json.dumps(doc).encode("utf-8")))
        except OSError as err:
            self.write_error = err.strerror or str(err)
            warnings.warn(f"{self.root}: cannot write to the prediction cache ({self.write_error}); going on "
                          "without it (answers are computed again next time)", stacklevel=2)
            return False
        return True


# ----------------------------------------------------------------------------- workers

_WORKER: dict = {}


def _load_in_worker(model_path: str) -> None:
    # Pool initializer: the model (and, at its first file, the backbone) once per process.
    from ..model.genre_model import load_model

    try:
        _WORKER["model"] = load_model(model_path)
    except Exception as err:  # noqa: BLE001 - reported by the parent in one line, not as a broken pool
        _WORKER["error"] = str(err).splitlines()[0] if str(err) else type(err).__name__


def _predict_one(model, path: str, segments, timeline: bool, digest: str | None = None):
    """("ok", prediction dict) or ("failed", reason): one bad file never stops a batch.

    ``digest``: the audio digest the answer will be cached under; it is taken again after
    predicting, so an answer is never stored under the digest of other audio (a file replaced
    while it was being read)."""
    from .._utils.audiohash import audio_digest

    try:
        pred = model.predict(path, timeline=timeline, segments=segments).to_dict()
        if digest is not None and audio_digest(path) != digest:
            return "failed", "its audio changed while it was being predicted; not cached, run again"
        return "ok", pred
    except AudioError as err:
        return "failed", err.reason
    except Exception as err:  # noqa: BLE001
        msg = str(err).splitlines()[0] if str(err) else ""
        return "failed", f"{type(err).__name__}: {msg}".rstrip(": ")


def _predict_job(path: str, segments, timeline: bool, digest: str | None = None):
    if "error" in _WORKER:
        return "fatal", _WORKER["error"]
    return _predict_one(_WORKER["model"], path, segments, timeline, digest)


# ----------------------------------------------------------------------------- the engine


@dataclass
class Outcome:
    """One file's answer: a prediction, or the reason there is none."""

    path: str
    prediction: object = None
    reason: str | None = None
    cached: bool = False
    digest: str | None = None

    @property
    def ok(self) -> bool:
        return self.prediction is not None


@dataclass
class EngineStats:
    files: int = 0
    computed: int = 0
    cached: int = 0
    failed: int = 0
    workers: int = 0
    seconds: float = 0.0
    unstored: list = field(default_factory=list)


class PredictionEngine:
    """Predict many files with one model: in parallel, sampled, cached.

    Parameters
    ----------
    model_path : str or path-like
        Model file written by :meth:`GenreModel.save` (each worker loads it).
    segments : int or None
        30 s segments classified per file, spread over it (None: all).
    timeline : bool
        Report a file of one piece as one segment too (as ``predict --timeline``).
    jobs : int, optional
        Worker processes (default: one per CPU core). ``0`` or ``1``: in this process.
    cache : str or None
        Prediction cache folder (None: no cache).
    progress : bool
        Progress bar with ETA on stderr.
    desc : str
        The progress bar's label.
    model : GenreModel, optional
        The loaded model (used when predicting in this process; else loaded when first needed).

    Notes
    -----
    After :meth:`run`, :attr:`stats` holds the counts and the time taken.
    """

    def __init__(self, model_path, *, segments: int | None = DEFAULT_SEGMENTS, timeline: bool = False,
                 jobs: int | None = None, cache=DEFAULT_PREDICTION_CACHE, progress: bool = True,
                 desc: str = "predict", model=None):
        from ..model.genre_model import read_meta

        self.segments = parse_segments(segments)
        if jobs is not None and (isinstance(jobs, bool) or int(jobs) != jobs or jobs < 0):
            raise ValueError(f"jobs must be None or an integer >= 0, got {jobs!r}")
        self.model_path = os.fspath(model_path)
        # A bad model file fails here, in one line, before any worker starts; only its labels are
        # read here (the classifier is loaded by the workers, or here at the first file predicted
        # here), so a run that finds every answer in the cache starts in a fraction of a second.
        self.model = model
        self.labels = [str(x) for x in (model.labels if model is not None else read_meta(self.model_path)["labels"])]
        self.model_sha256 = model_digest(self.model_path)
        self.timeline = bool(timeline)
        self.jobs = (os.cpu_count() or 1) if jobs is None else int(jobs)
        self.cache = (PredictionCache(cache, self.model_sha256, self.labels, segments=self.segments,
                                      timeline=self.timeline) if cache else None)
        self.progress = progress
        self.desc = desc
        self.stats = EngineStats()

    def run(self, paths):
        """Yield an :class:`Outcome` per path as answers arrive (cached ones first).

        Stopping early (Ctrl-C, SIGTERM, closing the generator) ends the
        workers at once; answers already yielded are in the cache.
        """
        from .._utils.audiohash import audio_digest
        from .._utils.files import os_reason
        from ..model.genre_model import load_model

        t0 = time.perf_counter()
        paths = [os.fspath(p) for p in paths]
        st = self.stats = EngineStats(files=len(paths))
        holders: dict[str, list[str]] = {}  # audio digest -> the paths holding it (computed once)
        ready = []
        for p in paths:
            try:
                digest = audio_digest(p)
            except OSError as err:
                ready.append(Outcome(p, reason=os_reason(err)))
                continue
            except ValueError as err:  # a NUL byte in a path given through the API
                ready.append(Outcome(p, reason=f"cannot read ({err})"))
                continue
            if digest in holders:
                holders[digest].append(p)
                continue
            holders[digest] = [p]
            hit = self.cache.get(digest, p) if self.cache is not None else None
            if hit is not None:
                ready.append(Outcome(p, hit, cached=True, digest=digest))
        done_digests = {o.digest for o in ready if o.cached}
        todo = [(d, ps[0]) for d, ps in holders.items() if d not in done_digests]
        in_process = not (len(todo) > 1 and self.jobs > 1)
        if todo and in_process and self.model is None:
            # Before the progress bar: a model that cannot be used fails in one line.
            self.model = load_model(self.model_path)
        bar = progress_bar(total=len(paths), desc=self.desc, unit="file", enabled=self.progress)

        def emit(outcome: Outcome):
            names = holders.get(outcome.digest, [outcome.path]) if outcome.digest else [outcome.path]
            for name in names:
                out = outcome if name == outcome.path else Outcome(
                    name, None if outcome.prediction is None else _renamed(outcome.prediction, name),
                    outcome.reason, outcome.cached, outcome.digest)
                if out.ok:
                    st.cached += out.cached
                else:
                    st.failed += 1
                bar.update(1)
                yield out

        def finished(digest, path, status, value):
            from ..model.genre_model import Prediction

            if status == "fatal":  # a ModelError's text names the file already
                raise RuntimeError(value if value.startswith(f"{self.model_path}: ") else f"{self.model_path}: {value}")
            if status == "failed":
                return Outcome(path, reason=value, digest=digest)
            pred = Prediction.from_dict(value)
            st.computed += 1
            if self.cache is not None and not self.cache.put(digest, pred):
                st.unstored.append(path)
            return Outcome(path, pred, digest=digest)

        try:
            for o in ready:
                yield from emit(o)
            if not in_process:
                yield from self._run_pool(todo, finished, emit)
            else:
                st.workers = 0
                for digest, p in todo:
                    yield from emit(finished(digest, p, *_predict_one(self.model, p, self.segments, self.timeline, digest)))
        finally:
            bar.close()
            st.seconds = time.perf_counter() - t0

    def _run_pool(self, todo, finished, emit):
        from .._utils.workers import start_pool, stop_pool, threads_per_worker

        n = min(self.jobs, len(todo))
        self.stats.workers = n
        pool = start_pool(n, threads=threads_per_worker(n), initializer=_load_in_worker,
                          initargs=(self.model_path,))
        try:
            queue = list(reversed(todo))
            running = {}
            while queue or running:
                while queue and len(running) < 2 * n:
                    digest, p = queue.pop()
                    running[pool.submit(_predict_job, p, self.segments, self.timeline, digest)] = (digest, p)
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in done:
                    digest, p = running.pop(fut)
                    try:
                        status, value = fut.result()
                    except Exception as err:  # noqa: BLE001 - a worker died (e.g. out of memory)
                        status, value = "failed", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                    yield from emit(finished(digest, p, status, value))
        except BaseException:
            # Ctrl-C, SIGTERM, an error or the consumer stopping: end the workers now;
            # every answer yielded so far is already cached, so a rerun resumes.
            stop_pool(pool)
            raise
        pool.shutdown(wait=True)


def predict_paths(model_path, paths, *, engine: str = "local", segments=None, timeline: bool = False,
                  jobs: int | None = None, cache=DEFAULT_PREDICTION_CACHE, address: str | None = None,
                  actors: int | None = None, progress: bool = True):
    """Predict every file on the engine named, with one set of parameters for both.

    Only the model file's metadata is read here; the workers (or the actors) load the model.

    Parameters
    ----------
    engine : "local" or "ray"
        local: :class:`PredictionEngine` (worker processes on this machine, the prediction
        cache); ray: :func:`genrevision.apps.ray_engine.predict_files_ray` on a Ray cluster.
    segments : int, "all" or None
        30 s segments classified per file ("all"/None: every one).
    timeline : bool
        Report a file of one piece as one segment too.
    jobs, cache : local engine only: worker processes and the prediction cache folder (None: none).
    address, actors : ray only: the cluster to join and the prediction actors.
    progress : bool
        Progress bar on stderr.

    Returns
    -------
    (list of Prediction in input order, [(path, reason)] failures)
    """
    segments = parse_segments(segments)
    if engine == "ray":
        from .ray_engine import predict_files_ray

        return predict_files_ray(model_path, paths, segments=segments, timeline=timeline, address=address,
                                 concurrency=actors, progress=progress)
    if engine != "local":
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    preds, failures, _ = predict_files(model_path, paths, segments=segments, timeline=timeline, jobs=jobs,
                                       cache=cache, progress=progress)
    return preds, failures


def _renamed(prediction, path: str):
    from dataclasses import replace

    return replace(prediction, path=path)


def predict_files(model_path, paths, **kwargs):
    """Predict every file with :class:`PredictionEngine`; keyword arguments are its own.

    Returns
    -------
    (list of Prediction in input order, [(path, reason)] failures in input order, EngineStats)
    """
    engine = PredictionEngine(model_path, **kwargs)
    paths = [os.fspath(p) for p in paths]
    order = {p: i for i, p in enumerate(paths)}
    outcomes = sorted(engine.run(paths), key=lambda o: order.get(o.path, len(order)))
    preds = [o.prediction for o in outcomes if o.ok]
    failures = [(o.path, o.reason) for o in outcomes if not o.ok]
    return preds, failures, engine.stats
