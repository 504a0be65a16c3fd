"""Tests of the per-view classifiers (small synthetic data, fast)."""

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import GridSearchCV, cross_val_predict

from genrevision.learn.classifiers import (
    LinearHead,
    SoftmaxHead,
    ViewSVM,
    WindowedClassifier,
    _lse_pool,
    accepts_groups,
    make_inner_cv,
)
from genrevision.learn.fusion import LateFusionClassifier
from genrevision.features.ragged import Ragged

from testkit import bags


def blobs(n_per_class=15, n_classes=3, n_features=6, sep=3.0, seed=0, labels=None):
    """Gaussian classes separated along the first features."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class)
    X = rng.normal(size=(y.size, n_features))
    X[np.arange(y.size), y % n_features] += sep
    if labels is not None:
        y = np.asarray(labels)[y]
    return X, y


FAST = {
    "svm": lambda: ViewSVM(C_grid=(1.0, 10.0), gamma_grid=(1.0,)),
    "svm_fixed": lambda: ViewSVM(C=1.0, gamma="scale"),
    "linear": lambda: LinearHead(C_grid=(0.01, 1.0)),
    "softmax": lambda: SoftmaxHead(max_epochs=50),
}


@pytest.mark.parametrize("name", sorted(FAST))
def test_fit_predict_proba_clone_and_cross_val_predict(name):
    X, y = blobs(labels=np.array(["rock", "blues", "jazz"]))
    est = FAST[name]()
    est.fit(X, y)
    proba = est.predict_proba(X)
    assert proba.shape == (len(y), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert np.all(proba >= 0)
    # classes_ sorted like sklearn, predictions drawn from them
    assert list(est.classes_) == ["blues", "jazz", "rock"]
    assert np.mean(est.predict(X) == y) > 0.8

    twin = clone(est)
    assert twin.get_params(deep=False).keys() == est.get_params(deep=False).keys()
    assert not hasattr(twin, "classes_")

    oof = cross_val_predict(clone(est), X, y, cv=3, method="predict_proba")
    assert oof.shape == (len(y), 3)
    np.testing.assert_allclose(oof.sum(axis=1), 1.0, atol=1e-9)
    assert np.mean(est.classes_[oof.argmax(axis=1)] == y) > 0.7


def test_viewsvm_learns_attributes_and_searches_grid():
    X, y = blobs()
    est = ViewSVM(C_grid=(1.0, 100.0), gamma_grid=(0.1, 1.0)).fit(X, y)
    assert est.best_params_["C"] in (1.0, 100.0)
    assert est.best_params_["gamma"] > 0
    assert hasattr(est, "calibrated_") and est.support_vectors_.shape[1] == X.shape[1]
    fixed = ViewSVM(C=3.0, gamma=0.5).fit(X, y)
    assert fixed.best_params_ == {"C": 3.0, "gamma": 0.5}


def test_viewsvm_copes_with_tiny_classes():
    # Smallest class has 2 samples: the inner CV must shrink to 2 folds.
    X, y = blobs(n_per_class=8)
    keep = np.r_[np.arange(16), [16, 17]]
    est = ViewSVM(inner_cv=5).fit(X[keep], y[keep])
    np.testing.assert_allclose(est.predict_proba(X).sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="at least 2 samples per class"):
        ViewSVM().fit(X[:17], y[:17])


@pytest.mark.parametrize(
    "est, message",
    [
        (ViewSVM(C=-1.0), "C must be"),
        (ViewSVM(gamma="auto"), "gamma must be"),
        (ViewSVM(inner_cv=1), "inner_cv must be"),
        (LinearHead(C_grid=()), "C_grid must be"),
        (SoftmaxHead(validation_fraction=0.9), "validation_fraction must be"),
        (SoftmaxHead(solver="sgd"), "solver must be"),
        (LinearHead(n_components=0), "n_components must be"),
        (LinearHead(scoring="roc_auc"), "scoring must be"),
        (WindowedClassifier(LinearHead()), "takes a genrevision.features.ragged.Ragged"),
    ],
)
def test_parameter_errors_are_raised_in_fit(est, message):
    X, y = blobs(n_features=6)
    with pytest.raises(ValueError, match=message):
        est.fit(X, y)


def test_linear_head_tunes_C():
    X, y = blobs()
    est = LinearHead().fit(X, y)
    assert est.best_params_["C"] in (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
    search = GridSearchCV(LinearHead(), {"C": [0.1, 1.0]}, cv=3).fit(X, y)
    assert search.best_params_["C"] in (0.1, 1.0)


def _plain_logreg(X, y, C, sample_weight=None):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000, tol=1e-10)).fit(
        X, y, logisticregression__sample_weight=sample_weight)


def test_linear_head_in_row_span_equals_plain_logistic_regression():
    # More features than rows: the head solves in the span of the rows and keeps
    # weights on the original features; same model as a plain fit on all features.
    X, y = blobs(n_per_class=10, n_features=200, sep=2.0)
    head = LinearHead(C=0.05, tol=1e-8).fit(X, y)
    plain = _plain_logreg(X, y, 0.05)
    assert head.coef_.shape == (3, 200) and head.coef_.dtype == np.float32
    assert head.n_components_ == 29  # 30 centred rows span 29 directions
    X_new = blobs(n_per_class=5, n_features=200, sep=2.0, seed=1)[0]
    np.testing.assert_allclose(head.predict_proba(X_new), plain.predict_proba(X_new), atol=2e-3)
    # Sample weights enter the loss as scikit-learn's do.
    w = np.linspace(0.2, 3.0, len(y))
    weighted = LinearHead(C=0.05, tol=1e-8).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(weighted.predict_proba(X_new), _plain_logreg(X, y, 0.05, w).predict_proba(X_new),
                               atol=2e-3)


def test_linear_head_reduces_many_rows_to_principal_axes():
    # More rows than n_components: the solver sees the principal axes only and
    # predicts as well as the full model when the classes live in few directions.
    rng = np.random.default_rng(0)
    centres = 2.0 * rng.normal(size=(4, 8))

    def draw(n):
        y = np.repeat(np.arange(4), n)
        X = rng.normal(scale=0.6, size=(4 * n, 120))
        X[:, :8] += centres[y]  # class structure in 8 directions, noise in 112
        return X, y

    X, y = draw(150)
    head = LinearHead(C=0.1, n_components=48, tol=1e-8).fit(X, y)
    assert head.n_components_ == 48 and head.coef_.shape == (4, 120)
    X_new, y_new = draw(100)
    plain = _plain_logreg(X, y, 0.1)
    assert np.mean(plain.predict(X_new) == y_new) > 0.97
    assert np.mean(head.predict(X_new) == y_new) > 0.97
    assert np.mean(head.predict(X_new) == plain.predict(X_new)) > 0.97


def test_linear_head_warm_path_scores_every_C_on_held_out_groups():
    X, y = blobs(n_per_class=20, n_features=30, sep=1.0)
    groups = np.arange(len(y)) // 2
    head = LinearHead(C_grid=(1e-3, 1e-2, 1e-1, 1.0)).fit(X, y, groups=groups)
    assert set(head.inner_scores_) == {1e-3, 1e-2, 1e-1, 1.0}
    assert head.best_params_["C"] == max(head.inner_scores_, key=head.inner_scores_.get)
    assert all(s < 0 for s in head.inner_scores_.values())  # negative log-losses
    fixed = LinearHead(C=head.best_params_["C"], tol=1e-8).fit(X, y)
    assert fixed.inner_scores_ is None
    np.testing.assert_allclose(fixed.predict_proba(X), head.predict_proba(X), atol=1e-3)


def test_softmax_head_attributes_determinism_and_early_stopping():
    X, y = blobs(n_per_class=30, n_features=20, sep=1.5)
    a = SoftmaxHead(random_state=3).fit(X, y)
    b = SoftmaxHead(random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)
    assert a.coef_.shape == (3, 20) and a.intercept_.shape == (3,)
    assert a.scaler_mean_.shape == (20,) and np.all(a.scaler_scale_ > 0)
    assert 1 <= a.n_iter_ <= a.max_epochs
    assert 0 <= a.best_epoch_ <= a.n_iter_
    # Patience stops training well before max_epochs once it over-fits.
    assert a.n_iter_ <= a.best_epoch_ + a.patience
    # Same model as a hand-written softmax of the stored parameters.
    z = ((X - a.scaler_mean_) / a.scaler_scale_) @ a.coef_.T + a.intercept_
    p = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(a.predict_proba(X), p / p.sum(axis=1, keepdims=True))
    adam = SoftmaxHead(solver="adam", learning_rate=1e-2, max_epochs=100).fit(X, y)
    assert np.mean(adam.predict(X) == y) > 0.8


# -- inner CV keeps groups together ------------------------------------------


def test_make_inner_cv_partitions_and_keeps_groups_together():
    y = np.repeat([0, 1, 2], 12)
    groups = np.repeat(np.arange(12), 3)  # 4 groups per class
    splits = make_inner_cv(y, groups, n_splits=10, random_state=0)
    assert len(splits) == 4  # shrunk to the groups of the smallest class
    seen = np.concatenate([test for _, test in splits])
    np.testing.assert_array_equal(np.sort(seen), np.arange(y.size))
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test])
        assert set(y[train]) == {0, 1, 2}


class GroupSpy(ClassifierMixin, BaseEstimator):
    """Records the groups it is fitted with; predicts from the first feature."""

    calls = []

    def fit(self, X, y, groups=None):
        GroupSpy.calls.append((np.asarray(X).copy(), None if groups is None else np.asarray(groups)))
        self.classes_ = np.unique(y)
        return self

    def predict_proba(self, X):
        X = np.asarray(X)
        p = np.full((X.shape[0], self.classes_.size), 0.1)
        p[np.arange(X.shape[0]), np.clip(X[:, 0].round().astype(int), 0, self.classes_.size - 1)] = 0.8
        return p / p.sum(axis=1, keepdims=True)


def windowed_data(n_tracks=12, n_windows=5, d=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n_tracks) % 3
    W = rng.normal(scale=0.01, size=(n_tracks, n_windows, d))
    W[:, :, 0] = y[:, None]  # every window says its track's class...
    W[:, 0, 0] = (y + 1) % 3  # ...except the first, which is wrong
    W[::2, 1, 0] = (y[::2] + 2) % 3  # and the second, on half the tracks
    return Ragged.from_fixed(W.reshape(n_tracks, n_windows * d), n_windows), y, W


def test_windowed_classifier_repeats_labels_and_passes_track_groups():
    X, y, W = windowed_data()
    GroupSpy.calls.clear()
    est = WindowedClassifier(GroupSpy()).fit(X, y)
    (Xw, gw), = GroupSpy.calls
    np.testing.assert_array_equal(Xw, W.reshape(-1, 3))  # window-major rows
    np.testing.assert_array_equal(gw, np.repeat(np.arange(12), 5))
    # Caller groups (e.g. artists) are repeated per window instead.
    artists = np.arange(12) // 2
    GroupSpy.calls.clear()
    est.fit(X, y, groups=artists)
    np.testing.assert_array_equal(GroupSpy.calls[0][1], np.repeat(artists, 5))
    from sklearn.svm import SVC

    assert accepts_groups(GroupSpy()) and accepts_groups(ViewSVM())
    assert not accepts_groups(SVC())


@pytest.mark.parametrize("aggregate", ["mean", "logmean"])
def test_windowed_classifier_averages_windows(aggregate):
    X, y, _ = windowed_data()
    est = WindowedClassifier(GroupSpy(), aggregate=aggregate).fit(X, y)
    per_window = est.predict_proba_windows(X).reshape(12, 5, 3)
    # Single windows are often wrong, the track vote is always right.
    assert np.mean(per_window.argmax(axis=2) == y[:, None]) < 0.8
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(est.predict(X), y)
    if aggregate == "mean":
        np.testing.assert_allclose(proba, per_window.mean(axis=1))
    else:
        g = np.exp(np.log(per_window).mean(axis=1))
        np.testing.assert_allclose(proba, g / g.sum(axis=1, keepdims=True))


def test_windowed_svm_inner_cv_never_splits_a_track(monkeypatch):
    # Windows of a track are near-identical, so a window-level inner CV that
    # split tracks would score every (C, gamma) perfectly by memorisation.
    import genrevision.learn.classifiers as mod

    used = []

    def recording(y, groups=None, **kw):
        splits = make_inner_cv(y, groups, **kw)
        used.append((np.asarray(groups), splits))
        return splits

    monkeypatch.setattr(mod, "make_inner_cv", recording)
    X, y, _ = windowed_data(n_tracks=18, n_windows=4)
    est = WindowedClassifier(ViewSVM(C_grid=(1.0, 10.0), gamma_grid=(1.0,)))
    est.fit(X, y)
    assert used, "ViewSVM did not build its inner CV"
    for groups, splits in used:
        np.testing.assert_array_equal(groups, np.repeat(np.arange(18), 4))
        for train, test in splits:
            assert not set(groups[train]) & set(groups[test])
    np.testing.assert_array_equal(est.predict(X), y)


def test_softmax_head_held_out_part_keeps_groups_and_falls_back():
    X, y = blobs(n_per_class=20)
    groups = np.arange(len(y)) // 2
    est = SoftmaxHead(validation_fraction=0.2)
    train, val = est._split(y, groups)
    assert not set(groups[train]) & set(groups[val])
    assert set(y[val]) == {0, 1, 2}
    est.fit(X, y, groups=groups)
    assert est.validation_loss_ is not None
    # One sample of a class: no stratified held-out part exists.
    keep = np.r_[np.arange(40), 40]
    with pytest.warns(UserWarning, match="without early stopping"):
        tiny = SoftmaxHead(max_epochs=15).fit(X[keep], y[keep])
    assert tiny.n_iter_ == 15 and tiny.validation_loss_ is None


def test_windowed_classifier_takes_tracks_of_any_length_each_weighing_the_same():
    # Track 0 has 30 windows, the others 2 or 3: with equal weight per track the
    # long track cannot drag the window-level model towards its own label.
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 1, 1, 0, 0])
    tracks = [rng.normal(loc=(2 * y[0] - 1) * 0.5, size=(30, 4))]
    tracks += [rng.normal(loc=(2 * lab - 1) * 0.5, size=(2 + i % 2, 4)) for i, lab in enumerate(y[1:])]
    X = Ragged.from_list(tracks)
    assert len(X) == 6 and X.shape == (6, 4) and list(X.lengths) == [30, 2, 3, 2, 3, 2]
    GroupSpy.calls.clear()
    seen = {}

    class WeightSpy(GroupSpy):
        def fit(self, X, y, groups=None, sample_weight=None):
            seen["w"] = sample_weight
            return super().fit(X, y, groups)

    WindowedClassifier(WeightSpy()).fit(X, y)
    per_track = np.add.reduceat(seen["w"], X.offsets[:-1])
    np.testing.assert_allclose(per_track, per_track[0])  # one unit of weight per track
    np.testing.assert_allclose(seen["w"].mean(), 1.0)
    est = WindowedClassifier(LinearHead(C=1.0)).fit(X, y)
    proba = est.predict_proba(X)
    assert proba.shape == (6, 2)
    # The track answer is the geometric mean of its windows' likelihoods.
    pw = est.predict_proba_windows(X)
    g = np.exp(np.log(pw[:30]).mean(axis=0))
    np.testing.assert_allclose(proba[0], g / g.sum())


def test_windowed_classifier_works_with_sklearn_model_selection():
    from sklearn.model_selection import cross_val_predict

    Xw, yw = blobs(n_per_class=24, sep=2.0)  # 72 windows, 4 per track, one class per track
    order = np.argsort(yw, kind="stable")
    X, y = Ragged.from_fixed(Xw[order].reshape(18, -1), 4), yw[order][::4]
    oof = cross_val_predict(WindowedClassifier(LinearHead(C=1.0)), X, y, cv=3, method="predict_proba")
    assert oof.shape == (18, 3)
    assert np.mean(oof.argmax(axis=1) == y) > 0.9


def test_inner_cv_never_puts_an_artist_on_both_sides_and_keeps_a_one_artist_genre_in_training():
    # blues is one artist (as in gtzan-mini): it cannot be validated across artists, so it stays on
    # the training side of every inner fold; the other genres' artists never straddle a split.
    y = np.array(["blues"] * 6 + ["jazz"] * 8 + ["rock"] * 9)
    artists = np.array(["hooker"] * 6 + ["carter"] * 4 + ["lovano", "lovano", "hawkins", "hawkins"]
                       + ["queen"] * 3 + ["bowie", "bowie", "seger", "seger", "young", "young"])
    splits = make_inner_cv(y, artists, n_splits=3)
    assert len(splits) == 3
    blues = np.flatnonzero(y == "blues")
    tested = np.concatenate([te for _, te in splits])
    assert np.array_equal(np.sort(tested), np.flatnonzero(y != "blues"))  # the others are each tested once
    for train, test in splits:
        assert not set(artists[train]) & set(artists[test])
        assert set(blues) <= set(train) and not set(blues) & set(test)


def test_fusion_inner_folds_are_grouped_by_artist():
    # Every inner fit of the learned fusion sees the artists of its training part only.
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 8)
    artists = np.repeat(np.arange(12), 2)  # two tracks per artist
    X = np.column_stack([y + rng.normal(scale=0.3, size=y.size), y + rng.normal(scale=0.3, size=y.size)])
    GroupSpy.calls.clear()
    clf = LateFusionClassifier(views=(("a", 0, 1), ("b", 1, 2)), estimator=GroupSpy(), weights="learned").fit(X, y, groups=artists)
    inner = GroupSpy.calls[:-2]  # the last two fits are the final per-view models, on everything
    assert inner and all(g is not None for _, g in inner)
    for view_start in range(0, len(inner), len(inner) // 2):
        fold_groups = [set(g.tolist()) for _, g in inner[view_start:view_start + len(inner) // 2]]
        held_out = [set(range(12)) - g for g in fold_groups]
        # Held-out artists partition the artists: each artist is tested in exactly one inner fold.
        assert sorted(a for h in held_out for a in h) == list(range(12))
    assert clf.oof_probas_["a"].shape == (24, 3) and not np.isnan(clf.oof_probas_["a"]).any()


def test_inner_cv_with_too_few_artists_splits_by_sample_and_says_so():
    # One genre of several artists and one of a single artist: nothing to validate across artists.
    y = np.array(["metal"] * 3 + ["classical"] * 4)
    artists = np.array(["anthrax", "coroner", "falconer"] + ["bach"] * 4)
    with pytest.warns(UserWarning, match="classical is split by sample"):
        splits = make_inner_cv(y, artists, n_splits=3)
    tested = np.sort(np.concatenate([te for _, te in splits]))
    assert np.array_equal(tested, np.arange(7))
    for train, test in splits:
        assert not set(artists[train][y[train] == "metal"]) & set(artists[test][y[test] == "metal"])
        assert set(y[train]) == {"metal", "classical"}


def test_inner_cv_keeps_a_class_of_one_track_in_training():
    # One artist per genre, and country's artist has one track (a learning curve at one artist
    # per genre): that track can never be validated, so it trains in every fold; the rest split.
    y = np.array(["blues"] * 4 + ["rock"] * 3 + ["country"])
    artists = np.array(["hooker"] * 4 + ["morphine"] * 3 + ["paisley"])
    with pytest.warns(UserWarning, match=r"blues, rock are split by sample .*; country \(one sample\) only trains"):
        splits = make_inner_cv(y, artists, n_splits=3)
    tested = np.concatenate([te for _, te in splits])
    assert 7 not in tested and all(7 in tr for tr, _ in splits)
    assert np.array_equal(np.sort(tested), np.arange(7))
    for train, test in splits:
        assert set(y[test]) <= {"blues", "rock"} and set(y[train]) == {"blues", "rock", "country"}
    # A caller that needs every sample tested once (Platt scaling) is told why it cannot be.
    with pytest.raises(ValueError, match="2 samples per class; country has one"), pytest.warns(UserWarning):
        make_inner_cv(y, artists, n_splits=3, one_group="tracks")


def _today_view_svm(X, y, groups, est):
    """ViewSVM as it was fitted before precomputed kernels: GridSearchCV over a Pipeline, then
    StandardScaler + CalibratedClassifierCV(SVC(kernel="rbf")) on the same inner splits."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    splits = make_inner_cv(y, groups, n_splits=est.inner_cv, random_state=est.random_state)
    scale = 1.0 / (X.shape[1] * StandardScaler().fit_transform(X).var())
    search = GridSearchCV(Pipeline([("scale", StandardScaler()), ("svc", SVC(kernel="rbf"))]),
                          {"svc__C": list(est.C_grid), "svc__gamma": [m * scale for m in est.gamma_grid]},
                          cv=splits, scoring="accuracy").fit(X, y)
    C, gamma = search.best_params_["svc__C"], search.best_params_["svc__gamma"]
    if groups is not None and any(np.unique(groups[y == c]).size < 2 for c in np.unique(y)):
        splits = make_inner_cv(y, groups, n_splits=est.inner_cv, random_state=est.random_state, one_group="tracks")
    pipe = Pipeline([("scale", StandardScaler()),
                     ("svc", CalibratedClassifierCV(SVC(kernel="rbf", C=C, gamma=gamma), method="sigmoid",
                                                    cv=splits, ensemble=False))]).fit(X, y)
    return {"C": C, "gamma": gamma}, pipe


