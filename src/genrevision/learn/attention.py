"""Attention pooling over the windows of a track (a learned alternative to the log-mean).

The default recipe's head learns from windows and averages their
log-likelihoods per track, so every window counts the same: an intro, a
silent stretch or a guitar solo weigh as much as the body of the song.
:class:`AttentionPoolingClassifier` learns how much each window counts
(Ilse, Tomczak & Welling 2018, "Attention-based deep multiple instance
learning"): a score ``s_w = v^T tanh(V x_w)`` per window, weights
``a_w = softmax_w(s_w)`` within each track, and a linear softmax classifier
on the pooled track, trained on tracks (one label each).

The window features are pooled, ``sum_w a_w x_w``, then classified (the
paper's form); with a linear classifier this is the same model as pooling the
window logits or log-likelihoods, so with uniform weights it is the default
recipe's log-mean read-out, and the attention starts there (``v = 0``). Weight decay and the number of epochs are
chosen on inner folds of the training tracks (grouped, stratified) by their
held-out cross-entropy: stopping at the epoch whose held-out loss is lowest is
the early stopping, measured on held-out tracks, never on the test tracks.
"""
from __future__ import annotations


import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from .._utils.validation import Grid, Interval, validate_params
from .classifiers import (
    _check_groups,
    _ProbaClassifierMixin,
    _softmax,
    column_stats,
    make_inner_cv,
    reduce_rows,
    standardise_and_reduce,
)

__all__ = ["AttentionPoolingClassifier"]


