"""On-disk feature store, keyed by file content and extraction settings.

Layout: ``ROOT/<settings key>/settings.json`` and
``ROOT/<settings key>/<sha1[:2]>/<sha1>.npz``. The key is a hash of every
setting that changes the numbers, so a change of backbone or spectrogram
gives a fresh folder and old results stay usable. Each entry is written to a
temporary file and renamed into place, so an interrupted run or two runs
sharing the folder never leave a half-written entry; a damaged entry is
reported, removed and recomputed.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
import zipfile

import numpy as np

from .files import open_regular

__all__ = ["FeatureStore", "content_digest"]


def content_digest(source) -> str:
    """SHA-1 of a file's bytes (or of ``bytes``): the same audio gets the same key wherever it lives.

    Raises FileNotFoundError, :class:`~genrevision.files.NotRegularFile` (a FIFO,
    device or folder) or another OSError.
    """
    h = hashlib.sha1()
    if isinstance(source, (bytes, bytearray, memoryview)):
        h.update(source)
        return h.hexdigest()
    # open_regular: a FIFO named like an audio file is refused instead of blocking forever.
    with open_regular(source) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: str, write) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-", suffix=os.path.splitext(path)[1])
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


class FeatureStore:
    """Per-track feature arrays under ``root`` for one settings dictionary.

    Parameters
    ----------
    root : str
        Folder shared by all settings (created when missing).
    settings : dict
        JSON-able settings; their hash names the sub-folder.
    """

    def __init__(self, root: str, settings: dict):
        self.settings = settings
        blob = json.dumps(settings, sort_keys=True, default=str).encode()
        self.key = hashlib.sha256(blob).hexdigest()[:16]
        self.path = os.path.join(root, self.key)
        os.makedirs(self.path, exist_ok=True)
        meta = os.path.join(self.path, "settings.json")
        if not os.path.exists(meta):
            _atomic_write(meta, lambda f: f.write(json.dumps(settings, indent=2, sort_keys=True, default=str).encode()))

    def _file(self, digest: str) -> str:
        return os.path.join(self.path, digest[:2], digest + ".npz")

    def __contains__(self, digest: str) -> bool:
        return os.path.exists(self._file(digest))

    def get(self, digest: str) -> dict[str, np.ndarray] | None:
        """The stored arrays, or None when absent or damaged (a damaged entry is removed)."""
        path = self._file(digest)
        if not os.path.exists(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k].astype(np.float32) if z[k].dtype == np.float16 else z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
            warnings.warn(f"{path}: damaged cache entry ({type(err).__name__}); recomputing", stacklevel=2)
            try:
                os.unlink(path)
            except OSError:
                pass
            return None

    def put(self, digest: str, arrays: dict[str, np.ndarray]) -> None:
        """Store arrays atomically; float arrays are kept as float16 (features need no more)."""
        packed = {k: (v.astype(np.float16) if np.asarray(v).dtype.kind == "f" else np.asarray(v))
                  for k, v in arrays.items()}
        _atomic_write(self._file(digest), lambda f: np.savez(f, **packed))

    def __len__(self) -> int:
        return sum(len([n for n in fs if n.endswith(".npz") and not n.startswith(".")])
                   for _, _, fs in os.walk(self.path))
