"""Per-view classifiers on frozen CNN features.

Gwardys & Grzywczak (2014) train one classifier per spectrogram view
(original, harmonic, percussive) and fuse the class likelihoods. This module
holds the classifiers, all scikit-learn estimators:

``ViewSVM``
    Standardisation + RBF SVM with Platt-scaled likelihoods; ``C`` and
    ``gamma`` picked by inner cross-validation on the training data when not
    given (the paper's classifier).
``LinearHead``
    Standardisation + multinomial logistic regression with ``C`` picked by
    inner cross-validation; fast on many rows (features reduced once per
    training set, a warm-started C path, float32 products).
``SoftmaxHead``
    The paper's "fine-tuning": a new softmax output layer trained (torch,
    full-batch L-BFGS or Adam) on frozen penultimate features, with early stopping on a
    stratified held-out part of the training data.
``WindowedClassifier``
    Wraps any of the above so that it learns from the windows of tracks (a
    :class:`~genrevision.features.ragged.Ragged` matrix, any number of windows per
    track) and averages the window log-likelihoods per track.

Every ``fit`` accepts ``groups``: samples sharing a group (the windows of one
track, or the tracks of one artist) are never split across the two sides of
an inner cross-validation or validation split.
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
from sklearn import config_context
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import (
    StratifiedGroupKFold,
    StratifiedKFold,
    train_test_split,
)
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

from .._utils.early_stopping import EarlyStopping
from .._utils.validation import Grid, Interval, Options, check_grid, check_scalar, validate_params

__all__ = [
    "ViewSVM",
    "LinearHead",
    "SoftmaxHead",
    "WindowedClassifier",
    "make_inner_cv",
    "accepts_groups",
]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def _check_groups(groups, n_samples):
    if groups is None:
        return None
    groups = np.asarray(groups)
    if groups.ndim != 1 or groups.shape[0] != n_samples:
        raise ValueError(
            f"groups must be a 1-D array with one entry per sample ({n_samples}); "
            f"got shape {groups.shape}."
        )
    return groups


def accepts_groups(estimator):
    """Return whether ``estimator.fit`` takes a ``groups`` argument.

    Parameters
    ----------
    estimator : estimator object

    Returns
    -------
    bool
    """
    try:
        return "groups" in inspect.signature(estimator.fit).parameters
    except (AttributeError, TypeError, ValueError):
        return False


def make_inner_cv(y, groups=None, *, n_splits=3, random_state=0, one_group="train"):
    """Stratified inner cross-validation splits, groups kept together.

    The number of folds is ``min(n_splits, smallest class size)``, where a
    class's size counts distinct groups when ``groups`` is given, so that every
    training fold sees every class.

    With ``groups`` (artists, albums or tracks), a class whose samples all
    belong to one group cannot be validated on a group the inner model did not
    train on: its samples stay on the training side of every fold (so every
    inner model still knows the class) and are never scored; the other
    classes set the number of folds. A hyper-parameter search then never
    selects for recognising a group it saw (Sturm's "horse" effect, and the
    artist/album filter of Pampalk et al., ISMIR 2005).

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    groups : array-like of shape (n_samples,), default=None
        Group labels; samples of one group all land in the same fold.
    n_splits : int, default=3
        Largest number of folds wanted, at least 2.
    random_state : int or None, default=0
        Seed of the fold shuffling.
    one_group : {"train", "tracks"}, default="train"
        Where the samples of a class with one group go: the training side of
        every fold, or (where a partition is needed, e.g. Platt scaling's
        out-of-fold decision values) spread over the test parts sample by
        sample.

    Returns
    -------
    list of (ndarray, ndarray)
        ``(train_indices, test_indices)`` per fold; the test parts partition
        the samples (with ``one_group="train"``, those of classes with one
        group excepted).

    Raises
    ------
    ValueError
        If some class has fewer than 2 samples, or (with groups) fewer than
        2 classes have 2 groups, so that no stratified 2-fold split exists.
    """
    check_scalar(n_splits, "n_splits", kind=int, min=2)
    y = np.asarray(y)
    groups = _check_groups(groups, y.shape[0])
    classes = np.unique(y)
    if groups is None:
        sizes = [int(np.sum(y == c)) for c in classes]
    else:
        sizes = [np.unique(groups[y == c]).size for c in classes]
    single = [c for c, n in zip(classes, sizes) if n < 2] if groups is not None else []
    scored = [n for n in sizes if n >= 2] if groups is not None else sizes
    k = min(n_splits, min(scored)) if len(scored) >= 2 else 1
    counts = {c: int(np.sum(y == c)) for c in classes}
    partition = one_group == "tracks"  # the caller needs every sample tested once
    if groups is not None and k < 2 and single and sum(n >= 2 for n in counts.values()) >= 2:
        # Too few groups to validate across them (e.g. a nested search on a small training part):
        # spread the one-group classes sample by sample rather than fail, and say so. A class of
        # one sample cannot be validated at all: it stays on the training side of every fold.
        k = min([n_splits] + scored + [counts[c] for c in single if counts[c] >= 2])
        one_group = "tracks"
        spread = [str(c) for c in single if counts[c] >= 2]
        kept = [str(c) for c in single if counts[c] < 2]
        warnings.warn("inner cross-validation: fewer than 2 classes have 2 groups here, so "
                      f"{', '.join(spread)} {'is' if len(spread) == 1 else 'are'} split by sample "
                      "(the same group on both sides of the inner folds)"
                      + (f"; {', '.join(kept)} (one sample) only trains" if kept else ""), stacklevel=2)
    if k < 2:
        short = [(c, counts[c], n) for c, n in zip(classes, sizes) if n < 2]
        if groups is None:
            which = ", ".join(f"class {str(c)!r} has {t} sample{'s' * (t != 1)}" for c, t, _ in short)
            raise ValueError(
                f"Inner cross-validation needs at least 2 samples per class; {which}. "
                "Add tracks of that class, or fix the hyper-parameters (e.g. Recipe.C) "
                "so that no inner search is needed."
            )
        which = ", ".join(f"class {str(c)!r} has {t} sample{'s' * (t != 1)} in {n} group{'s' * (n != 1)}"
                          for c, t, n in short)
        raise ValueError(
            "Inner cross-validation needs at least 2 classes with 2 groups (artists/albums) each; "
            f"{which}. Add tracks of those classes from other groups, drop the group column, or fix "
            "the hyper-parameters (e.g. Recipe.C) so that no inner search is needed."
        )
    dummy = np.zeros((y.shape[0], 1))
    if groups is None:
        cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)
        return list(cv.split(dummy, y))
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=random_state)
    if not single:
        return list(cv.split(dummy, y, groups))
    if one_group not in ("train", "tracks"):
        raise ValueError(f"one_group must be 'train' or 'tracks'; got {one_group!r}.")
    held = np.isin(y, single)
    rest = np.flatnonzero(~held)
    always = np.flatnonzero(held)
    parts = ([rest[te] for _, te in cv.split(dummy[rest], y[rest], groups[rest])] if rest.size
             else [np.zeros(0, int)] * k)
    if one_group == "tracks":
        once = [str(c) for c in single if counts[c] < 2]
        if once and partition:  # a partition must test every sample, and a class seen once cannot be
            raise ValueError(f"Inner cross-validation that tests every sample (e.g. Platt scaling) needs at least "
                             f"2 samples per class; {', '.join(once)} {'has' if len(once) == 1 else 'have'} one.")
        rng = np.random.default_rng(random_state)
        for c in single:
            if counts[c] < 2:  # never tested: it trains in every fold
                continue
            for i, idx in enumerate(rng.permutation(np.flatnonzero(y == c))):
                parts[i % k] = np.append(parts[i % k], idx)
        everything = np.arange(y.shape[0])
        return [(np.setdiff1d(everything, te), np.sort(te)) for te in parts]
    return [(np.sort(np.concatenate([np.setdiff1d(rest, te), always])), np.sort(te)) for te in parts]


def _validate_fit_data(estimator, X, y):
    X, y = check_X_y(X, y, dtype=np.float64)
    classes = np.unique(y)
    if classes.size < 2:
        raise ValueError(
            f"{type(estimator).__name__} needs at least 2 classes in y; got "
            f"{classes.size}."
        )
    estimator.n_features_in_ = X.shape[1]
    return X, y, classes


def _validate_predict_data(estimator, X):
    check_is_fitted(estimator)
    X = check_array(X, dtype=np.float64)
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} was "
            f"fitted with {estimator.n_features_in_}."
        )
    return X


class _ProbaClassifierMixin:
    """``predict`` as the arg-max of ``predict_proba``."""

    def predict(self, X):
        """Most likely class per sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


