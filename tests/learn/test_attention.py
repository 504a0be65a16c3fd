"""Learned pooling over the windows of a track: attention (genrevision.learn.attention) and the LSE aggregate."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.base import clone

from genrevision.learn.attention import AttentionPoolingClassifier
from genrevision.learn.classifiers import LinearHead, WindowedClassifier
from genrevision.features.ragged import Ragged

from testkit import bags


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


def test_learned_pooling_on_real_tracks(gtzan_root, tmp_path_factory):
    """Both poolings as recipe heads on real GTZAN windows: held-out tracks recognised."""
    from genrevision.evaluation.dataset import load_dataset
    from genrevision.features.extraction import extract_dataset
    from genrevision.features.store import FeatureStore

    from testkit import GENRES, small_recipe

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
