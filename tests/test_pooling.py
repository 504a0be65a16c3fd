"""Learned pooling over the windows of a track: attention (genrevision.attention) and the LSE aggregate."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.base import clone

from genrevision.attention import AttentionPoolingClassifier
from genrevision.classifiers import LinearHead, WindowedClassifier, _lse_pool
from genrevision.ragged import Ragged


def bags(*, kind, n_tracks=90, n_classes=3, n_windows=6, n_features=12, seed=0):
    """Tracks of windows with a known structure.

    ``"one"``: a single window per track carries the class (marked by feature
    0 > 0); the others carry random classes as strongly, so averaging the
    windows cannot beat much better than a vote of noise. ``"iid"``: every
    window is an independent noisy view of the class, where averaging the
    log-likelihoods (a product of independent evidence) is the right pooling.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n_tracks) % n_classes
    tracks = []
    for c in y:
        X = rng.normal(size=(n_windows, n_features))
        if kind == "iid":
            X[:, 1 + c] += 0.8
        else:
            X[:, 0] -= 2.0
            X[np.arange(n_windows), 1 + rng.integers(0, n_classes, n_windows)] += 2.5
            k = rng.integers(n_windows)
            X[k, 0] += 4.0
            X[k, 1:1 + n_classes] = rng.normal(size=n_classes)
            X[k, 1 + c] += 2.5
        tracks.append(X)
    return Ragged.from_list(tracks), y


def test_attention_finds_the_one_window_that_carries_the_class():
    Xtr, ytr = bags(kind="one", seed=0)
    Xte, yte = bags(kind="one", seed=1)
    att = AttentionPoolingClassifier().fit(Xtr, ytr)
    mean = WindowedClassifier(LinearHead(C_grid=(0.01, 0.1, 1.0))).fit(Xtr, ytr)
    acc_att, acc_mean = np.mean(att.predict(Xte) == yte), np.mean(mean.predict(Xte) == yte)
    assert acc_att >= 0.85 and acc_att >= acc_mean + 0.25, (acc_att, acc_mean)
    # The weights sum to 1 per track and sit on the marked window (uniform would be 1/6).
    w = att.attention_weights(Xte)
    np.testing.assert_allclose(Xte.mean(w[:, None])[:, 0] * Xte.lengths, 1.0, rtol=1e-5)
    assert w[Xte.data[:, 0] > 0].mean() > 0.5
    # Chosen on inner folds, within the grid; the held-out loss curve recorded per candidate.
    assert att.best_params_["weight_decay"] in (1e-2, 1e-1, 1.0)
    assert 1 <= att.best_params_["epochs"] <= 200
    assert att.inner_losses_.shape == (3, 201)
    proba = att.predict_proba(Xte)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert not hasattr(clone(att), "classes_")


def test_attention_takes_tracks_of_any_length_and_groups():
    X, y = bags(kind="one", n_tracks=30, seed=2)
    short = Ragged.from_list([X.track(i)[: 1 + i % 6] for i in range(len(X))])  # 1 to 6 windows
    groups = np.arange(len(y)) // 2  # pairs of tracks stay together in the inner folds
    att = AttentionPoolingClassifier(max_epochs=20, weight_decay_grid=(0.1,)).fit(short, y, groups=groups)
    assert att.predict_proba(short).shape == (30, 3)
    assert np.all(att.attention_weights(short)[short.offsets[:-1][short.lengths == 1]] == pytest.approx(1.0))


@pytest.mark.parametrize("params, match", [
    ({"hidden": 0}, "hidden"),
    ({"weight_decay": -1.0}, "weight_decay"),
    ({"weight_decay_grid": ()}, "weight_decay_grid"),
    ({"max_epochs": 0}, "max_epochs"),
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"inner_cv": 1}, "inner_cv"),
])
def test_attention_parameter_errors(params, match):
    X, y = bags(kind="one", n_tracks=12)
    with pytest.raises(ValueError, match=match):
        AttentionPoolingClassifier(**params).fit(X, y)
    with pytest.raises(ValueError, match="Ragged"):
        AttentionPoolingClassifier().fit(X.data, y)


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


def test_learned_pooling_on_real_tracks(gtzan_root, tmp_path_factory):
    """Both poolings as recipe heads on real GTZAN windows: held-out tracks recognised."""
    from test_model import GENRES, small_recipe

    from genrevision.dataset import load_dataset
    from genrevision.features import extract_dataset
    from genrevision.store import FeatureStore

    ds = load_dataset(str(gtzan_root / "genres"))
    train, test = [], []
    for g in GENRES:
        idx = [i for i, lab in enumerate(ds.labels) if lab == g]
        train += idx[:4]
        test += idx[6:8]
    base = small_recipe()
    cache = str(tmp_path_factory.getbasetemp() / "feature-cache")  # shared with test_model's model
    res = extract_dataset([ds.paths[i] for i in train + test], base.features,
                          store=FeatureStore(cache, base.features.to_dict()), progress=False)
    assert not res.failures
    F = [res.features[ds.paths[i]] for i in train + test]
    y = ds.labels[train + test]
    tr, te = np.arange(len(train)), np.arange(len(train), len(y))
    for recipe in (dataclasses.replace(base, head="attention"), dataclasses.replace(base, aggregate="lse")):
        X, views = recipe.matrix(F)
        clf = recipe.classifier(views).fit(X[tr], y[tr])
        acc = np.mean(clf.predict(X[te]) == y[te])
        assert acc >= 5 / 6, (recipe.head, recipe.aggregate, acc)
    with pytest.raises(ValueError, match="pooling='windows'"):
        dataclasses.replace(base, head="attention", pooling="meanstd").make_head()
    with pytest.raises(ValueError, match="aggregate"):
        dataclasses.replace(base, aggregate="max").make_head()
