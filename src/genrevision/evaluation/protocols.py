"""Fold logic and accuracy bookkeeping, independent of how features are made.

Every protocol returns a list of :class:`Fold` tuples ``(repeat, train, test)``
holding integer index arrays into the track list, so the same folds can be
reused for every row of the paper's tables and for the MFCC baseline.

Protocols
---------
``"paper"``
    Stratified 90/10 split, as in Gwardys & Grzywczak (2014), repeated
    ``n_repeats`` times with different seeds (the paper used a single 900/100
    split; one split of 100 tracks has a standard error of about 4 points).
``"cv"``
    Stratified k-fold with shuffling, repeated with seeds ``random_state + r``.
``"group"``
    Stratified group k-fold: no group (artist, album, track) is on both
    sides. A class whose tracks all belong to one group cannot be tested on a
    group the model did not train on: its tracks stay on the training side of
    every fold and are never scored (:func:`single_group_classes` names them).
``"block"``
    Contiguous track-number blocks per genre, a weak proxy for artist-disjoint
    folds on GTZAN: a genre of one artist (gtzan-mini's blues, classical,
    reggae, rock) still has that artist on both sides.
``"split"``
    A fixed train(+valid)/test split, e.g. the fault-filtered split of
    Kereliuk, Sturm & Larsen (2015); see :func:`gtzan_split_labels`.

Only ``"group"`` with artist groups and an artist-disjoint ``"split"`` are
honest about new artists (Sturm 2012; Flexer, ISMIR 2007: the "artist
filter"). ``"cv"``, ``"paper"`` and ``"block"`` keep artists on both sides
of a fold on GTZAN: their accuracies are optimistic (:data:`LEAKY_PROTOCOLS`).
"""
from __future__ import annotations

from collections import namedtuple
from pathlib import Path, PurePath

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import (
    StratifiedGroupKFold,
    StratifiedKFold,
    StratifiedShuffleSplit,
)

from .._utils.progress import progress_bar
from .._utils.validation import check_scalar
from .dataset import gtzan_track_number as _parse_track_number

__all__ = [
    "PROTOCOLS",
    "LEAKY_PROTOCOLS",
    "Fold",
    "single_group_classes",
    "make_splits",
    "gtzan_track_number",
    "gtzan_split_labels",
    "summarise",
    "confusion",
    "oof_confusion",
    "pooled_confusion",
    "repeat_summary",
    "evaluate_predictions",
    "cross_validate_rows",
]

PROTOCOLS = ("paper", "cv", "group", "block", "split")
#: Protocols that may put one artist on both sides of a fold: optimistic figures.
LEAKY_PROTOCOLS = ("paper", "cv", "block")

Fold = namedtuple("Fold", ["repeat", "train", "test"])
Fold.__doc__ = """One train/test split.

Attributes
----------
repeat : int
    Index of the repetition this fold belongs to (0 for single-split protocols).
train, test : numpy.ndarray of int
    Sorted indices into the track list.
"""



def gtzan_track_number(path):
    """Parse the integer track number from a GTZAN file name.

    Parameters
    ----------
    path : str or os.PathLike
        A name such as ``"genres/blues/blues.00012.wav"`` or ``"blues.00012.wav"``.

    Returns
    -------
    int
        The track number, e.g. ``12``.

    Raises
    ------
    ValueError
        If the file name does not look like ``<genre>.<digits>.<ext>``.
    """
    return _parse_track_number(path, strict=True)  # the one parser, in dataset


def _genre_file_key(path):
    # The split lists name tracks as "genre/file"; the last two path parts
    # identify a GTZAN track wherever the dataset root lives.
    parts = PurePath(str(path).replace("\\", "/")).parts
    return "/".join(parts[-2:])