def test_viewsvm_precomputed_kernels_give_todays_svm_on_real_tracks():
    # MFCC vectors of real GTZAN tracks (first 10 s), artist groups from the shared manifest: the
    # precomputed-kernel search and calibration choose the same C/gamma and give the same
    # likelihoods as the GridSearchCV + rbf-SVC pipeline did, with and without groups.
    import csv
    from pathlib import Path

    import soundfile as sf

    from genrevision.evaluation.protocols import make_splits
    from genrevision.signal.baseline import mfcc_features

    root = Path(__file__).resolve().parents[2]
    with open(root / "manifests" / "gtzan-shared.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if "gtzan-mini" in r["path"]
                and r["label"] in ("blues", "classical", "metal", "pop", "reggae")]
    X = []
    for r in rows:
        path = (root / "manifests" / r["path"]).resolve()
        if not path.exists():
            path = Path("/work/shared/data") / r["path"].split("shared/data/", 1)[1]
        audio, sr = sf.read(path, dtype="float32", frames=220500, always_2d=False)
        X.append(mfcc_features(audio, sr))
    X, y, groups = np.stack(X).astype(np.float64), np.array([r["label"] for r in rows]), np.array([r["group"] for r in rows])
    fold = make_splits("group", labels=y, groups=groups, n_splits=3, n_repeats=1, random_state=0)[0]
    tr, te = fold.train, fold.test
    for g in (groups[tr], None):
        new = ViewSVM().fit(X[tr], y[tr], groups=g)
        params, old = _today_view_svm(X[tr], y[tr], g, ViewSVM())
        assert new.best_params_ == params
        np.testing.assert_allclose(new.predict_proba(X[te]), old.predict_proba(X[te]), atol=1e-6)
        np.testing.assert_array_equal(new.predict(X[te]), old.predict(X[te]))


