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
import warnings
import zipfile

import numpy as np

from .._utils.files import atomic_write, open_regular

__all__ = ["FeatureStore", "content_digest", "atomic_write"]


def content_digest(source) -> str:
    """SHA-1 of a file's bytes (or of ``bytes``): the same audio gets the same key wherever it lives.

    Raises FileNotFoundError, :class:`~genrevision._utils.files.NotRegularFile` (a FIFO,
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


def _for(about) -> str:
    return f" for {about}" if about else ""


#: Largest magnitude float16 holds; arrays beyond it are stored as float32.
_F16_MAX = float(np.finfo(np.float16).max)


class FeatureStore:
    """Per-track feature arrays under ``root`` for one settings dictionary.

    A folder that cannot be written (read-only, full, not a folder) never stops
    a run: the first failure is reported once as a warning, later entries are
    not attempted, and :attr:`unstored` lists the digests that were not kept.

    Parameters
    ----------
    root : str
        Folder shared by all settings (created when missing).
    settings : dict
        JSON-able settings; their hash names the sub-folder.
    """

    def __init__(self, root: str, settings: dict):
        self.settings = settings
        self.root = os.fspath(root)
        blob = json.dumps(settings, sort_keys=True, default=str).encode()
        self.key = hashlib.sha256(blob).hexdigest()[:16]
        self.path = os.path.join(self.root, self.key)
        #: Why the folder cannot be written (None while it can).
        self.write_error: str | None = None
        #: Digests whose arrays could not be stored.
        self.unstored: list[str] = []
        meta = os.path.join(self.path, "settings.json")
        try:
            os.makedirs(self.path, exist_ok=True)
            if not os.path.exists(meta):
                atomic_write(meta, lambda f: f.write(json.dumps(settings, indent=2, sort_keys=True, default=str).encode()))
        except OSError as err:
            self._cannot_write(err)

    @property
    def writable(self) -> bool:
        return self.write_error is None

    def _cannot_write(self, err: OSError) -> None:
        if self.write_error is None:
            self.write_error = err.strerror or str(err)
            warnings.warn(f"{self.root}: cannot write to the feature cache ({self.write_error}); going on without "
                          "storing features (this run keeps them in memory)", stacklevel=3)

    def _file(self, digest: str) -> str:
        return os.path.join(self.path, digest[:2], digest + ".npz")

    def __contains__(self, digest: str) -> bool:
        return os.path.exists(self._file(digest))

    def get(self, digest: str, *, validate=None, about: str | None = None) -> dict[str, np.ndarray] | None:
        """The stored arrays, or None when absent, damaged or invalid (such an entry is removed).

        Parameters
        ----------
        validate : callable, optional
            ``validate(arrays) -> reason or None``; an entry with a reason is
            reported (a warning naming the entry), removed and treated as absent.
        about : str, optional
            The file the entry belongs to, named in such a warning.
        """
        path = self._file(digest)
        if not os.path.lexists(path):
            return None
        try:
            with open_regular(path) as f, np.load(f, allow_pickle=False) as z:
                arrays = {k: z[k].astype(np.float32) if z[k].dtype == np.float16 else z[k] for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
            self._discard(path, f"damaged cache entry{_for(about)} ({type(err).__name__})")
            return None
        reason = validate(arrays) if validate is not None else None
        if reason:
            self._discard(path, f"bad cache entry{_for(about)} ({reason})")
            return None
        return arrays

    def _discard(self, path: str, why: str) -> None:
        warnings.warn(f"{path}: {why}; recomputing", stacklevel=3)
        try:
            os.unlink(path)
        except OSError:
            pass

    def put(self, digest: str, arrays: dict[str, np.ndarray]) -> bool:
        """Store arrays atomically; True when stored.

        Window features (2-D float) are kept as float16 (they need no more)
        unless a value does not fit; per-track vectors and window times exactly. A folder that cannot be written is reported once and
        False returned (the digest is added to :attr:`unstored`).
        """
        if self.write_error is not None:
            self.unstored.append(digest)
            return False
        packed = {}
        for k, v in arrays.items():
            v = np.asarray(v)
            small = v.dtype.kind == "f" and v.ndim == 2 and (not v.size or float(np.max(np.abs(v))) <= _F16_MAX)
            packed[k] = v.astype(np.float16) if small else v
        try:
            atomic_write(self._file(digest), lambda f: np.savez(f, **packed))
        except OSError as err:
            self._cannot_write(err)
            self.unstored.append(digest)
            return False
        return True

    def read_json(self, name: str):
        """A small JSON side file of this settings folder (None when absent or unreadable)."""
        try:
            with open_regular(os.path.join(self.path, name)) as f:
                return json.loads(f.read(1 << 20).decode("utf-8"))
        except (OSError, ValueError, RecursionError):
            return None

    def write_json(self, name: str, obj) -> None:
        """Write a small JSON side file atomically (silently skipped when the folder cannot be written)."""
        if self.write_error is None:
            try:
                atomic_write(os.path.join(self.path, name), lambda f: f.write(json.dumps(obj, sort_keys=True).encode()))
            except OSError as err:
                self._cannot_write(err)

    def __len__(self) -> int:
        return sum(len([n for n in fs if n.endswith(".npz") and not n.startswith(".")])
                   for _, _, fs in os.walk(self.path))
