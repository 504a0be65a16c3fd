"""Ablation of the default recipe's levers, every row on the same folds.

Prints a Markdown table (mean ± std accuracy over all folds of all repeats)
and writes it with the raw numbers as JSON. Each row is a Recipe variant
evaluated with ``genrevision.experiment.evaluate_recipe`` (inner CV chooses
every hyper-parameter on training folds only); the MFCC baseline runs on the
same folds. Features come from the shared cache, so only the first run pays
for extraction.

    python benchmarks/ablation.py ../shared/data/gtzan-mini --protocol cv --repeats 5
    python benchmarks/ablation.py ../shared/data/gtzan-mini --protocol block --repeats 5
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
import warnings

import numpy as np

from genrevision.dataset import load_dataset
from genrevision.evaluation import evaluate_predictions, make_splits
from genrevision.experiment import _baseline_fold, _parallel, evaluate_recipe
from genrevision.features import extract_dataset
from genrevision.recipes import get_recipe
from genrevision.store import FeatureStore

DEFAULT_CACHE = os.environ.get("GENREVISION_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "genrevision", "features"))


def variants():
    d = get_recipe("default")
    p = get_recipe("paper")
    R = dataclasses.replace
    return [
        ("paper recipe: whole-track linear STFT, fc (penultimate), RBF-SVM, .5/.1/.4", p),
        ("default: 3 s mel windows, stage means+maxima + penultimate, O|H|P joined, window-level linear", d),
        ("  stage maxima only", R(d, layers="max")),
        ("  stage means only", R(d, layers="mean")),
        ("  penultimate layer only", R(d, layers="last")),
        ("  whole track in one image (the paper's layout) instead of 3 s windows",
         R(d, features=d.features.with_(spec_layout="whole"))),
        ("  windows upsampled to 224×224 (the CNN's training size)",
         R(d, features=d.features.with_(spec_image_size=(224, 224)))),
        ("  track-level mean+std pooling instead of window-level training", R(d, pooling="meanstd")),
        ("  track-level mean+std pooling, RBF-SVM head", R(d, pooling="meanstd", head="svm")),
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=os.path.join("..", "shared", "data", "gtzan-mini"))
    ap.add_argument("--protocol", default="cv", choices=["cv", "block", "paper"])
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cache", default=DEFAULT_CACHE)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--only", type=int, nargs="*", help="row numbers to run (default: all)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")

    ds = load_dataset(args.data)
    y = ds.labels
    folds = make_splits(args.protocol, labels=y, track_ids=ds.track_ids, n_splits=args.folds,
                        n_repeats=args.repeats, random_state=0)
    rows = []
    feats_by_key = {}
    table = list(enumerate(variants()))
    if args.only:
        table = [table[i] for i in args.only]  # in the order given
    for i, (name, recipe) in table:
        key = json.dumps(recipe.features.to_dict(), sort_keys=True)
        if key not in feats_by_key:
            res = extract_dataset(ds.paths, recipe.features, store=FeatureStore(args.cache, recipe.features.to_dict()))
            if res.failures:
                sys.exit(f"extraction failed for {len(res.failures)} tracks: {res.failures[:3]}")
            feats_by_key[key] = [res.features[p] for p in ds.paths]
        F = feats_by_key[key]
        t = time.perf_counter()
        out = evaluate_recipe(recipe, F, y, folds, heads=[recipe.head], jobs=args.jobs, progress=True)
        e = out[recipe.head]["fused"]
        rows.append({"name": name.strip(), "mean": float(e["mean"]), "std": float(e["std"]),
                     "seconds": time.perf_counter() - t})
        print(f"{name:90s} {100 * e['mean']:.1f} ± {100 * e['std']:.1f}", flush=True)
    # Engineered baseline on the same folds.
    F = next(iter(feats_by_key.values()))
    Xb = np.stack([f["mfcc"] for f in F])
    base = _parallel(lambda f: _baseline_fold(Xb, y, f), folds, jobs=args.jobs, desc="baseline", progress=True)
    e = evaluate_predictions(y, {"mfcc": [b[0] for b in base]}, folds, classes=base[0][1])["mfcc"]
    rows.append({"name": "baseline: MFCC + spectral statistics, RBF-SVM", "mean": float(e["mean"]), "std": float(e["std"])})

    print(f"\n{args.protocol}, {args.folds} folds × {args.repeats} repeats, {len(y)} tracks\n")
    print("| configuration | accuracy (%) |\n|---|---|")
    for r in rows:
        print(f"| {r['name']} | {100 * r['mean']:.1f} ± {100 * r['std']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"protocol": args.protocol, "folds": args.folds, "repeats": args.repeats, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