# --------------------------------------------------------------------------
# RBF SVM
# --------------------------------------------------------------------------


class ViewSVM(_ProbaClassifierMixin, ClassifierMixin, BaseEstimator):
    """Standardised RBF SVM with Platt-scaled class likelihoods.

    The paper's per-view classifier. When ``C`` or ``gamma`` is None it is
    chosen by a stratified inner cross-validation (accuracy) on the training
    data only. Likelihoods come from sigmoid (Platt) calibration of the SVM
    scores on out-of-fold decisions of the same inner folds, then one SVM is
    refitted on all training data (what ``SVC(probability=True)`` did before
    scikit-learn deprecated it).

    Parameters
    ----------
    C : float or None, default=None
        SVM regularisation; None searches ``C_grid``.
    gamma : float, "scale" or None, default=None
        RBF width; "scale" means ``1 / (n_features * var)`` of the
        standardised training features (about ``1 / n_features``); None
        searches ``gamma_grid`` times that scale.
    C_grid : sequence of float, default=(1.0, 10.0, 100.0)
        Candidates for ``C`` when ``C`` is None.
    gamma_grid : sequence of float, default=(0.1, 1.0, 10.0)
        Candidates for ``gamma`` as multiples of the "scale" value, used when
        ``gamma`` is None.
    inner_cv : int, default=3
        Largest number of inner folds (at least 2); reduced to the smallest
        class size (in groups, when groups are given).
    random_state : int or None, default=0
        Seed for the inner fold shuffling.
    n_jobs : int or None, default=None
        Parallel jobs of the grid search.

    Attributes
    ----------
    scaler_ : StandardScaler
        Fitted on all training data.
    calibrated_ : CalibratedClassifierCV
        Sigmoid-calibrated SVC on the precomputed RBF kernel of the
        standardised training data (the same model as StandardScaler +
        CalibratedClassifierCV(SVC(kernel="rbf")), computed once per gamma).
    support_vectors_ : ndarray
        Standardised training rows the SVM keeps (its kernel columns at
        prediction time).
    classes_ : ndarray of shape (n_classes,)
        Sorted class labels.
    best_params_ : dict
        ``{"C": float, "gamma": float}`` used by the final SVM.
    n_features_in_ : int
    """

    def __init__(
        self,
        *,
        C=None,
        gamma=None,
        C_grid=(1.0, 10.0, 100.0),
        gamma_grid=(0.1, 1.0, 10.0),
        inner_cv=3,
        random_state=0,
        n_jobs=None,
    ):
        self.C = C
        self.gamma = gamma
        self.C_grid = C_grid
        self.gamma_grid = gamma_grid
        self.inner_cv = inner_cv
        self.random_state = random_state
        self.n_jobs = n_jobs

    _parameter_constraints = {
        "C": Interval(float, 0, None, closed="neither", none_ok=True),
        "gamma": (Interval(float, 0, None, closed="neither", none_ok=True), Options(("scale",))),
        "C_grid": Grid(0),
        "gamma_grid": Grid(0),
        "inner_cv": Interval(int, 2, None),
    }

    def _check_params(self):
        validate_params(self, self._parameter_constraints)

    def fit(self, X, y, groups=None):
        """Fit the scaler, choose C/gamma if needed, fit the calibrated SVM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,), default=None
            Samples sharing a group stay on one side of every inner split.

        Returns
        -------
        self
        """
        self._check_params()
        X, y, self.classes_ = _validate_fit_data(self, X, y)
        groups = _check_groups(groups, X.shape[0])
        splits = make_inner_cv(
            y, groups, n_splits=self.inner_cv, random_state=self.random_state
        )

        # sklearn's gamma="scale" rule on the standardised features, computed
        # once so the grid is a set of plain numbers.
        var = StandardScaler().fit_transform(X).var()
        scale = 1.0 / (X.shape[1] * var) if var > 0 else 1.0
        if self.gamma is None:
            gammas = [float(m) * scale for m in self.gamma_grid]
        elif isinstance(self.gamma, str):
            gammas = [scale]
        else:
            gammas = [float(self.gamma)]
        Cs = [float(c) for c in self.C_grid] if self.C is None else [float(self.C)]

        if len(Cs) * len(gammas) > 1:
            C, gamma = _rbf_grid_search(X, y, splits, Cs, gammas, n_jobs=self.n_jobs)
        else:
            C, gamma = Cs[0], gammas[0]
        self.best_params_ = {"C": C, "gamma": gamma}

        if groups is not None and any(np.unique(groups[y == c]).size < 2 for c in self.classes_):
            # Platt scaling needs out-of-fold decision values of every sample.
            splits = make_inner_cv(y, groups, n_splits=self.inner_cv, random_state=self.random_state,
                                   one_group="tracks")
        # The calibrated SVM of StandardScaler + CalibratedClassifierCV(SVC(rbf), cv=splits,
        # ensemble=False) on one kernel matrix: the scaler is fitted on all of X (as that pipeline
        # did), so every inner fold's kernel is a block of the full one.
        self.scaler_ = StandardScaler().fit(X)
        Z = self.scaler_.transform(X)
        K = _rbf(_sq_dists(Z, Z, same=True), gamma)
        with _own_kernels():
            self.calibrated_ = CalibratedClassifierCV(
                SVC(kernel="precomputed", C=C), method="sigmoid", cv=splits, ensemble=False
            ).fit(K, y)
        # Only the support vectors' kernel columns are read at prediction time.
        svc = self.calibrated_.calibrated_classifiers_[0].estimator
        self.support_ = np.asarray(svc.support_)
        self.support_vectors_ = Z[self.support_]
        self.n_train_ = Z.shape[0]
        return self

    def _test_kernel(self, X):
        Z = self.scaler_.transform(X)
        K = np.zeros((Z.shape[0], self.n_train_))
        K[:, self.support_] = _rbf(_sq_dists(Z, self.support_vectors_), self.best_params_["gamma"])
        return K

    def predict_proba(self, X):
        """Class likelihoods.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Rows sum to 1; columns follow ``classes_``.
        """
        X = _validate_predict_data(self, X)
        if hasattr(self, "pipeline_"):  # fitted before the precomputed kernels (a model file)
            return self.pipeline_.predict_proba(X)
        return self.calibrated_.predict_proba(self._test_kernel(X))


