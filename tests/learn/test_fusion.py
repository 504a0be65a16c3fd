"""Tests of late fusion (hand-made likelihoods and small synthetic views)."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import GridSearchCV, cross_val_predict

from genrevision.learn.classifiers import LinearHead, SoftmaxHead, ViewSVM
from genrevision.learn.fusion import (
    PAPER_WEIGHTS,
    LateFusionClassifier,
    fuse_probabilities,
    learn_weights,
    make_views,
)

# -- pure arithmetic --------------------------------------------------------

P1 = np.array([[0.8, 0.2], [0.1, 0.9]])
P2 = np.array([[0.4, 0.6], [0.5, 0.5]])


def test_fuse_sum_exact_values():
    fused = fuse_probabilities([P1, P2], (0.5, 0.5))
    np.testing.assert_allclose(fused, [[0.6, 0.4], [0.3, 0.7]])
    fused = fuse_probabilities([P1, P2], (0.25, 0.75))
    np.testing.assert_allclose(fused, [[0.5, 0.5], [0.4, 0.6]])
    # Weights are normalised: (1, 3) is the same as (0.25, 0.75).
    np.testing.assert_allclose(fuse_probabilities([P1, P2], (1, 3)), fused)


def test_fuse_product_exact_values():
    fused = fuse_probabilities([P1, P2], (0.5, 0.5), rule="product")
    a, b = np.sqrt(0.8 * 0.4), np.sqrt(0.2 * 0.6)
    c, d = np.sqrt(0.1 * 0.5), np.sqrt(0.9 * 0.5)
    np.testing.assert_allclose(fused, [[a / (a + b), b / (a + b)], [c / (c + d), d / (c + d)]])
    # Zero weight drops a view, one view alone is returned unchanged.
    np.testing.assert_allclose(fuse_probabilities([P1, P2], (1, 0), rule="product"), P1)
    # A zero likelihood is floored instead of vetoing the class.
    z = fuse_probabilities([np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])], (0.5, 0.5), rule="product")
    np.testing.assert_allclose(z, [[0.5, 0.5]])


def test_paper_weights_three_views():
    p = [np.array([[0.6, 0.4]]), np.array([[0.0, 1.0]]), np.array([[0.5, 0.5]])]
    fused = fuse_probabilities(p, (0.5, 0.1, 0.4))
    np.testing.assert_allclose(fused, [[0.5 * 0.6 + 0.4 * 0.5, 0.5 * 0.4 + 0.1 + 0.4 * 0.5]])


@pytest.mark.parametrize(
    "weights, rule, message",
    [
        ((0.5,), "sum", "one entry per view"),
        ((-1.0, 2.0), "sum", "must be finite, >= 0"),
        ((0.0, 0.0), "sum", "not all zero"),
        ((0.5, 0.5), "max", "rule must be"),
    ],
)
def test_fuse_rejects_bad_arguments(weights, rule, message):
    with pytest.raises(ValueError, match=message):
        fuse_probabilities([P1, P2], weights, rule=rule)


def informative_and_noise(n=150, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    good = rng.dirichlet(np.ones(k), size=n)
    good[np.arange(n), y] += 1.0  # usually, not always, right
    good /= good.sum(axis=1, keepdims=True)
    noise = rng.dirichlet(np.ones(k), size=n)
    return good, noise, y


@pytest.mark.parametrize("rule", ["sum", "product"])
def test_learn_weights_recovers_the_informative_view(rule):
    good, noise, y = informative_and_noise()
    w = learn_weights([noise, good], y, rule=rule)
    assert len(w) == 2 and abs(sum(w) - 1) < 1e-12
    assert w[1] >= 0.7
    w3 = learn_weights([good, noise, noise[::-1]], y, rule=rule)
    assert w3[0] >= 0.7


def test_learn_weights_tie_breaks_and_grid():
    # Identical views: all weights tie on accuracy and log-loss -> uniform.
    good, noise, y = informative_and_noise()
    assert learn_weights([good, good], y) == (0.5, 0.5)
    w = learn_weights([good, good, good], y, step=0.25)
    assert all(v in (0.25, 0.5) for v in w) and sum(w) == 1.0
    # Labels need not be 0..k-1; classes name the columns.
    labels = np.array(["blues", "jazz", "rock"])
    assert learn_weights([noise, good], labels[y]) == learn_weights([noise, good], y)
    with pytest.raises(ValueError, match="1 / step whole"):
        learn_weights([good, good], y, step=0.3)


# -- LateFusionClassifier ---------------------------------------------------


def three_views(n_per_class=20, d=4, seed=0, sep=(3.0, 1.0)):
    """original: informative; harmonic: pure noise; percussive: weakly informative."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n_per_class)
    X = rng.normal(size=(y.size, 3 * d))
    X[np.arange(y.size), y] += sep[0]
    X[np.arange(y.size), 2 * d + y] += sep[1]
    return X, y, make_views(d)


def fast_fusion(**kw):
    kw.setdefault("inner_cv", 3)
    return LateFusionClassifier(kw.pop("views", make_views(4)), LinearHead(C=1.0), **kw)


