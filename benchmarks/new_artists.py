"""Generalisation to artists the model never heard (issue #21).

(a) train on gtzan-mini (109 tracks; blues, classical, reggae and rock are one
    artist each), test on gtzan-more (134 tracks of classical, jazz and rock by
    34 other artists): per genre, confusion, the recipes and the MFCC baseline
    fitted on the same training tracks (inner searches grouped by artist);
(b) artist-grouped cross-validation on gtzan-mini ∪ gtzan-more (``--folds`` ×
    ``--repeats``): genres of one artist (blues, reggae) stay on the training
    side of every fold and are not scored.

Every figure here is artist-disjoint. The last line is (a):
``new artists: default N %, MFCC M %``.

    python benchmarks/new_artists.py [--recipes default paper] [--json benchmarks/results/new-artists.json]
    python benchmarks/new_artists.py --recipes default default+tuned tuned --cv-recipes default default+tuned --repeats 1
    python benchmarks/new_artists.py --recipes default default@lite0 --cv-recipes default default@lite0 --repeats 1
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from dataclasses import replace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from ablation import FEATURE_LEVERS, dataset_features  # noqa: E402

from genrevision.evaluation.dataset import load_dataset  # noqa: E402
from genrevision._utils.files import feature_cache  # noqa: E402
from genrevision.evaluation.protocols import Fold, make_splits, single_group_classes  # noqa: E402
from genrevision.evaluation.experiment import evaluate_baseline, evaluate_recipe  # noqa: E402
from genrevision.features.extraction import extract_cached  # noqa: E402
from genrevision.features.tuning import recipe_activations  # noqa: E402
from genrevision.recipes import get_recipe  # noqa: E402

MANIFEST = os.path.join(HERE, "..", "manifests", "gtzan-shared.csv")


def recipe_named(name: str):
    """A recipe by name; ``"NAME+tuned"`` is recipe NAME on the network fine-tuned as the ``tuned`` recipe's
    (once per training side: every fold tunes on its own training tracks, its early stopping grouped by artist);
    ``"NAME@VARIANT"`` is recipe NAME with one of the ablation's representation levers (``ablation.FEATURE_LEVERS``)
    changed."""
    rest, _, variant = name.partition("@")
    base, _, suffix = rest.partition("+")
    if suffix not in ("", "tuned"):
        raise SystemExit(f"{name}: the only suffix known is '+tuned'")
    if variant and variant not in FEATURE_LEVERS:
        raise SystemExit(f"{name}: unknown variant {variant!r}; choose one of {', '.join(FEATURE_LEVERS)}")
    recipe = get_recipe(base)
    if variant:
        recipe = replace(recipe, features=recipe.features.with_(**FEATURE_LEVERS[variant]))
    return replace(recipe, name=name, tune=get_recipe("tuned").tune) if suffix else replace(recipe, name=name)


def per_genre(y, entry):
    """``{genre: accuracy}`` over every test prediction of an ``evaluate_predictions`` entry."""
    truth = np.concatenate([y[t] for t in entry["fold_test"]])
    pred = np.concatenate([np.asarray(p, dtype=object) for p in entry["fold_pred"]])
    return {str(g): float(np.mean(pred[truth == g] == g)) for g in np.unique(truth)}


def confusion_lines(y, entry, labels):
    truth = np.concatenate([y[t] for t in entry["fold_test"]])
    pred = np.concatenate([np.asarray(p, dtype=object) for p in entry["fold_pred"]])
    lines = []
    for g in np.unique(truth):
        got = {lab: int(np.sum((truth == g) & (pred == lab))) for lab in labels}
        lines.append(f"    {g:>9} → " + ", ".join(f"{lab} {n}" for lab, n in got.items() if n))
    return lines


def score(name, entry, y):
    acc = per_genre(y, entry)
    return {"name": name, "mean": float(entry["mean"]), "std": float(entry["std"]),
            "fold_accuracies": [float(a) for a in entry["fold_accuracies"]], "per_genre": acc}


def run(ds, folds, recipes, features, *, jobs, groups, label, activations=None):
    """``activations``: recipe name → every track's fine-tuning activations (recipes with ``tune``)."""
    y = np.asarray(ds.labels)
    rows = []
    for r in recipes:
        t = time.perf_counter()
        tuned = {} if r.tune is None else {"activations": activations[r.name], "paths": ds.paths}
        res, _ = evaluate_recipe(r, features[r.name], y, folds, jobs=jobs, progress=False, groups=groups, **tuned)
        entry = res[r.head]["fused"]
        rows.append({**score(r.name, entry, y), "seconds": time.perf_counter() - t})
        rows[-1]["confusion"] = confusion_lines(y, entry, sorted(set(y)))
    base, _ = evaluate_baseline(features[recipes[0].name], y, folds, jobs=jobs, progress=False, groups=groups)
    rows.append({**score("MFCC", base, y), "confusion": confusion_lines(y, base, sorted(set(y)))})
    print(f"\n{label}")
    for row in rows:
        genres = "  ".join(f"{g} {100 * a:.0f}" for g, a in row["per_genre"].items())
        spread = f" ± {100 * row['std']:.1f} (std over {len(folds)} folds)" if len(folds) > 1 else ""
        print(f"  {row['name']:>8}: {100 * row['mean']:.1f} %{spread}   per genre: {genres}")
        if len(folds) == 1:
            print("\n".join(row["confusion"]))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default=MANIFEST, help="gtzan-mini ∪ gtzan-more with artist groups")
    ap.add_argument("--recipes", nargs="+", default=["default", "paper"],
                    help="recipes of (a); NAME+tuned: recipe NAME on a network fine-tuned per training side")
    ap.add_argument("--cv-recipes", nargs="+", default=["default"],
                    help="recipes of (b) (the paper recipe's nested grouped searches take ~1 min a fold here)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-cv", action="store_true", help="only (a)")
    ap.add_argument("--cache", default=feature_cache())
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    t0, c0 = time.perf_counter(), time.process_time()

    ds = load_dataset(args.manifest)
    y, groups = np.asarray(ds.labels), np.asarray(ds.groups)
    mini = np.array(["gtzan-mini" in p for p in ds.paths])
    recipes = [recipe_named(r) for r in args.recipes]
    cv_recipes = [recipe_named(r) for r in args.cv_recipes]
    features = {}
    for r in {r.name: r for r in recipes + cv_recipes}.values():
        res = extract_cached(ds.paths, r.features, cache=args.cache, jobs=args.jobs, progress=True)
        features[r.name] = dataset_features(res, ds.paths)
    activations = {}
    for r in {r.name: r for r in recipes + cv_recipes if r.tune is not None}.values():
        arrays, failed = recipe_activations(r, dict(zip(ds.paths, features[r.name])), cache=args.cache)
        if failed:
            sys.exit(f"frozen-stage activations failed for {len(failed)} tracks: {failed[:3]}")
        activations[r.name] = [arrays[p] for p in ds.paths]

    out = {"command": "python benchmarks/new_artists.py " + " ".join(argv or sys.argv[1:]),
           "load_average_start": os.getloadavg()}
    # (a) one split: every gtzan-mini track trains, every gtzan-more track is tested.
    split = [Fold(0, np.flatnonzero(mini), np.flatnonzero(~mini))]
    out["a"] = run(ds, split, recipes, features, jobs=args.jobs, groups=groups, activations=activations,
                   label=f"(a) trained on gtzan-mini ({mini.sum()} tracks), tested on gtzan-more "
                         f"({(~mini).sum()} tracks by {len(set(groups[~mini]))} other artists)")
    if not args.skip_cv:
        untested = single_group_classes(y, groups)
        folds = make_splits("group", labels=y, groups=groups, n_splits=args.folds, n_repeats=args.repeats)
        names = ", ".join(f"{c} (only {g})" for c, g in sorted(untested.items()))
        out["b"] = run(ds, folds, cv_recipes, features, jobs=args.jobs, groups=groups, activations=activations,
                       label=f"(b) artist-grouped CV on gtzan-mini ∪ gtzan-more, {args.folds} folds × {args.repeats}; "
                             f"not scored (one artist): {names}")
        out["b_untested"] = untested
    out["seconds"], out["cpu_seconds"] = time.perf_counter() - t0, time.process_time() - c0
    out["load_average_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    a = {row["name"]: row["mean"] for row in out["a"]}
    if "b" in out:
        b = {row["name"]: row["mean"] for row in out["b"]}
        print(f"\nartist-grouped CV: default {100 * b.get('default', float('nan')):.1f} %, MFCC {100 * b['MFCC']:.1f} %")
    print(f"({out['seconds']:.0f} s wall, {out['cpu_seconds']:.0f} s CPU, load average {out['load_average_end'][0]:.1f})")
    print(f"new artists: default {100 * a.get('default', float('nan')):.1f} %, MFCC {100 * a['MFCC']:.1f} %")


if __name__ == "__main__":
    main()
