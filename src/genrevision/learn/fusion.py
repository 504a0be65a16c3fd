"""Late fusion of per-view class likelihoods.

Gwardys & Grzywczak (2014) classify each spectrogram view (original,
harmonic, percussive) separately and fuse the class likelihoods with a
weighted sum, 0.5 * original + 0.1 * harmonic + 0.4 * percussive (0.5 / 0 /
0.5 for their fine-tuned network). This module provides the fusion
arithmetic as pure functions and ``LateFusionClassifier``, which fits one
classifier per view and fixes, learns (from out-of-fold likelihoods of the
training data only) or stacks the fusion.

Views are column slices of one feature matrix: ``views`` is a tuple of
``(name, start, stop)``, e.g.
``(("original", 0, d), ("harmonic", d, 2 * d), ("percussive", 2 * d, 3 * d))``.
A view subset (e.g. harmonic + percussive) is a shorter ``views`` tuple.
"""

from __future__ import annotations

import numbers
from itertools import combinations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from .._utils.validation import check_scalar
from .classifiers import ViewSVM, accepts_groups, make_inner_cv
from ..features.ragged import Ragged

__all__ = [
    "PAPER_WEIGHTS",
    "PAPER_FINETUNE_WEIGHTS",
    "make_views",
    "fuse_probabilities",
    "learn_weights",
    "LateFusionClassifier",
]

#: The paper's fusion weights for the RBF-SVM classifiers.
PAPER_WEIGHTS = {"original": 0.5, "harmonic": 0.1, "percussive": 0.4}
#: The paper's fusion weights for the fine-tuned (softmax layer) classifiers.
PAPER_FINETUNE_WEIGHTS = {"original": 0.5, "harmonic": 0.0, "percussive": 0.5}

_RULES = ("sum", "product")


def make_views(widths, names=("original", "harmonic", "percussive")):
    """Build a ``views`` layout for views stored side by side.

    Parameters
    ----------
    widths : int or sequence of int
        Feature count of each view; one int means every view has that width.
    names : sequence of str, default=("original", "harmonic", "percussive")
        View names, in column order.

    Returns
    -------
    tuple of (str, int, int)
        ``(name, start, stop)`` per view.
    """
    names = tuple(names)
    if isinstance(widths, numbers.Integral):
        widths = [int(widths)] * len(names)
    widths = [int(w) for w in widths]
    if len(widths) != len(names) or any(w < 1 for w in widths):
        raise ValueError(
            f"widths must give one positive width per view name ({len(names)}); "
            f"got {widths!r}."
        )
    stops = np.cumsum(widths)
    return tuple(
        (name, int(stop - w), int(stop)) for name, w, stop in zip(names, widths, stops)
    )


def _check_probas(probas, *, allow_nan_rows=False):
    if isinstance(probas, np.ndarray) and probas.ndim == 2:
        probas = [probas]
    probas = [np.asarray(p, dtype=np.float64) for p in probas]
    if len(probas) == 0:
        raise ValueError("probas must hold at least one (n_samples, n_classes) array.")
    shape = probas[0].shape
    for p in probas:
        if p.ndim != 2 or p.shape != shape:
            raise ValueError(
                "probas must be 2-D arrays of one shape (n_samples, n_classes); "
                f"got shapes {[q.shape for q in probas]}."
            )
        q = p[~np.isnan(p).any(axis=1)] if allow_nan_rows else p
        if not np.all(np.isfinite(q)) or np.any(q < 0):
            raise ValueError("probas must be finite and non-negative.")
    return probas


def _check_weights(weights, n_views):
    w = np.asarray(weights, dtype=np.float64).ravel()
    if w.shape[0] != n_views:
        raise ValueError(f"weights must have one entry per view ({n_views}); got {w.shape[0]}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(
            f"weights must be finite, >= 0 and not all zero; got {tuple(w.tolist())}."
        )
    return w / w.sum()


