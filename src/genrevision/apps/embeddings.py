"""Embeddings out: a recipe's features of every track (and window) for use in any other tool.

::

    from genrevision import embed
    emb = embed("../shared/data/gtzan-mini", recipe="default", windows=True)
    emb.save("gtzan.parquet")          # or .npz
    emb = load_embeddings("gtzan.parquet")

Per track, the vector is the image features the recipe's classifier reads for
that track (a hybrid recipe's MFCC view, as in the default, is left out):
the pooled row of a pooled recipe (``paper``: the mean over the track's
segment images), the mean of the window rows of a windowed recipe
(``default``). Per window (``windows=True``): the rows a windowed head
learns from, one per window, with the window's start in seconds.

Files: ``.npz`` (always; ``numpy.load(path)`` needs no pickle) or ``.parquet``
(pyarrow, ``pip install pyarrow``), with columns ``path``, ``label``,
``group`` (empty where the dataset has none), ``track`` and ``window_start``
(per-window files only) and ``embedding`` (a fixed-size list of float32);
the recipe, backbone and dimension are in the file's metadata.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace

import numpy as np

from ..features.extraction import DEFAULT_CACHE

__all__ = ["Embeddings", "embed", "load_embeddings", "check_output", "FORMATS"]

FORMATS = (".npz", ".parquet")


@dataclass
class Embeddings:
    """Rows of embeddings with where they come from.

    Attributes
    ----------
    path, label, group : ndarray of str, one per row
    embedding : ndarray (n_rows, D) float32
    track : ndarray of int or None
        Index of the row's track (per-window embeddings).
    window_start : ndarray of float or None
        Start of the row's window in seconds (per-window embeddings).
    meta : dict
        ``recipe``, ``backbone``, ``dim``, ``level`` ("track" or "window"),
        ``genrevision`` version.
    failures : list of (path, reason)
    """

    path: np.ndarray
    label: np.ndarray
    group: np.ndarray
    embedding: np.ndarray
    track: np.ndarray | None = None
    window_start: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    failures: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.embedding)

    def save(self, path, *, force: bool = False) -> str:
        """Write to ``path`` (``.npz`` or ``.parquet``, by its extension), atomically.

        An existing file is refused unless ``force`` (see :func:`check_output`).
        """
        path = check_output(path, force=force)
        ext = os.path.splitext(path)[1].lower()
        try:
            self._write(path, ext)
        except OSError as err:  # a full disk, say: name the user's file, not the temporary one
            raise ValueError(f"{path}: cannot write ({err.strerror or err})") from None
        return path

    def _write(self, path: str, ext: str) -> None:
        from ..features.store import atomic_write

        if ext == ".npz":
            arrays = {"path": self.path.astype(str), "label": self.label.astype(str), "group": self.group.astype(str),
                      "embedding": self.embedding.astype(np.float32), "meta": np.array(json.dumps(self.meta))}
            if self.track is not None:
                arrays["track"] = self.track.astype(np.int64)
                arrays["window_start"] = self.window_start.astype(np.float32)
            atomic_write(path, lambda f: np.savez(f, **arrays))
        else:
            pa, pq = _pyarrow()
            d = self.embedding.shape[1]
            cols = {"path": pa.array(self.path.astype(str).tolist(), pa.string()),
                    "label": pa.array(self.label.astype(str).tolist(), pa.string()),
                    "group": pa.array(self.group.astype(str).tolist(), pa.string())}
            if self.track is not None:
                cols["track"] = pa.array(self.track.astype(np.int64))
                cols["window_start"] = pa.array(self.window_start.astype(np.float32))
            flat = pa.array(np.ascontiguousarray(self.embedding, dtype=np.float32).ravel())
            cols["embedding"] = pa.FixedSizeListArray.from_arrays(flat, d)
            table = pa.table(cols).replace_schema_metadata({"genrevision": json.dumps(self.meta)})
            atomic_write(path, lambda f: pq.write_table(table, f))


def check_output(path, *, force: bool = False) -> str:
    """``path`` as a place embeddings can be written, checked before any work: a known extension,
    not a folder, in an existing folder this process may write, and not an existing file unless
    ``force``. Raises ValueError, one line naming ``path``."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if os.path.isdir(path):
        raise ValueError(f"{path}: is a folder; name a file in it (e.g. {os.path.join(path, 'embeddings.parquet')})")
    if ext not in FORMATS:
        raise ValueError(f"{path}: embeddings are written as .npz or .parquet, not {ext or 'no extension'!r}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{path}: no such folder {folder} (create it first)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: cannot write in {folder} (permission denied)")
    if os.path.lexists(path) and not force:
        raise ValueError(f"{path}: already exists; --force (force=True) overwrites it")
    return path


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise RuntimeError("Parquet needs pyarrow: pip install pyarrow (or write .npz)") from None
    return pa, pq


