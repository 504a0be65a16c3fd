"""Catalogue-scale extraction and prediction on a Ray cluster.

The same per-track functions the local process pool runs, scheduled by Ray
Data instead (``pip install 'genrevision[ray]'``; Ray is imported only when
one of these functions is called):

* :func:`extract_dataset_ray`: each file's bytes are decoded, separated
  (HPSS) and cut into images by :func:`~genrevision.features.prepare_track`
  in CPU tasks; the CNN runs in ``map_batches`` on a pool of actors that load
  the backbone once each (on a GPU when the cluster has them) and call
  :func:`~genrevision.features.prepared_features`, as the local engine's main
  process does. Features go to the same content-keyed
  :class:`~genrevision.features.store.FeatureStore` as the local engine's (so both
  share one cache; tracks already there are skipped before any Ray work) or
  to a Parquet folder (see :data:`PARQUET_COLUMNS`).
* :func:`predict_files_ray`: one file per row through actors that each hold
  the loaded :class:`~genrevision.model.GenreModel`.

A file that cannot be read becomes a row with its reason, never a failed
job; both functions end with the same ``[(path, reason)]`` failure list as
their local counterparts.

Every node of a cluster needs genrevision installed (with its backbone
wheels) and must see the audio files, the feature store or the Parquet
folder at the same paths (a shared file system).
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._utils.progress import progress_bar
from .._utils.validation import check_scalar
from ..errors import RayUnavailable
from ..features.extraction import ExtractionResult, FeatureSettings, failure_reason, prepare_track, prepared_features
from .._utils.files import atomic_path
from ..features.store import content_digest

__all__ = [
    "RayUnavailable",
    "INSTALL_HINT",
    "PARQUET_COLUMNS",
    "require_ray",
    "connect",
    "extract_dataset_ray",
    "read_parquet_features",
    "predict_files_ray",
]

INSTALL_HINT = "pip install 'genrevision[ray]'"

#: Columns of the Parquet output, one row per (track, view, window): the
#: content digest (the feature store's key), the path it was read from, the
#: view, the window's index and start in seconds, and its feature vector. The
#: per-track MFCC baseline is one more row with view ``"mfcc"`` and null
#: window and start.
PARQUET_COLUMNS = ("track_id", "path", "view", "window", "start", "vector")

# Peak memory of one prepare task (decode + HPSS + images of a 30 s segment)
# is ~0.3 GB; Ray uses it to place tasks. It also keeps Ray Data from fusing
# the CPU stage into the CNN actors (operators with different resource
# requests are not fused), which would run decoding behind the CNN, one
# track at a time per actor.
_PREPARE_MEMORY = 400 * 2**20


def require_ray():
    """The ``ray`` module with Ray Data, or :class:`RayUnavailable` saying in one line how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - Ray Data is the part used here
    except ImportError as err:
        missing = getattr(err, "name", None) or "ray"
        raise RayUnavailable(f"the Ray engine needs Ray ({missing} is not installed): {INSTALL_HINT}") from None
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None):
    """Join a Ray cluster, or start a local Ray runtime on this machine.

    Parameters
    ----------
    address : str, optional
        None starts a private local runtime; ``"auto"`` joins the cluster
        this machine belongs to (``ray start``); ``"ray://host:10001"`` joins
        a remote cluster through Ray Client; ``"host:6379"`` joins through its
        head node's GCS address. If this process already joined one, that
        one is used.
    num_cpus : int, optional
        CPUs of a local runtime (default: all of this machine's).

    Returns
    -------
    the ``ray`` module, initialised.
    """
    if address is not None and (not isinstance(address, str) or not address.strip()):
        raise ValueError(f"address must be None, 'auto', 'ray://host:port' or 'host:port', got {address!r}")
    ray = require_ray()
    if not ray.is_initialized():
        if address is None:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING")
        else:
            ray.init(address=address, logging_level="WARNING")
    return ray


def _job_failed(err: BaseException) -> RuntimeError:
    """A one-line error for a Ray job that could not run at all (e.g. an actor whose backbone is
    missing on its node): the root cause's last line, not Ray's remote traceback."""
    cause = getattr(err, "cause", None)
    if isinstance(cause, BaseException) and str(cause):
        text = f"{type(cause).__name__}: {str(cause).splitlines()[0]}"
    else:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        text = lines[-1] if lines else type(err).__name__
    return RuntimeError(f"the Ray job failed: {text}")


