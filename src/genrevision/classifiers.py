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
    inner cross-validation.
``SoftmaxHead``
    The paper's "fine-tuning": a new softmax output layer trained (torch,
    full-batch L-BFGS or Adam) on frozen penultimate features, with early stopping on a
    stratified held-out part of the training data.
``WindowedClassifier``
    Wraps any of the above so that it learns from the windows of a track and
    averages the window likelihoods per track.

Every ``fit`` accepts ``groups``: samples sharing a group (the windows of one
track, or the tracks of one artist) are never split across the two sides of
an inner cross-validation or validation split.
"""

from __future__ import annotations

import inspect
import numbers
import warnings

import numpy as np
from sklearn.base import TransformerMixin, BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import (
    GridSearchCV,
    StratifiedGroupKFold,
    StratifiedKFold,
    train_test_split,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_array, check_is_fitted, check_X_y

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


def _check_int(value, name, minimum):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Integral)
        or value < minimum
    ):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")


def _check_positive_float(value, name):
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not np.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")


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


def make_inner_cv(y, groups=None, *, n_splits=3, random_state=0):
    """Stratified inner cross-validation splits, groups kept together.

    The number of folds is ``min(n_splits, smallest class size)``, where a
    class's size counts distinct groups when ``groups`` is given, so that every
    training fold sees every class.

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

    Returns
    -------
    list of (ndarray, ndarray)
        ``(train_indices, test_indices)`` per fold; the test parts partition
        the samples.

    Raises
    ------
    ValueError
        If some class has fewer than 2 samples (2 groups), so that no
        stratified 2-fold split exists.
    """
    _check_int(n_splits, "n_splits", 2)
    y = np.asarray(y)
    groups = _check_groups(groups, y.shape[0])
    classes = np.unique(y)
    if groups is None:
        sizes = [int(np.sum(y == c)) for c in classes]
    else:
        sizes = [np.unique(groups[y == c]).size for c in classes]
    k = min(n_splits, min(sizes))
    if k < 2:
        short = [(c, int(np.sum(y == c)), n) for c, n in zip(classes, sizes) if n < 2]
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
            f"Inner cross-validation needs at least 2 groups per class; {which}. "
            "Add tracks of that class from another group (artist/album), drop the "
            "group column, or fix the hyper-parameters (e.g. Recipe.C) so that no "
            "inner search is needed."
        )
    dummy = np.zeros((y.shape[0], 1))
    if groups is None:
        cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=random_state)
        return list(cv.split(dummy, y))
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=random_state)
    return list(cv.split(dummy, y, groups))


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
    pipeline_ : Pipeline
        Fitted StandardScaler + CalibratedClassifierCV(SVC).
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

    def _check_params(self):
        if self.C is not None:
            _check_positive_float(self.C, "C")
        if self.gamma is not None and not (
            isinstance(self.gamma, str) and self.gamma == "scale"
        ):
            _check_positive_float(self.gamma, "gamma")
        for name in ("C_grid", "gamma_grid"):
            grid = getattr(self, name)
            if isinstance(grid, str) or len(grid) == 0:
                raise ValueError(
                    f"{name} must be a non-empty sequence of numbers > 0; got {grid!r}."
                )
            for v in grid:
                _check_positive_float(v, f"every entry of {name}")
        _check_int(self.inner_cv, "inner_cv", 2)

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
            search = GridSearchCV(
                Pipeline([("scale", StandardScaler()), ("svc", SVC(kernel="rbf"))]),
                {"svc__C": Cs, "svc__gamma": gammas},
                cv=splits,
                scoring="accuracy",
                n_jobs=self.n_jobs,
            )
            search.fit(X, y)
            C = search.best_params_["svc__C"]
            gamma = search.best_params_["svc__gamma"]
        else:
            C, gamma = Cs[0], gammas[0]
        self.best_params_ = {"C": C, "gamma": gamma}

        svc = SVC(kernel="rbf", C=C, gamma=gamma)
        self.pipeline_ = Pipeline(
            [
                ("scale", StandardScaler()),
                (
                    "svc",
                    CalibratedClassifierCV(
                        svc, method="sigmoid", cv=splits, ensemble=False
                    ),
                ),
            ]
        )
        self.pipeline_.fit(X, y)
        return self

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
        return self.pipeline_.predict_proba(X)


# --------------------------------------------------------------------------
# logistic regression head
# --------------------------------------------------------------------------


class RowSpan(TransformerMixin, BaseEstimator):
    """Coordinates in the span of the training rows (an exact speed-up for L2 linear models).

    An L2-penalised linear model's weights lie in the span of its training
    rows (representer theorem), so fitting it on ``X @ V``, with ``V`` an
    orthonormal basis of that span, gives the same predictions as on ``X``
    while the solver sees at most ``n_samples`` columns instead of thousands.
    When there are fewer features than samples it passes ``X`` through.

    Attributes
    ----------
    components_ : ndarray of shape (n_features, rank) or None
    """

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        if X.shape[0] >= X.shape[1]:
            self.components_ = None
            return self
        _, s, vt = np.linalg.svd(X, full_matrices=False)
        rank = int(np.sum(s > s[0] * 1e-10)) if s.size else 0
        self.components_ = vt[: max(rank, 1)].T
        return self

    def transform(self, X):
        X = np.asarray(X, dtype=np.float64)
        return X if self.components_ is None else X @ self.components_


def _fold_span(pipe: Pipeline) -> Pipeline:
    """scale → span → logreg as scale → logreg with the same predictions.

    The span projection is linear, so its basis can be multiplied into the
    weights once: the fitted head then keeps (n_classes, n_features) weights
    instead of an (n_features, n_training_rows) basis (a 70 MB model file
    becomes < 1 MB, and prediction skips one matrix product).
    """
    span, logreg = pipe.named_steps["span"], pipe.named_steps["logreg"]
    if span.components_ is not None:  # else the span passed X through unchanged
        logreg.coef_ = logreg.coef_ @ span.components_.T
        logreg.n_features_in_ = span.components_.shape[0]
    return Pipeline([("scale", pipe.named_steps["scale"]), ("logreg", logreg)])


class LinearHead(_ProbaClassifierMixin, ClassifierMixin, BaseEstimator):
    """Standardised multinomial logistic regression with tuned regularisation.

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
    scoring : str, default="neg_log_loss"
        Inner selection score (any scikit-learn scorer name).
    max_iter : int, default=1000
        L-BFGS iterations.
    random_state : int or None, default=0
        Seed for the inner fold shuffling.
    n_jobs : int or None, default=None
        Parallel jobs of the grid search.

    Attributes
    ----------
    pipeline_ : Pipeline
        Fitted StandardScaler + LogisticRegression (fitted in the span of the
        training rows, see :class:`RowSpan`, with the weights mapped back to
        the original features).
    classes_ : ndarray of shape (n_classes,)
    best_params_ : dict
        ``{"C": float}``.
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
        random_state=0,
        n_jobs=None,
    ):
        self.C = C
        self.C_grid = C_grid
        self.inner_cv = inner_cv
        self.scoring = scoring
        self.max_iter = max_iter
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, groups=None):
        """Choose C if needed and fit the logistic regression.

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
        if self.C is not None:
            _check_positive_float(self.C, "C")
        if isinstance(self.C_grid, str) or len(self.C_grid) == 0:
            raise ValueError(
                f"C_grid must be a non-empty sequence of numbers > 0; got {self.C_grid!r}."
            )
        for v in self.C_grid:
            _check_positive_float(v, "every entry of C_grid")
        _check_int(self.inner_cv, "inner_cv", 2)
        _check_int(self.max_iter, "max_iter", 1)
        X, y, self.classes_ = _validate_fit_data(self, X, y)
        groups = _check_groups(groups, X.shape[0])

        def pipe(C):
            return Pipeline(
                [
                    ("scale", StandardScaler()),
                    ("span", RowSpan()),
                    ("logreg", LogisticRegression(C=C, max_iter=self.max_iter)),
                ]
            )

        if self.C is None and len(self.C_grid) > 1:
            splits = make_inner_cv(
                y, groups, n_splits=self.inner_cv, random_state=self.random_state
            )
            # Scale and project once for the whole search: the inner models'
            # weights lie in the span of their rows, a subspace of this one, so
            # only the scaling statistics (no labels) are shared across inner folds.
            Z = Pipeline([("scale", StandardScaler()), ("span", RowSpan())]).fit_transform(X)
            search = GridSearchCV(
                LogisticRegression(max_iter=self.max_iter),
                {"C": [float(c) for c in self.C_grid]},
                cv=splits,
                scoring=self.scoring,
                n_jobs=self.n_jobs,
            )
            search.fit(Z, y)
            C = search.best_params_["C"]
        else:
            C = float(self.C if self.C is not None else self.C_grid[0])
        self.best_params_ = {"C": C}
        self.pipeline_ = _fold_span(pipe(C).fit(X, y))
        return self

    def predict_proba(self, X):
        """Class likelihoods.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        X = _validate_predict_data(self, X)
        return self.pipeline_.predict_proba(X)


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

    def _check_params(self):
        wd = self.weight_decay
        if isinstance(wd, bool) or not isinstance(wd, numbers.Real) or not wd >= 0:
            raise ValueError(f"weight_decay must be a number >= 0; got {wd!r}.")
        if self.solver not in ("lbfgs", "adam"):
            raise ValueError(f"solver must be 'lbfgs' or 'adam'; got {self.solver!r}.")
        _check_positive_float(self.learning_rate, "learning_rate")
        _check_int(self.max_epochs, "max_epochs", 1)
        _check_int(self.patience, "patience", 1)
        vf = self.validation_fraction
        if vf is not None and (
            isinstance(vf, bool) or not isinstance(vf, numbers.Real) or not 0 < vf <= 0.5
        ):
            raise ValueError(
                f"validation_fraction must be None or a number in (0, 0.5]; got {vf!r}."
            )

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
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            self._fit_torch(torch, X, y, groups)
        finally:
            torch.set_num_threads(threads)
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

        best = (val_loss() if va is not None else None, 0, W.detach().clone(), b.detach().clone())
        epoch, since_best = 0, 0
        for epoch in range(1, self.max_epochs + 1):
            opt.step(closure)
            if va is None:
                continue
            current = val_loss()
            if current < best[0] - 1e-10:
                best = (current, epoch, W.detach().clone(), b.detach().clone())
                since_best = 0
            else:
                since_best += 1
                if since_best >= self.patience:
                    break
        if va is None:
            best = (None, epoch, W.detach().clone(), b.detach().clone())

        self.validation_loss_, self.best_epoch_ = best[0], best[1]
        self.coef_ = best[2].numpy()
        self.intercept_ = best[3].numpy()
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