def test_make_views_layout():
    assert make_views(4) == (("original", 0, 4), ("harmonic", 4, 8), ("percussive", 8, 12))
    assert make_views([2, 3], names=("h", "p")) == (("h", 0, 2), ("p", 2, 5))


@pytest.mark.parametrize(
    "weights",
    ["learned", "stacking", "uniform", (0.5, 0.1, 0.4), PAPER_WEIGHTS, {"original": 1.0}],
)
@pytest.mark.parametrize("rule", ["sum", "product"])
def test_late_fusion_fit_predict_shapes(weights, rule):
    X, y, views = three_views()
    est = fast_fusion(weights=weights, rule=rule).fit(X, y)
    proba = est.predict_proba(X)
    assert proba.shape == (len(y), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.mean(est.predict(X) == y) > 0.8
    assert est.view_names_ == ("original", "harmonic", "percussive")
    assert len(est.estimators_) == 3
    per_view = est.predict_proba_views(X)
    assert list(per_view) == ["original", "harmonic", "percussive"]
    assert all(p.shape == (len(y), 3) for p in per_view.values())
    if weights == "stacking":
        assert est.weights_ is None and est.meta_ is not None
    else:
        assert len(est.weights_) == 3 and abs(sum(est.weights_) - 1) < 1e-9
        np.testing.assert_allclose(
            proba,
            fuse_probabilities([per_view[n] for n in est.view_names_], est.weights_, rule=rule),
        )
    if weights == (0.5, 0.1, 0.4) or weights == PAPER_WEIGHTS:
        np.testing.assert_allclose(est.weights_, (0.5, 0.1, 0.4))
    if weights == {"original": 1.0}:
        assert est.weights_ == (1.0, 0.0, 0.0)
        np.testing.assert_allclose(proba, per_view["original"])


def test_late_fusion_learns_to_trust_the_informative_view():
    # Harder views than three_views(), so that accuracy, not just log-loss,
    # separates the weightings; a view of pure noise only smooths.
    # Weights chosen by accuracy on 90 out-of-fold samples are noisy from one
    # draw to the next (a 1e-4 change of the view likelihoods can swap equally
    # accurate weightings), so the claim is checked over eight draws.
    weights = []
    for seed in range(8):
        X, y, _ = three_views(n_per_class=30, seed=seed, sep=(1.5, 0.7))
        weights.append(fast_fusion(weights="learned").fit(X, y).weights_)
    w = np.asarray(weights)
    assert np.mean(w[:, 0]) >= 0.5 and np.median(w[:, 0]) >= 0.5  # the informative original view
    assert np.mean(w[:, 1]) <= 0.2 and np.median(w[:, 1]) == 0.0  # the noise view
    est = fast_fusion(weights="learned").fit(X, y)
    assert set(est.oof_probas_) == {"original", "harmonic", "percussive"}


def test_with_fusion_reuses_the_view_classifiers():
    X, y, _ = three_views(seed=1)
    est = fast_fusion(weights="learned").fit(X, y)
    per_view = est.predict_proba_views(X)
    paper = est.with_fusion((0.5, 0.1, 0.4), y)
    assert paper.estimators_ is est.estimators_ and paper.weights_ == (0.5, 0.1, 0.4)
    np.testing.assert_allclose(paper.predict_proba(X), fuse_probabilities(list(per_view.values()), (0.5, 0.1, 0.4)))
    # Same answer as fitting "stacking" from scratch (same inner folds, same view fits).
    stacked = est.with_fusion("stacking", y)
    assert stacked.weights_ is None and stacked.meta_ is not None
    np.testing.assert_allclose(stacked.predict_proba(X), fast_fusion(weights="stacking").fit(X, y).predict_proba(X))
    assert est.with_fusion("learned", y).weights_ == est.weights_ and est.meta_ is None  # original unchanged
    with pytest.raises(ValueError, match="needs out-of-fold likelihoods"):
        fast_fusion(weights="uniform").fit(X, y).with_fusion("stacking", y)


def test_late_fusion_view_subset_and_default_estimator():
    X, y, views = three_views(n_per_class=10)
    hp = LateFusionClassifier(views[1:], ViewSVM(C=1.0, gamma="scale"), weights="uniform").fit(X, y)
    assert hp.view_names_ == ("harmonic", "percussive")
    assert hp.predict_proba(X).shape == (len(y), 3)
    default = LateFusionClassifier(views[:1], weights="uniform").fit(X, y)
    assert isinstance(default.estimators_[0], ViewSVM)


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"weights": "best"}, "weights must be"),
        ({"weights": (1.0, 1.0)}, "one entry per view"),
        ({"weights": {"drums": 1.0}}, "not among"),
        ({"rule": "max"}, "rule must be"),
        ({"inner_cv": 1}, "inner_cv must be"),
        ({"views": (("a", 0, 4), ("a", 4, 8))}, "unique"),
        ({"views": (("a", 0, 99),)}, "start < stop <= 12"),
    ],
)
def test_late_fusion_parameter_errors(kw, message):
    X, y, _ = three_views(n_per_class=5)
    with pytest.raises(ValueError, match=message):
        fast_fusion(**kw).fit(X, y)