def test_inner_cv_message_names_the_class():
    from genrevision.learn.classifiers import make_inner_cv

    y = np.array(["rock"] * 4 + ["jazz"])
    groups = np.array(["a", "b", "c", "d", "x"])
    with pytest.raises(ValueError) as info:
        make_inner_cv(y, groups)
    assert str(info.value) == ("Inner cross-validation needs at least 2 classes with 2 groups (artists/albums) "
                               "each; class 'jazz' has 1 sample in 1 group. Add tracks of those classes from other "
                               "groups, drop the group column, or fix the hyper-parameters (e.g. Recipe.C) so that "
                               "no inner search is needed.")
    with pytest.raises(ValueError, match="2 samples per class; class 'jazz' has 1 sample. Add tracks"):
        make_inner_cv(y)


def test_lse_pool_known_values():
    X = Ragged.from_list([np.zeros((2, 1)), np.zeros((1, 1))])
    logp = np.log(np.array([[0.5, 0.5], [0.125, 0.875], [0.3, 0.7]]))
    np.testing.assert_allclose(_lse_pool(X, logp, 0.0), [logp[:2].mean(0), logp[2]])
    # r = 1: the log of the mean likelihood.
    np.testing.assert_allclose(_lse_pool(X, logp, 1.0)[0], np.log([(0.5 + 0.125) / 2, (0.5 + 0.875) / 2]))
    # A large r tends to the maximum; one window is always itself.
    np.testing.assert_allclose(_lse_pool(X, logp, 200.0)[0], logp[:2].max(0), atol=0.01)
    np.testing.assert_allclose(_lse_pool(X, logp, 3.0)[1], logp[2])


