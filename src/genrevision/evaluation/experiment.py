"""The evaluation API behind ``genrevision evaluate``: features → folds → rows → report.

::

    import genrevision
    result = genrevision.evaluate("../shared/data/gtzan-mini", protocol="cv", folds=10, repeats=5)
    print(result.accuracy("default"), result.ci95("default"))
    result.write_report("runs/evaluate-cv")

For every fold, each head (RBF-SVM, the fine-tuned softmax layer, and the
recipe's own head) is fitted once per view inside one
:class:`~genrevision.learn.fusion.LateFusionClassifier`; every row of the paper's
tables (single views, H+P, O+H+P, each fusion rule) is derived from those
fitted views and their out-of-fold training likelihoods, so all rows see the
same folds and no fusion weight is ever learned on a test track.

With ``out`` given, each fold's test likelihoods are written to
``out/folds/`` as soon as the fold is fitted (``.npz``, no pickle, atomic), keyed
by the dataset (paths and labels), the folds, the protocol and its parameters
and the recipe's full configuration: an interrupted evaluation rerun with the
same arguments loads the finished folds instead of fitting them again.

A recipe with ``tune`` (``tuned``) has features that depend on the training
tracks: in every fold a :class:`~genrevision.features.tuning.FineTuner` is fitted on
the fold's training tracks only (from frozen-stage activations computed once
per run and cached), then the tuned network's features of the fold's
training and test tracks go through the same :func:`fold_rows`.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
import warnings
from dataclasses import dataclass, field, replace

import numpy as np

from .._utils.progress import progress_bar
from .._utils.validation import check_scalar
from . import (
    LEAKY_PROTOCOLS,
    PROTOCOLS,
    evaluate_predictions,
    gtzan_split_labels,
    make_splits,
    pooled_confusion,
    repeat_summary,
    single_group_classes,
)
from ..features.extraction import DEFAULT_CACHE
from ..learn.fusion import LateFusionClassifier, fuse_probabilities, learn_weights

__all__ = ["evaluate", "EvaluationResult", "fold_rows", "evaluate_recipe", "evaluate_baseline", "HEAD_KIND"]

#: results["rows"] key of each head.
HEAD_KIND = {"svm": "svm", "softmax": "finetune", "linear": "linear"}
HEAD_NAME = {"svm": "RBF-SVM per view", "finetune": "retrained softmax layer", "linear": "linear head"}
O, H, P = "original", "harmonic", "percussive"
OHP = "original+harmonic+percussive"
HP = "harmonic+percussive"
OP = "original+percussive"
#: Fixed fusion weights of the paper, per head (Tables I and III).
PAPER_WEIGHTS = {"svm": {OHP: (0.5, 0.1, 0.4)}, "softmax": {OP: (0.5, 0.5)}}
#: Rows kept when two rows give the same predictions (the paper's table rows first).
_PREFERRED = ("original", "harmonic", "percussive", HP, OHP, OP, "fused")
#: Bumped when what a fold file holds changes (old files are then ignored).
_FOLD_FORMAT = 1


def fold_rows(recipe, X, views, y, train, test, *, head: str, random_state: int = 0, groups=None):
    """Test likelihoods of every table row for one fold and one head.

    With ``groups`` (artist, album or track per row of ``X``) every inner search
    of the fit (C, fusion weights, early stopping, stacking) keeps a group on one side.

    Returns
    -------
    rows : dict
        Row name → (n_test, n_classes) probabilities, columns in ``classes``
        order; ``"fused"`` is the recipe's own fusion (its configured weights)
        over all of its views.
    classes : ndarray
        The classes of the fold's training side (a class absent there has no column).
    """
    # Out-of-fold likelihoods (an inner cross-validation: most of a fold's fitting time) only where
    # a row uses them: the learned and stacked rows of separate O/H/P views, or a recipe that fuses
    # by learned weights or stacking. The fine-tuned softmax layer is the slow head and the paper
    # fuses it with fixed weights only, so it skips them.
    view_names = {name for name, *_ in views}  # views: the layout ((name, start, stop), ...)
    learn = head != "softmax" and len(views) > 1 and (
        {O, H, P} <= view_names or recipe.fusion_weights in ("learned", "stacking"))
    clf = LateFusionClassifier(views=tuple(views), estimator=recipe.make_head(head),
                               weights="learned" if learn else "uniform", random_state=random_state)
    clf.fit(X[train], y[train], groups=None if groups is None else np.asarray(groups)[train])
    per_view = clf.predict_proba_views(X[test])
    oof = clf.oof_probas_
    ytr = y[train]
    rows = {v: per_view[v] for v in per_view}

    def fused(names, rule="sum"):
        w = (learn_weights([oof[n] for n in names], ytr, rule=rule, classes=clf.classes_) if learn
             else (1 / len(names),) * len(names))
        return fuse_probabilities([per_view[n] for n in names], w, rule=rule)

    tag = "learned" if learn else "uniform"
    names = [v for v in (O, H, P) if v in per_view]
    if len(names) == 3:
        rows[HP] = fused([H, P])
        rows[f"{OP} ({tag})"] = fused([O, P])
        rows[f"{OHP} ({tag})"] = fused([O, H, P])
        rows[f"{OHP} (product, {tag})"] = fused([O, H, P], rule="product")
        if learn:
            rows[OHP + " (uniform)"] = fuse_probabilities([per_view[n] for n in (O, H, P)], (1 / 3,) * 3)
            if len(per_view) == 3:  # a meta-classifier on the same out-of-fold likelihoods, instead of weights
                rows[OHP + " (stacking)"] = clf.with_fusion("stacking", ytr).predict_proba(X[test])
        for row, w in PAPER_WEIGHTS.get(head, {}).items():
            parts = row.split("+")
            rows[row] = fuse_probabilities([per_view[n] for n in parts], w)
            if row == OHP:
                rows[OHP + " (product)"] = fuse_probabilities([per_view[n] for n in parts], w, rule="product")
        if head != "svm":
            rows[OHP] = rows[f"{OHP} ({tag})"]
    # The recipe's own fused prediction over every view it uses (MFCC included in hybrids).
    if (recipe.fusion_weights == "learned" and learn) or head != recipe.head:
        rows["fused"] = clf.predict_proba(X[test])
    else:
        rows["fused"] = clf.with_fusion(recipe.fusion_weights, ytr).predict_proba(X[test])
    return rows, clf.classes_


def _all_classes(rows_classes, classes):
    """A fold's ``(rows, fold classes)`` with a column for every class of the dataset.

    A class missing from a fold's training side (possible when a class has few
    groups) gets likelihood 0 in that fold: it cannot be predicted there.
    """
    rows, fold_classes = rows_classes
    if len(fold_classes) == len(classes):
        return rows, fold_classes
    idx = np.searchsorted(classes, fold_classes)
    full = {}
    for name, p in rows.items():
        full[name] = np.zeros((p.shape[0], len(classes)))
        full[name][:, idx] = p
    return full, np.asarray(classes)


def _run_fold(recipe, X, views, y, fold, heads, seed, groups=None, classes=None):
    """Every head's rows of one fold, with a column for each of ``classes`` (default: those of ``y``)."""
    classes = np.unique(y) if classes is None else classes
    return {head: _all_classes(fold_rows(recipe, X, views, y, fold.train, fold.test, head=head, random_state=seed,
                                         groups=groups), classes)
            for head in heads}


