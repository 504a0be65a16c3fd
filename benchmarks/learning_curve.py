"""Learning curve: accuracy against training tracks per genre, on fixed test folds (issue #16, "why").

Each fold of the protocol (cv 10×5 or block 10×5, seed 0, ablation.py's
folds) keeps its test tracks; its training side is cut to ``k`` tracks per
genre (a seeded random choice, the same for every row), and the default
recipe and the MFCC baseline are fitted on what is left. If accuracy still
climbs at the full ~10 tracks per genre, the recipe is limited by how few
examples it sees, not only by its features: the reason a 109-track dataset
cannot show what a music-trained or fine-tuned network would do with more.

    nice -n 10 python benchmarks/learning_curve.py ../shared/data/gtzan-mini --protocol cv \\
        --json benchmarks/results/learning-curve-cv.json --plot benchmarks/results/learning-curve-cv.png

Over artists (issue #21; the honest one): artist-grouped folds of gtzan-mini ∪ gtzan-more
(``--protocol group``, 5 folds × 3 repeats), the training side cut to ``k`` *artists* per genre
(every track of each chosen artist); genres of one artist are trained on, never tested:

    python benchmarks/learning_curve.py manifests/gtzan-shared.csv --protocol group --sizes 1 2 3 5 \\
        --json benchmarks/results/learning-curve-artists.json --plot benchmarks/results/learning-curve-artists.png
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from ablation import dataset_features  # noqa: E402

from genrevision.evaluation.dataset import load_dataset  # noqa: E402
from genrevision.evaluation.protocols import Fold, make_splits  # noqa: E402
from genrevision.evaluation.experiment import evaluate_baseline, evaluate_recipe  # noqa: E402
from genrevision.features.extraction import extract_cached  # noqa: E402
from genrevision._utils.files import user_cache  # noqa: E402
from genrevision.recipes import get_recipe  # noqa: E402


def cut_fold(fold, y, k, seed):
    """The fold with at most ``k`` training tracks per genre (test side unchanged)."""
    if k is None:
        return fold
    rng = np.random.default_rng(seed)
    keep = [np.sort(rng.permutation(fold.train[y[fold.train] == c])[:k]) for c in np.unique(y[fold.train])]
    return Fold(fold.repeat, np.sort(np.concatenate(keep)), fold.test)


def cut_fold_artists(fold, y, groups, k, seed):
    """The fold with the tracks of at most ``k`` artists per genre on its training side (test side unchanged)."""
    if k is None:
        return fold
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y[fold.train]):
        tr = fold.train[y[fold.train] == c]
        chosen = rng.permutation(np.unique(groups[tr]))[:k]
        keep.append(tr[np.isin(groups[tr], chosen)])
    return Fold(fold.repeat, np.sort(np.concatenate(keep)), fold.test)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=os.path.join("..", "shared", "data", "gtzan-mini"))
    ap.add_argument("--protocol", default="cv", choices=["cv", "block", "group"],
                    help="group: artist-grouped folds (5 × 3), training side cut in artists per genre")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 5, 7], help="training tracks per genre (all are added)")
    ap.add_argument("--cache", default=os.environ.get("GENREVISION_CACHE") or user_cache("features"))
    ap.add_argument("--repeats", type=int, default=None, help="repeats of the folds (default: 3 for group, 5 otherwise)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--json", default=None)
    ap.add_argument("--plot", default=None, help="PNG of the curves")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")

    t0, c0 = time.perf_counter(), time.process_time()
    ds = load_dataset(args.data)
    y = ds.labels
    by_artist = args.protocol == "group"
    groups = None if ds.groups is None else np.asarray(ds.groups)
    folds = make_splits(args.protocol, labels=y, track_ids=ds.track_ids, groups=groups,
                        n_splits=5 if by_artist else 10,
                        n_repeats=args.repeats or (3 if by_artist else 5), random_state=0)
    unit = "artists" if by_artist else "tracks"
    recipe = get_recipe("default")
    F = dataset_features(extract_cached(ds.paths, recipe.features, cache=args.cache), ds.paths)

    rows = []
    for k in sorted(args.sizes) + [None]:
        if by_artist:
            cut = [cut_fold_artists(f, y, groups, k, seed=1000 + i) for i, f in enumerate(folds)]
            per_genre = np.mean([len(np.unique(groups[f.train])) for f in cut]) / len(np.unique(y))
        else:
            cut = [cut_fold(f, y, k, seed=1000 + i) for i, f in enumerate(folds)]
            per_genre = np.mean([len(f.train) for f in cut]) / len(np.unique(y))
        d = evaluate_recipe(recipe, F, y, cut, heads=[recipe.head], jobs=args.jobs, progress=False,
                            groups=groups)[0][recipe.head]["fused"]
        b, _ = evaluate_baseline(F, y, cut, jobs=args.jobs, progress=False, groups=groups)
        rows.append({f"{unit}_per_genre": k or "all", "mean_train_per_genre": float(per_genre),
                     "default": [float(a) for a in d["fold_accuracies"]], "mfcc": [float(a) for a in b["fold_accuracies"]]})
        print(f"{str(k or 'all'):>4} {unit} per genre ({per_genre:.1f} on average): default {100 * np.mean(rows[-1]['default']):.1f}  "
              f"MFCC {100 * np.mean(rows[-1]['mfcc']):.1f}", flush=True)

    out = {"command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])), "protocol": args.protocol,
           "folds": len(folds), "n_tracks": len(y), "rows": rows, "wall_s": time.perf_counter() - t0,
           "cpu_s": time.process_time() - c0, "load_avg_at_end": os.getloadavg()}
    print(f"\n{args.protocol}, {len(folds)} folds, {len(y)} tracks; test folds fixed, training side cut per genre\n")
    print(f"| training {unit} per genre | default (%) | MFCC baseline (%) | default − MFCC (points) |\n|---|---|---|---|")
    for r in rows:
        a, m = np.array(r["default"]), np.array(r["mfcc"])
        print(f"| {r[f'{unit}_per_genre']} ({r['mean_train_per_genre']:.1f}) | {100 * a.mean():.1f} ± {100 * a.std():.1f} | "
              f"{100 * m.mean():.1f} ± {100 * m.std():.1f} | {100 * (a - m).mean():+.1f} |")
    # Slope of the last doubling-ish step: points per extra track per genre near the full size.
    a1, a2 = (np.mean(rows[i]["default"]) for i in (-2, -1))
    n1, n2 = rows[-2]["mean_train_per_genre"], rows[-1]["mean_train_per_genre"]
    out["last_step_points_per_track_per_genre"] = float(100 * (a2 - a1) / (n2 - n1))
    print(f"\nlast step: {out['last_step_points_per_track_per_genre']:+.2f} points per extra training {unit[:-1]} per genre "
          f"({n1:.1f} → {n2:.1f}); {out['wall_s']:.0f} s wall, {out['cpu_s']:.0f} s CPU, load {out['load_avg_at_end'][0]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        x = [r["mean_train_per_genre"] for r in rows]
        for key, label in (("default", "default recipe (frozen Lite2)"), ("mfcc", "MFCC + spectral, RBF-SVM")):
            m = np.array([np.mean(r[key]) for r in rows]) * 100
            se = np.array([np.std(r[key]) / np.sqrt(len(r[key])) for r in rows]) * 100
            ax.errorbar(x, m, yerr=1.96 * se, marker="o", capsize=3, label=label)
        if not by_artist:  # measured on random folds of gtzan-mini only
            ax.axhline(93.0, color="grey", ls="--", lw=1, label="musicnn (MSD-trained), all tracks")
        ax.set_xlabel(f"training {unit} per genre")
        ax.set_ylabel(f"accuracy (%), {args.protocol} {len(folds)} folds")
        ax.set_title(f"Learning curve on {len(y)} GTZAN tracks", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