def _sq_dists(A, B, *, same=False):
    """Squared Euclidean distances between the rows of A and B (float64, BLAS, never below 0)."""
    D = np.einsum("ij,ij->i", A, A)[:, None] + np.einsum("ij,ij->i", B, B)[None, :]
    D -= 2.0 * (A @ B.T)
    np.maximum(D, 0.0, out=D)
    if same:
        np.fill_diagonal(D, 0.0)
    return D


def _rbf(D, gamma):
    return np.exp(-float(gamma) * D)


def _own_kernels():
    """scikit-learn's per-call checks off for the SVMs fitted on kernels made here (finite by
    construction, parameters checked once by ViewSVM): a paper-recipe fold runs ~560 of them, and the
    checks cost ~7 % of its time. The fits and their results are unchanged."""
    return config_context(assume_finite=True, skip_parameter_validation=True)


def _grid_split_scores(X, y, train, test, Cs, gammas):
    """Accuracy of every (C, gamma) on one inner split, in GridSearchCV's candidate order."""
    from sklearn.metrics import accuracy_score

    scaler = StandardScaler().fit(X[train])  # as the searched Pipeline: fitted on the inner training part
    Ztr, Zte = scaler.transform(X[train]), scaler.transform(X[test])
    Dtr, Dte = _sq_dists(Ztr, Ztr, same=True), _sq_dists(Zte, Ztr)
    scores = np.empty((len(Cs), len(gammas)))
    with _own_kernels():
        for gi, g in enumerate(gammas):
            Ktr, Kte = _rbf(Dtr, g), _rbf(Dte, g)  # one kernel per gamma, shared by every C
            for ci, C in enumerate(Cs):
                svc = SVC(kernel="precomputed", C=C).fit(Ktr, y[train])
                scores[ci, gi] = accuracy_score(y[test], svc.predict(Kte))
    return scores.ravel()  # C outer, gamma inner: ParameterGrid's order of {"svc__C", "svc__gamma"}


