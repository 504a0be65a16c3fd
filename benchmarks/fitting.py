"""Fitting time of the paper recipe against the default's, and the paper's predictions before/after.

Plain script (not a test)::

    python benchmarks/fitting.py                      # 243 shared tracks, 5 artist-grouped folds
    python benchmarks/fitting.py --folds 5 --use 2 --json out.json

Features come from the feature cache (``extract_cached``: computed first if
missing). Each fold runs :func:`genrevision.evaluation.experiment.fold_rows` for every
head of a recipe, as one fold worker of ``evaluate`` does (one BLAS thread:
``evaluate`` runs folds side by side). The paper recipe runs twice per fold,
interleaved: with today's :class:`~genrevision.learn.classifiers.ViewSVM`
(precomputed kernels) and with the reference implementation kept here (the
GridSearchCV + rbf-SVC pipeline it replaced); the script prints both times,
their ratio, and the largest difference of any row's test likelihoods and
whether every row's predicted genres are identical. Load averages are
printed beside absolute figures: the machine is shared.
"""
from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = "1"  # one fold worker's threads (evaluate's folds run in parallel)

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def load():
    return "%.2f" % os.getloadavg()[0]


def reference_view_svm():
    """ViewSVM as fitted before precomputed kernels (GridSearchCV over StandardScaler + SVC(rbf))."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from genrevision.learn.classifiers import ViewSVM, _check_groups, _validate_fit_data, make_inner_cv

    class ReferenceViewSVM(ViewSVM):
        def fit(self, X, y, groups=None):
            X, y, self.classes_ = _validate_fit_data(self, X, y)
            groups = _check_groups(groups, X.shape[0])
            splits = make_inner_cv(y, groups, n_splits=self.inner_cv, random_state=self.random_state)
            var = StandardScaler().fit_transform(X).var()
            scale = 1.0 / (X.shape[1] * var) if var > 0 else 1.0
            search = GridSearchCV(Pipeline([("scale", StandardScaler()), ("svc", SVC(kernel="rbf"))]),
                                  {"svc__C": [float(c) for c in self.C_grid],
                                   "svc__gamma": [float(m) * scale for m in self.gamma_grid]},
                                  cv=splits, scoring="accuracy").fit(X, y)
            C, gamma = search.best_params_["svc__C"], search.best_params_["svc__gamma"]
            self.best_params_ = {"C": C, "gamma": gamma}
            if groups is not None and any(np.unique(groups[y == c]).size < 2 for c in self.classes_):
                splits = make_inner_cv(y, groups, n_splits=self.inner_cv, random_state=self.random_state,
                                       one_group="tracks")
            self.pipeline_ = Pipeline([("scale", StandardScaler()),
                                       ("svc", CalibratedClassifierCV(SVC(kernel="rbf", C=C, gamma=gamma),
                                                                      method="sigmoid", cv=splits,
                                                                      ensemble=False))]).fit(X, y)
            return self

    return ReferenceViewSVM


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--manifest", default=os.path.join(HERE, "..", "manifests", "gtzan-shared.csv"))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--use", type=int, default=None, help="run only the first N folds")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference (before) implementation")
    ap.add_argument("--json")
    args = ap.parse_args()

    from genrevision.evaluation.dataset import load_dataset
    from genrevision.evaluation.protocols import make_splits
    from genrevision.evaluation.experiment import fold_rows
    from genrevision.features.extraction import extract_cached
    from genrevision.recipes import Recipe, get_recipe

    ds = load_dataset(args.manifest)
    y, groups = np.asarray(ds.labels), np.asarray(ds.groups)
    folds = make_splits("group", labels=y, groups=groups, n_splits=args.folds, n_repeats=1, random_state=0)
    folds = folds[: args.use or len(folds)]
    Ref = reference_view_svm()

    class ReferenceRecipe(Recipe):
        def make_head(self, kind=None):
            return Ref() if (kind or self.head) == "svm" else super().make_head(kind)

    paper = get_recipe("paper")
    old_paper = ReferenceRecipe(**{f.name: getattr(paper, f.name) for f in dataclasses.fields(paper)})
    matrices = {}
    for r in (get_recipe("default"), paper):
        res = extract_cached(ds.paths, r.features, jobs=None, progress=False)
        matrices[r.name] = r.matrix([res.features[p] for p in ds.paths])

    def run(recipe, X, views, f):
        heads = [recipe.head] if recipe.views == "concat" else sorted({"svm", "softmax", recipe.head})
        t = time.process_time()
        out = {h: fold_rows(recipe, X, views, y, f.train, f.test, head=h, random_state=0, groups=groups)[0]
               for h in heads}
        return out, time.process_time() - t

    print(f"{len(ds)} tracks, {len(folds)} artist-grouped folds, one thread per fold (load {load()})", flush=True)
    run(paper, *matrices["paper"], folds[0])  # imports (torch for the softmax head) outside the timings
    totals = {"default": 0.0, "paper": 0.0, "paper_before": 0.0}
    worst, same = 0.0, True
    for i, f in enumerate(folds):
        _, td = run(get_recipe("default"), *matrices["default"], f)
        new, tp = run(paper, *matrices["paper"], f)
        totals["default"] += td
        totals["paper"] += tp
        line = f"fold {i}: default {td:.1f} s, paper {tp:.1f} s"
        if not args.no_reference:
            old, to = run(old_paper, *matrices["paper"], f)
            totals["paper_before"] += to
            diff = max(float(np.abs(new[h][r] - old[h][r]).max()) for h in new for r in new[h])
            eq = all(np.array_equal(new[h][r].argmax(1), old[h][r].argmax(1)) for h in new for r in new[h])
            worst, same = max(worst, diff), same and eq
            line += f", paper before {to:.1f} s; every row's predictions identical: {eq}, largest likelihood difference {diff:.1e}"
        print(line + f" (CPU seconds, load {load()})", flush=True)
    n = len(folds)
    print(f"per fold (CPU s): default {totals['default'] / n:.1f}, paper {totals['paper'] / n:.1f}"
          + (f", paper before {totals['paper_before'] / n:.1f} ({totals['paper_before'] / totals['paper']:.1f}x)"
             if not args.no_reference else "") + f" (load {load()})")
    print(f"paper / default fitting time: {totals['paper'] / totals['default']:.1f}x"
          + (f" (before: {totals['paper_before'] / totals['default']:.1f}x)" if not args.no_reference else ""))
    if not args.no_reference:
        print(f"paper predictions identical to before on every fold and row: {same} (largest likelihood difference {worst:.1e})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"tracks": len(ds), "folds": n, "cpu_seconds": totals, "identical": same,
                       "max_likelihood_difference": worst}, fh, indent=1)


if __name__ == "__main__":
    main()