def _run_tuned_fold(recipe, features, activations, paths, y, groups, fold, heads, seed, threads):
    """:func:`_run_fold` of a recipe with ``tune``: fine-tune on the fold's training tracks, then its rows."""
    from ..features import tuning

    views = recipe.features.view_names
    tr, te = np.asarray(fold.train), np.asarray(fold.test)
    params = recipe.fine_tuner_params() if threads is None else recipe.fine_tuner_params(threads=threads)
    tuner = tuning.fit_on_tracks([activations[i] for i in tr], y[tr], views=views,
                                 groups=None if groups is None else np.asarray(groups)[tr],
                                 tracks=[paths[i] for i in tr], **params)
    idx = np.concatenate([tr, te])
    feats = [tuning.tuned_track_features(tuner, activations[i], features[i], views) for i in idx]
    X, xviews = recipe.matrix(feats)
    # Rows of X are the fold's tracks only: training ones first, then the test ones.
    local = fold._replace(train=np.arange(len(tr)), test=np.arange(len(tr), len(idx)))
    # Columns for every class of the dataset, not only of the fold's tracks: mapped once.
    return _run_fold(recipe, X, xviews, y[idx], local, heads, seed,
                     groups=None if groups is None else np.asarray(groups)[idx], classes=np.unique(y))


def _baseline_fold(Xb, y, fold, groups=None):
    from ..learn.classifiers import ViewSVM

    clf = ViewSVM().fit(Xb[fold.train], y[fold.train],
                        groups=None if groups is None else np.asarray(groups)[fold.train])
    return {"svm": _all_classes(({"mfcc": clf.predict_proba(Xb[fold.test])}, clf.classes_), np.unique(y))}


# ----------------------------------------------------------------------------- finished folds on disk


def baseline_front_end(settings, paths) -> dict:
    """What the MFCC baseline vectors of ``paths`` depend on besides the audio's bytes: the decoding
    and the segments of each file that are read (so recipes reading the same audio share it)."""
    from ..signal.audio import audio_info
    from ..features.extraction import plan_segments

    plans = [[[s.start, s.duration, s.to_end]
              for s in plan_segments(audio_info(p).duration, settings, max_windows=settings.spectrogram.max_windows)]
             for p in paths]
    return {"sr": settings.sr, "normalisation": settings.normalisation, "segments": plans}