@pytest.mark.parametrize("weights", ["learned", "stacking"])
def test_late_fusion_clone_and_cross_val_predict(weights):
    X, y, _ = three_views()
    est = fast_fusion(weights=weights)
    fitted = clone(est).fit(X, y)
    assert not hasattr(clone(fitted), "weights_")
    oof = cross_val_predict(est, X, y, cv=3, method="predict_proba")
    assert oof.shape == (len(y), 3)
    np.testing.assert_allclose(oof.sum(axis=1), 1.0)
    assert np.mean(oof.argmax(axis=1) == y) > 0.7


def test_grid_search_over_late_fusion_params():
    X, y, _ = three_views()
    search = GridSearchCV(
        fast_fusion(weights="uniform"),
        {"weights": ["uniform", "learned"], "rule": ["sum", "product"], "estimator__C": [0.1]},
        cv=3,
    ).fit(X, y)
    assert search.best_params_["weights"] in ("uniform", "learned")
    assert search.best_estimator_.estimators_[0].best_params_ == {"C": 0.1}
    assert search.best_estimator_.predict_proba(X).shape == (len(y), 3)


def test_softmax_heads_with_fine_tuning_weights():
    X, y, views = three_views()
    est = LateFusionClassifier(
        views, SoftmaxHead(max_epochs=30), weights={"original": 0.5, "percussive": 0.5}
    ).fit(X, y)
    assert est.weights_ == (0.5, 0.0, 0.5)
    assert np.mean(est.predict(X) == y) > 0.8


# -- fusion weights never see test data -------------------------------------


class RowSpy(ClassifierMixin, BaseEstimator):
    """Nearest-class-mean classifier that records every row it is fitted on."""

    seen = []

    def __init__(self, temperature=1.0):
        self.temperature = temperature

    def fit(self, X, y):
        RowSpy.seen.append(np.asarray(X).copy())
        self.classes_ = np.unique(y)
        self.means_ = np.stack([X[y == c].mean(axis=0) for c in self.classes_])
        return self

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def predict_proba(self, X):
        d = ((np.asarray(X)[:, None, :] - self.means_[None]) ** 2).sum(axis=2)
        z = -d / self.temperature
        p = np.exp(z - z.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)


def evaluate(X, y, train, test, shuffle_seed, weights="learned"):
    """A train/test evaluation whose test labels are shuffled by shuffle_seed."""
    y_eval = y.copy()
    y_eval[test] = np.random.default_rng(shuffle_seed).permutation(y_eval[test])
    est = LateFusionClassifier(make_views(4), RowSpy(), weights=weights, inner_cv=3)
    est.fit(X[train], y_eval[train])
    accuracy = np.mean(est.predict(X[test]) == y_eval[test])
    return est, accuracy


@pytest.mark.parametrize("weights", ["learned", "stacking"])
def test_fusion_is_learned_without_test_data(weights):
    X, y, _ = three_views(n_per_class=20)
    rng = np.random.default_rng(1)
    test = rng.choice(len(y), size=15, replace=False)
    train = np.setdiff1d(np.arange(len(y)), test)

    RowSpy.seen.clear()
    first, _ = evaluate(X, y, train, test, shuffle_seed=0, weights=weights)
    # No fit, inner-CV fit included, ever saw a test row.
    test_rows = {tuple(r) for r in X[test]}
    assert RowSpy.seen and all(
        not (test_rows & {tuple(r) for r in rows}) for rows in RowSpy.seen
    )
    second, _ = evaluate(X, y, train, test, shuffle_seed=1, weights=weights)
    third, _ = evaluate(X, y, train, test, shuffle_seed=2, weights=weights)
    # Shuffled test labels cannot change the fusion.
    if weights == "learned":
        assert first.weights_ == second.weights_ == third.weights_
    else:
        np.testing.assert_array_equal(first.meta_.coef_, second.meta_.coef_)
        np.testing.assert_array_equal(first.meta_.coef_, third.meta_.coef_)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))


def test_groups_keep_inner_folds_apart():
    X, y, views = three_views(n_per_class=12)
    groups = np.arange(len(y)) // 4  # 4 consecutive samples (one class) per group
    RowSpy.seen.clear()
    est = LateFusionClassifier(views, RowSpy(), inner_cv=3).fit(X, y, groups=groups)
    assert len(est.weights_) == 3
    index = {tuple(X[i, s:e]): i for i in range(len(y)) for (_, s, e) in views}
    inner = [rows for rows in RowSpy.seen if len(rows) < len(y)]
    assert len(inner) == 3 * 3  # 3 views x 3 inner folds
    for rows in inner:
        used = {index[tuple(r)] for r in rows}
        for g in np.unique(groups):
            members = set(np.flatnonzero(groups == g))
            # Every group is wholly inside or wholly outside a training fold.
            assert members <= used or not members & used
