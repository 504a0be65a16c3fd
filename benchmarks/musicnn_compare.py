#!/usr/bin/env python
"""Compare pooled musicnn embeddings with the MFCC+spectral baseline.

Runs in the MAIN environment (genrevision installed).  Reads the ``.npz``
written by ``benchmarks/musicnn_features.py`` (run in the musicnn venv),
computes :func:`genrevision.signal.baseline.mfcc_features` on the very same tracks
(full excerpts, loaded with ``soundfile``), and evaluates every feature set
with the same protocol:

* classifier: ``StandardScaler`` + ``SVC(kernel="rbf", gamma="scale")``, with
  ``C`` chosen from {1, 10, 100} by an inner stratified 3-fold CV on the
  training part of each outer fold;
* outer CV: ``StratifiedKFold(n_splits=10, shuffle=True, random_state=seed)``
  for seeds 0..4 (5 repeats; identical folds for every feature set).

It prints a Markdown table of accuracy mean ± std, where the mean is over all
5 x 10 test folds and the std is across the 5 repeat-level accuracies (each
repeat's accuracy is pooled over its 10 folds).  Paired per-fold differences
against the baseline are printed as well.

Caveat: random folds on GTZAN put tracks of the same artist in train and test
(consecutive GTZAN numbers often share an artist), so all numbers here are
optimistic; the ranking, not the level, is the informative part.

Usage::

    python benchmarks/musicnn_compare.py /tmp/musicnn_gtzan_mini.npz \
        [--dataset /work/shared/data/gtzan-mini] [--seeds 0 1 2 3 4]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from genrevision.signal.baseline import BASELINE_NAME, mfcc_features

C_GRID = (1.0, 10.0, 100.0)
DEFAULT_MUSICNN = ("penultimate_meanstd", "penultimate_mean")


def baseline_features(root: Path, paths: list[str]) -> np.ndarray:
    """MFCC+spectral features of every track (whole excerpt, mono)."""
    rows = []
    for rel in paths:
        y, sr = sf.read(root / rel, dtype="float32", always_2d=True)
        rows.append(mfcc_features(y.mean(axis=1), sr))
    return np.stack(rows)


def evaluate(X: np.ndarray, y: np.ndarray, seeds, n_splits: int, n_jobs: int):
    """Per-fold accuracies (seeds x folds), pooled per-repeat accuracy, Cs."""
    fold_acc = np.zeros((len(seeds), n_splits))
    rep_acc = np.zeros(len(seeds))
    chosen = []
    for r, seed in enumerate(seeds):
        outer = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        correct = 0
        for k, (tr, te) in enumerate(outer.split(X, y)):
            inner = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
            search = GridSearchCV(
                make_pipeline(StandardScaler(), SVC(kernel="rbf", gamma="scale")),
                {"svc__C": list(C_GRID)}, cv=inner, n_jobs=n_jobs)
            search.fit(X[tr], y[tr])
            hit = search.predict(X[te]) == y[te]
            fold_acc[r, k] = hit.mean()
            correct += hit.sum()
            chosen.append(search.best_params_["svc__C"])
        rep_acc[r] = correct / len(y)
    return fold_acc, rep_acc, chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("npz", type=Path, help="output of musicnn_features.py")
    ap.add_argument("--dataset", type=Path, default=None,
                    help="dataset root for the MFCC baseline "
                         "(default: the root recorded in the npz)")
    ap.add_argument("--features", nargs="+", default=list(DEFAULT_MUSICNN),
                    help="musicnn arrays of the npz to evaluate "
                         f"(default: {' '.join(DEFAULT_MUSICNN)})")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--n-splits", type=int, default=10)
    ap.add_argument("--no-baseline", action="store_true",
                    help="skip the MFCC+spectral baseline")
    ap.add_argument("--jobs", type=int, default=1,
                    help="parallel jobs for the inner grid search")
    args = ap.parse_args(argv)

    data = np.load(args.npz, allow_pickle=False)
    meta = json.loads(str(data["meta"]))
    paths = [str(p) for p in data["paths"]]
    y = np.asarray([str(s) for s in data["labels"]])
    root = (args.dataset or Path(meta["dataset"])).resolve()
    secs = data["seconds"]
    print(f"{len(paths)} tracks, {len(set(y))} classes; musicnn model "
          f"{meta['model']} (tf {meta['tensorflow']}); extraction "
          f"{np.median(secs):.2f} s/track median, {secs.mean():.2f} s mean")

    sets: dict[str, np.ndarray] = {}
    for name in args.features:
        if name not in data.files:
            avail = [f for f in data.files if f.endswith(("_mean", "_meanstd"))]
            raise SystemExit(f"{name!r} not in {args.npz}; available: {avail}")
        sets[f"musicnn {name}"] = np.asarray(data[name], dtype=np.float64)
    if not args.no_baseline:
        t0 = time.perf_counter()
        sets[f"{BASELINE_NAME} (genrevision.signal.baseline)"] = baseline_features(root, paths)
        dt = time.perf_counter() - t0
        print(f"{BASELINE_NAME} features: {dt / len(paths):.2f} s/track")

    results = {}
    for name, X in sets.items():
        t0 = time.perf_counter()
        results[name] = evaluate(X, y, args.seeds, args.n_splits, args.jobs)
        print(f"  evaluated {name} in {time.perf_counter() - t0:.1f} s", flush=True)

    n_rep = len(args.seeds)
    print(f"\nStandardScaler + SVC(rbf), C in {{1,10,100}} by inner 3-fold CV; "
          f"{n_rep} x StratifiedKFold({args.n_splits}, shuffle) seeds "
          f"{args.seeds}. Random folds on GTZAN leak artists: optimistic.\n")
    print("| features | dim | accuracy (mean ± std over repeats) | "
          "fold min–max | C chosen |")
    print("|---|---:|---:|---:|---|")
    for name, (fold_acc, rep_acc, chosen) in results.items():
        cs = ", ".join(f"{int(c)}×{n}" for c, n in sorted(Counter(chosen).items()))
        print(f"| {name} | {sets[name].shape[1]} | {rep_acc.mean():.3f} ± "
              f"{rep_acc.std(ddof=1) if n_rep > 1 else 0.0:.3f} | "
              f"{fold_acc.min():.2f}–{fold_acc.max():.2f} | {cs} |")

    base = [k for k in results if k.startswith(BASELINE_NAME)]
    if base:
        b = results[base[0]][0]
        print()
        for name, (fold_acc, _, _) in results.items():
            if name == base[0]:
                continue
            d = (fold_acc - b).ravel()
            print(f"{name} − {BASELINE_NAME}: {d.mean():+.3f} per fold "
                  f"(better in {(d > 0).sum()}, worse in {(d < 0).sum()} "
                  f"of {d.size} folds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