def _rbf_grid_search(X, y, splits, Cs, gammas, *, n_jobs=None):
    """(C, gamma) that GridSearchCV(StandardScaler + SVC(rbf), cv=splits, scoring="accuracy") picks.

    Same candidates, same per-split scaling, same mean-accuracy ranking and tie
    rule (the first best candidate); each split's distances are computed once
    and each gamma's kernel once for every C, instead of libsvm computing the
    kernel again in each of len(Cs) * len(gammas) fits.
    """
    from scipy.stats import rankdata

    if n_jobs in (None, 1):
        per_split = [_grid_split_scores(X, y, tr, te, Cs, gammas) for tr, te in splits]
    else:
        from joblib import Parallel, delayed

        per_split = Parallel(n_jobs=n_jobs)(delayed(_grid_split_scores)(X, y, tr, te, Cs, gammas)
                                            for tr, te in splits)
    means = np.average(np.stack(per_split, axis=1), axis=1)
    best = int(np.argmin(rankdata(-means, method="min")))
    return Cs[best // len(gammas)], gammas[best % len(gammas)]


# --------------------------------------------------------------------------
# logistic regression head
# --------------------------------------------------------------------------


def column_stats(X, *, chunk_rows=4096):
    """Mean and standard deviation of every column (zero spread → 1), float64,
    accumulated over row chunks so no float64 copy of ``X`` is made."""
    n, d = X.shape
    total, sq = np.zeros(d), np.zeros(d)
    for start in range(0, n, chunk_rows):
        block = X[start : start + chunk_rows].astype(np.float64)
        total += block.sum(axis=0)
        sq += np.square(block).sum(axis=0)
    mean = total / n
    scale = np.sqrt(np.maximum(sq / n - mean * mean, 0.0))
    scale[scale <= 1e-12 * np.maximum(np.abs(mean), 1.0)] = 1.0
    return mean, scale


def reduce_rows(X, *, mean, scale, n_components=512, max_fit_rows=2048, random_state=0):
    """Orthonormal basis that keeps what an L2 linear model needs of standardised ``X``.

    An L2-penalised linear model's weights lie in the span of its training
    rows (representer theorem), so when ``X`` has no more rows than
    ``n_components`` the basis of that span is returned and a model fitted on
    ``Xs @ V`` (``Xs = (X - mean) / scale``) predicts exactly like one fitted
    on ``Xs``, with at most ``n_rows`` columns instead of thousands. With more
    rows it is the top ``n_components`` principal axes of a seeded sample of
    at most ``max_fit_rows`` rows: the cost stays flat in the number of rows.
    Only the rows used are standardised (no copy of a large ``X``).

    Parameters
    ----------
    X : ndarray of shape (n_rows, n_features), float32
    mean, scale : ndarray of shape (n_features,)
        Standardisation of the columns (see :func:`column_stats`).
    n_components : int, default=512
        Largest basis size, >= 1.
    max_fit_rows : int, default=2048
        Rows sampled to find the principal axes when there are more rows than
        ``n_components``; >= n_components.
    random_state : int, default=0

    Returns
    -------
    ndarray of shape (n_features, rank), float32, or None
        None when no smaller basis exists (no more features than rows, or
        than ``n_components``).
    """
    check_scalar(n_components, "n_components", kind=int, min=1)
    check_scalar(max_fit_rows, "max_fit_rows", kind=int, min=n_components)
    n, d = X.shape
    exact = n <= n_components
    if d <= (n if exact else n_components):
        return None  # no fewer columns to be had
    rows = X if exact or n <= max_fit_rows else X[np.sort(
        np.random.default_rng(random_state).choice(n, max_fit_rows, replace=False))]
    Xs = (rows - mean.astype(np.float32)) / scale.astype(np.float32)
    # Eigen-decomposition of the (rows × rows) Gram matrix: Xs = U S Vt, so
    # V = Xst U / S; far cheaper than an SVD of the wide matrix. The Gram
    # matrix is formed in float64: in float32 a direction the rows do not span
    # (e.g. the one centring removes) gets an eigenvalue of rounding noise near
    # the float32 cut below, kept or not depending on the BLAS kernel.
    from scipy.linalg import eigh

    Xs64 = Xs.astype(np.float64)
    gram = Xs64 @ Xs64.T
    del Xs64
    with _one_blas_thread():  # LAPACK's eigen-solver gains nothing from threads here
        evals, evecs = eigh(gram, overwrite_a=True, check_finite=False, driver="evd")
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    keep = evals > max(evals[0], 0.0) * _rank_tolerance(len(rows), d)
    if not exact:
        keep[n_components:] = False
    keep[0] = True
    V = (Xs.T @ evecs[:, keep].astype(np.float32)) / np.sqrt(np.maximum(evals[keep], 1e-30)).astype(np.float32)
    return np.ascontiguousarray(V, dtype=np.float32)


def _rank_tolerance(n_rows, n_features):
    """Relative eigenvalue cut of :func:`reduce_rows`'s Gram matrix.

    numpy's ``matrix_rank`` rule for the float32 data (a singular value below
    ``max(n_rows, n_features) * eps32`` times the largest is noise), squared
    because Gram eigenvalues are squared singular values. Directions the rows
    do not span sit near float64 rounding (~1e-12 relative), far below it, and
    every direction the float32 rows can resolve is far above it, whatever the
    BLAS kernel.
    """
    return (max(n_rows, n_features) * float(np.finfo(np.float32).eps)) ** 2


def standardise_and_reduce(X, mean, scale, V):
    """``((X - mean) / scale) @ V`` (or the standardised ``X`` when V is None), float32,
    without a full-size standardised copy of ``X``."""
    m, sc = mean.astype(np.float32), scale.astype(np.float32)
    if V is None:
        return (X - m) / sc
    Vs = V / sc[:, None]
    return X @ Vs - m @ Vs


def _softmax_rows(logits):
    logits = logits - logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def fit_logistic_path(Z, y_idx, Cs, *, n_classes, sample_weight=None, max_iter=1000, tol=1e-4):
    """Multinomial L2 logistic regression along ``Cs``, each fit warm-started from the last.

    Minimises ``mean_w(cross-entropy) + ||W||² / (2 C sum(w))`` (scikit-learn's
    ``LogisticRegression`` objective, intercept not penalised) with L-BFGS on
    float32 products. The variables are scaled by the square root of the
    diagonal curvature of each feature (exactly right for the orthogonal
    columns :func:`reduce_rows` produces), which cuts the iterations several-fold;
    the solution is the same.

    Parameters
    ----------
    Z : ndarray of shape (n_rows, n_features), float32
    y_idx : ndarray of int, class index per row
    Cs : sequence of float
        Inverse regularisation strengths, solved in the given order
        (increasing C makes each warm start close to the next solution).
    n_classes : int
    sample_weight : ndarray of shape (n_rows,), optional
    max_iter, tol : L-BFGS iterations and gradient tolerance per C.

    Returns
    -------
    list of (W, b) per C: W (n_classes, n_features) float32, b (n_classes,) float64.
    """
    from scipy.optimize import minimize

    Z = np.ascontiguousarray(Z, dtype=np.float32)
    n, d = Z.shape
    w = np.ones(n, np.float64) if sample_weight is None else np.asarray(sample_weight, np.float64)
    sw_sum = float(w.sum())
    wn = (w / sw_sum).astype(np.float32)
    onehot = np.zeros((n, n_classes), np.float32)
    onehot[np.arange(n), y_idx] = 1.0
    # Curvature of the loss along each column is about (weighted mean of z²) / 4.
    col_curv = (wn @ np.square(Z)).astype(np.float64) / 4.0
    nw = n_classes * d

    def objective(theta, alpha, pre):
        W = (theta[:nw].reshape(n_classes, d) / pre).astype(np.float32)
        b = (2.0 * theta[nw:]).astype(np.float32)  # intercept curvature is about 1/4 too
        logits = Z @ W.T + b
        m = logits.max(axis=1, keepdims=True)
        lse = m[:, 0] + np.log(np.exp(logits - m).sum(axis=1))
        loss = float(np.dot(wn, lse - logits[np.arange(n), y_idx])) + 0.5 * alpha * float(np.sum(np.square(W, dtype=np.float64)))
        g = _softmax_rows(logits)
        g -= onehot
        g *= wn[:, None]
        grad = np.empty_like(theta)
        grad[:nw] = ((g.T @ Z + alpha * W) / pre).ravel()
        grad[nw:] = 2.0 * g.sum(axis=0)
        return loss, grad

    W = np.zeros((n_classes, d))
    b = np.zeros(n_classes)
    out = []
    with _one_blas_thread():
        for C in Cs:
            alpha = 1.0 / (float(C) * sw_sum)
            pre = np.sqrt(col_curv + alpha)[None, :]
            theta = np.concatenate([(W * pre).ravel(), b / 2.0])
            res = minimize(objective, theta, args=(alpha, pre), jac=True, method="L-BFGS-B",
                           options={"maxiter": max_iter, "gtol": tol, "ftol": 64 * np.finfo(float).eps, "maxls": 50})
            W = res.x[:nw].reshape(n_classes, d) / pre
            b = 2.0 * res.x[nw:]
            out.append((W.astype(np.float32), b.copy()))
    return out


def _one_blas_thread():
    """One BLAS thread for the solver: its products have ~10 columns (memory-bound)
    and L-BFGS's own vector operations are tiny, so thread hand-offs cost more than
    they save, and on a busy machine spinning BLAS threads make them 10-50x slower."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1)


def _log_loss(Z, y_idx, W, b, weights):
    p = _softmax_rows(Z @ W.T + b.astype(np.float32))
    picked = np.clip(p[np.arange(len(y_idx)), y_idx], 1e-15, None)
    return float(np.average(-np.log(picked), weights=weights))


class LinearHead(_ProbaClassifierMixin, ClassifierMixin, BaseEstimator):
    """Standardised multinomial logistic regression with tuned regularisation, fast on many rows.

    Fitting standardises the features, reduces them once with
    :func:`reduce_rows` (the exact span of the training rows when there are
    at most ``n_components`` of them, else their principal axes), chooses
    ``C`` by inner cross-validation along a warm-started path of
    ``C_grid``, and refits on all rows. The reduction and the scaling are
    folded into the weights, so prediction is one matrix product on the
    original features. Nothing is fitted on data outside ``X``.

    Parameters
    ----------
    C : float or None, default=None
        Inverse L2 strength; None searches ``C_grid`` by stratified inner
        cross-validation on the training data.
    C_grid : sequence of float, default=(1e-4, 1e-3, 1e-2, 1e-1, 1.0)
        Candidates for ``C``.
    inner_cv : int, default=3
        Largest number of inner folds (at least 2); reduced to the smallest
        class size (in groups, when groups are given).
    scoring : {"neg_log_loss", "accuracy"}, default="neg_log_loss"
        Inner selection score (on held-out rows, weighted like the fit).
    max_iter : int, default=1000
        L-BFGS iterations per C.
    tol : float, default=1e-4
        L-BFGS gradient tolerance.
    n_components : int, default=512
        Largest number of reduced dimensions (see :func:`reduce_rows`); on
        the shared GTZAN tracks 512 and 256 gave the same accuracy in every
        fold as the exact span (~1000 dimensions).
    random_state : int or None, default=0
        Seed for the inner fold shuffling and the row sample of the reduction.
    n_jobs : int or None, default=None
        Kept for API compatibility; the inner folds run in this process (the
        products already use every core).

    Attributes
    ----------
    coef_ : ndarray of shape (n_classes, n_features), float32
        Weights on the original (unscaled) features.
    intercept_ : ndarray of shape (n_classes,)
    classes_ : ndarray of shape (n_classes,)
    best_params_ : dict
        ``{"C": float}``.
    inner_scores_ : dict or None
        Mean inner score per C (None when C was fixed).
    n_components_ : int
        Dimensions the solver saw.
    n_features_in_ : int
    """

    def __init__(
        self,
        *,
        C=None,
        C_grid=(1e-4, 1e-3, 1e-2, 1e-1, 1.0),
        inner_cv=3,
        scoring="neg_log_loss",
        max_iter=1000,
        tol=1e-4,
        n_components=512,
        random_state=0,
        n_jobs=None,
    ):
        self.C = C
        self.C_grid = C_grid
        self.inner_cv = inner_cv
        self.scoring = scoring
        self.max_iter = max_iter
        self.tol = tol
        self.n_components = n_components
        self.random_state = random_state
        self.n_jobs = n_jobs

    _parameter_constraints = {
        "C": Interval(float, 0, None, closed="neither", none_ok=True),
        "C_grid": Grid(0),
        "inner_cv": Interval(int, 2, None),
        "max_iter": Interval(int, 1, None),
        "tol": Interval(float, 0, None, closed="neither"),
        "n_components": Interval(int, 1, None),
        "scoring": Options(("neg_log_loss", "accuracy")),
    }

    def _check_params(self):
        validate_params(self, self._parameter_constraints)

    def fit(self, X, y, groups=None, sample_weight=None):
        """Standardise, reduce, choose C if needed and fit.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,), default=None
            Samples sharing a group stay on one side of every inner split.
        sample_weight : array-like of shape (n_samples,), default=None
            Weight of each sample in the loss and the inner scores.

        Returns
        -------
        self
        """
        self._check_params()
        X, y = check_X_y(X, y, dtype=[np.float32, np.float64])
        X = X.astype(np.float32, copy=False)
        self.classes_ = np.unique(y)
        if self.classes_.size < 2:
            raise ValueError(f"LinearHead needs at least 2 classes in y; got {self.classes_.size}.")
        self.n_features_in_ = X.shape[1]
        groups = _check_groups(groups, X.shape[0])
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if w is not None and (w.shape != (X.shape[0],) or not np.all(np.isfinite(w)) or np.any(w < 0)):
            raise ValueError("sample_weight must be finite, >= 0, one per sample.")
        y_idx = np.searchsorted(self.classes_, y)

        mean, scale = column_stats(X)
        V = reduce_rows(X, mean=mean, scale=scale, n_components=self.n_components,
                        random_state=self.random_state or 0)
        Z = standardise_and_reduce(X, mean, scale, V)
        self.n_components_ = Z.shape[1]
        k = self.classes_.size
        fit = dict(n_classes=k, max_iter=self.max_iter, tol=self.tol)

        grid = sorted(float(c) for c in self.C_grid)
        self.inner_scores_ = None
        if self.C is None and len(grid) > 1:
            # The reduction is shared by the inner folds (it uses no labels); the
            # C path runs from the strongest penalty up, each fit warm-started.
            splits = make_inner_cv(y, groups, n_splits=self.inner_cv, random_state=self.random_state)
            scores = np.zeros(len(grid))
            for train, test in splits:
                path = fit_logistic_path(Z[train], y_idx[train], grid,
                                         sample_weight=None if w is None else w[train], **fit)
                for j, (W, b) in enumerate(path):
                    if self.scoring == "neg_log_loss":
                        scores[j] -= _log_loss(Z[test], y_idx[test], W, b, None if w is None else w[test])
                    else:
                        pred = np.argmax(Z[test] @ W.T + b, axis=1)
                        scores[j] += float(np.average(pred == y_idx[test], weights=None if w is None else w[test]))
            scores /= len(splits)
            best = int(np.argmax(scores))  # first of equal scores: the stronger penalty
            C = grid[best]
            self.inner_scores_ = dict(zip(grid, scores.tolist()))
            path_Cs = grid[: best + 1]
        else:
            C = float(self.C if self.C is not None else grid[0])
            path_Cs = [C]
        self.best_params_ = {"C": C}
        W, b = fit_logistic_path(Z, y_idx, path_Cs, sample_weight=w, **fit)[-1]
        # Fold reduction and scaling into the weights: logits = X @ coef.T + intercept.
        coef = (W if V is None else W @ V.T).astype(np.float64) / scale
        self.coef_ = coef.astype(np.float32)
        self.intercept_ = b - coef @ mean
        return self

    def decision_function(self, X):
        """Logits, (n_samples, n_classes)."""
        check_is_fitted(self)
        X = check_array(X, dtype=[np.float32, np.float64])
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but LinearHead was fitted with {self.n_features_in_}."
            )
        return (X.astype(np.float32, copy=False) @ self.coef_.T).astype(np.float64) + self.intercept_

    def predict_proba(self, X):
        """Class likelihoods.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        return _softmax_rows(self.decision_function(X))