def gtzan_split_labels(paths, splits_dir, *, pattern="{split}_filtered.txt"):
    """Label each track with the fault-filtered split it belongs to.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        Track paths; matched by their ``genre/filename`` suffix.
    splits_dir : str or os.PathLike
        Folder holding ``train_filtered.txt``, ``valid_filtered.txt`` and
        ``test_filtered.txt`` (one ``genre/file.wav`` per line).
    pattern : str, optional
        File name pattern with a ``{split}`` placeholder.

    Returns
    -------
    numpy.ndarray of str
        ``"train"``, ``"valid"``, ``"test"`` or ``""`` (not in any list) per path.

    Raises
    ------
    FileNotFoundError
        If one of the three list files is missing.
    ValueError
        If a track is listed in more than one split.
    """
    splits_dir = Path(splits_dir)
    where = {}
    for split in ("train", "valid", "test"):
        list_path = splits_dir / pattern.format(split=split)
        if not list_path.is_file():
            raise FileNotFoundError(f"split list not found: {list_path}")
        for line in list_path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            key = _genre_file_key(line)
            if key in where and where[key] != split:
                raise ValueError(
                    f"track {key!r} is listed in both {where[key]!r} and {split!r}; "
                    "a split list must put each track on one side only."
                )
            where[key] = split
    return np.array([where.get(_genre_file_key(p), "") for p in paths], dtype="<U5")