def fuse_probabilities(probas, weights, *, rule="sum", floor=1e-12):
    """Fuse per-view class likelihoods.

    Parameters
    ----------
    probas : sequence of ndarray of shape (n_samples, n_classes)
        One likelihood matrix per view, columns in the same class order.
    weights : sequence of float
        One weight per view, >= 0, not all zero; normalised to sum to 1.
    rule : {"sum", "product"}, default="sum"
        "sum": weighted arithmetic mean (the paper's rule). "product":
        weighted geometric mean ``exp(sum_v w_v * log p_v)``.
    floor : float, default=1e-12
        Likelihoods below this are raised to it before the logarithm of the
        product rule, so one view's zero cannot veto a class outright.

    Returns
    -------
    ndarray of shape (n_samples, n_classes)
        Fused likelihoods; rows sum to 1.
    """
    if rule not in _RULES:
        raise ValueError(f"rule must be 'sum' or 'product'; got {rule!r}.")
    probas = _check_probas(probas)
    w = _check_weights(weights, len(probas))
    if rule == "sum":
        fused = sum(wi * p for wi, p in zip(w, probas))
    else:
        _check_floor(floor)
        log = sum(wi * np.log(np.maximum(p, floor)) for wi, p in zip(w, probas))
        # Subtract the row maximum before exp to avoid underflow.
        fused = np.exp(log - log.max(axis=1, keepdims=True))
    total = fused.sum(axis=1, keepdims=True)
    if np.any(total <= 0):
        raise ValueError("Some fused rows are all zero; the views give no likelihood to any class.")
    return fused / total


def _check_floor(floor):
    check_scalar(floor, "floor", kind=float, min=0, max=1, include_boundaries="neither")


def _simplex_grid(n_views, n_steps):
    """All weight vectors with entries k / n_steps that sum to 1."""
    # Stars and bars: choose the n_views - 1 bar positions among
    # n_steps + n_views - 1 slots.
    for bars in combinations(range(n_steps + n_views - 1), n_views - 1):
        edges = (-1,) + bars + (n_steps + n_views - 1,)
        yield tuple((edges[i + 1] - edges[i] - 1) / n_steps for i in range(n_views))


def learn_weights(probas, y, *, step=0.1, rule="sum", classes=None, floor=1e-12):
    """Grid-search fusion weights on the simplex for the best accuracy.

    Every weight vector with entries that are multiples of ``step`` and sum
    to 1 is tried. The best accuracy wins; ties go to the lower log-loss of
    the fused likelihoods, then to the vector closest to uniform weights.
    Pass out-of-fold likelihoods of training data: weights fitted on the
    likelihoods of the data the view classifiers were trained on favour the
    most over-fitted view.

    Parameters
    ----------
    probas : sequence of ndarray of shape (n_samples, n_classes)
        One likelihood matrix per view. Rows holding NaN in any view (samples
        no inner fold tested) are left out.
    y : array-like of shape (n_samples,)
        True labels.
    step : float, default=0.1
        Grid spacing; ``1 / step`` must be a whole number (within 1e-9).
    rule : {"sum", "product"}, default="sum"
        Fusion rule, as in :func:`fuse_probabilities`.
    classes : array-like of shape (n_classes,), default=None
        Labels of the probability columns; default ``np.unique(y)``, which
        then must have ``n_classes`` entries.
    floor : float, default=1e-12
        Likelihood floor for logarithms.

    Returns
    -------
    tuple of float
        One weight per view, summing to 1.
    """
    probas = _check_probas(probas, allow_nan_rows=True)
    y = np.asarray(y)
    n_samples, n_classes = probas[0].shape
    if y.ndim != 1 or y.shape[0] != n_samples:
        raise ValueError(
            f"y must be 1-D with one label per row of probas ({n_samples}); got shape {y.shape}."
        )
    if isinstance(step, bool) or not isinstance(step, numbers.Real) or not 0 < step <= 1:
        raise ValueError(f"step must be a number in (0, 1] with 1 / step whole; got {step!r}.")
    n_steps = int(round(1.0 / step))
    if abs(n_steps * step - 1.0) > 1e-9:
        raise ValueError(f"step must be a number in (0, 1] with 1 / step whole; got {step!r}.")
    _check_floor(floor)
    classes = np.unique(y) if classes is None else np.asarray(classes)
    if classes.shape[0] != n_classes:
        raise ValueError(
            f"probas have {n_classes} columns but there are {classes.shape[0]} classes; "
            "pass classes= to name the columns."
        )
    order = np.argsort(classes)
    pos = np.searchsorted(classes[order], y)
    if np.any(pos >= n_classes) or np.any(classes[order][np.minimum(pos, n_classes - 1)] != y):
        raise ValueError("y holds labels that are not among classes.")
    y_idx = order[pos]
    tested = ~np.any([np.isnan(p).any(axis=1) for p in probas], axis=0)
    if not tested.all():
        probas, y_idx, n_samples = [p[tested] for p in probas], y_idx[tested], int(tested.sum())
        if n_samples == 0:
            raise ValueError("probas hold no row without NaN: no sample to learn weights from.")

    m = len(probas)
    uniform = np.full(m, 1.0 / m)
    rows = np.arange(n_samples)
    best_key, best_w = None, None
    for w in _simplex_grid(m, n_steps):
        fused = fuse_probabilities(probas, w, rule=rule, floor=floor)
        n_correct = int(np.sum(np.argmax(fused, axis=1) == y_idx))
        log_loss = float(-np.mean(np.log(np.maximum(fused[rows, y_idx], floor))))
        # Rounding makes float noise count as a tie, so the later criteria decide.
        key = (-n_correct, round(log_loss, 10), round(float(np.sum((np.asarray(w) - uniform) ** 2)), 10))
        if best_key is None or key < best_key:
            best_key, best_w = key, w
    return tuple(float(v) for v in best_w)


