"""The evaluation run behind ``genrevision evaluate``: features → folds → rows → report.

For every fold, each head (RBF-SVM, the fine-tuned softmax layer, and the
recipe's own head) is fitted once per view inside one
:class:`~genrevision.fusion.LateFusionClassifier`; every row of the paper's
tables (single views, H+P, O+H+P, each fusion rule) is derived from those
fitted views and their out-of-fold training likelihoods, so all rows see the
same folds and no fusion weight is ever learned on a test track.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from .evaluation import evaluate_predictions, make_splits, gtzan_split_labels, oof_confusion
from .fusion import LateFusionClassifier, fuse_probabilities, learn_weights

__all__ = ["fold_rows", "evaluate_recipe", "run_evaluation", "HEAD_KIND"]

#: results["rows"] key of each head.
HEAD_KIND = {"svm": "svm", "softmax": "finetune", "linear": "linear"}
O, H, P = "original", "harmonic", "percussive"
OHP = "original+harmonic+percussive"
HP = "harmonic+percussive"
OP = "original+percussive"
#: Fixed fusion weights of the paper, per head (Tables I and III).
PAPER_WEIGHTS = {"svm": {OHP: (0.5, 0.1, 0.4)}, "softmax": {OP: (0.5, 0.5)}}


def fold_rows(recipe, X, views, y, train, test, *, head: str, random_state: int = 0) -> dict[str, np.ndarray]:
    """Test likelihoods of every table row for one fold and one head.

    Returns row name → (n_test, n_classes) probabilities; ``"fused"`` is the
    recipe's own fusion (its configured weights) over all of its views.
    """
    # The fine-tuned softmax layer is the slow head and the paper fuses it with
    # fixed weights only, so it skips the inner cross-validation.
    learn = head != "softmax" and len(views) > 1
    clf = LateFusionClassifier(views=tuple(views), estimator=recipe.make_head(head),
                               weights="learned" if learn else "uniform", random_state=random_state)
    clf.fit(X[train], y[train])
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


def _run_fold(recipe, X, views, y, fold, heads, seed):
    out = {}
    for head in heads:
        rows, classes = fold_rows(recipe, X, views, y, fold.train, fold.test, head=head, random_state=seed)
        out[head] = (rows, classes)
    return out


def _baseline_fold(Xb, y, fold):
    from .classifiers import ViewSVM

    clf = ViewSVM().fit(Xb[fold.train], y[fold.train])
    return clf.predict_proba(Xb[fold.test]), clf.classes_


def _parallel(fn, items, *, jobs, desc, progress):
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), desc=desc, unit="fold", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        if jobs <= 1:
            out = []
            for it in items:
                out.append(fn(it))
                bar.update()
            return out
        from joblib import Parallel, delayed

        out = []
        for r in Parallel(n_jobs=jobs, return_as="generator")(delayed(fn)(it) for it in items):
            out.append(r)
            bar.update()
        return out
    finally:
        bar.close()


def evaluate_recipe(recipe, features, y, folds, *, heads=None, jobs=1, progress=True, seed=0):
    """Every row of every head of ``recipe`` on ``folds``.

    Returns {head: {row: evaluate_predictions entry}} and the recipe's fused row.
    """
    # A recipe that joins the views has no per-view rows: only its own head.
    heads = heads or ([recipe.head] if recipe.views == "concat" else sorted({"svm", "softmax", recipe.head}))
    X, views = recipe.matrix(features)
    per_fold = _parallel(lambda f: _run_fold(recipe, X, views, y, f, heads, seed), folds,
                         jobs=jobs, desc=f"{recipe.name}: folds", progress=progress)
    out = {}
    for head in heads:
        classes = per_fold[0][head][1]
        row_names = per_fold[0][head][0].keys()
        preds = {r: [pf[head][0][r] for pf in per_fold] for r in row_names}
        out[head] = evaluate_predictions(y, preds, folds, classes=classes)
    return out


def _summary(entry):
    return float(entry["mean"]), float(entry["std"])


def run_evaluation(args) -> dict:
    """Run ``genrevision evaluate`` from parsed CLI arguments; returns the results dict."""
    from .cli import _extract, _report_failures
    from .dataset import load_dataset
    from .recipes import get_recipe
    from .reports import write_report

    t0 = time.perf_counter()
    ds = load_dataset(args.data)
    progress = not args.quiet
    names = [args.recipe] + (["paper"] if args.paper_recipe and args.recipe != "paper" else [])
    recipes = [get_recipe(n) for n in names]
    if args.backbone:
        from dataclasses import replace

        recipes = [replace(r, features=r.features.with_(backbone=args.backbone)) for r in recipes]

    feats, failures, timing = {}, list(ds.problems), {}
    for r in recipes:
        t = time.perf_counter()
        res = _extract(ds.paths, r.features, args)
        dt = time.perf_counter() - t
        timing[r.name] = {"seconds": dt, "computed": res.computed, "cached": res.cached,
                          # Speed of the tracks computed in this run (None when all came from the cache).
                          "tracks_per_s": res.computed / dt if res.computed and not res.cached else None}
        feats[r.name] = res.features
        failures += [f for f in res.failures if f not in failures]
    ok = [i for i, p in enumerate(ds.paths) if all(p in feats[r.name] for r in recipes)]
    if len(ok) < len(ds):
        print(f"evaluating {len(ok)} of {len(ds)} tracks (the others failed)", file=sys.stderr)
    ds = ds.subset(ok)
    y = ds.labels
    split = ds.splits
    if args.protocol == "split" and split is None:
        splits_dir = args.splits_dir or os.path.join(os.path.dirname(os.path.abspath(args.data.rstrip("/"))), "gtzan-splits")
        split = gtzan_split_labels(ds.paths, splits_dir)
    folds = make_splits(args.protocol, labels=y, groups=ds.groups, split=split, track_ids=ds.track_ids,
                        n_splits=args.folds, n_repeats=args.repeats, random_state=args.seed)
    jobs = args.jobs if args.jobs is not None else max(1, os.cpu_count() or 1)

    results = {"protocol": args.protocol, "n_tracks": len(ds), "backbone": recipes[0].features.backbone,
               "rows": {}, "std": {}, "recipes": {}, "ablation": [], "confusion": {},
               "config": {"recipes": {r.name: {"features": r.features.to_dict(), "pooling": r.pooling,
                                               "layers": r.layers, "head": r.head, "views": r.views,
                                               "fusion_weights": r.fusion_weights, "hybrid_mfcc": r.hybrid_mfcc}
                                      for r in recipes},
                          "folds": args.folds, "repeats": args.repeats, "seed": args.seed, "n_folds_run": len(folds),
                          "extraction": timing}}
    classes = sorted(set(y.tolist()))
    for r in recipes:
        track_feats = [feats[r.name][p] for p in ds.paths]
        rows = evaluate_recipe(r, track_feats, y, folds, jobs=jobs, progress=progress, seed=args.seed)
        rec = {"rows": {}, "std": {}}
        for head, entries in rows.items():
            kind = HEAD_KIND[head]
            rec["rows"][kind] = {row: _summary(e)[0] for row, e in entries.items()}
            rec["std"][kind] = {row: _summary(e)[1] for row, e in entries.items()}
            for row, e in entries.items():
                results["ablation"].append({"name": f"{r.name} · {kind} · {row}", "mean": _summary(e)[0],
                                            "std": _summary(e)[1]})
        fused = rows[r.head]["fused"]
        rec["fused"], rec["fused_std"] = _summary(fused)
        results["recipes"][r.name] = rec
        results["confusion"][f"{r.name} fused"] = oof_confusion(y, fused, classes)
        if r.name == "default":
            results["default"], results["std"]["default"] = rec["fused"], rec["fused_std"]
        if r.name == "paper" or (r is recipes[0] and "paper" not in names):
            results["rows"] = {k: v for k, v in rec["rows"].items() if k in ("svm", "finetune")}
            results["std"].update({k: v for k, v in rec["std"].items() if k in ("svm", "finetune")})
            for kind, row in (("svm", OHP), ("finetune", OP)):
                head = "svm" if kind == "svm" else "softmax"
                if row in rows.get(head, {}):  # a recipe that joins its views has no per-view heads
                    results["confusion"][f"{r.name} {kind} {row}"] = oof_confusion(y, rows[head][row], classes)

    # Engineered baseline on the same folds.
    Xb = np.stack([feats[recipes[0].name][p]["mfcc"] for p in ds.paths])
    base = _parallel(lambda f: _baseline_fold(Xb, y, f), folds, jobs=jobs, desc="baseline: folds", progress=progress)
    entry = evaluate_predictions(y, {"mfcc": [b[0] for b in base]}, folds, classes=base[0][1])["mfcc"]
    results["baseline_mfcc"], results["std"]["baseline_mfcc"] = _summary(entry)
    results["ablation"].append({"name": "baseline · MFCC + spectral statistics · RBF-SVM",
                                "mean": results["baseline_mfcc"], "std": results["std"]["baseline_mfcc"]})
    results["confusion"]["baseline mfcc"] = oof_confusion(y, entry, classes)
    results["failures"] = [{"path": p, "reason": why} for p, why in failures]
    results["config"]["seconds"] = time.perf_counter() - t0

    written = write_report(results, args.out)
    _print_summary(results)
    print(f"report: {written['html']}")
    _report_failures(failures)
    return results


def _print_summary(results):
    from .reports import paper_table_markdown

    print(paper_table_markdown(results, kind="svm"))
    print()
    print(paper_table_markdown(results, kind="finetune"))
    print()
    for name, rec in results["recipes"].items():
        print(f"recipe {name}: fused {100 * rec['fused']:.1f} ± {100 * rec['fused_std']:.1f} %")
    print(f"baseline MFCC + spectral: {100 * results['baseline_mfcc']:.1f} ± {100 * results['std']['baseline_mfcc']:.1f} %")