def _key(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _fold_path(folder, name, key, i):
    return os.path.join(folder, f"{name}-{key[:16]}-{i:03d}.npz")


def _save_fold(path, key, i, result, seconds):
    arrays, heads = {}, {}
    for head, (rows, classes) in result.items():
        names = list(rows)
        heads[head] = {"classes": [str(c) for c in classes], "rows": names}
        for j, name in enumerate(names):
            arrays[f"{head}_{j}"] = np.asarray(rows[name], dtype=np.float64)
    meta = {"format": _FOLD_FORMAT, "key": key, "fold": i, "heads": heads, "seconds": seconds}
    arrays["meta"] = np.array(json.dumps(meta))
    from ..features.store import atomic_write

    try:
        atomic_write(path, lambda f: np.savez(f, **arrays))  # a fold file is whole or absent
    except OSError as err:
        warnings.warn(f"{path}: cannot store the finished fold ({err.strerror or err}); "
                      "it will be fitted again next time", stacklevel=2)


def _load_fold(path, key, i, fold, heads, classes_dtype):
    """A finished fold's rows, or None (absent, another run's, or damaged: then it is fitted again)."""
    if not os.path.exists(path):
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format") != _FOLD_FORMAT or meta.get("key") != key or meta.get("fold") != i:
                return None
            if set(meta["heads"]) != set(heads):
                return None
            out = {}
            for head, info in meta["heads"].items():
                classes = np.asarray(info["classes"]).astype(classes_dtype)
                rows = {}
                for j, name in enumerate(info["rows"]):
                    p = z[f"{head}_{j}"]
                    if p.shape != (len(fold.test), len(classes)) or not np.all(np.isfinite(p)):
                        raise ValueError(f"row {name!r} has shape {p.shape}")
                    rows[name] = p
                out[head] = (rows, classes)
            return out
    except Exception as err:  # noqa: BLE001 - a damaged file is refitted, never trusted
        warnings.warn(f"{path}: unreadable fold file ({type(err).__name__}: {err}); fitting the fold again",
                      stacklevel=2)
        return None


def _run_folds(fn, folds, *, name, jobs, progress, folder, key, heads, classes_dtype):
    """fn(fold) for every fold, loading finished folds from ``folder``; returns (results, n_fitted)."""
    results = [None] * len(folds)
    if folder:
        for i, f in enumerate(folds):
            results[i] = _load_fold(_fold_path(folder, name, key, i), key, i, f, heads, classes_dtype)
    todo = [i for i, r in enumerate(results) if r is None]

    def work(i):
        t = time.perf_counter()
        r = fn(folds[i])
        if folder:  # written by the worker as soon as the fold is done: nothing finished is lost
            _save_fold(_fold_path(folder, name, key, i), key, i, r, time.perf_counter() - t)
        return r

    bar = progress_bar(total=len(folds), initial=len(folds) - len(todo), desc=f"{name}: folds", unit="fold",
                       enabled=progress)
    try:
        if jobs <= 1 or len(todo) <= 1:
            for i in todo:
                results[i] = work(i)
                bar.update()
        else:
            from joblib import Parallel, delayed

            gen = Parallel(n_jobs=min(jobs, len(todo)), return_as="generator")(delayed(work)(i) for i in todo)
            for i, r in zip(todo, gen):
                results[i] = r
                bar.update()
    finally:
        bar.close()
    return results, len(todo)


def _rows_by_head(per_fold, y, folds):
    out = {}
    for head in per_fold[0]:
        classes = per_fold[0][head][1]
        preds = {r: [pf[head][0][r] for pf in per_fold] for r in per_fold[0][head][0]}
        out[head] = evaluate_predictions(y, preds, folds, classes=classes)
    return out


def evaluate_recipe(recipe, features, y, folds, *, heads=None, jobs=1, progress=True, seed=0,
                    folder=None, key=None, activations=None, paths=None, groups=None):
    """Every row of every head of ``recipe`` on ``folds``.

    Returns ``({head: {row: evaluate_predictions entry}}, n_fitted)``; with
    ``folder``, finished folds are loaded from and stored there.

    A recipe with ``tune`` also needs ``activations`` (per track, in the order
    of ``features``: :func:`~genrevision.features.tuning.dataset_activations` arrays),
    ``paths`` (names of the tracks, recorded on each fold's tuner). ``groups``
    (artist, album or track of each track) are kept on one side of every inner
    split: C, fusion weights, stacking, the tuner's early stopping. With
    folds in parallel (``jobs`` > 1) each fold's tuner runs on one thread.
    """
    # A recipe that joins the views has no per-view rows: only its own head.
    heads = heads or ([recipe.head] if recipe.views == "concat" else sorted({"svm", "softmax", recipe.head}))
    if recipe.tune is not None:
        if activations is None or len(activations) != len(features):
            raise ValueError(f"recipe {recipe.name!r} fine-tunes the network: evaluate_recipe needs the "
                             "activations of every track (genrevision.features.tuning.dataset_activations)")
        paths = list(paths) if paths is not None else [str(i) for i in range(len(features))]
        threads = 1 if jobs > 1 and len(folds) > 1 else None

        def fn(f):
            return _run_tuned_fold(recipe, features, activations, paths, y, groups, f, heads, seed, threads)
    else:
        X, views = recipe.matrix(features)

        def fn(f):
            return _run_fold(recipe, X, views, y, f, heads, seed, groups=groups)
    per_fold, fitted = _run_folds(fn, folds,
                                  name=recipe.name, jobs=jobs, progress=progress, folder=folder, key=key,
                                  heads=heads, classes_dtype=y.dtype)
    return _rows_by_head(per_fold, y, folds), fitted


def evaluate_baseline(features, y, folds, *, jobs=1, progress=True, folder=None, key=None, groups=None):
    """The MFCC + spectral baseline (RBF-SVM on each track's ``"mfcc"`` vector) on ``folds``.

    ``features`` are per-track feature dicts (any recipe's: the MFCC vector is
    the same in all of them) or the stacked (n_tracks, n_columns) matrix.
    Returns ``(evaluate_predictions entry, n_fitted)``; ``folder``/``key`` as
    in :func:`evaluate_recipe`; ``groups`` keep the inner C/gamma search grouped.
    """
    Xb = features if isinstance(features, np.ndarray) else np.stack([f["mfcc"] for f in features])
    base, fitted = _run_folds(lambda f: _baseline_fold(Xb, y, f, groups), folds, name="baseline", jobs=jobs,
                              progress=progress, folder=folder, key=key, heads=["svm"], classes_dtype=y.dtype)
    return _rows_by_head(base, y, folds)["svm"]["mfcc"], fitted


# ----------------------------------------------------------------------------- the result


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured.

    Attributes
    ----------
    results : dict
        The results dict written as ``results.json`` (schema in
        :mod:`genrevision.evaluation.reports`): the paper-table ``rows``/``std`` of the
        paper recipe, ``recipes`` (every recipe's rows, fused accuracy, per-fold
        scores, 95 % interval), ``baseline_mfcc``, ``confusion`` (summed over
        every test fold of every repeat), ``ablation``, ``config``.
    scores : dict
        ``scores[recipe][head][row]`` → ``{"mean", "std" (over folds),
        "fold_accuracies", "fold_repeats", "repeat_means", "repeat_std",
        "ci95"}``; the MFCC baseline is ``scores["baseline"]["svm"]["mfcc"]``.
    folds : list of Fold
        The folds every row was scored on.
    timings : dict
        Seconds of extraction and fitting per recipe, folds fitted and loaded.
    failures : list of (path, reason)
        Tracks left out.
    """

    results: dict
    scores: dict
    folds: list
    timings: dict
    failures: list = field(default_factory=list)

    @property
    def protocol(self) -> str:
        return self.results["protocol"]

    @property
    def rows(self) -> dict:
        """``{recipe: {head kind: {row: mean accuracy}}}``."""
        return {name: rec["rows"] for name, rec in self.results["recipes"].items()}

    @property
    def confusion(self) -> dict:
        return self.results["confusion"]

    def accuracy(self, recipe: str = "default") -> float:
        """Mean accuracy of a recipe's own fused prediction (``"baseline_mfcc"`` for the baseline)."""
        if recipe == "baseline_mfcc":
            return self.results["baseline_mfcc"]
        return self.results["recipes"][recipe]["fused"]

    def ci95(self, recipe: str = "default"):
        """95 % interval of the mean over repeats ([low, high]; None with one repeat)."""
        if recipe == "baseline_mfcc":
            return self.results["ci95"]["baseline_mfcc"]
        return self.results["recipes"][recipe]["fused_ci95"]

    def fold_accuracies(self, recipe: str = "default") -> np.ndarray:
        """Per-fold accuracy of a recipe's fused prediction, in fold order."""
        if recipe == "baseline_mfcc":
            return np.asarray(self.scores["baseline"]["svm"]["mfcc"]["fold_accuracies"])
        head = self.results["recipes"][recipe]["head"]
        return np.asarray(self.scores[recipe][head]["fused"]["fold_accuracies"])

    def to_json(self, **kw) -> str:
        """``results.json`` as a string."""
        from .reports import results_json

        return results_json(self.results, **kw)

    def write_report(self, out_dir, *, dpi: int = 100) -> dict:
        """Write results.json, tables.md, confusion .txt/.png and report.html to ``out_dir``."""
        from .reports import write_report

        return write_report(self.results, out_dir, dpi=dpi)

    def summary(self) -> str:
        """The paper tables and one line per recipe, as printed by the CLI."""
        from .reports import summary_text

        return summary_text(self.results)


# ----------------------------------------------------------------------------- the run


def _score(entry, single_fold):
    rep = repeat_summary(entry["fold_accuracies"], entry["fold_repeats"])
    return {"mean": float(entry["mean"]), "std": None if single_fold else float(entry["std"]),
            "fold_accuracies": [float(a) for a in entry["fold_accuracies"]],
            "fold_repeats": [int(r) for r in entry["fold_repeats"]], **rep}


def _duplicates(entries) -> dict:
    """Rows whose predictions equal an earlier kept row's on every fold: {dropped: kept}."""
    order = sorted(entries, key=lambda r: (_PREFERRED.index(r) if r in _PREFERRED else len(_PREFERRED)))
    kept, dup = [], {}
    for r in order:
        same = next((k for k in kept if all(np.array_equal(a, b) for a, b in
                                            zip(entries[r]["fold_pred"], entries[k]["fold_pred"]))
                     and np.array_equal(entries[r]["fold_accuracies"], entries[k]["fold_accuracies"])), None)
        if same is None:
            kept.append(r)
        else:
            dup[r] = same
    return dup


def _resolve_recipes(recipes, backbone):
    from ..recipes import Recipe, get_recipe

    if isinstance(recipes, (str, Recipe)):
        recipes = (recipes,)
    out, seen = [], set()
    for r in recipes:
        rec = r if isinstance(r, Recipe) else get_recipe(r)
        if rec.name in seen:
            continue
        seen.add(rec.name)
        if backbone:
            rec = replace(rec, features=rec.features.with_(backbone=backbone))
        out.append(rec)
    if not out:
        raise ValueError("recipes must name at least one recipe (e.g. 'default', 'paper').")
    return out


def untested_message(untested: dict) -> str:
    """One sentence naming the classes that cannot be tested across groups."""
    names = ", ".join(f"{c} (only {g})" for c, g in sorted(untested.items()))
    return (f"not testable across artists: {names}: one artist each, so they are kept on the training side "
            "of every fold and left out of the score")


def protocol_honesty(protocol, groups, untested, y) -> dict:
    """What a protocol's accuracy means: results' ``artist_disjoint``, ``optimistic`` and ``untested`` fields."""
    disjoint = (protocol == "group" and groups is not None) or protocol == "split"
    note = ("artist-disjoint: no group (artist) on both sides of a fold" if protocol == "group" and groups is not None
            else "the fixed split's own partition (artist-disjoint for GTZAN's fault-filtered lists)"
            if protocol == "split" else "same artists on both sides: optimistic")
    scored = int(np.sum(~np.isin(y, list(untested)))) if untested else len(y)
    return {"artist_disjoint": disjoint, "optimistic": protocol in LEAKY_PROTOCOLS, "protocol_note": note,
            "untested": [{"label": c, "group": g, "tracks": int(np.sum(y == c))} for c, g in sorted(untested.items())],
            "n_scored_tracks": scored}


def evaluate(data, *, protocol: str = "cv", recipes=("default", "paper"), folds: int = 10, repeats: int = 5,
             seed: int = 0, cache: str | None = DEFAULT_CACHE, jobs: int | None = None, progress: bool = True,
             out=None, backbone: str | None = None, splits_dir: str | None = None) -> EvaluationResult:
    """Evaluate recipes and the MFCC baseline on the same folds of a labelled dataset.

    Parameters
    ----------
    data : str, os.PathLike or Dataset
        A label-folder tree, a CSV manifest (``path,label[,group][,split]``)
        or a loaded :class:`~genrevision.evaluation.dataset.Dataset` (e.g. from
        :func:`~genrevision.evaluation.dataset.load_mirdata`).
    protocol : {"cv", "paper", "group", "block", "split"}
        See :mod:`genrevision.evaluation`. ``"cv"``: stratified ``folds``-fold
        cross-validation repeated ``repeats`` times (every track tested once per
        repeat); ``"paper"``: ``repeats`` stratified 90/10 splits.
    recipes : sequence of str or Recipe
        Recipes to run, e.g. ``("default", "paper")``; the paper recipe fills
        Tables I–IV. ``"tuned"`` fine-tunes the network once per fold on that
        fold's training tracks (its frozen-stage activations are cached in ``cache``).
    folds : int
        k of the k-fold protocols (>= 2); not used by ``"paper"`` and ``"split"``.
    repeats : int
        Repetitions with seeds ``seed + r`` (>= 1); ``"split"`` has one.
    seed : int
    cache : str or None
        Feature cache folder (None: nothing cached).
    jobs : int, optional
        Worker processes for extraction (default: chosen from the cores and
        the measured costs, see :func:`~genrevision.features.extraction.extract_dataset`;
        0: in this process) and for folds (default: all cores; 0 or 1: one at a time).
    progress : bool
        Progress bars (stderr) for extraction and for the folds of each recipe.
    out : str or os.PathLike, optional
        Output folder: finished folds are kept in ``out/folds`` (a rerun with
        the same arguments resumes) and the report is written there.
    backbone : str, optional
        Override every recipe's CNN.
    splits_dir : str, optional
        Folder of ``{train,valid,test}_filtered.txt`` for ``protocol="split"``
        (default: ``gtzan-splits`` beside the dataset folder).

    Returns
    -------
    EvaluationResult
    """
    from .dataset import Dataset, load_dataset

    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    check_scalar(folds, "folds", kind=int, min=2)
    check_scalar(repeats, "repeats", kind=int, min=1)
    check_scalar(seed, "seed", kind=int, min=0)
    if jobs is not None:
        check_scalar(jobs, "jobs", kind=int, min=0)
    recs = _resolve_recipes(recipes, backbone)
    t0 = time.perf_counter()
    ds = data if isinstance(data, Dataset) else load_dataset(os.fspath(data))
    feats, acts, failures, timing, digests = _extract_for_recipes(ds, recs, cache=cache, jobs=jobs, progress=progress)
    ds = _usable_tracks(ds, recs, feats, failures)
    y, groups = np.asarray(ds.labels), ds.groups
    untested = single_group_classes(y, groups) if protocol == "group" and groups is not None else {}
    if untested:
        warnings.warn(untested_message(untested), stacklevel=2)
    fold_list = make_splits(protocol, labels=y, groups=groups, split=_split_labels(ds, protocol, splits_dir),
                            track_ids=ds.track_ids, n_splits=folds, n_repeats=repeats, random_state=seed)
    fold_jobs = max(1, jobs) if jobs is not None else max(1, os.cpu_count() or 1)
    folder = os.path.join(os.fspath(out), "folds") if out is not None else None
    base_key = {"format": _FOLD_FORMAT, "paths": [os.path.abspath(p) for p in ds.paths], "labels": y.tolist(),
                "protocol": protocol, "folds": folds, "repeats": repeats, "seed": seed,
                "splits": [[f.repeat, f.test.tolist()] for f in fold_list]}
    if groups is not None:  # the inner searches are grouped by them
        base_key["groups"] = np.asarray(groups).tolist()
    results = _results_skeleton(recs, ds, y, groups, untested, protocol=protocol, folds=folds, seed=seed,
                                fold_list=fold_list, timing=timing)

    from ..model.genre_model import recipe_to_dict

    scores, fit_timing = {}, {}
    for r in recs:
        t = time.perf_counter()
        extra = {}
        if r.tune is not None:
            extra = {"activations": [acts[r.name][p] for p in ds.paths], "paths": list(ds.paths)}
        rows, fitted = evaluate_recipe(r, [feats[r.name][p] for p in ds.paths], y, fold_list, jobs=fold_jobs,
                                       progress=progress, seed=seed, folder=folder,
                                       key=_key({**base_key, "recipe": recipe_to_dict(r)}), groups=groups, **extra)
        fit_timing[r.name] = {"seconds": time.perf_counter() - t, "folds_fitted": fitted,
                              "folds_loaded": len(fold_list) - fitted}
        scores[r.name] = _add_recipe_results(results, r, recs, rows, y, n_folds=len(fold_list))

    # Engineered baseline on the same folds (its MFCC vector is the same in every recipe's features).
    Xb = np.stack([feats[recs[0].name][p]["mfcc"] for p in ds.paths])
    t = time.perf_counter()
    # Keyed by the baseline's own inputs (the audio's bytes and how it is decoded), not by the
    # vectors: those differ by rounding between a cold run and one reading the float16 cache.
    key = _key({**base_key, "baseline": "mfcc+spectral, ViewSVM",
                "audio": [digests.get(p) for p in ds.paths], "front_end": baseline_front_end(recs[0].features, ds.paths)})
    entry, fitted = evaluate_baseline(Xb, y, fold_list, jobs=fold_jobs, progress=progress, folder=folder, key=key,
                                      groups=groups)
    fit_timing["baseline"] = {"seconds": time.perf_counter() - t, "folds_fitted": fitted,
                              "folds_loaded": len(fold_list) - fitted}
    scores["baseline"] = {"svm": {"mfcc": _add_baseline_results(results, entry, y, n_folds=len(fold_list))}}
    results["failures"] = [{"path": p, "reason": why} for p, why in failures]
    results["config"]["fitting"] = fit_timing
    results["config"]["seconds"] = time.perf_counter() - t0
    result = EvaluationResult(results=results, scores=scores, folds=fold_list,
                              timings={"extraction": timing, "fitting": fit_timing,
                                       "seconds": results["config"]["seconds"]},
                              failures=list(failures))
    if out is not None:
        result.write_report(out)
    return result


def _extract_for_recipes(ds, recs, *, cache, jobs, progress):
    """Every recipe's features in one pass over the files (and the tuned recipes' frozen-stage
    activations): ``(features, activations, failures, timing, digests)``, each keyed by recipe name
    (digests by path)."""
    from ..features.extraction import extract_cached_many

    feats, acts, failures, timing, digests = {}, {}, list(ds.problems), {}, {}
    # One pass over the files for every recipe: each file is decoded and separated once (per
    # front end), each recipe gets its own images, CNN features and cache entries.
    distinct = list(dict.fromkeys(r.features for r in recs))
    t = time.perf_counter()
    passed = dict(zip(distinct, extract_cached_many(ds.paths, distinct, cache=cache, jobs=jobs, progress=progress)))
    dt = time.perf_counter() - t
    decoded = len({p for res in passed.values() for p in res.computed_paths})
    for r in recs:
        res = passed[r.features]
        timing[r.name] = {"seconds": dt, "computed": res.computed, "cached": res.cached,
                          # Files decoded per second in the pass (None when all came from the cache).
                          "tracks_per_s": decoded / dt if decoded and not res.cached else None,
                          "workers": res.workers, **({"probe": res.probe} if res.probe else {}),
                          **({"shared_pass": [x.name for x in recs]} if len(recs) > 1 else {})}
        feats[r.name] = res.features
        digests.update(res.digests)
        failures += [f for f in res.failures if f not in failures]
        if r.tune is not None:
            from ..features.tuning import recipe_activations

            # Frozen-stage activations once per run (and cached): every fold's tuner starts from them.
            t = time.perf_counter()
            acts[r.name], bad = recipe_activations(r, {p: res.features[p] for p in ds.paths if p in res.features},
                                                   cache=cache, progress=progress)
            timing[r.name]["activations_seconds"] = time.perf_counter() - t
            failures += [f for f in bad if f not in failures]
            feats[r.name] = {p: f for p, f in res.features.items() if p in acts[r.name]}
    return feats, acts, failures, timing, digests


def _usable_tracks(ds, recs, feats, failures):
    """The dataset without the tracks some recipe has no features for (a warning says how many)."""
    ok = [i for i, p in enumerate(ds.paths) if all(p in feats[r.name] for r in recs)]
    if not ok:
        raise ValueError(f"{getattr(ds, 'root', '') or 'dataset'}: no usable tracks ({len(failures)} failed)")
    if len(ok) < len(ds):
        warnings.warn(f"evaluating {len(ok)} of {len(ds)} tracks (the others failed)", stacklevel=3)
    return ds.subset(ok)


def _split_labels(ds, protocol, splits_dir):
    """The dataset's train/valid/test labels; for ``"split"`` without them, the filtered GTZAN lists."""
    if protocol != "split" or ds.splits is not None:
        return ds.splits
    root = getattr(ds, "root", "") or os.path.dirname(ds.paths[0])
    splits_dir = splits_dir or os.path.join(os.path.dirname(os.path.abspath(str(root).rstrip("/"))), "gtzan-splits")
    return gtzan_split_labels(ds.paths, splits_dir)


def _results_skeleton(recs, ds, y, groups, untested, *, protocol, folds, seed, fold_list, timing) -> dict:
    """The results dict before any fold is scored: what ran, on what, with what configuration."""
    from ..model.genre_model import environment_versions

    n_repeats = len({f.repeat for f in fold_list})
    return {"protocol": protocol, "n_tracks": len(ds), "n_repeats": n_repeats, "n_folds": len(fold_list),
            **protocol_honesty(protocol, groups, untested, y),
            "backbone": recs[0].features.backbone,
            "rows": {}, "std": {}, "ci95": {}, "recipes": {}, "ablation": [], "confusion": {}, "duplicates": [],
            "config": {"recipes": {r.name: {"backbone": r.features.backbone, "features": r.features.to_dict(),
                                            "pooling": r.pooling, "layers": r.layers, "head": r.head,
                                            "views": r.views, "fusion_weights": r.fusion_weights,
                                            "hybrid_mfcc": r.hybrid_mfcc, "description": r.description,
                                            **({"tune": r.tune} if r.tune is not None else {})}
                                   for r in recs},
                       "protocol": protocol,
                       # What ran: k only where the protocol uses it; the folds and repeats actually run.
                       "folds": folds if protocol in ("cv", "group", "block") else None,
                       "test_size": 0.1 if protocol == "paper" else None,
                       "repeats": n_repeats, "seed": seed, "n_folds_run": len(fold_list),
                       "folds_per_repeat": len(fold_list) // n_repeats,
                       "versions": environment_versions(), "extraction": timing}}


def _recipe_scores(r, rows, *, single: bool, n_folds: int, results: dict) -> tuple[dict, dict]:
    """Scores of every row of one recipe (by head kind), and its entry of ``results["recipes"]``;
    adds its rows to ``results["ablation"]`` and its repeated rows to ``results["duplicates"]``."""
    rec = {"backbone": r.features.backbone, "head": HEAD_KIND[r.head], "rows": {}, "std": {}, "ci95": {},
           "fold_accuracies": {}, "duplicates": {}}
    scores = {}
    for head, entries in rows.items():
        kind = HEAD_KIND[head]
        dup = _duplicates(entries)
        scores[kind] = sc = {row: _score(e, single) for row, e in entries.items()}
        shown = [row for row in entries if row not in dup]
        for field, part in (("rows", "mean"), ("std", "std"), ("ci95", "ci95"), ("fold_accuracies", "fold_accuracies")):
            rec[field][kind] = {row: sc[row][part] for row in shown}
        if dup:
            rec["duplicates"][kind] = dup
        for row in shown:
            same = [d for d, k in dup.items() if k == row]
            label = f"{r.name} · {kind} · {row}" + (f" (= {', '.join(same)})" if same else "")
            results["ablation"].append({"name": label, "mean": sc[row]["mean"], "std": sc[row]["std"],
                                        "ci95": sc[row]["ci95"], "n_folds": n_folds})
        for d, k in dup.items():
            results["duplicates"].append({"row": f"{r.name} · {kind} · {d}", "same_as": f"{r.name} · {kind} · {k}"})
    own = scores[HEAD_KIND[r.head]]["fused"]
    rec["fused"], rec["fused_std"], rec["fused_ci95"] = own["mean"], own["std"], own["ci95"]
    rec["fused_repeat_means"] = own["repeat_means"]
    rec["fused_fold_accuracies"] = own["fold_accuracies"]
    return scores, rec


def _add_recipe_results(results, r, recs, rows, y, *, n_folds: int) -> dict:
    """Put one recipe's fold predictions into ``results`` (its entry, the paper tables when it is
    the table recipe, its confusion matrices); returns its scores by head kind."""
    classes = sorted(set(y.tolist()))
    scores, rec = _recipe_scores(r, rows, single=n_folds == 1, n_folds=n_folds, results=results)
    results["recipes"][r.name] = rec
    title = f"{r.name} recipe ({r.features.backbone}) · {HEAD_NAME[HEAD_KIND[r.head]]} · the recipe's own fusion"
    results["confusion"][f"{r.name} fused"] = {**pooled_confusion(y, rows[r.head]["fused"], classes), "title": title}
    if r.name == "default":
        results["default"], results["std"]["default"] = rec["fused"], rec["fused_std"]
        results["ci95"]["default"] = rec["fused_ci95"]
    if r.name == "paper" or (r is recs[0] and "paper" not in [x.name for x in recs]):
        _add_paper_tables(results, r, rec, scores, rows, y, classes)
    return scores


def _add_paper_tables(results, r, rec, scores, rows, y, classes) -> None:
    """Tables I and III (every row, even one repeating another) and the confusion matrices of
    Tables II and IV, from the table recipe."""
    for kind in ("svm", "finetune"):
        if kind in rec["rows"]:
            results["table_recipe"], results["table_backbone"] = r.name, r.features.backbone
            # The paper's table rows are always shown, even when one repeats another.
            sc = scores[kind]
            results["rows"][kind] = {row: sc[row]["mean"] for row in sc if row in rec["rows"][kind]
                                     or row in _PREFERRED[:6]}
            results["std"][kind] = {row: sc[row]["std"] for row in results["rows"][kind]}
            results["ci95"][kind] = {row: sc[row]["ci95"] for row in results["rows"][kind]}
    for kind, row, table, weights in (("svm", OHP, "Table II", ".5/.1/.4"), ("finetune", OP, "Table IV", ".5/.5")):
        head = "svm" if kind == "svm" else "softmax"
        if head in rows and row in rows[head]:
            entry = pooled_confusion(y, rows[head][row], classes)
            entry["title"] = (f"{table}: {r.name} recipe ({r.features.backbone}) · {HEAD_NAME[kind]} · "
                              f"{row} (weights {weights})")
            if rec["duplicates"].get(kind, {}).get("fused") == row and HEAD_KIND[r.head] == kind:
                # The recipe's own fusion is this row: one matrix, not the same one twice.
                results["confusion"].pop(f"{r.name} fused", None)
                entry["title"] += " = the recipe's own fusion"
            results["confusion"][f"{r.name} {kind} {row}"] = entry


def _add_baseline_results(results, entry, y, *, n_folds: int) -> dict:
    """Put the MFCC baseline's fold predictions into ``results``; returns its score."""
    b = _score(entry, n_folds == 1)
    results["baseline_mfcc"], results["std"]["baseline_mfcc"], results["ci95"]["baseline_mfcc"] = (
        b["mean"], b["std"], b["ci95"])
    results["baseline_fold_accuracies"] = b["fold_accuracies"]
    results["ablation"].append({"name": "baseline · MFCC + spectral statistics · RBF-SVM", "mean": b["mean"],
                                "std": b["std"], "ci95": b["ci95"], "n_folds": n_folds})
    results["confusion"]["baseline mfcc"] = {**pooled_confusion(y, entry, sorted(set(y.tolist()))),
                                             "title": "baseline: MFCC + spectral statistics · RBF-SVM"}
    return b