# --------------------------------------------------------------------------
# softmax output layer ("fine-tuning")
# --------------------------------------------------------------------------


def _softmax(logits):
    logits = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


class SoftmaxHead(_ProbaClassifierMixin, ClassifierMixin, BaseEstimator):
    """A new softmax output layer trained on frozen, standardised features.

    The paper's "fine-tuning": only the last layer is learnt. Training is
    full-batch (L-BFGS or Adam) on the mean cross-entropy plus
    ``weight_decay / 2`` times the squared weights (biases not penalised);
    after every epoch (one optimiser step) the
    cross-entropy on a stratified held-out part of the training data is
    measured, training stops after ``patience`` epochs without improvement,
    and the weights of the best epoch are kept. Weights start at zero, so the
    only randomness is the held-out split.

    Parameters
    ----------
    weight_decay : float, default=1e-3
        L2 penalty on the weights, >= 0.
    solver : {"lbfgs", "adam"}, default="lbfgs"
        Full-batch optimiser; one L-BFGS iteration (with strong-Wolfe line
        search) or one Adam step per epoch.
    learning_rate : float, default=1e-3
        Adam step size, > 0 (unused by L-BFGS). Adam moves every weight by
        about this much per step, so high-dimensional features need it small.
    max_epochs : int, default=200
        Largest number of full-batch steps, >= 1.
    patience : int, default=20
        Epochs without validation improvement before stopping, >= 1.
    validation_fraction : float or None, default=0.1
        Share of the training data held out for early stopping, in (0, 0.5];
        None (or when the classes are too small to hold out at least one
        sample of each) trains for ``max_epochs`` on everything.
    random_state : int or None, default=0
        Seed of the held-out split.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    coef_ : ndarray of shape (n_classes, n_features)
        Weights on the standardised features.
    intercept_ : ndarray of shape (n_classes,)
    scaler_mean_ : ndarray of shape (n_features,)
    scaler_scale_ : ndarray of shape (n_features,)
    n_iter_ : int
        Epochs run.
    best_epoch_ : int
        Epoch whose weights were kept (1-based; 0 = the zero initialisation).
    validation_loss_ : float or None
        Held-out cross-entropy at ``best_epoch_``.
    n_features_in_ : int
    """

    def __init__(
        self,
        *,
        weight_decay=1e-3,
        solver="lbfgs",
        learning_rate=1e-3,
        max_epochs=200,
        patience=20,
        validation_fraction=0.1,
        random_state=0,
    ):
        self.weight_decay = weight_decay
        self.solver = solver
        self.learning_rate = learning_rate
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    _parameter_constraints = {
        "weight_decay": Interval(float, 0, None),
        "solver": Options(("lbfgs", "adam")),
        "learning_rate": Interval(float, 0, None, closed="neither"),
        "max_epochs": Interval(int, 1, None),
        "patience": Interval(int, 1, None),
        "validation_fraction": Interval(float, 0, 0.5, closed="right", none_ok=True),
    }

    def _check_params(self):
        validate_params(self, self._parameter_constraints)

    def _split(self, y, groups):
        """Indices (train, validation), or (all, None) when no split is possible."""
        n = y.shape[0]
        everything = (np.arange(n), None)
        if self.validation_fraction is None:
            return everything
        if groups is None:
            counts = np.unique(y, return_counts=True)[1]
            n_val = int(np.ceil(self.validation_fraction * n))
            if counts.min() < 2 or n_val < counts.size or n - n_val < counts.size:
                warnings.warn(
                    "SoftmaxHead: classes too small for a stratified held-out "
                    "split; training without early stopping.",
                    stacklevel=3,
                )
                return everything
            return train_test_split(
                np.arange(n),
                test_size=n_val,
                stratify=y,
                random_state=self.random_state,
            )
        # One fold of a stratified group k-fold is a held-out part of about
        # the wanted size that keeps every group on one side.
        k = max(2, int(round(1.0 / self.validation_fraction)))
        try:
            splits = make_inner_cv(
                y, groups, n_splits=k, random_state=self.random_state
            )
        except ValueError:
            warnings.warn(
                "SoftmaxHead: classes have too few groups for a held-out split; "
                "training without early stopping.",
                stacklevel=3,
            )
            return everything
        return splits[0]

    def fit(self, X, y, groups=None):
        """Train the softmax layer with early stopping.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
        groups : array-like of shape (n_samples,), default=None
            Samples sharing a group stay on one side of the held-out split.

        Returns
        -------
        self
        """
        import torch

        self._check_params()
        X, y, self.classes_ = _validate_fit_data(self, X, y)
        groups = _check_groups(groups, X.shape[0])
        # The per-epoch work is a few small matrix products, where torch's
        # thread hand-offs cost more than they save (10x on a busy machine).
        from ..features.backbone import torch_threads

        with torch_threads(1):
            self._fit_torch(torch, X, y, groups)
        return self

    def _fit_torch(self, torch, X, y, groups):
        y_idx = np.searchsorted(self.classes_, y)
        train, val = self._split(y, groups)

        # Standardise with training-part statistics only, so the held-out
        # loss is an honest estimate.
        mean = X[train].mean(axis=0)
        scale = X[train].std(axis=0)
        scale[scale == 0] = 1.0
        Xs = torch.from_numpy((X - mean) / scale)
        yt = torch.from_numpy(y_idx)
        n_classes, n_features = self.classes_.size, X.shape[1]

        W = torch.zeros(n_classes, n_features, dtype=torch.float64, requires_grad=True)
        b = torch.zeros(n_classes, dtype=torch.float64, requires_grad=True)
        ce = torch.nn.functional.cross_entropy
        tr = torch.from_numpy(np.asarray(train))
        va = None if val is None else torch.from_numpy(np.asarray(val))
        Xtr, ytr = Xs[tr], yt[tr]

        def closure():
            opt.zero_grad()
            loss = ce(Xtr @ W.T + b, ytr) + 0.5 * float(self.weight_decay) * (W * W).sum()
            loss.backward()
            return loss

        if self.solver == "lbfgs":
            # One L-BFGS iteration per epoch; its curvature history persists
            # between step() calls, and the line search makes it insensitive
            # to the feature dimension, unlike Adam's fixed per-weight steps.
            opt = torch.optim.LBFGS(
                [W, b],
                lr=1.0,
                max_iter=1,
                history_size=10,
                line_search_fn="strong_wolfe",
            )
        else:
            opt = torch.optim.Adam([W, b], lr=float(self.learning_rate))

        def val_loss():
            with torch.no_grad():
                return float(ce(Xs[va] @ W.T + b, yt[va]))

        stopper = EarlyStopping(self.patience, snapshot=lambda: (W.detach().clone(), b.detach().clone()),
                                min_delta=1e-10, initial_loss=val_loss() if va is not None else None)
        epoch = 0
        for epoch in range(1, self.max_epochs + 1):
            opt.step(closure)
            if stopper.update(epoch, val_loss() if va is not None else None):
                break

        self.validation_loss_, self.best_epoch_ = stopper.best_loss, stopper.best_epoch
        self.coef_ = stopper.best_state[0].numpy()
        self.intercept_ = stopper.best_state[1].numpy()
        self.scaler_mean_ = mean
        self.scaler_scale_ = scale
        self.n_iter_ = epoch

    def decision_function(self, X):
        """Logits of the softmax layer.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        X = _validate_predict_data(self, X)
        return ((X - self.scaler_mean_) / self.scaler_scale_) @ self.coef_.T + self.intercept_

    def predict_proba(self, X):
        """Class likelihoods (softmax of the logits).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        return _softmax(self.decision_function(X))