class AttentionPoolingClassifier(_ProbaClassifierMixin, ClassifierMixin, BaseEstimator):
    """Linear softmax classifier on attention-pooled windows, trained on tracks.

    ``X`` is a :class:`~genrevision.features.ragged.Ragged` matrix (every window of
    every track as a row, tracks of any length), ``y`` one label per track.
    The window features are standardised and reduced to at most
    ``n_components`` dimensions (label-free, see
    :func:`~genrevision.learn.classifiers.reduce_rows`); the model is trained
    full-batch with Adam on the mean track cross-entropy plus
    ``weight_decay / 2`` times the squared weights (biases not penalised).
    The candidates of every inner fold are trained side by side as one batch
    of independent models (Adam is element-wise, so this is exactly separate
    training, at the Python cost of one).

    Parameters
    ----------
    hidden : int, default=32
        Width of the attention's hidden layer ``V``, >= 1.
    weight_decay : float or None, default=None
        L2 strength, >= 0; None chooses it from ``weight_decay_grid`` on inner folds.
    weight_decay_grid : sequence of float, default=(1e-2, 1e-1, 1.0)
        Candidates when ``weight_decay`` is None.
    max_epochs : int, default=200
        Full-batch Adam steps tried, >= 1; the number used is the one whose
        mean inner held-out loss is lowest (``max_epochs`` when
        ``weight_decay`` is given).
    learning_rate : float, default=0.02
        Adam step size, > 0.
    inner_cv : int, default=3
        Largest number of inner folds (>= 2), reduced to the smallest class
        size in groups.
    n_components : int, default=256
        Largest number of reduced feature dimensions, >= 1.
    threads : int, default=1
        torch threads while fitting (the products are small; on a shared
        2-core machine more threads only add hand-offs).
    random_state : int, default=0
        Seed of the inner folds, the reduction's row sample and the initial ``V``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    best_params_ : dict
        ``{"weight_decay": float, "epochs": int}`` of the final fit.
    inner_losses_ : ndarray of shape (n_candidates, max_epochs + 1) or None
        Mean inner held-out cross-entropy after 0, 1, ... epochs, per candidate.
    n_features_in_ : int
    """

    def __init__(self, *, hidden=32, weight_decay=None, weight_decay_grid=(1e-2, 1e-1, 1.0),
                 max_epochs=200, learning_rate=0.02, inner_cv=3, n_components=256, threads=1, random_state=0):
        self.hidden = hidden
        self.weight_decay = weight_decay
        self.weight_decay_grid = weight_decay_grid
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.inner_cv = inner_cv
        self.n_components = n_components
        self.threads = threads
        self.random_state = random_state

    # -- checks ---------------------------------------------------------------

    _parameter_constraints = {
        "hidden": Interval(int, 1, None),
        "weight_decay": Interval(float, 0, None, none_ok=True),
        "max_epochs": Interval(int, 1, None),
        "learning_rate": Interval(float, 0, None, closed="neither"),
        "inner_cv": Interval(int, 2, None),
        "n_components": Interval(int, 1, None),
        "threads": Interval(int, 1, None),
    }

    def _check_params(self):
        validate_params(self, self._parameter_constraints)
        if self.weight_decay is None:
            Grid(0, include_min=True).check(self.weight_decay_grid, "weight_decay_grid")
        grid = [self.weight_decay] if self.weight_decay is not None else self.weight_decay_grid
        return [float(w) for w in grid]

    @staticmethod
    def _ragged(X):
        from .classifiers import WindowedClassifier

        return WindowedClassifier._ragged(X)  # the same type and finiteness checks

    # -- fitting --------------------------------------------------------------

    def fit(self, X, y, groups=None):
        """Choose weight decay and epochs on inner folds, then train on every track.

        Parameters
        ----------
        X : Ragged of n_tracks tracks
        y : array-like of shape (n_tracks,)
        groups : array-like of shape (n_tracks,), default=None
            Group per track (e.g. artist): tracks of one group stay on one
            side of every inner split. Default: each track its own group.

        Returns
        -------
        self
        """
        import torch

        grid = self._check_params()
        X = self._ragged(X)
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise ValueError(f"y must hold one label per track ({len(X)}); got shape {y.shape}.")
        self.classes_ = np.unique(y)
        if self.classes_.size < 2:
            raise ValueError(f"AttentionPoolingClassifier needs at least 2 classes in y; got {self.classes_.size}.")
        groups = _check_groups(groups, len(X))
        self.n_features_in_ = X.shape[1]
        y_idx = np.searchsorted(self.classes_, y)

        data = X.data.astype(np.float32, copy=False)
        mean, scale = column_stats(data)
        V = reduce_rows(data, mean=mean, scale=scale, n_components=self.n_components, random_state=self.random_state)
        self.mean_, self.scale_, self.basis_ = mean, scale, V
        Z = np.ascontiguousarray(standardise_and_reduce(data, mean, scale, V))
        n = len(X)

        from ..features.backbone import torch_threads

        with torch_threads(self.threads):
            self.inner_losses_ = None
            if self.weight_decay is None:
                # One model per (inner fold, candidate), trained together; each
                # sees its fold's training tracks only (a mask on the loss).
                splits = make_inner_cv(y, groups, n_splits=self.inner_cv, random_state=self.random_state)
                train_mask = np.zeros((len(splits) * len(grid), n), np.float32)
                wds = np.zeros(len(splits) * len(grid))
                for i, (train, _) in enumerate(splits):
                    train_mask[i * len(grid):(i + 1) * len(grid), train] = 1.0
                    wds[i * len(grid):(i + 1) * len(grid)] = grid
                _, held = self._train(torch, Z, X.track_index, y_idx, train_mask, wds, self.max_epochs)
                losses = held.reshape(len(splits), len(grid), -1).mean(axis=0)
                losses[:, 0] = np.inf  # at least one step
                j, e = np.unravel_index(int(np.argmin(losses)), losses.shape)
                wd, epochs = grid[j], int(e)
                self.inner_losses_ = losses
            else:
                wd, epochs = grid[0], self.max_epochs
            self.best_params_ = {"weight_decay": wd, "epochs": epochs}
            params, _ = self._train(torch, Z, X.track_index, y_idx, np.ones((1, n), np.float32), np.array([wd]), epochs)
        self.params_ = {k: v.detach()[0].numpy().copy() for k, v in params.items()}
        return self

    def _init(self, torch, n_models, d):
        g = torch.Generator().manual_seed(int(self.random_state or 0))
        k = self.classes_.size
        V = torch.randn(self.hidden, d, generator=g, dtype=torch.float32) / np.sqrt(d)
        p = {
            "V": V.repeat(n_models, 1, 1),
            # v = 0: uniform weights at the start, i.e. the plain mean over windows.
            "v": torch.zeros(n_models, self.hidden, dtype=torch.float32),
            "W": torch.zeros(n_models, k, d, dtype=torch.float32),
            "b": torch.zeros(n_models, k, dtype=torch.float32),
        }
        for t in p.values():
            t.requires_grad_(True)
        return p

    @staticmethod
    def _forward(torch, p, Z, track, n_tracks):
        """Track logits (models, tracks, classes) and window weights (models, windows).

        Pooling the features, the window logits or the window log-likelihoods
        gives one classifier when it is linear (they differ by a per-track
        constant), so the features are pooled: the cheapest.
        """
        m, h, d = p["V"].shape
        s = torch.einsum("mnh,mh->mn", torch.tanh((Z @ p["V"].reshape(m * h, d).T).reshape(-1, m, h).transpose(0, 1)),
                         p["v"])
        idx = track.expand(m, -1)
        # Softmax within each track: subtract the track's maximum for stability.
        top = torch.full((m, n_tracks), -torch.inf, dtype=s.dtype).scatter_reduce(1, idx, s, reduce="amax")
        e = torch.exp(s - top.gather(1, idx))
        a = e / torch.zeros((m, n_tracks), dtype=s.dtype).index_add(1, track, e).gather(1, idx)
        pooled = torch.zeros((m, n_tracks, d), dtype=Z.dtype).index_add(1, track, a[:, :, None] * Z[None])
        return torch.einsum("mtd,mkd->mtk", pooled, p["W"]) + p["b"][:, None, :], a

    def _train(self, torch, Z, track, y_idx, train_mask, wds, epochs):
        """Adam for ``epochs`` full-batch steps of ``len(wds)`` independent models.

        Returns the parameters and, per model, the mean loss on the tracks
        outside its mask after 0..epochs steps.
        """
        n_models, n = train_mask.shape
        p = self._init(torch, n_models, Z.shape[1])
        Zt, tr, yt = torch.from_numpy(Z), torch.from_numpy(np.asarray(track, np.int64)), torch.from_numpy(y_idx)
        mask = torch.from_numpy(train_mask)
        held = 1.0 - mask
        n_train, n_held = mask.sum(1), held.sum(1).clamp(min=1.0)
        wd = torch.from_numpy(np.asarray(wds, np.float32))
        opt = torch.optim.Adam(list(p.values()), lr=float(self.learning_rate))
        curve = np.zeros((n_models, epochs + 1))
        ce = torch.nn.functional.cross_entropy
        for e in range(epochs + 1):
            logits, _ = self._forward(torch, p, Zt, tr, n)
            per_track = ce(logits.reshape(-1, logits.shape[-1]), yt.repeat(n_models), reduction="none").reshape(n_models, n)
            curve[:, e] = ((per_track * held).sum(1) / n_held).detach().numpy()
            if e == epochs:
                break
            penalty = sum((p[k] * p[k]).flatten(1).sum(1) for k in ("V", "v", "W"))
            loss = ((per_track * mask).sum(1) / n_train + 0.5 * wd * penalty).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return p, curve

    # -- prediction -----------------------------------------------------------

    def _logits_and_weights(self, X):
        import torch

        check_is_fitted(self, "params_")
        X = self._ragged(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but AttentionPoolingClassifier was fitted with {self.n_features_in_}.")
        Z = standardise_and_reduce(X.data.astype(np.float32, copy=False), self.mean_, self.scale_, self.basis_)
        p = {k: torch.from_numpy(v)[None] for k, v in self.params_.items()}
        with torch.no_grad():
            logits, a = self._forward(torch, p, torch.from_numpy(np.ascontiguousarray(Z)),
                                      torch.from_numpy(X.track_index.astype(np.int64)), len(X))
        return logits[0].numpy().astype(np.float64), a[0].numpy().astype(np.float64)

    def attention_weights(self, X):
        """Weight of every window within its track (rows in ``X.data`` order; each track's sum to 1)."""
        return self._logits_and_weights(X)[1]

    def predict_proba(self, X):
        """Track likelihoods.

        Parameters
        ----------
        X : Ragged of n_tracks tracks

        Returns
        -------
        ndarray of shape (n_tracks, n_classes)
            Rows sum to 1; columns follow ``classes_``.
        """
        return _softmax(self._logits_and_weights(X)[0])