def _out_of_fold_probas(base, X, y, groups, splits, *, n_jobs=None):
    """Likelihoods of every training sample from a clone fitted on the other inner folds."""
    def one(train, test):
        est = clone(base)
        est.fit(X[train], y[train], **({} if groups is None else {"groups": groups[train]}))
        return test, est.predict_proba(X[test]), est.classes_

    if n_jobs in (None, 1):
        parts = [one(tr, te) for tr, te in splits]
    else:
        from joblib import Parallel, delayed

        parts = Parallel(n_jobs=n_jobs)(delayed(one)(tr, te) for tr, te in splits)
    classes = np.unique(y)
    # NaN marks a sample no inner fold tested (a class of one group, see
    # make_inner_cv): the fusion is learned without it.
    out = np.full((len(y), classes.size), np.nan)
    for test, proba, est_classes in parts:
        out[test] = 0.0
        # A class missing from an inner training fold gets likelihood 0 there.
        out[np.ix_(test, np.searchsorted(classes, est_classes))] = proba
    return out


class LateFusionClassifier(ClassifierMixin, BaseEstimator):
    """One classifier per view, fused class likelihoods.

    Parameters
    ----------
    views : tuple of (str, int, int) or None, default=None
        ``(name, start, stop)`` column slice of each view in ``X``; names
        unique. None treats all of ``X`` as one view named "all".
    estimator : estimator object or None, default=None
        Per-view classifier with ``predict_proba`` (cloned per view); None
        means :class:`~genrevision.learn.classifiers.ViewSVM` with its defaults. It
        receives ``groups`` in ``fit`` when its ``fit`` takes them.
    weights : "learned", "stacking", "uniform", sequence of float or dict, default="learned"
        "learned": :func:`learn_weights` on out-of-fold likelihoods of an
        inner cross-validation of the training data. "stacking": a
        multinomial logistic regression on the concatenated out-of-fold
        likelihoods replaces the weighted fusion. "uniform": equal weights.
        A sequence gives one weight per view (e.g. ``(0.5, 0.1, 0.4)``); a
        dict maps view names to weights, views left out get 0. Fixed weights
        are >= 0, not all zero, and normalised to sum to 1.
    rule : {"sum", "product"}, default="sum"
        Fusion rule (see :func:`fuse_probabilities`); unused by "stacking".
    inner_cv : int, default=5
        Largest number of inner folds for "learned" and "stacking", >= 2;
        reduced to the smallest class size (in groups, when given).
    weight_step : float, default=0.1
        Grid spacing of the "learned" weights.
    random_state : int or None, default=0
        Seed of the inner fold shuffling.
    n_jobs : int or None, default=None
        Parallel jobs of the inner cross-validation.

    Attributes
    ----------
    estimators_ : list of estimator
        Fitted per-view classifiers, aligned with ``views``.
    views_ : tuple of (str, int, int)
        The resolved view layout.
    view_names_ : tuple of str
    weights_ : tuple of float or None
        Fusion weight per view (sum 1); None for "stacking".
    meta_ : LogisticRegression or None
        The stacking meta-classifier; None otherwise.
    oof_probas_ : dict of str to ndarray or None
        Out-of-fold likelihoods of the training data per view ("learned" and
        "stacking" only), for reports.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    """

    def __init__(
        self,
        views=None,
        estimator=None,
        *,
        weights="learned",
        rule="sum",
        inner_cv=5,
        weight_step=0.1,
        random_state=0,
        n_jobs=None,
    ):
        self.views = views
        self.estimator = estimator
        self.weights = weights
        self.rule = rule
        self.inner_cv = inner_cv
        self.weight_step = weight_step
        self.random_state = random_state
        self.n_jobs = n_jobs

    # -- validation --------------------------------------------------------

    def _resolve_views(self, n_features):
        if self.views is None:
            return (("all", 0, n_features),)
        views = []
        for v in self.views:
            try:
                name, start, stop = v
            except (TypeError, ValueError):
                raise ValueError(
                    f"views must be a sequence of (name, start, stop); got entry {v!r}."
                ) from None
            if not (
                isinstance(start, numbers.Integral)
                and isinstance(stop, numbers.Integral)
                and 0 <= start < stop <= n_features
            ):
                raise ValueError(
                    f"View {name!r} needs integer columns 0 <= start < stop <= "
                    f"{n_features} (the width of X); got start={start!r}, stop={stop!r}."
                )
            views.append((str(name), int(start), int(stop)))
        if not views:
            raise ValueError("views must name at least one view.")
        names = [v[0] for v in views]
        if len(set(names)) != len(names):
            raise ValueError(f"View names must be unique; got {names}.")
        return tuple(views)

    def _fixed_weights(self, names):
        w = self.weights
        if isinstance(w, str):
            if w == "uniform":
                return tuple(1.0 / len(names) for _ in names)
            raise ValueError(
                "weights must be 'learned', 'stacking', 'uniform', one number per "
                f"view or a dict of view name to number; got {w!r}."
            )
        if isinstance(w, dict):
            unknown = set(w) - set(names)
            if unknown:
                raise ValueError(
                    f"weights names views {sorted(unknown)} that are not among {list(names)}."
                )
            w = [w.get(n, 0.0) for n in names]
        return tuple(float(v) for v in _check_weights(w, len(names)))

    # -- fitting -----------------------------------------------------------

    def fit(self, X, y, groups=None):
        """Fit the per-view classifiers and the fusion.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Views side by side, as laid out by ``views``.
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,), default=None
            Samples sharing a group (e.g. artist) stay on one side of the
            inner folds, so learned weights never rest on likelihoods of a
            group the view classifier trained on.

        Returns
        -------
        self
        """
        if self.rule not in _RULES:
            raise ValueError(f"rule must be 'sum' or 'product'; got {self.rule!r}.")
        check_scalar(self.inner_cv, "inner_cv", kind=int, min=2)
        X, y = self._check_fit_data(X, y)
        self.n_features_in_ = X.shape[1]
        self.classes_ = np.unique(y)
        if self.classes_.size < 2:
            raise ValueError(f"y needs at least 2 classes; got {self.classes_.size}.")
        if groups is not None:
            groups = np.asarray(groups)
            if groups.shape != (X.shape[0],):
                raise ValueError(
                    f"groups must be 1-D with one entry per sample ({X.shape[0]}); "
                    f"got shape {groups.shape}."
                )
        views = self._resolve_views(X.shape[1])
        self.view_names_ = tuple(v[0] for v in views)
        mode = self.weights if isinstance(self.weights, str) else "fixed"
        # Check fixed weights before the (slow) view fits.
        fixed = None if mode in ("learned", "stacking") else self._fixed_weights(self.view_names_)

        base = ViewSVM() if self.estimator is None else self.estimator
        fit_params = {"groups": groups} if groups is not None and accepts_groups(base) else {}

        self.meta_ = None
        self.oof_probas_ = None
        if mode in ("learned", "stacking"):
            # Out-of-fold likelihoods of the training data only: whatever
            # the caller holds out for testing never reaches this point.
            splits = make_inner_cv(
                y, groups, n_splits=self.inner_cv, random_state=self.random_state
            )
            self.oof_probas_ = {
                name: _out_of_fold_probas(base, X[:, start:stop], y, groups if fit_params else None,
                                          splits, n_jobs=self.n_jobs)
                for name, start, stop in views
            }
        self._fit_fusion(y, fixed)

        self.estimators_ = []
        for name, start, stop in views:
            est = clone(base).fit(X[:, start:stop], y, **fit_params)
            if not np.array_equal(np.asarray(est.classes_), self.classes_):
                raise ValueError(
                    f"The classifier of view {name!r} reports classes {est.classes_}, "
                    f"not the sorted labels {self.classes_}."
                )
            self.estimators_.append(est)
        self.views_ = views
        return self

    def _fit_fusion(self, y, fixed):
        """Set ``weights_`` / ``meta_`` from fixed weights or the out-of-fold likelihoods."""
        mode = self.weights if isinstance(self.weights, str) else "fixed"
        self.weights_, self.meta_ = fixed, None
        if mode == "learned":
            self.weights_ = learn_weights(
                list(self.oof_probas_.values()), y, step=self.weight_step, rule=self.rule, classes=self.classes_
            )
        elif mode == "stacking":
            self.weights_ = None
            Z = np.hstack(list(self.oof_probas_.values()))
            tested = ~np.isnan(Z).any(axis=1)
            self.meta_ = LogisticRegression(max_iter=1000).fit(Z[tested], np.asarray(y)[tested])

    def with_fusion(self, weights, y):
        """A fitted copy that keeps these view classifiers and fuses them with ``weights``.

        Compares fusion rules without refitting the views (evaluation tables).
        ``"learned"`` and ``"stacking"`` are fitted on the out-of-fold
        likelihoods this classifier stored, so it must have been fitted with
        one of them; ``y`` are its training labels.

        Returns
        -------
        LateFusionClassifier
        """
        check_is_fitted(self)
        new = clone(self).set_params(weights=weights)
        mode = weights if isinstance(weights, str) else "fixed"
        if mode in ("learned", "stacking") and self.oof_probas_ is None:
            raise ValueError(f"weights={weights!r} needs out-of-fold likelihoods: fit with 'learned' or 'stacking' first.")
        for attr in ("n_features_in_", "classes_", "view_names_", "views_", "estimators_", "oof_probas_"):
            setattr(new, attr, getattr(self, attr))
        fixed = None if mode in ("learned", "stacking") else new._fixed_weights(self.view_names_)
        new._fit_fusion(np.asarray(y), fixed)
        return new

    # -- prediction --------------------------------------------------------

    @staticmethod
    def _check_fit_data(X, y):
        if isinstance(X, Ragged):  # windows of each track; y is per track
            y = np.asarray(y)
            if y.shape != (len(X),):
                raise ValueError(f"y must hold one label per track ({len(X)}); got shape {y.shape}.")
            return X, y
        return check_X_y(X, y, dtype=np.float64)

    def _check_X(self, X):
        check_is_fitted(self)
        if not isinstance(X, Ragged):
            X = check_array(X, dtype=np.float64)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but LateFusionClassifier was fitted "
                f"with {self.n_features_in_}."
            )
        return X

    def predict_proba_views(self, X):
        """Each view's own class likelihoods.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        dict of str to ndarray of shape (n_samples, n_classes)
            View name to likelihoods, in ``views`` order.
        """
        X = self._check_X(X)
        return {
            name: est.predict_proba(X[:, start:stop])
            for (name, start, stop), est in zip(self.views_, self.estimators_)
        }

    def predict_proba(self, X):
        """Fused class likelihoods.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Rows sum to 1; columns follow ``classes_``.
        """
        X = self._check_X(X)
        if self.meta_ is not None:
            per_view = self.predict_proba_views(X)
            proba = self.meta_.predict_proba(np.hstack(list(per_view.values())))
            if len(self.meta_.classes_) == len(self.classes_):
                return proba
            # A class with no out-of-fold likelihoods (one group, see make_inner_cv) is unknown to
            # the meta-classifier: it gets likelihood 0.
            full = np.zeros((proba.shape[0], len(self.classes_)))
            full[:, np.searchsorted(self.classes_, self.meta_.classes_)] = proba
            return full
        # Views with zero weight do not change the fusion; skip their cost.
        used = [i for i, w in enumerate(self.weights_) if w > 0]
        probas = [
            self.estimators_[i].predict_proba(X[:, self.views_[i][1] : self.views_[i][2]])
            for i in used
        ]
        return fuse_probabilities(
            probas, [self.weights_[i] for i in used], rule=self.rule
        )

    def predict(self, X):
        """Class with the highest fused likelihood.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
