"""Fold logic on the real gtzan-mini labels, and row cross-validation."""
import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier

from genrevision.evaluation.protocols import (
    Fold,
    confusion,
    cross_validate_rows,
    evaluate_predictions,
    oof_confusion,
    gtzan_split_labels,
    gtzan_track_number,
    make_splits,
    single_group_classes,
    summarise,
)
from genrevision.evaluation.dataset import load_dataset

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
if not (DATA / "gtzan-mini").is_dir():
    DATA = Path("/work/shared/data")
MINI = DATA / "gtzan-mini"
SPLITS = DATA / "gtzan-splits"



@pytest.fixture(scope="module")
def mini():
    with open(MINI / "manifest.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    paths = np.array([r["path"] for r in rows])
    labels = np.array([r["genre"] for r in rows])
    track_ids = np.array([gtzan_track_number(p) for p in paths])
    return paths, labels, track_ids


def _check_partition(folds, n, n_repeats):
    for r in range(n_repeats):
        tests = [f.test for f in folds if f.repeat == r]
        allt = np.concatenate(tests)
        assert len(allt) == n and len(np.unique(allt)) == n
    for f in folds:
        assert len(np.intersect1d(f.train, f.test)) == 0
        assert len(f.train) + len(f.test) == n


def _fold_sets(folds, r):
    return {frozenset(f.test.tolist()) for f in folds if f.repeat == r}


def test_manifest_parsed(mini):
    paths, labels, track_ids = mini
    assert len(paths) == 109
    assert Counter(labels)["country"] == 14
    assert gtzan_track_number("genres/blues/blues.00012.wav") == 12
    with pytest.raises(ValueError, match="track number"):
        gtzan_track_number("blues.wav")


def test_cv_stratified_and_repeated(mini):
    _, labels, _ = mini
    n = len(labels)
    folds = make_splits("cv", labels=labels, n_splits=5, n_repeats=2, random_state=3)
    assert len(folds) == 10 and all(isinstance(f, Fold) for f in folds)
    _check_partition(folds, n, 2)
    totals = Counter(labels)
    for f in folds:
        got = Counter(labels[f.test])
        for genre, total in totals.items():
            expected = total / 5
            assert np.floor(expected) - 1 <= got[genre] <= np.ceil(expected) + 1
            assert abs(got[genre] - expected) <= 1
    assert _fold_sets(folds, 0) != _fold_sets(folds, 1)


def test_paper_protocol(mini):
    _, labels, _ = mini
    n = len(labels)
    folds = make_splits("paper", labels=labels, n_repeats=3, test_size=0.1, random_state=0)
    assert len(folds) == 3 and [f.repeat for f in folds] == [0, 1, 2]
    totals = Counter(labels)
    for f in folds:
        assert len(f.test) == int(np.ceil(0.1 * n))
        assert len(f.train) + len(f.test) == n
        got = Counter(labels[f.test])
        for genre, total in totals.items():
            assert abs(got[genre] - total * len(f.test) / n) <= 1
    assert len({tuple(f.test) for f in folds}) == 3


def test_group_protocol_keeps_groups_apart(mini):
    _, labels, track_ids = mini
    groups = np.array([f"{g}-{t // 4}" for g, t in zip(labels, track_ids)])
    folds = make_splits("group", labels=labels, groups=groups, n_splits=5, n_repeats=2)
    _check_partition(folds, len(labels), 2)
    for f in folds:
        assert not set(groups[f.train]) & set(groups[f.test])
    with pytest.raises(ValueError, match="groups"):
        make_splits("group", labels=labels)


def test_group_protocol_on_the_artists_of_gtzan_mini():
    # artists.csv is a manifest: its group column is read as the artist of every track.
    ds = load_dataset(str(MINI / "artists.csv"))
    assert len(ds) == 109 and ds.groups is not None
    by_path = dict(zip((Path(p).name for p in ds.paths), ds.groups))
    assert by_path["blues.00003.wav"] == "John Lee Hooker" and by_path["reggae.00000.wav"] == "Bob Marley"
    assert single_group_classes(ds.labels, ds.groups) == {
        "blues": "John Lee Hooker", "classical": "JS Bach", "reggae": "Bob Marley", "rock": "Morphine"}
    folds = make_splits("group", labels=ds.labels, groups=ds.groups, n_splits=5, n_repeats=2)
    one_artist = np.flatnonzero(np.isin(ds.labels, ["blues", "classical", "reggae", "rock"]))
    for r in range(2):
        tested = np.concatenate([f.test for f in folds if f.repeat == r])
        # Every track of a genre with 2+ artists is tested once per repeat; one-artist genres never.
        assert np.array_equal(np.sort(tested), np.setdiff1d(np.arange(109), one_artist))
    for f in folds:
        assert not set(ds.groups[f.train]) & set(ds.groups[f.test])
        assert set(one_artist) <= set(f.train)


def test_block_protocol(mini):
    _, labels, track_ids = mini
    n_splits, n_repeats = 5, 3
    folds = make_splits("block", labels=labels, track_ids=track_ids, n_splits=n_splits,
                        n_repeats=n_repeats, random_state=1)
    assert len(folds) == n_splits * n_repeats
    _check_partition(folds, len(labels), n_repeats)
    for f in folds:
        for genre in np.unique(labels):
            ranked = np.sort(track_ids[labels == genre])  # the genre's track numbers in order
            pos = np.searchsorted(ranked, np.sort(track_ids[f.test][labels[f.test] == genre]))
            assert len(pos) >= 1
            m = len(ranked)
            if f.repeat == 0:
                # Plain contiguous run of the genre's sorted tracks.
                assert np.all(np.diff(pos) == 1)
            else:
                # Contiguous modulo wrap-around (circular shift of boundaries):
                # at most one gap, and only across the genre's end.
                gaps = np.flatnonzero(np.diff(pos) != 1)
                assert len(gaps) == 0 or (len(gaps) == 1 and pos[0] == 0 and pos[-1] == m - 1)
    sets = [_fold_sets(folds, r) for r in range(n_repeats)]
    assert sets[0] != sets[1] and sets[1] != sets[2]
    with pytest.raises(ValueError, match="track_ids"):
        make_splits("block", labels=labels)
    with pytest.raises(ValueError, match="n_splits"):
        make_splits("block", labels=labels, track_ids=track_ids, n_splits=11)


def test_block_default_ten_folds(mini):
    _, labels, track_ids = mini
    folds = make_splits("block", labels=labels, track_ids=track_ids, n_repeats=2)
    assert len(folds) == 20
    _check_partition(folds, len(labels), 2)
    assert _fold_sets(folds, 0) != _fold_sets(folds, 1)


def test_split_protocol(mini):
    paths, labels, _ = mini
    split = gtzan_split_labels(paths, SPLITS)
    counts = Counter(split.tolist())
    assert (counts["train"], counts["valid"], counts["test"]) == (46, 51, 5)
    folds = make_splits("split", labels=labels, split=split)
    assert len(folds) == 1
    (f,) = folds
    assert len(f.train) == 97 and len(f.test) == 5
    assert set(split[f.test]) == {"test"}
    assert not set(f.train) & set(f.test)
    no_test = np.where(split == "test", "", split)
    with pytest.raises(ValueError, match="no 'test' tracks"):
        make_splits("split", labels=labels, split=no_test)
    with pytest.raises(ValueError, match="split"):
        make_splits("split", labels=labels)


def test_parameter_errors(mini):
    _, labels, _ = mini
    with pytest.raises(ValueError, match="protocol must be one of"):
        make_splits("random", labels=labels)
    with pytest.raises(ValueError, match="n_repeats"):
        make_splits("cv", labels=labels, n_repeats=0)
    with pytest.raises(ValueError, match="test_size"):
        make_splits("paper", labels=labels, test_size=10)


def test_summarise_and_confusion():
    assert summarise([0.5, 0.7]) == pytest.approx((0.6, 0.1))
    assert summarise([0.8]) == (0.8, 0.0)
    m = confusion(["a", "a", "b"], ["a", "b", "b"], ["a", "b"])
    assert m.tolist() == [[1, 1], [0, 1]]


def test_evaluate_predictions_with_probabilities():
    y = np.array(["a", "b", "a", "b"])
    folds = [Fold(0, np.array([0, 1]), np.array([2, 3])), Fold(0, np.array([2, 3]), np.array([0, 1]))]
    probas = [np.array([[0.9, 0.1], [0.2, 0.8]]), np.array([[0.9, 0.1], [0.6, 0.4]])]
    res = evaluate_predictions(y, {"fused": probas}, folds, classes=["a", "b"])["fused"]
    assert res["fold_accuracies"].tolist() == [1.0, 0.5]
    assert res["mean"] == pytest.approx(0.75)
    assert res["oof_mask"].all() and res["oof_pred"].tolist() == ["a", "a", "a", "b"]


def _synthetic(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(4), n // 4)
    X = rng.normal(size=(n, 5)) * 0.3
    X[np.arange(n), y] += 5.0
    return X, y


def test_cross_validate_rows_separable_and_shuffled():
    X, y = _synthetic()
    folds = make_splits("cv", labels=y, n_splits=5, n_repeats=2)
    ests = {"knn": KNeighborsClassifier(3), "logreg": lambda: LogisticRegression(max_iter=200)}
    res = cross_validate_rows(ests, X, y, folds, progress=False)
    for row in ("knn", "logreg"):
        assert res[row]["mean"] == 1.0 and res[row]["std"] == 0.0
        assert len(res[row]["fold_accuracies"]) == 10
        assert res[row]["oof_mask"].all()
        assert confusion(y, res[row]["oof_pred"], [0, 1, 2, 3]).trace() == len(y)

    y_shuf = np.random.default_rng(1).permutation(y)
    folds = make_splits("cv", labels=y_shuf, n_splits=5, n_repeats=4)
    res = cross_validate_rows({"knn": KNeighborsClassifier(5)}, X, y_shuf, folds, progress=False)
    assert abs(res["knn"]["mean"] - 0.25) < 0.12


def test_cross_validate_rows_dict_features_and_jobs():
    X, y = _synthetic(n=80)
    noise = np.random.default_rng(2).normal(size=X.shape)
    folds = make_splits("paper", labels=y, n_repeats=2, test_size=0.25)
    res = cross_validate_rows(
        {"good": KNeighborsClassifier(3), "bad": KNeighborsClassifier(3)},
        {"good": X, "bad": noise}, y, folds, n_jobs=2, progress=False,
    )
    assert res["good"]["mean"] == 1.0
    assert res["bad"]["mean"] < 0.7
    # Only the first repeat's test tracks carry out-of-fold predictions.
    assert res["good"]["oof_mask"].sum() == len(folds[0].test)
    entry = oof_confusion(y, res["good"], [0, 1, 2, 3])
    assert entry["labels"] == ["0", "1", "2", "3"]
    assert np.trace(entry["matrix"]) == len(folds[0].test)
    with pytest.raises(ValueError, match="n_jobs"):
        cross_validate_rows({"good": KNeighborsClassifier(3)}, X, y, folds, n_jobs=0)


def test_pooled_confusion_counts_every_fold_of_every_repeat(mini):
    from genrevision.evaluation.protocols import pooled_confusion

    _, labels, _ = mini
    n = len(labels)
    classes = sorted(set(labels))
    for protocol, kw, total, words in (("cv", {"n_splits": 5, "n_repeats": 3}, 3 * n, f"{n} tracks × 3 repeats"),
                                       ("paper", {"n_repeats": 4}, 4 * 11, "4 test splits of 11 tracks")):
        folds = make_splits(protocol, labels=labels, **kw)
        # Right on tracks with an even index, a fixed wrong genre on the others.
        preds = [np.where(f.test % 2 == 0, labels[f.test], np.where(labels[f.test] == "blues", "jazz", "blues"))
                 for f in folds]
        row = evaluate_predictions(labels, {"r": preds}, folds)["r"]
        entry = pooled_confusion(labels, row, classes)
        m = np.asarray(entry["matrix"])
        assert m.sum() == total == entry["n_predictions"]
        assert f"{words} = {total} test predictions" in entry["caption"]
        tested = np.concatenate([f.test for f in folds])
        assert np.trace(m) == np.sum(tested % 2 == 0)
        # The first-repeat matrix (what reports showed before) is only a part of it.
        assert np.asarray(oof_confusion(labels, row, classes)["matrix"]).sum() == len(np.concatenate(
            [f.test for f in folds if f.repeat == 0]))


def test_repeat_summary_interval():
    from scipy import stats

    from genrevision.evaluation.protocols import repeat_summary

    accs = [0.8, 0.9, 0.7, 0.9, 0.85, 0.95]
    rep = [0, 0, 1, 1, 2, 2]
    out = repeat_summary(accs, rep)
    means = np.array([0.85, 0.8, 0.9])
    assert out["repeat_means"] == pytest.approx(means.tolist())
    half = stats.t.ppf(0.975, 2) * means.std(ddof=1) / np.sqrt(3)
    assert out["ci95"] == pytest.approx([means.mean() - half, means.mean() + half])
    assert repeat_summary([0.5, 0.7], [0, 0])["ci95"] is None
    with pytest.raises(ValueError, match="confidence"):
        repeat_summary(accs, rep, confidence=95)