def _stream(ray, ds):
    """The finished rows' batches, as they come; a job that fails as a whole raises :func:`_job_failed`."""
    try:
        yield from ds.iter_batches(batch_size=None, batch_format="numpy")
    except ray.exceptions.RayError as err:
        raise _job_failed(err) from err


def _configure_data(progress: bool) -> None:
    import logging

    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # our own bar counts tracks; Ray's count blocks per operator
    # Ray Data announces every execution at INFO; keep that only when the user wants to watch.
    logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)


# ----------------------------------------------------------------------------- arrays <-> bytes
# Rows carry their ragged arrays as one .npz blob: Arrow tensor columns of
# varying shapes (and empty rows for failed files) are fragile to concatenate,
# a binary column is not. np.load never unpickles (allow_pickle=False).


def _pack(arrays: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _unpack(blob: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _pack_prepared(images: dict, base, starts) -> bytes:
    arrays = {f"view.{v}": a for v, a in images.items()}
    arrays["starts"] = starts
    if base is not None:
        arrays["mfcc"] = base
    return _pack(arrays)


def _unpack_prepared(blob: bytes):
    arrays = _unpack(blob)
    images = {k[5:]: a for k, a in arrays.items() if k.startswith("view.")}
    return images, arrays.get("mfcc"), arrays["starts"]


# ----------------------------------------------------------------------------- extraction stages


def _prepare_row(row: dict, *, settings: dict) -> dict:
    """CPU task: a file's bytes → its images (or its failure reason)."""
    out = {"index": row["index"], "path": row["path"], "digest": row["digest"], "error": "", "payload": b""}
    try:
        with open(row["path"], "rb") as f:
            data = f.read()
        out["digest"] = content_digest(data)  # the key of what was decoded, even if the file changed since
        out["payload"] = _pack_prepared(*prepare_track(data, FeatureSettings.from_dict(settings)))
    except Exception as err:  # noqa: BLE001 - one bad file is a row with its reason, never a failed job
        out["error"] = failure_reason(row["path"], err)
    return out


class _CNNActor:
    """Holds the backbone (loaded once per actor) and writes what it computes.

    Called by Ray Data on batches of prepared tracks: one forward pass over
    all their images, then each track to the store (or the batch to one
    Parquet part file). Returns one status row per track.
    """

    def __init__(self, *, settings: dict, device: str, threads: int, store=None, out_parquet: str | None = None,
                 keep_features: bool = True):
        from ..features.backbone import Backbone, get_backbone

        self.settings = FeatureSettings.from_dict(settings)
        if device == "cpu":
            import torch

            torch.set_num_threads(max(1, int(threads)))
            self.backbone = get_backbone(self.settings.backbone)
        else:
            self.backbone = Backbone(self.settings.backbone, device=device)
        self.store, self.out_parquet, self.keep = store, out_parquet, keep_features

    def _features(self, prepared: list) -> list:
        """Features per track; a track the CNN cannot take is an exception in its place."""
        try:
            return prepared_features(prepared, self.settings, backbone=self.backbone)
        except Exception:  # noqa: BLE001 - find the culprit track by track, the others go on
            out = []
            for p in prepared:
                try:
                    out += prepared_features([p], self.settings, backbone=self.backbone)
                except Exception as err:  # noqa: BLE001
                    out.append(err)
            return out

    def __call__(self, batch: dict) -> dict:
        n = len(batch["index"])
        errors = [str(e) for e in batch["error"]]
        digests = [str(d) for d in batch["digest"]]
        ok = [i for i in range(n) if not errors[i]]
        feats: dict[int, dict] = {}
        for i, f in zip(ok, self._features([_unpack_prepared(batch["payload"][i]) for i in ok])):
            if isinstance(f, Exception):
                errors[i] = failure_reason(str(batch["path"][i]), f)
            else:
                feats[i] = f
        if self.store is not None:
            for i, f in feats.items():
                self.store.put(digests[i], f)
        elif self.out_parquet is not None and feats:
            _write_parquet_part(self.out_parquet, [(digests[i], str(batch["path"][i]), f) for i, f in feats.items()])
        return {
            "index": np.asarray(batch["index"]),
            "path": np.asarray([str(p) for p in batch["path"]], dtype=object),
            "digest": np.asarray(digests, dtype=object),
            "error": np.asarray(errors, dtype=object),
            "payload": np.asarray([_pack(feats[i]) if self.keep and i in feats else b"" for i in range(n)],
                                  dtype=object),
        }


# ----------------------------------------------------------------------------- Parquet


def _parquet_schema():
    import pyarrow as pa

    return pa.schema([("track_id", pa.string()), ("path", pa.string()), ("view", pa.string()),
                      ("window", pa.int32()), ("start", pa.float32()), ("vector", pa.list_(pa.float32()))])


def _write_parquet_part(folder: str, tracks: list) -> str:
    """One Parquet file for these tracks' features, written atomically into ``folder``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = {k: [] for k in ("track_id", "path", "view", "window", "start")}
    vectors = []
    for digest, path, feats in tracks:
        starts = feats["starts"]
        for view, arr in feats.items():
            if view == "starts":
                continue
            rows = arr if arr.ndim == 2 else arr[None]
            for w, vec in enumerate(rows):
                cols["track_id"].append(digest)
                cols["path"].append(path)
                cols["view"].append(view)
                cols["window"].append(w if arr.ndim == 2 else None)
                cols["start"].append(float(starts[w]) if arr.ndim == 2 else None)
                vectors.append(np.asarray(vec, np.float32))
    lengths = np.array([len(v) for v in vectors], np.int32)
    offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
    values = pa.array(np.concatenate(vectors) if vectors else np.zeros(0, np.float32))
    schema = _parquet_schema()
    table = pa.table({**{k: pa.array(v, type=schema.field(k).type) for k, v in cols.items()},
                      "vector": pa.ListArray.from_arrays(offsets, values)}, schema=schema)
    name = os.path.join(folder, f"part-{uuid.uuid4().hex}.parquet")
    with atomic_path(name) as tmp:  # ".tmp-…": readers skip names starting with "."
        pq.write_table(table, tmp)
    return name


def _parquet_files(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, n) for n in os.listdir(folder)
                  if n.endswith(".parquet") and not n.startswith((".", "_")))


def _parquet_track_ids(folder: str) -> set[str]:
    import pyarrow.parquet as pq

    ids: set[str] = set()
    for f in _parquet_files(folder):
        ids.update(pq.read_table(f, columns=["track_id"]).column(0).unique().to_pylist())
    return ids


def read_parquet_features(folder: str, *, track_ids=None) -> dict[str, dict[str, np.ndarray]]:
    """Per-track feature arrays from a Parquet folder written by :func:`extract_dataset_ray`.

    Parameters
    ----------
    folder : str
        The ``out_parquet`` folder (any reader of Parquet datasets also reads it).
    track_ids : iterable of str, optional
        Only these content digests (default: all).

    Returns
    -------
    dict track_id → ``{view: (n_windows, D) float32, "starts": (n_windows,), "mfcc": (d,)}``,
    the layout of :func:`~genrevision.features.extract_track`.
    """
    require_ray()  # pyarrow comes with the ray extra: same one-line hint when missing
    import pyarrow.parquet as pq

    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such Parquet folder")
    wanted = None if track_ids is None else set(track_ids)
    out: dict[str, dict[str, np.ndarray]] = {}
    rows: dict[str, dict[str, list]] = {}
    for f in _parquet_files(folder):
        t = pq.read_table(f)
        ids, views = t.column("track_id").to_pylist(), t.column("view").to_pylist()
        windows, starts = t.column("window").to_pylist(), t.column("start").to_pylist()
        vec = t.column("vector").combine_chunks()
        flat = vec.values.to_numpy(zero_copy_only=False)
        offs = vec.offsets.to_numpy()
        for k, (tid, view, w, s) in enumerate(zip(ids, views, windows, starts)):
            if wanted is not None and tid not in wanted:
                continue
            rows.setdefault(tid, {}).setdefault(view, []).append((w, s, flat[offs[k] : offs[k + 1]]))
    for tid, views in rows.items():
        track: dict[str, np.ndarray] = {}
        for view, items in views.items():
            if items[0][0] is None:  # a per-track vector
                track[view] = np.asarray(items[0][2], np.float32)
                continue
            items.sort(key=lambda x: x[0])
            track[view] = np.stack([x[2] for x in items]).astype(np.float32)
            track.setdefault("starts", np.asarray([x[1] for x in items], np.float32))
        out[tid] = track
    return out


# ----------------------------------------------------------------------------- extraction


def _digests(paths: list[str]) -> list:
    """(digest, None) or (None, reason) per path, as the local engine words a file it cannot hash."""

    def one(p):
        try:
            return content_digest(p), None
        except OSError as err:
            return None, "no such file" if isinstance(err, FileNotFoundError) else str(err)

    # hashlib releases the GIL: a few threads keep a shared file system busy
    with ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(one, paths))


def _check_positive(name: str, value, *, integer: bool, allow_zero: bool = False) -> None:
    # Ray options may come from JSON or the command line as 2.0: whole floats count as integers.
    check_scalar(value, name, kind=int if integer else float, min=0, whole_floats=True,
                 include_boundaries="left" if allow_zero else "neither")


def _check_concurrency(concurrency) -> None:
    if concurrency is None:
        return
    if isinstance(concurrency, tuple) and len(concurrency) == 2:
        for v in concurrency:
            _check_positive("concurrency", v, integer=True)
        if concurrency[0] > concurrency[1]:
            raise ValueError(f"concurrency (min, max) needs min <= max, got {concurrency}")
        return
    _check_positive("concurrency", concurrency, integer=True)


def _actor_pool(ray, concurrency, *, num_gpus: float, cnn_cpus: float):
    """The CNN actor pool: a fixed size, a (min, max) autoscaling range, or a default for the cluster."""
    from ray.data import ActorPoolStrategy

    if concurrency is None:
        res = ray.cluster_resources()
        if num_gpus:
            return ActorPoolStrategy(size=max(1, int(res.get("GPU", 0) // num_gpus)))
        # the CNN is ~45 % of a track's CPU time (benchmarks/throughput.py --engine ray): up to one actor per two CPUs
        return ActorPoolStrategy(min_size=1, max_size=max(1, int(res.get("CPU", 1) // (2 * cnn_cpus))))
    if isinstance(concurrency, tuple):
        return ActorPoolStrategy(min_size=int(concurrency[0]), max_size=int(concurrency[1]))
    return ActorPoolStrategy(size=int(concurrency))


def extract_dataset_ray(
    paths: list[str],
    settings: FeatureSettings | None = None,
    *,
    store=None,
    address: str | None = None,
    batch_size: int = 8,
    concurrency=None,
    num_gpus: float = 0,
    cnn_cpus: float = 1,
    out_parquet: str | None = None,
    keep_features: bool = True,
    progress: bool = True,
) -> ExtractionResult:
    """Features for many files on a Ray cluster (or a local Ray runtime).

    The Ray counterpart of :func:`genrevision.features.extract_dataset`:
    same per-track functions, same numbers (to float32 rounding), same
    result type and failure list.

    Parameters
    ----------
    paths : list of str
        Audio files, at the same paths on every node.
    settings : FeatureSettings, default ``FeatureSettings()``
    store : FeatureStore, optional
        Content-keyed cache shared with the local engine; tracks already in
        it are skipped before any Ray work, the rest are written to it by
        the CNN actors as each batch finishes (an interrupted run resumes).
        Its folder must be shared by all nodes.
    address : str, optional
        Cluster to join (see :func:`connect`); None starts a local runtime.
    batch_size : int
        Tracks per CNN batch (one forward pass over all their images).
    concurrency : int or (int, int), optional
        CNN actors: a fixed number, or a (min, max) range Ray autoscales in.
        Default: one per ``num_gpus`` of the cluster's GPUs, else 1 to one
        per two CPUs (on CPUs the CNN is ~45 % of a track's work).
    num_gpus : float
        GPUs per CNN actor (fractions share a GPU); the backbone then runs on
        CUDA in PyTorch. 0: CNN on CPU (ONNX Runtime when installed).
    cnn_cpus : float
        CPUs reserved by each CNN actor (and its torch threads on CPU).
    out_parquet : str, optional
        Write features to this Parquet folder instead of a store, one file
        per CNN batch (columns :data:`PARQUET_COLUMNS`); tracks already in it
        are skipped, so a rerun resumes.
    keep_features : bool
        Return the features in the result (False for catalogue runs whose
        features stay in the store or the Parquet folder: the result then
        only counts them and lists the failures).
    progress : bool
        Progress bar of finished tracks on stderr.

    Returns
    -------
    ExtractionResult; ``failures`` lists ``(path, reason)`` as the local engine does.
    """
    settings = settings or FeatureSettings()
    if store is not None and out_parquet is not None:
        raise ValueError("give store or out_parquet, not both (Parquet output replaces the feature store)")
    _check_positive("batch_size", batch_size, integer=True)
    _check_concurrency(concurrency)
    _check_positive("num_gpus", num_gpus, integer=False, allow_zero=True)
    _check_positive("cnn_cpus", cnn_cpus, integer=False)
    if out_parquet is not None and os.path.exists(out_parquet) and not os.path.isdir(out_parquet):
        raise ValueError(f"{out_parquet}: exists and is not a folder (Parquet output is a folder of part files)")
    require_ray()

    paths = [os.fspath(p) for p in paths]
    result = ExtractionResult({}, [])
    done = _parquet_track_ids(out_parquet) if out_parquet is not None else set()
    todo, from_parquet = [], {}
    for i, (p, (digest, reason)) in enumerate(zip(paths, _digests(paths))):
        if reason is not None:
            result.failures.append((p, reason))
            continue
        if store is not None:
            cached = store.get(digest) if keep_features else ({} if digest in store else None)
        else:
            cached = {} if digest in done else None
            if cached is not None and keep_features:
                from_parquet[p] = digest
        if cached is None:
            todo.append({"index": i, "path": p, "digest": digest})
            continue
        if keep_features:
            result.features[p] = cached
        result.cached += 1
    if from_parquet:
        loaded = read_parquet_features(out_parquet, track_ids=from_parquet.values())
        for p, digest in from_parquet.items():
            result.features[p] = loaded[digest]

    if not todo:
        return result
    ray = connect(address)
    _configure_data(progress)
    if num_gpus and ray.cluster_resources().get("GPU", 0) < num_gpus:
        raise ValueError(f"num_gpus={num_gpus:g} per CNN actor, but the Ray cluster has "
                         f"{ray.cluster_resources().get('GPU', 0):g} GPUs (use num_gpus=0 to run the CNN on CPUs)")
    compute = _actor_pool(ray, concurrency, num_gpus=num_gpus, cnn_cpus=cnn_cpus)

    ds = ray.data.from_items(todo, override_num_blocks=min(len(todo), 10_000))
    ds = ds.map(_prepare_row, fn_kwargs={"settings": settings.to_dict()}, num_cpus=1, memory=_PREPARE_MEMORY)
    ds = ds.map_batches(
        _CNNActor, batch_size=int(batch_size), batch_format="numpy", compute=compute,
        num_cpus=cnn_cpus, num_gpus=num_gpus or None,
        fn_constructor_kwargs={"settings": settings.to_dict(), "device": "cuda" if num_gpus else "cpu",
                               "threads": max(1, int(cnn_cpus)), "store": store,
                               "out_parquet": None if out_parquet is None else os.path.abspath(out_parquet),
                               "keep_features": keep_features},
    )
    failed = []
    bar = progress_bar(total=len(paths), initial=len(paths) - len(todo), desc="extract (ray)", unit="track",
                       enabled=progress)
    try:
        for batch in _stream(ray, ds):
            for idx, p, err, blob in zip(batch["index"], batch["path"], batch["error"], batch["payload"]):
                if err:
                    failed.append((int(idx), str(p), str(err)))
                else:
                    result.computed += 1
                    if keep_features:
                        result.features[str(p)] = _unpack(blob)
                bar.update(1)
    finally:
        bar.close()
    result.failures += [(p, r) for _, p, r in sorted(failed)]
    return result


# ----------------------------------------------------------------------------- prediction


class _PredictActor:
    """Holds one loaded GenreModel; predicts one file per row."""

    def __init__(self, *, model_bytes: bytes, timeline: bool, segments: int | None):
        from ..model.genre_model import load_model

        # The model travels as bytes: workers need not see the driver's model file.
        fd, tmp = tempfile.mkstemp(suffix=".model")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(model_bytes)
            self.model = load_model(tmp)  # verifies checksums and this node's backbone weights
        finally:
            os.unlink(tmp)
        self.timeline, self.segments = timeline, segments

    def __call__(self, batch: dict) -> dict:
        answers, errors = [], []
        for p in batch["path"]:
            preds, fails = self.model.predict_many([str(p)], progress=False, timeline=self.timeline,
                                                   segments=self.segments)
            answers.append(json.dumps(preds[0].to_dict()) if preds else "")
            errors.append(fails[0][1] if fails else "")
        return {"index": np.asarray(batch["index"]), "path": np.asarray(batch["path"], dtype=object),
                "error": np.asarray(errors, dtype=object), "prediction": np.asarray(answers, dtype=object)}


def predict_files_ray(
    model_path,
    paths,
    *,
    segments: int | None = None,
    timeline: bool = False,
    address: str | None = None,
    concurrency: int | None = None,
    progress: bool = True,
):
    """Genre of many files on a Ray cluster (or a local Ray runtime).

    Parameters
    ----------
    model_path : str or path-like
        Model file written by :meth:`GenreModel.save`; read here and sent to
        the actors (the workers need not see it).
    paths : iterable of str
        Audio files, at the same paths on every node.
    segments : int, optional
        Classify at most this many 30 s segments of each file (see
        :meth:`GenreModel.predict`); None reads them all.
    timeline : bool
        Report a file of one piece as one segment too.
    address : str, optional
        Cluster to join (see :func:`connect`); None starts a local runtime.
    concurrency : int, optional
        Prediction actors, each holding one loaded model on one CPU
        (default: one per CPU of the cluster, at most one per file).
    progress : bool
        Progress bar on stderr.

    Returns
    -------
    (list of Prediction in input order, [(path, reason)] failures), as
    :meth:`GenreModel.predict_many` returns.
    """
    from ..model.genre_model import Prediction, load_model

    if segments is not None and (isinstance(segments, bool) or int(segments) != segments or segments < 1):
        raise ValueError(f"segments must be None or an integer >= 1, got {segments!r}")
    if concurrency is not None:
        _check_positive("concurrency", concurrency, integer=True)
    require_ray()
    model_path = os.fspath(model_path)
    load_model(model_path, check_backbone=False)  # a bad model file fails here, in one line, before Ray starts
    with open(model_path, "rb") as f:
        model_bytes = f.read()
    paths = [os.fspath(p) for p in paths]
    if not paths:
        return [], []

    ray = connect(address)
    _configure_data(progress)
    from ray.data import ActorPoolStrategy

    size = concurrency or max(1, int(ray.cluster_resources().get("CPU", 1)))
    ds = ray.data.from_items([{"index": i, "path": p} for i, p in enumerate(paths)],
                             override_num_blocks=min(len(paths), 10_000))
    ds = ds.map_batches(_PredictActor, batch_size=1, batch_format="numpy", num_cpus=1,
                        compute=ActorPoolStrategy(size=min(size, len(paths))),
                        fn_constructor_kwargs={"model_bytes": model_bytes, "timeline": bool(timeline),
                                               "segments": segments})
    answers, failed = [], []
    with progress_bar(total=len(paths), desc="predict (ray)", unit="file", enabled=progress) as bar:
        for batch in _stream(ray, ds):
            for idx, p, err, pred in zip(batch["index"], batch["path"], batch["error"], batch["prediction"]):
                if err:
                    failed.append((int(idx), str(p), str(err)))
                else:
                    answers.append((int(idx), Prediction.from_dict(json.loads(pred))))
                bar.update(1)
    return [p for _, p in sorted(answers, key=lambda x: x[0])], [(p, r) for _, p, r in sorted(failed)]