def test_lse_sharpness_chosen_on_inner_folds():
    # Independent windows: the log-mean (r = 0) is the right pooling and is chosen.
    X, y = bags(kind="iid", seed=0)
    lse = WindowedClassifier(LinearHead(C_grid=(0.01, 0.1, 1.0)), aggregate="lse").fit(X, y)
    assert lse.sharpness_ == 0.0
    assert max(lse.inner_scores_, key=lse.inner_scores_.get) == 0.0
    logmean = WindowedClassifier(LinearHead(C_grid=(0.01, 0.1, 1.0))).fit(X, y)
    np.testing.assert_allclose(lse.predict_proba(X), logmean.predict_proba(X), atol=1e-12)
    # One window carries the class: a soft maximum scores better on held-out tracks.
    X, y = bags(kind="one", seed=0)
    lse = WindowedClassifier(LinearHead(C_grid=(0.01, 0.1, 1.0)), aggregate="lse").fit(X, y)
    assert lse.sharpness_ > 0.0 and lse.inner_scores_[lse.sharpness_] > lse.inner_scores_[0.0]
    with pytest.raises(ValueError, match="sharpness"):
        WindowedClassifier(LinearHead(), aggregate="lse", sharpness=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="aggregate"):
        WindowedClassifier(LinearHead(), aggregate="max").fit(X, y)
