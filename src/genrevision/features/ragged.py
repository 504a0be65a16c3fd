"""Ragged feature matrices: the windows of many tracks, each track its own number of rows.

A track is a set of windows (an 8 s clip has 2, a 30 s track 10, a long song
up to the recipe's cap); window-level classifiers learn from the windows and
answer per track. :class:`Ragged` holds every window of every track in one
``(n_windows, n_features)`` array plus the offsets where each track starts,
and behaves like a 2-D array *of tracks* where the evaluation code needs it:
``len(X)`` and ``X.shape[0]`` count tracks, ``X[train]`` selects tracks,
``X[:, a:b]`` selects feature columns (a view of a late-fusion layout).
"""
from __future__ import annotations

import numbers

import numpy as np

from .._utils.validation import check_scalar

__all__ = ["Ragged"]


class Ragged:
    """Rows of many tracks, stored contiguously.

    Parameters
    ----------
    data : ndarray of shape (n_rows, n_features)
        Every track's rows, track after track.
    offsets : ndarray of int, shape (n_tracks + 1,)
        Track ``i`` owns ``data[offsets[i]:offsets[i + 1]]``; starts at 0,
        non-decreasing, ends at ``n_rows``. Every track has at least one row.
    """

    __slots__ = ("data", "offsets")

    def __init__(self, data, offsets):
        data = np.asarray(data)
        offsets = np.asarray(offsets, dtype=np.int64)
        if data.ndim != 2:
            raise ValueError(f"Ragged data must be 2-D (n_rows, n_features); got shape {data.shape}.")
        if offsets.ndim != 1 or offsets.size < 1 or offsets[0] != 0 or offsets[-1] != data.shape[0]:
            raise ValueError(
                f"Ragged offsets must run from 0 to the number of rows ({data.shape[0]}); "
                f"got {offsets[:3].tolist()}...{offsets[-2:].tolist()}."
            )
        if np.any(np.diff(offsets) < 1):
            raise ValueError("every track of a Ragged matrix needs at least one row.")
        self.data = data
        self.offsets = offsets

    # -- construction ---------------------------------------------------------

    @classmethod
    def from_list(cls, arrays, *, dtype=np.float32) -> "Ragged":
        """One track per 2-D array (rows, n_features); widths must agree."""
        arrays = [np.asarray(a, dtype=dtype) for a in arrays]
        if not arrays:
            raise ValueError("Ragged.from_list needs at least one track.")
        widths = {a.shape[1] if a.ndim == 2 else None for a in arrays}
        if len(widths) != 1 or None in widths:
            raise ValueError(f"every track must be a 2-D array of one width; got widths {sorted(map(str, widths))}.")
        offsets = np.concatenate([[0], np.cumsum([a.shape[0] for a in arrays])])
        return cls(np.concatenate(arrays, axis=0), offsets)

    @classmethod
    def from_fixed(cls, X, n_rows: int) -> "Ragged":
        """Tracks stored as fixed-width rows of ``n_rows`` windows each (window-major)."""
        X = np.asarray(X)
        check_scalar(n_rows, "n_rows", kind=int, min=1)
        if X.ndim != 2 or X.shape[1] % n_rows:
            raise ValueError(f"X of shape {X.shape} does not split into {n_rows} equal windows per row.")
        return cls(X.reshape(X.shape[0] * n_rows, X.shape[1] // n_rows), np.arange(X.shape[0] + 1) * n_rows)

    # -- array-like surface ---------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        """(n_tracks, n_features): the shape of the track-level problem."""
        return (self.offsets.size - 1, self.data.shape[1])

    ndim = 2

    @property
    def dtype(self):
        return self.data.dtype

    def __len__(self) -> int:
        return self.offsets.size - 1

    @property
    def lengths(self) -> np.ndarray:
        """Rows per track."""
        return np.diff(self.offsets)

    @property
    def track_index(self) -> np.ndarray:
        """Track number of every row."""
        return np.repeat(np.arange(len(self)), self.lengths)

    def track(self, i: int) -> np.ndarray:
        return self.data[self.offsets[i] : self.offsets[i + 1]]

    def astype(self, dtype) -> "Ragged":
        return Ragged(self.data.astype(dtype, copy=False), self.offsets)

    def __getitem__(self, key):
        if isinstance(key, tuple):
            if len(key) == 2 and key[1] is Ellipsis:  # scikit-learn's X[indices, ...]
                return self[key[0]]
            if len(key) != 2:
                raise IndexError("a Ragged matrix takes X[tracks] or X[tracks, columns].")
            rows, cols = key
            sub = self if isinstance(rows, slice) and rows == slice(None) else self[rows]
            return Ragged(sub.data[:, cols], sub.offsets)
        if isinstance(key, numbers.Integral):
            return self.track(int(key))
        idx = np.arange(len(self))[key]
        idx = np.atleast_1d(idx)
        lengths = self.lengths[idx]
        starts = self.offsets[:-1][idx]
        # Gather the rows of the chosen tracks in the order given.
        rows = np.repeat(starts - np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths) + np.arange(lengths.sum())
        return Ragged(self.data[rows], np.concatenate([[0], np.cumsum(lengths)]))

    # -- per-track arithmetic -------------------------------------------------

    def repeat(self, values) -> np.ndarray:
        """Per-track values (n_tracks, ...) spread to every row of the track."""
        values = np.asarray(values)
        if values.shape[0] != len(self):
            raise ValueError(f"need one value per track ({len(self)}); got {values.shape[0]}.")
        return np.repeat(values, self.lengths, axis=0)

    def mean(self, row_values) -> np.ndarray:
        """Mean over each track's rows of per-row values (n_rows, ...) → (n_tracks, ...)."""
        row_values = np.asarray(row_values)
        sums = np.add.reduceat(row_values, self.offsets[:-1], axis=0)
        return sums / self.lengths.reshape((-1,) + (1,) * (row_values.ndim - 1))

    def hstack(self, other: "Ragged") -> "Ragged":
        """Columns of two matrices over the same tracks and rows, side by side."""
        if not np.array_equal(self.offsets, other.offsets):
            raise ValueError("Ragged.hstack needs the same tracks with the same rows.")
        return Ragged(np.concatenate([self.data, other.data], axis=1), self.offsets)

    def __repr__(self) -> str:
        n = len(self)
        return f"Ragged({n} tracks, {self.data.shape[0]} rows × {self.data.shape[1]} features)"
