"""The "other levers" of issue #16 against the default recipe, every row on the same folds.

Rows (paired per-fold differences against the default are printed):

* default recipe (C by inner CV);
* stacking as the fusion: views separate, a meta-classifier on inner
  out-of-fold likelihoods (C fixed at 0.01, as in ablation.py);
* attention pooling over windows instead of the log-mean
  (:class:`genrevision.learn.attention.AttentionPoolingClassifier`; weight decay
  and epochs chosen on inner folds);
* learned soft-maximum (LSE) pooling of the window log-likelihoods, its
  sharpness chosen on inner folds (``Recipe(aggregate="lse")``);
* the MFCC hybrid (MFCC baseline as a fourth view, weights learned, C 0.01);
* test-time averaging over shifted windows (the default head also reads the
  windows shifted by 1.5 s, 19 per track) and the head trained and tested on
  offset-0 + shifted windows, both from benchmarks/tuned_screen.py's frozen
  activations; their own "default" row (the same head on the offset-0
  windows of those PyTorch features) is printed as a check that it equals
  the default;
* if run (``--rows 8 9 10 11``; Lite0 and Lite1 features are extracted once):
  an ensemble over backbones, the default recipe's heads on Lite0, Lite1 and
  Lite2 with their track log-likelihoods averaged, and each member alone.

The machinery (folds, resumable JSON, baseline, Markdown table) is
ablation.py's. ``--protocol split`` is the fault-filtered split (one fold).

    nice -n 10 python benchmarks/levers.py ../shared/data/gtzan-mini --protocol cv --repeats 5 \\
        --json benchmarks/results/levers-cv.json
    nice -n 10 python benchmarks/levers.py ../shared/data/gtzan-mini --protocol block --repeats 5 \\
        --json benchmarks/results/levers-block.json
    nice -n 10 python benchmarks/levers.py ../shared/data/gtzan-mini --protocol split \\
        --json benchmarks/results/levers-split.json
"""
from __future__ import annotations

import dataclasses
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ablation import dataset_features, run_cli  # noqa: E402

from genrevision.evaluation.experiment import _rows_by_head, _run_folds  # noqa: E402
from genrevision.recipes import get_recipe  # noqa: E402

OHP = "original+harmonic+percussive"


def shifted_window_rows(ds, cache):
    """``(folds, jobs) -> rows`` of the shifted-window levers (the default head, PyTorch frozen features)."""
    from tuned_screen import _ragged, frozen_activations, frozen_window_features

    recipe = get_recipe("default")
    y = ds.labels

    def fold(f):
        tr, te = f.train, f.test
        head = recipe.make_head().fit(_ragged(f_base, tr), y[tr])
        rows = {"offset 0": head.predict_proba(_ragged(f_base, te)),
                "test-time shifted": head.predict_proba(_ragged(f_base, te, shifted=f_shift))}
        both = recipe.make_head().fit(_ragged(f_base, tr, shifted=f_shift), y[tr])
        rows["trained shifted"] = both.predict_proba(_ragged(f_base, te, shifted=f_shift))
        return {"shift": (rows, head.classes_)}

    def evaluate(folds, jobs):
        nonlocal f_base, f_shift
        base, shift, _ = frozen_activations(ds.paths, recipe.features, cache=cache)
        f_base, f_shift = frozen_window_features(base, shift, recipe.features)
        per_fold, _ = _run_folds(fold, folds, name="shifted windows", jobs=jobs, progress=True, folder=None,
                                 key=None, heads=["shift"], classes_dtype=y.dtype)
        return _rows_by_head(per_fold, y, folds)["shift"]

    f_base = f_shift = None
    return evaluate


def backbone_ensemble_rows(ds, cache, backbones=("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")):
    """``(folds, jobs) -> rows``: the default recipe on each backbone, and their window-level
    log-likelihoods averaged (each head's track log-likelihoods, then their mean, renormalised)."""
    from genrevision.learn.classifiers import _softmax
    from genrevision.features.extraction import extract_cached

    d = get_recipe("default")
    y = ds.labels
    recipes = [dataclasses.replace(d, features=d.features.with_(backbone=b)) for b in backbones]

    def fold(f):
        rows, logs = {}, []
        for b, r, (X, views) in zip(backbones, recipes, matrices):
            clf = r.classifier(views).fit(X[f.train], y[f.train])
            rows[b] = clf.predict_proba(X[f.test])
            logs.append(np.log(np.clip(rows[b], 1e-12, None)))
        rows["ensemble"] = _softmax(np.mean(logs, axis=0))
        return {"ensemble": (rows, clf.classes_)}

    def evaluate(folds, jobs):
        for r in recipes:
            matrices.append(r.matrix(dataset_features(extract_cached(ds.paths, r.features, cache=cache, jobs=jobs), ds.paths)))
        per_fold, _ = _run_folds(fold, folds, name="backbone ensemble", jobs=jobs, progress=True, folder=None,
                                 key=None, heads=["ensemble"], classes_dtype=y.dtype)
        return _rows_by_head(per_fold, y, folds)["ensemble"]

    matrices = []
    return evaluate


def levers(ds, cache):
    """(name, source, row) rows of :func:`ablation.run_table`."""
    d = get_recipe("default")
    R = dataclasses.replace
    shifted = shifted_window_rows(ds, cache)
    ensemble = backbone_ensemble_rows(ds, cache)
    return [
        ("default: Lite2, 3 s mel windows, stage means+maxima + penultimate, O|H|P joined, window-level linear, log-mean", d, "fused"),
        ("  attention pooling over windows (Ilse et al. 2018; weight decay, epochs on inner folds)",
         R(d, head="attention"), "fused"),
        ("  soft-maximum (LSE) pooling of window log-likelihoods, sharpness on inner folds", R(d, aggregate="lse"), "fused"),
        ("  views separate, stacking meta-classifier on inner out-of-fold likelihoods (C 0.01)",
         R(d, views="separate", fusion_weights="learned", C=0.01), f"{OHP} (stacking)"),
        ("  hybrid: + MFCC baseline as a fourth view, weights learned (C 0.01)",
         R(d, hybrid_mfcc=True, fusion_weights="learned", C=0.01), "fused"),
        ("  check: the default head on tuned_screen.py's PyTorch frozen features (offset 0)", shifted, "offset 0"),
        ("  test-time averaging over shifted windows (19 per track at test)", shifted, "test-time shifted"),
        ("  head trained and tested on offset-0 + shifted windows", shifted, "trained shifted"),
        # Needs the Lite0 and Lite1 all+max features (extracted once, cached): run with --rows 8 9 10 11.
        ("  ensemble over backbones: Lite0 + Lite1 + Lite2 default heads, log-likelihoods averaged", ensemble, "ensemble"),
        ("  default recipe on EfficientNet-Lite0", ensemble, "efficientnet_lite0"),
        ("  default recipe on EfficientNet-Lite1", ensemble, "efficientnet_lite1"),
        ("  check: default recipe on EfficientNet-Lite2 (the ensemble's member)", ensemble, "efficientnet_lite2"),
    ]


def main(argv=None):
    run_cli(__doc__, lambda ds, args: levers(ds, args.cache), protocols=("cv", "block", "split"),
            script=os.path.relpath(__file__), argv=argv)


if __name__ == "__main__":
    main()