def single_group_classes(labels, groups) -> dict:
    """Classes whose tracks all belong to one group: ``{class: group}``.

    Such a class cannot be tested across groups (on an artist the model did
    not learn from); ``make_splits("group")`` keeps it on the training side.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    out = {}
    for c in np.unique(labels):
        g = np.unique(groups[labels == c])
        if g.size == 1:
            out[c.item()] = g[0].item()
    return out


def _block_folds(labels, track_ids, *, n_splits, n_repeats, random_state):
    # Within each genre sort by track number and cut into n_splits contiguous
    # blocks; fold k tests block k of every genre. Repeat r > 0 first rotates
    # each genre's sorted order by a random per-genre offset (circular shift),
    # which moves the block boundaries, so blocks stay contiguous modulo
    # wrap-around from the genre's last track to its first.
    n = len(labels)
    rng = np.random.default_rng(random_state)
    classes = np.unique(labels)
    by_class = {}
    for c in classes:
        idx = np.flatnonzero(labels == c)
        order = np.lexsort((idx, track_ids[idx]))
        by_class[c] = idx[order]
        if len(idx) < n_splits:
            raise ValueError(
                f"label {c!r} has {len(idx)} tracks, fewer than n_splits={n_splits}; "
                "use n_splits between 2 and the smallest class size."
            )
    folds = []
    for r in range(n_repeats):
        tests = [[] for _ in range(n_splits)]
        for c in classes:
            sorted_idx = by_class[c]
            offset = 0 if r == 0 else int(rng.integers(1, len(sorted_idx)))
            rotated = np.roll(sorted_idx, -offset)
            for k, block in enumerate(np.array_split(rotated, n_splits)):
                tests[k].append(block)
        for k in range(n_splits):
            test = np.sort(np.concatenate(tests[k]))
            train = np.setdiff1d(np.arange(n), test)
            folds.append(Fold(r, train, test))
    return folds


def make_splits(
    protocol,
    *,
    labels,
    groups=None,
    split=None,
    track_ids=None,
    n_splits=10,
    n_repeats=5,
    test_size=0.1,
    random_state=0,
):
    """Build the train/test folds of an evaluation protocol.

    Parameters
    ----------
    protocol : {"paper", "cv", "group", "block", "split"}
        See the module docstring.
    labels : array-like of shape (n_tracks,)
        Genre label of each track; used for stratification.
    groups : array-like of shape (n_tracks,), optional
        Group (artist, track) of each track; required for ``"group"``.
    split : array-like of str, optional
        ``"train"``/``"valid"``/``"test"``/``""`` per track; required for
        ``"split"`` (see :func:`gtzan_split_labels`). Tracks marked ``""``
        are left out of both sides.
    track_ids : array-like of int, optional
        GTZAN track number of each track (see :func:`gtzan_track_number`);
        required for ``"block"``.
    n_splits : int, optional
        Number of folds for ``"cv"``, ``"group"`` and ``"block"`` (>= 2).
    n_repeats : int, optional
        Number of repetitions (>= 1); ignored by ``"split"``. For ``"block"``
        repeat 0 uses the natural block boundaries and later repeats rotate
        each genre's track order by a seed-dependent offset.
    test_size : float, optional
        Test fraction for ``"paper"``, in (0, 1).
    random_state : int, optional
        Seed; repeat ``r`` of ``"cv"`` and ``"group"`` uses ``random_state + r``.

    Returns
    -------
    list of Fold
        ``Fold(repeat, train, test)`` with sorted integer index arrays, ordered
        by repeat then fold.

    Raises
    ------
    ValueError
        On an unknown protocol, out-of-range parameters, a missing
        ``groups``/``split``/``track_ids`` array, or an empty side.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}.")
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) == 0:
        raise ValueError("labels must be a non-empty 1-D array with one label per track.")
    n = len(labels)
    check_scalar(n_repeats, "n_repeats", kind=int, min=1)
    if protocol in ("cv", "group", "block"):
        check_scalar(n_splits, "n_splits", kind=int, min=2)
    if protocol == "paper":
        check_scalar(test_size, "test_size", kind=float, min=0, max=1, include_boundaries="neither")

    def _per_track(name, arr):
        arr = np.asarray(arr)
        if arr.shape != (n,):
            raise ValueError(f"{name} must have one entry per track ({n}), got shape {arr.shape}.")
        return arr

    folds = []
    if protocol == "paper":
        sss = StratifiedShuffleSplit(
            n_splits=n_repeats, test_size=test_size, random_state=random_state
        )
        for r, (train, test) in enumerate(sss.split(np.zeros(n), labels)):
            folds.append(Fold(r, np.sort(train), np.sort(test)))
    elif protocol == "cv":
        for r in range(n_repeats):
            skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state + r)
            for train, test in skf.split(np.zeros(n), labels):
                folds.append(Fold(r, np.sort(train), np.sort(test)))
    elif protocol == "group":
        if groups is None:
            raise ValueError(
                "protocol 'group' needs groups (e.g. artist per track) so that "
                "no group lands on both sides of a fold."
            )
        groups = _per_track("groups", groups)
        # A class of one group is always trained on, never tested (see the module docstring).
        always = np.isin(labels, list(single_group_classes(labels, groups)))
        rest = np.flatnonzero(~always)
        if len(np.unique(labels[rest])) < 2:
            raise ValueError(
                "protocol 'group' needs at least 2 classes with tracks of 2 or more groups; "
                f"only {sorted(set(np.unique(labels[rest]).tolist()))} have them."
            )
        n_groups = len(np.unique(groups[rest]))
        if n_groups < n_splits:
            raise ValueError(
                f"protocol 'group' needs at least n_splits={n_splits} distinct groups "
                f"(in classes of 2 or more groups), got {n_groups}; use n_splits between 2 "
                "and the number of groups."
            )
        for r in range(n_repeats):
            sgkf = StratifiedGroupKFold(
                n_splits=n_splits, shuffle=True, random_state=random_state + r
            )
            for train, test in sgkf.split(np.zeros(len(rest)), labels[rest], groups[rest]):
                folds.append(Fold(r, np.sort(np.concatenate([rest[train], np.flatnonzero(always)])),
                                  rest[np.sort(test)]))
    elif protocol == "block":
        if track_ids is None:
            raise ValueError(
                "protocol 'block' needs track_ids (the GTZAN track number of each "
                "track, see gtzan_track_number)."
            )
        track_ids = _per_track("track_ids", track_ids).astype(np.int64)
        folds = _block_folds(
            labels, track_ids, n_splits=n_splits, n_repeats=n_repeats, random_state=random_state
        )
    else:  # "split"
        if split is None:
            raise ValueError(
                "protocol 'split' needs split ('train'/'valid'/'test'/'' per track, "
                "see gtzan_split_labels)."
            )
        split = _per_track("split", split).astype(str)
        unknown = set(np.unique(split)) - {"train", "valid", "test", ""}
        if unknown:
            raise ValueError(
                f"split entries must be 'train', 'valid', 'test' or '', got {sorted(unknown)}."
            )
        # The paper tunes hyper-parameters by inner CV, so the validation
        # tracks are simply more training data here.
        train = np.flatnonzero((split == "train") | (split == "valid"))
        test = np.flatnonzero(split == "test")
        if len(train) == 0:
            raise ValueError(
                "protocol 'split' found no 'train' or 'valid' tracks; "
                "check that the track paths match the split lists."
            )
        if len(test) == 0:
            raise ValueError(
                "protocol 'split' found no 'test' tracks among the given tracks; "
                "the fixed split needs at least one test track (check the split lists "
                "and that the tracks use 'genre/genre.000NN.wav' names)."
            )
        folds.append(Fold(0, train, test))
    return folds