class WindowedClassifier(_ProbaClassifierMixin, ClassifierMixin, BaseEstimator):
    """Train on the windows of each track, predict by averaging per track.

    Each row of ``X`` holds the features of ``n_windows`` consecutive windows
    of one track, flattened window-major: columns ``[i*d, (i+1)*d)`` are
    window ``i``. ``fit`` learns a clone of ``estimator`` on one row per
    window, with the track's label, and passes ``groups`` (the track, or the
    caller's group of the track) to it when its ``fit`` takes ``groups``, so
    that no inner cross-validation puts windows of one track on both sides.

    Parameters
    ----------
    estimator : estimator object
        Window-level classifier with ``predict_proba``.
    n_windows : int
        Windows per track, >= 1; must divide the number of columns.
    aggregate : {"mean", "logmean"}, default="mean"
        "mean" averages the window likelihoods; "logmean" averages their
        logarithms (a geometric mean, renormalised).

    Attributes
    ----------
    estimator_ : estimator object
        The fitted window-level clone.
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    """

    def __init__(self, estimator, *, n_windows, aggregate="mean"):
        self.estimator = estimator
        self.n_windows = n_windows
        self.aggregate = aggregate

    def _windows(self, X):
        n, width = X.shape
        if width % self.n_windows:
            raise ValueError(
                f"X has {width} columns, which is not a multiple of "
                f"n_windows={self.n_windows}; each row must hold n_windows "
                "equally long window feature vectors."
            )
        return X.reshape(n * self.n_windows, width // self.n_windows)

    def fit(self, X, y, groups=None):
        """Fit the window-level estimator.

        Parameters
        ----------
        X : array-like of shape (n_tracks, n_windows * n_window_features)
        y : array-like of shape (n_tracks,)
        groups : array-like of shape (n_tracks,), default=None
            Group per track (e.g. artist); default: each track its own group.

        Returns
        -------
        self
        """
        _check_int(self.n_windows, "n_windows", 1)
        if self.aggregate not in ("mean", "logmean"):
            raise ValueError(
                f"aggregate must be 'mean' or 'logmean'; got {self.aggregate!r}."
            )
        X, y, classes = _validate_fit_data(self, X, y)
        groups = _check_groups(groups, X.shape[0])
        Xw = self._windows(X)
        yw = np.repeat(y, self.n_windows)
        if groups is None:
            groups = np.arange(X.shape[0])
        gw = np.repeat(groups, self.n_windows)
        self.estimator_ = clone(self.estimator)
        if accepts_groups(self.estimator_):
            self.estimator_.fit(Xw, yw, groups=gw)
        else:
            self.estimator_.fit(Xw, yw)
        self.classes_ = np.asarray(self.estimator_.classes_)
        return self

    def predict_proba_windows(self, X):
        """Likelihoods of every window.

        Parameters
        ----------
        X : array-like of shape (n_tracks, n_windows * n_window_features)

        Returns
        -------
        ndarray of shape (n_tracks, n_windows, n_classes)
        """
        X = _validate_predict_data(self, X)
        p = self.estimator_.predict_proba(self._windows(X))
        return p.reshape(X.shape[0], self.n_windows, -1)

    def predict_proba(self, X):
        """Track likelihoods aggregated over windows.

        Parameters
        ----------
        X : array-like of shape (n_tracks, n_windows * n_window_features)

        Returns
        -------
        ndarray of shape (n_tracks, n_classes)
            Rows sum to 1.
        """
        p = self.predict_proba_windows(X)
        if self.aggregate == "mean":
            out = p.mean(axis=1)
        else:
            # Floor keeps one confident zero from vetoing a class outright.
            out = _softmax(np.log(np.clip(p, 1e-12, None)).mean(axis=1))
        return out / out.sum(axis=1, keepdims=True)