def load_embeddings(path) -> Embeddings:
    """Read a file written by :meth:`Embeddings.save` (``.npz`` or ``.parquet``)."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as z:
            per_window = "track" in z.files
            return Embeddings(z["path"], z["label"], z["group"], z["embedding"],
                              z["track"] if per_window else None, z["window_start"] if per_window else None,
                              json.loads(str(z["meta"])))
    if ext == ".parquet":
        pa, pq = _pyarrow()
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(b"genrevision", b"{}"))
        col = table.column("embedding").combine_chunks()
        emb = col.values.to_numpy(zero_copy_only=False).reshape(len(table), col.type.list_size).astype(np.float32)
        per_window = "track" in table.column_names
        get = lambda c: np.asarray(table.column(c).to_pylist())  # noqa: E731
        return Embeddings(get("path").astype(str), get("label").astype(str), get("group").astype(str), emb,
                          get("track").astype(np.int64) if per_window else None,
                          get("window_start").astype(np.float32) if per_window else None, meta)
    raise ValueError(f"{path}: embeddings are read from .npz or .parquet, not {ext or 'no extension'!r}")


def embed(data, *, recipe="default", windows: bool = False, cache: str | None = DEFAULT_CACHE,
          jobs: int | None = None, progress: bool = True, backbone: str | None = None) -> Embeddings:
    """Features of a recipe for every track (or window) of a dataset.

    Parameters
    ----------
    data : str, os.PathLike or Dataset
        Label-folder tree, CSV manifest or a loaded Dataset (e.g. mirdata's).
    recipe : str or Recipe
        Whose features (``"default"``, ``"paper"``).
    windows : bool
        One row per window (with ``track`` and ``window_start``) instead of one per track.
    cache : str or None
        Feature cache folder (shared with ``extract``/``evaluate``/``train``).
    jobs, progress : see :func:`genrevision.features.extract_dataset`.
    backbone : str, optional
        Override the recipe's CNN.

    Returns
    -------
    Embeddings
    """
    from .. import __version__
    from ..evaluation.dataset import Dataset, load_dataset
    from ..features.extraction import extract_cached
    from ..recipes import get_recipe

    rec = get_recipe(recipe) if isinstance(recipe, str) else recipe
    if rec.tune is not None:
        # Its network is tuned on labelled tracks: the features belong to a trained model, not to the recipe.
        raise ValueError(f"recipe {rec.name!r} fine-tunes the network on labelled tracks, so its features come from "
                         "a trained model: train one (genrevision train DATA --recipe tuned --model FILE) and take "
                         "its features with genrevision.apps.hear.load_model(FILE), or embed with --recipe default")
    if backbone:
        rec = replace(rec, features=rec.features.with_(backbone=backbone))
    ds = data if isinstance(data, Dataset) else load_dataset(os.fspath(data))
    res = extract_cached(ds.paths, rec.features, cache=cache, jobs=jobs, progress=progress)
    failures = list(ds.problems) + list(res.failures)
    keep = [i for i, p in enumerate(ds.paths) if p in res.features]
    if not keep:
        raise ValueError(f"{getattr(ds, 'root', '') or 'dataset'}: no usable tracks ({len(failures)} failed)")
    paths = np.array([ds.paths[i] for i in keep])
    labels = np.asarray(ds.labels)[keep].astype(str)
    groups = (np.asarray(ds.groups)[keep] if ds.groups is not None else np.full(len(keep), "")).astype(str)
    feats = [res.features[p] for p in paths]
    # Every window's row, the CNN views side by side; a hybrid recipe's MFCC view is a per-track
    # summary its classifier adds, not an image feature, so it is left out (as in the HEAR model).
    image_views = replace(rec, pooling="windows", hybrid_mfcc=False)
    rows, _ = image_views.matrix(feats)
    meta = {"recipe": rec.name, "backbone": rec.features.backbone, "dim": int(rows.shape[1]),
            "level": "window" if windows else "track", "genrevision": __version__,
            "views": list(image_views.view_names()), "features": rec.features.to_dict()}
    if windows:
        track = rows.track_index
        starts = np.concatenate([np.asarray(f["starts"], np.float32)[: n] for f, n in zip(feats, rows.lengths)])
        return Embeddings(paths[track], labels[track], groups[track], rows.data.astype(np.float32), track,
                          starts, meta, failures)
    if rec.pooling == "windows":
        X = np.stack([rows.track(i).mean(axis=0) for i in range(len(rows))]).astype(np.float32)
        meta["pooling"] = "mean of the window rows"
    else:
        X, _ = rec.matrix(feats)
        meta["pooling"] = f"{rec.pooling} of the window rows (the recipe's own)"
    meta["dim"] = int(X.shape[1])
    return Embeddings(paths, labels, groups, np.asarray(X, np.float32), meta=meta, failures=failures)