def summarise(accuracies, *, ddof=0):
    """Mean and standard deviation of a set of accuracies.

    Parameters
    ----------
    accuracies : array-like of float
        Per-fold (or per-repeat) accuracies; NaNs are ignored.
    ddof : int, optional
        Delta degrees of freedom of the standard deviation (0 or 1).

    Returns
    -------
    mean, std : float
        NaN for both when no finite value is given; std is 0 for a single value.
    """
    if ddof not in (0, 1):
        raise ValueError(f"ddof must be 0 or 1, got {ddof!r}.")
    acc = np.asarray(accuracies, dtype=float).ravel()
    acc = acc[np.isfinite(acc)]
    if acc.size == 0:
        return float("nan"), float("nan")
    if acc.size == 1:
        return float(acc[0]), 0.0
    return float(acc.mean()), float(acc.std(ddof=ddof))


def confusion(y_true, y_pred, labels):
    """Confusion counts: rows are true labels, columns predicted labels.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,)
    labels : sequence
        Label order of rows and columns; pairs with a label outside it are ignored.

    Returns
    -------
    numpy.ndarray of int, shape (len(labels), len(labels))
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape, got {y_true.shape} and {y_pred.shape}."
        )
    labels = list(labels)
    if len(labels) == 0 or len(set(labels)) != len(labels):
        raise ValueError("labels must be a non-empty sequence of distinct labels.")
    pos = {lab: i for i, lab in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y_true.tolist(), y_pred.tolist()):
        if t in pos and p in pos:
            matrix[pos[t], pos[p]] += 1
    return matrix


def oof_confusion(y_true, row_result, labels):
    """Confusion entry of one row's first-repeat out-of-fold predictions only.

    Reports use :func:`pooled_confusion` (every fold of every repeat).

    Parameters
    ----------
    y_true : array-like of shape (n_tracks,)
    row_result : dict
        One row of :func:`cross_validate_rows` / :func:`evaluate_predictions`.
    labels : sequence
        Row/column order.

    Returns
    -------
    dict
        ``{"labels": [...], "matrix": [[...]]}``, the schema of
        ``results["confusion"][row_label]`` in :mod:`genrevision.evaluation.reports`.
    """
    mask = np.asarray(row_result["oof_mask"], dtype=bool)
    y_true = np.asarray(y_true)
    pred = np.asarray(row_result["oof_pred"], dtype=object)
    matrix = confusion(y_true[mask].tolist(), pred[mask].tolist(), labels)
    return {"labels": [str(lab) for lab in labels], "matrix": matrix.tolist()}


def pooled_confusion(y_true, row_result, labels):
    """Confusion entry summed over every test fold of every repeat.

    Under a k-fold protocol each track is tested once per repeat, so the
    counts sum to ``n_tracks × n_repeats``; under ``"paper"`` (a 10 % test
    split per repeat) to the sum of the test sizes.

    Parameters
    ----------
    y_true : array-like of shape (n_tracks,)
    row_result : dict
        One row of :func:`evaluate_predictions` (needs ``"fold_pred"`` and
        ``"fold_test"``).
    labels : sequence
        Row/column order.

    Returns
    -------
    dict
        ``{"labels", "matrix", "n_predictions", "n_tracks", "n_repeats",
        "caption"}``; the caption states what the counts are.
    """
    y_true = np.asarray(y_true)
    if "fold_pred" not in row_result:
        raise ValueError("row_result has no per-fold predictions; make it with evaluate_predictions.")
    truth = np.concatenate([y_true[t] for t in row_result["fold_test"]])
    pred = np.concatenate([np.asarray(p, dtype=object) for p in row_result["fold_pred"]])
    matrix = confusion(truth.tolist(), pred.tolist(), labels)
    repeats = np.asarray(row_result["fold_repeats"])
    n_repeats = len(np.unique(repeats))
    tested = np.concatenate(row_result["fold_test"])
    n_tracks = len(np.unique(tested))
    n_pred = int(matrix.sum())
    per_repeat = [np.sort(np.concatenate([t for t, r in zip(row_result["fold_test"], repeats) if r == rep]))
                  for rep in np.unique(repeats)]
    once_each = all(len(p) == len(y_true) and np.array_equal(p, np.arange(len(y_true))) for p in per_repeat)
    if once_each:
        caption = (f"{len(y_true)} tracks × {n_repeats} repeat{'s' * (n_repeats != 1)} = {n_pred} test predictions "
                   f"(every test fold of every repeat; each track counted once per repeat)")
    else:
        sizes = sorted({len(t) for t in row_result["fold_test"]})
        size = str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
        n_folds = len(row_result["fold_test"])
        caption = (f"{n_folds} test split{'s' * (n_folds != 1)} of {size} tracks = {n_pred} test predictions "
                   f"({n_tracks} distinct tracks; every test split of every repeat)")
    return {"labels": [str(lab) for lab in labels], "matrix": matrix.tolist(), "n_predictions": n_pred,
            "n_tracks": int(len(y_true)), "n_repeats": int(n_repeats), "caption": caption}


def repeat_summary(fold_accuracies, fold_repeats, *, confidence=0.95):
    """Accuracy per repeat, their spread and the confidence interval of the mean.

    Folds of one repeat partition (or sample) the same tracks, so they are not
    independent; repeats are (nearly) so: the interval of the mean is taken
    over the R repeat means, ``mean ± t(R-1) · sd / sqrt(R)``.

    Parameters
    ----------
    fold_accuracies, fold_repeats : array-like of shape (n_folds,)
    confidence : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    dict
        ``{"repeat_means": [...], "repeat_std": float or None (ddof=1),
        "ci95": [low, high] or None}`` (None with a single repeat).
    """
    check_scalar(confidence, "confidence", kind=float, min=0, max=1, include_boundaries="neither")
    acc = np.asarray(fold_accuracies, dtype=float)
    rep = np.asarray(fold_repeats)
    means = np.array([acc[rep == r].mean() for r in np.unique(rep)])
    if len(means) < 2:
        return {"repeat_means": means.tolist(), "repeat_std": None, "ci95": None}
    from scipy import stats

    sd = float(means.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(means) - 1)) * sd / np.sqrt(len(means))
    m = float(means.mean())
    return {"repeat_means": means.tolist(), "repeat_std": sd,
            "ci95": [float(max(0.0, m - half)), float(min(1.0, m + half))]}


def _as_labels(pred, classes):
    pred = np.asarray(pred)
    if pred.ndim == 2:
        # Probabilities / likelihoods: the column order is `classes`.
        if classes is None:
            raise ValueError("2-D predictions (probabilities) need classes to map columns to labels.")
        classes = np.asarray(classes)
        if pred.shape[1] != len(classes):
            raise ValueError(
                f"probabilities have {pred.shape[1]} columns but classes has {len(classes)} entries."
            )
        return classes[np.argmax(pred, axis=1)]
    if pred.ndim != 1:
        raise ValueError(f"predictions must be 1-D labels or 2-D probabilities, got ndim={pred.ndim}.")
    return pred


def evaluate_predictions(y_true, predictions, folds, *, classes=None, ddof=0):
    """Score per-fold predictions of several table rows on the same folds.

    Parameters
    ----------
    y_true : array-like of shape (n_tracks,)
    predictions : dict
        Row name -> list with one entry per fold (same order as ``folds``):
        predicted labels of ``fold.test`` (1-D) or class probabilities /
        likelihoods (2-D, columns ordered as ``classes``).
    folds : list of Fold
    classes : array-like, optional
        Column order of 2-D predictions.
    ddof : int, optional
        Passed to :func:`summarise`.

    Returns
    -------
    dict
        Row name -> dict with ``"fold_accuracies"`` (array, one per fold),
        ``"fold_repeats"`` (repeat of each fold), ``"mean"``, ``"std"`` (over
        folds), ``"oof_pred"`` (object array of predicted labels of the first
        repeat, ``None`` where a track was not tested in it), ``"oof_mask"``
        (bool, tracks tested in the first repeat), ``"fold_pred"`` (predicted
        labels of every fold) and ``"fold_test"`` (its test indices).
    """
    y_true = np.asarray(y_true)
    folds = list(folds)
    if not folds:
        raise ValueError("folds must hold at least one Fold.")
    first_repeat = folds[0].repeat
    out = {}
    for row, per_fold in predictions.items():
        per_fold = list(per_fold)
        if len(per_fold) != len(folds):
            raise ValueError(
                f"row {row!r} has predictions for {len(per_fold)} folds, expected {len(folds)}."
            )
        accs = np.empty(len(folds))
        oof = np.full(len(y_true), None, dtype=object)
        mask = np.zeros(len(y_true), dtype=bool)
        fold_pred = []
        for i, (fold, pred) in enumerate(zip(folds, per_fold)):
            pred = _as_labels(pred, classes)
            if len(pred) != len(fold.test):
                raise ValueError(
                    f"row {row!r}, fold {i}: {len(pred)} predictions for {len(fold.test)} test tracks."
                )
            accs[i] = float(np.mean(pred == y_true[fold.test]))
            fold_pred.append(np.asarray(pred))
            if fold.repeat == first_repeat:
                oof[fold.test] = list(pred)
                mask[fold.test] = True
        mean, std = summarise(accs, ddof=ddof)
        out[row] = {
            "fold_accuracies": accs,
            "fold_repeats": np.array([f.repeat for f in folds]),
            "mean": mean,
            "std": std,
            "oof_pred": oof,
            "oof_mask": mask,
            "fold_pred": fold_pred,
            "fold_test": [np.asarray(f.test) for f in folds],
        }
    return out


def _make_estimator(spec):
    # An object with `fit` is an sklearn estimator prototype: clone it so every
    # fold starts unfitted; anything else callable is a factory.
    if hasattr(spec, "fit"):
        return clone(spec)
    if callable(spec):
        return spec()
    raise TypeError(f"estimator must be an sklearn estimator or a factory, got {type(spec).__name__}.")


def _fit_predict(spec, X, y, fold):
    est = _make_estimator(spec)
    est.fit(_take(X, fold.train), y[fold.train])
    return est.predict(_take(X, fold.test))


def _take(X, idx):
    if hasattr(X, "iloc"):
        return X.iloc[idx]
    if isinstance(X, (list, tuple)):
        return [X[i] for i in idx]
    return X[idx]


def cross_validate_rows(estimators, X, y, folds, *, n_jobs=1, progress=True, ddof=0):
    """Fit and score one estimator per table row on shared folds.

    Parameters
    ----------
    estimators : dict
        Row name -> sklearn estimator (cloned per fold) or zero-argument
        factory returning a fresh estimator. Each is fitted on the training
        part only and does its own inner CV / hyper-parameter search.
    X : array-like or dict
        Features of all tracks (indexed by track), or a dict row name ->
        features when rows use different views.
    y : array-like of shape (n_tracks,)
    folds : list of Fold
        From :func:`make_splits`.
    n_jobs : int, optional
        Parallel jobs over (row, fold) pairs via joblib; 1 runs serially.
    progress : bool, optional
        Show a tqdm progress bar over (row, fold).
    ddof : int, optional
        Passed to :func:`summarise`.

    Returns
    -------
    dict
        Row name -> dict as in :func:`evaluate_predictions`.
    """
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs == 0 or n_jobs < -1:
        raise ValueError(f"n_jobs must be a positive integer or -1, got {n_jobs!r}.")
    if not estimators:
        raise ValueError("estimators must name at least one row.")
    folds = list(folds)
    if not folds:
        raise ValueError("folds must hold at least one Fold.")
    y = np.asarray(y)
    if isinstance(X, dict):
        missing = set(estimators) - set(X)
        if missing:
            raise ValueError(f"X is a dict but has no features for rows {sorted(missing)}.")
        X_of = dict(X)
    else:
        X_of = {row: X for row in estimators}

    tasks = [(row, i) for row in estimators for i in range(len(folds))]
    bar = progress_bar(total=len(tasks), desc="rows x folds", enabled=progress, leave=False)
    preds = {}
    try:
        if n_jobs == 1:
            for row, i in tasks:
                bar.set_postfix_str(str(row))
                preds[(row, i)] = _fit_predict(estimators[row], X_of[row], y, folds[i])
                bar.update()
        else:
            from joblib import Parallel, delayed

            results = Parallel(n_jobs=n_jobs, return_as="generator")(
                delayed(_fit_predict)(estimators[row], X_of[row], y, folds[i]) for row, i in tasks
            )
            for (row, i), pred in zip(tasks, results):
                preds[(row, i)] = pred
                bar.update()
    finally:
        bar.close()
    by_row = {row: [preds[(row, i)] for i in range(len(folds))] for row in estimators}
    return evaluate_predictions(y, by_row, folds, ddof=ddof)