# --------------------------------------------------------------------------
# windows of a track
# --------------------------------------------------------------------------


def _group_balanced_weights(y, groups):
    """Per-sample weights: every group of a class weighs the same, every class keeps its sample count."""
    w = np.ones(len(y))
    for c in np.unique(y):
        in_c = y == c
        names, counts = np.unique(groups[in_c], return_counts=True)
        per_group = in_c.sum() / len(names)  # total weight of each group of class c
        w[in_c] = per_group / counts[np.searchsorted(names, groups[in_c])]
    return w


class WindowedClassifier(_ProbaClassifierMixin, ClassifierMixin, BaseEstimator):
    """Train on the windows of each track, predict by averaging per track.

    ``X`` is a :class:`~genrevision.features.ragged.Ragged` matrix: every window of
    every track as a row, tracks of any length (an 8 s clip has 2 windows, a
    long song up to the recipe's cap). ``fit`` learns a clone of
    ``estimator`` on the windows, each with its track's label; every track
    weighs the same in the loss whatever its number of windows (when the
    estimator's ``fit`` takes ``sample_weight``), and ``groups`` (the track,
    or the caller's group of the track) reach the estimator so that no inner
    cross-validation puts windows of one track on both sides. A track's
    likelihoods are the (geometric) mean of its windows'.

    Parameters
    ----------
    estimator : estimator object
        Window-level classifier with ``predict_proba``.
    aggregate : {"mean", "logmean", "lse"}, default="logmean"
        "mean" averages the window likelihoods; "logmean" averages their
        logarithms (a geometric mean, renormalised); "lse" pools the window
        log-likelihoods ``l_wc`` with a soft maximum,
        ``(1 / r) log mean_w exp(r l_wc)``: ``r = 0`` is the log-mean, a large
        ``r`` lets the window most sure of a class speak for it.
    sharpness : float or None, default=None
        ``r`` of "lse", >= 0; None chooses it from ``sharpness_grid`` by the
        track log-loss on inner folds of the training tracks (grouped), the
        window-level estimator refitted per inner fold with the
        hyper-parameters of its own fit (``best_params_``) when it has them.
    sharpness_grid : sequence of float, default=(0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
        Candidates for ``sharpness``.
    inner_cv : int, default=3
        Largest number of inner folds for choosing ``sharpness``, >= 2.
    balance_groups : bool, default=False
        Give every group of a class (the ``groups`` of ``fit``: artists,
        albums) the same total weight, instead of every track, so that a
        class is not learned mostly from its largest group. No effect
        without groups (each track its own group).

    Attributes
    ----------
    estimator_ : estimator object
        The fitted window-level clone.
    sharpness_ : float
        The "lse" sharpness used (0.0 for the other aggregates).
    inner_scores_ : dict or None
        Mean inner track log-likelihood per candidate sharpness (when chosen).
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    """

    def __init__(self, estimator, *, aggregate="logmean", sharpness=None,
                 sharpness_grid=(0.0, 0.25, 0.5, 1.0, 2.0, 4.0), inner_cv=3, balance_groups=False):
        self.estimator = estimator
        self.balance_groups = balance_groups
        self.aggregate = aggregate
        self.sharpness = sharpness
        self.sharpness_grid = sharpness_grid
        self.inner_cv = inner_cv

    _parameter_constraints = {
        "aggregate": Options(("mean", "logmean", "lse")),
        "sharpness": Interval(float, 0, None, none_ok=True),
        "inner_cv": Interval(int, 2, None),
    }

    @staticmethod
    def _ragged(X):
        from ..features.ragged import Ragged

        if not isinstance(X, Ragged):
            raise ValueError(
                "WindowedClassifier takes a genrevision.features.ragged.Ragged matrix (the windows of each "
                f"track); got {type(X).__name__}. Build one with Ragged.from_list or Ragged.from_fixed."
            )
        if not np.all(np.isfinite(X.data)):
            raise ValueError("X holds NaN or infinite values.")
        return X

    def fit(self, X, y, groups=None):
        """Fit the window-level estimator.

        Parameters
        ----------
        X : Ragged of n_tracks tracks
        y : array-like of shape (n_tracks,)
        groups : array-like of shape (n_tracks,), default=None
            Group per track (e.g. artist); default: each track its own group.

        Returns
        -------
        self
        """
        validate_params(self, self._parameter_constraints)
        if self.sharpness is None:
            check_grid(self.sharpness_grid, "sharpness_grid", min=0, include_min=True)
        grid = [self.sharpness] if self.sharpness is not None else self.sharpness_grid
        X = self._ragged(X)
        y = np.asarray(y)
        if y.shape != (len(X),):
            raise ValueError(f"y must hold one label per track ({len(X)}); got shape {y.shape}.")
        if np.unique(y).size < 2:
            raise ValueError(f"WindowedClassifier needs at least 2 classes in y; got {np.unique(y).size}.")
        self.n_features_in_ = X.shape[1]
        groups = _check_groups(groups, len(X))
        if groups is None:
            groups = np.arange(len(X))
        self.estimator_ = self._fit_windows(clone(self.estimator), X, y, groups)
        self.classes_ = np.asarray(self.estimator_.classes_)
        self.sharpness_, self.inner_scores_ = 0.0, None
        if self.aggregate == "lse":
            if self.sharpness is not None:
                self.sharpness_ = float(self.sharpness)
            elif len(grid) == 1:
                self.sharpness_ = float(grid[0])
            else:
                self.sharpness_ = self._choose_sharpness(X, y, groups, [float(r) for r in grid])
        return self

    def _fit_windows(self, est, X, y, groups):
        """``est`` fitted on the windows of ``X``, each with its track's label."""
        params = {}
        if accepts_groups(est):
            params["groups"] = X.repeat(groups)
        if "sample_weight" in inspect.signature(est.fit).parameters:
            # One unit of weight per track (mean row weight 1), whatever its window count.
            track_w = np.ones(len(X))
            if self.balance_groups:
                track_w = _group_balanced_weights(y, groups)
            params["sample_weight"] = X.repeat(track_w * len(X.data) / (len(X) * X.lengths))
        return est.fit(X.data, X.repeat(y), **params)

    def _choose_sharpness(self, X, y, groups, grid):
        """The grid value whose pooled held-out track log-likelihood is highest on inner folds."""
        # The inner refits reuse the hyper-parameters the full fit chose (e.g. C):
        # chosen on training tracks only, and it keeps this one inner search cheap.
        fixed = getattr(self.estimator_, "best_params_", None) or {}
        scores = np.zeros(len(grid))
        splits = make_inner_cv(y, groups, n_splits=self.inner_cv, random_state=0)
        for train, test in splits:
            est = self._fit_windows(clone(self.estimator).set_params(**fixed), X[train], y[train], groups[train])
            Xt = X[test]
            logp = np.log(np.clip(est.predict_proba(Xt.data), 1e-12, None))
            truth = np.searchsorted(self.classes_, y[test])
            for j, r in enumerate(grid):
                p = _softmax(_lse_pool(Xt, logp, r))
                scores[j] += np.mean(np.log(np.clip(p[np.arange(len(test)), truth], 1e-12, None)))
        scores /= len(splits)
        self.inner_scores_ = dict(zip(grid, scores.tolist()))
        return grid[int(np.argmax(scores))]  # first of equal scores: the gentler pooling

    def predict_proba_windows(self, X):
        """Likelihoods of every window, (n_windows_total, n_classes), rows in ``X.data`` order."""
        check_is_fitted(self)
        X = self._ragged(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but WindowedClassifier was fitted with {self.n_features_in_}."
            )
        return self.estimator_.predict_proba(X.data)

    def predict_proba(self, X):
        """Track likelihoods aggregated over windows.

        Parameters
        ----------
        X : Ragged of n_tracks tracks

        Returns
        -------
        ndarray of shape (n_tracks, n_classes)
            Rows sum to 1.
        """
        p = self.predict_proba_windows(X)
        if self.aggregate == "mean":
            out = X.mean(p)
        else:
            # Floor keeps one confident zero from vetoing a class outright.
            out = _softmax(_lse_pool(X, np.log(np.clip(p, 1e-12, None)), getattr(self, "sharpness_", 0.0)))
        return out / out.sum(axis=1, keepdims=True)


def _lse_pool(X, logp, r):
    """Per track, ``(1 / r) log mean_w exp(r logp_w)`` (the mean of ``logp`` when r = 0)."""
    if r == 0:
        return X.mean(logp)
    z = r * logp
    top = np.maximum.reduceat(z, X.offsets[:-1], axis=0)
    return (np.log(X.mean(np.exp(z - X.repeat(top)))) + top) / r
