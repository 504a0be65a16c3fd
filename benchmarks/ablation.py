"""Ablation of the default recipe's levers, every row on the same folds.

Prints a Markdown table (mean ± std accuracy over all folds of all repeats)
and writes it with the raw numbers as JSON. Each row is a Recipe variant
evaluated with ``genrevision.evaluation.experiment.evaluate_recipe`` (inner CV chooses
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

from genrevision.evaluation.dataset import load_dataset
from genrevision._utils.files import feature_cache
from genrevision.evaluation.protocols import gtzan_split_labels, make_splits
from genrevision.evaluation.experiment import evaluate_baseline, evaluate_recipe
from genrevision.features.extraction import extract_cached
from genrevision.recipes import get_recipe

DEFAULT_CACHE = feature_cache()

#: The representation levers: one feature setting changed from a recipe's (``FeatureSettings.with_``).
#: Rows below, and ``benchmarks/new_artists.py``'s ``NAME@VARIANT``, use them by name.
FEATURE_LEVERS = {
    "lite0": {"backbone": "efficientnet_lite0"},
    "lite1": {"backbone": "efficientnet_lite1"},
    "whole": {"spec_layout": "whole"},
    "224px": {"spec_image_size": (224, 224)},
    "linear": {"spec_scale": "linear", "spec_image_size": (128, 129)},
    "db60": {"spec_top_db": 60.0},
    "db100": {"spec_top_db": 100.0},
    "win1.5": {"spec_window_seconds": 1.5, "spec_window_hop_seconds": 1.5, "spec_max_windows": 20},
    "win6": {"spec_window_seconds": 6.0, "spec_window_hop_seconds": 6.0, "spec_max_windows": 5},
    "hop1.5": {"spec_window_hop_seconds": 1.5, "spec_max_windows": 19},
    "stacked": {"channels": "stacked"},
    "hpss17": {"hpss_kernel": (17, 17)},
    "hpss63": {"hpss_kernel": (63, 63)},
    "margin2": {"hpss_margin": (2.0, 2.0)},
}


def variants():
    """(name, recipe, row) rows: the paper, the default, then one lever changed at a time.

    ``row`` is the evaluation row read ("fused" = the recipe's own prediction).
    """
    d = get_recipe("default")
    p = get_recipe("paper")
    R = dataclasses.replace
    OHP = "original+harmonic+percussive"

    def feat(lever):
        return R(d, features=d.features.with_(**FEATURE_LEVERS[lever]))

    rows = [
        ("paper recipe: whole-track linear STFT, penultimate layer, RBF-SVM per view, .5/.1/.4 (Lite0)", p),
        ("default: Lite2, 3 s mel windows, stage means+maxima + penultimate, O|H|P joined, window-level linear", d),
        ("  EfficientNet-Lite0 instead of Lite2", feat("lite0")),
        ("  EfficientNet-Lite1 instead of Lite2", feat("lite1")),
        ("  stage maxima only", R(d, layers="max")),
        ("  stage means only", R(d, layers="mean")),
        ("  penultimate layer only", R(d, layers="last")),
        ("  whole track in one image (the paper's layout) instead of 3 s windows", feat("whole")),
        ("  windows upsampled to 224×224 (the CNN's training size)", feat("224px")),
        ("  track-level mean+std pooling instead of window-level training", R(d, pooling="meanstd")),
        ("  track-level mean+std pooling, RBF-SVM head", R(d, pooling="meanstd", head="svm")),
        ("  linear frequency axis (STFT bins resized to 128 rows) instead of mel", feat("linear")),
        ("  dB range 60 instead of 80", feat("db60")),
        ("  dB range 100 instead of 80", feat("db100")),
        ("  1.5 s windows (20 per track) instead of 3 s", feat("win1.5")),
        ("  6 s windows (5 per track) instead of 3 s", feat("win6")),
        ("  3 s windows with 1.5 s hop (19 per track)", feat("hop1.5")),
        ("  O/H/P as the R/G/B channels of one image (one CNN pass)", feat("stacked")),
        ("  HPSS kernel 17 instead of 31", feat("hpss17")),
        ("  HPSS kernel 63 instead of 31", feat("hpss63")),
        ("  HPSS margin 2 instead of 1", feat("margin2")),
        # Learned fusion fits every head once per inner fold: C is fixed (at the value
        # inner CV picks for the default) to keep these rows affordable.
        ("  C fixed at 0.01 instead of chosen by inner CV", R(d, C=0.01)),
        ("  views separate, fusion weights learned on inner folds (C 0.01)", R(d, views="separate", fusion_weights="learned", C=0.01)),
        ("  views separate, stacking meta-classifier on inner out-of-fold likelihoods (C 0.01)",
         R(d, views="separate", fusion_weights="learned", C=0.01), f"{OHP} (stacking)"),
        ("  hybrid: + MFCC baseline as a fourth view, weights learned (C 0.01)", R(d, hybrid_mfcc=True, fusion_weights="learned", C=0.01)),
    ]
    return [r if len(r) == 3 else r + ("fused",) for r in rows]


def protocol_folds(ds, protocol, *, folds=10, repeats=5, splits_dir=None):
    """The folds every row is scored on (seed 0): k-fold ``cv``/``block`` or the fault-filtered ``split``."""
    split = None
    if protocol == "split":
        split = ds.splits
        if split is None:
            root = os.path.abspath(str(ds.root).rstrip("/"))
            split = gtzan_split_labels(ds.paths, splits_dir or os.path.join(os.path.dirname(root), "gtzan-splits"))
    return make_splits(protocol, labels=ds.labels, track_ids=ds.track_ids, split=split, n_splits=folds,
                       n_repeats=repeats, random_state=0)


def dataset_features(res, paths):
    """Every track's feature dict from an extraction result, in ``paths`` order; exits if any failed."""
    if res.failures:
        sys.exit(f"extraction failed for {len(res.failures)} tracks: {res.failures[:3]}")
    return [res.features[p] for p in paths]


def run_table(table, ds, folds, *, args, argv, script):
    """Evaluate rows on ``folds``, resumably (rows already in ``args.json`` are kept), and print the table.

    ``table`` holds ``(name, source, row)``: ``source`` is a Recipe (scored by
    ``evaluate_recipe``) or a callable ``(folds, jobs) -> {row: entry}``
    (an ``evaluate_predictions`` entry per row); rows of one source share
    one evaluation. The MFCC baseline is added on the same folds.
    """
    y = ds.labels
    header = {"protocol": args.protocol, "folds": args.folds, "repeats": args.repeats}
    done = {}
    if args.json and os.path.exists(args.json):
        with open(args.json) as f:
            prev = json.load(f)
        if all(prev.get(k) == v for k, v in header.items()):
            done = {r["name"]: r for r in prev.get("rows", [])}
    rows = list(done.values())
    meta = {**header, "n_tracks": int(len(y)), "command": f"python {script} " + " ".join(argv), "niceness": os.nice(0),
            "cpu_count": os.cpu_count(), "jobs": args.jobs,
            "folds_test": [[int(f.repeat), [int(i) for i in f.test]] for f in folds]}

    def save():
        if args.json:
            tmp = args.json + ".tmp"
            with open(tmp, "w") as f:
                json.dump({**meta, "rows": rows}, f, indent=2)
            os.replace(tmp, args.json)

    feats_by_key, speed = {}, {}

    def features_of(recipe):
        key = json.dumps(recipe.features.to_dict(), sort_keys=True)
        if key not in feats_by_key:
            t = time.perf_counter()
            res = extract_cached(ds.paths, recipe.features, cache=args.cache)
            feats_by_key[key] = dataset_features(res, ds.paths)
            if res.computed == len(ds.paths):  # a cold run: its speed is the recipe's extraction cost
                speed[key] = len(ds.paths) / (time.perf_counter() - t)
        return feats_by_key[key], key

    evaluated = {}
    for name, source, row in table:
        if name.strip() in done:
            print(f"{name:90s} {100 * done[name.strip()]['mean']:.1f} (from {args.json})", flush=True)
            continue
        t, c, load = time.perf_counter(), time.process_time(), os.getloadavg()
        key = None
        if callable(source):
            if id(source) not in evaluated:
                evaluated[id(source)] = source(folds, args.jobs)
            e = evaluated[id(source)][row]
        else:
            F, key = features_of(source)
            if repr(source) not in evaluated:  # rows reading other rows of one evaluation share it
                evaluated[repr(source)] = evaluate_recipe(source, F, y, folds, heads=[source.head], jobs=args.jobs,
                                                          progress=True)[0][source.head]
            e = evaluated[repr(source)][row]
        rows.append({"name": name.strip(), "mean": float(e["mean"]), "std": float(e["std"]),
                     "fold_accuracies": [float(x) for x in e["fold_accuracies"]],
                     # CPU of this process only: with --jobs > 1 the folds run in worker processes.
                     "seconds": time.perf_counter() - t, "cpu_seconds_main_process": time.process_time() - c,
                     "load_avg_before": load, "load_avg_after": os.getloadavg(),
                     "extract_tracks_per_s": speed.get(key)})
        save()
        print(f"{name:90s} {100 * e['mean']:.1f} ± {100 * e['std']:.1f}", flush=True)
    if not any(r["name"].startswith("baseline") for r in rows):
        # Engineered baseline on the same folds.
        F, _ = features_of(get_recipe("default"))
        e, _ = evaluate_baseline(F, y, folds, jobs=args.jobs)
        rows.append({"name": "baseline: MFCC + spectral statistics, RBF-SVM", "mean": float(e["mean"]), "std": float(e["std"]),
                     "fold_accuracies": [float(x) for x in e["fold_accuracies"]]})
        save()
    print(f"\n{args.protocol}, {args.folds} folds × {args.repeats} repeats, {len(y)} tracks\n" if args.protocol != "split"
          else f"\nsplit (fault-filtered), {len(folds[0].train)} training / {len(folds[0].test)} test tracks\n")
    print(markdown_table(rows, folds))
    return rows


def markdown_table(rows, folds):
    """Rows share folds, so the paired difference to the default (mean over
    folds; ± std of the per-repeat means) is far less noisy than the rows' own
    spreads, which are dominated by how hard each fold is."""
    reps = np.array([f.repeat for f in folds])
    ref_row = next((r for r in rows if r["name"].startswith("default")), None)
    ref = None if ref_row is None else np.array(ref_row["fold_accuracies"])
    out = ["| configuration | accuracy (%) | vs default (points) | extraction (tracks/s) |", "|---|---|---|---|"]
    for r in rows:
        tps = r.get("extract_tracks_per_s")
        diff = ""
        if ref is not None and "fold_accuracies" in r and r is not ref_row:
            d = np.array(r["fold_accuracies"]) - ref
            per_rep = [d[reps == k].mean() for k in np.unique(reps)]
            diff = f"{100 * d.mean():+.1f} ± {100 * np.std(per_rep):.1f}"
            if len(np.unique(reps)) == 1 and len(d) == 1:
                diff = f"{100 * d.mean():+.1f}"
        out.append(f"| {r['name']} | {100 * r['mean']:.1f} ± {100 * r['std']:.1f} | {diff} | {'' if tps is None else f'{tps:.2f}'} |")
    return "\n".join(out)


def arguments(description, *, protocols=("cv", "block", "paper", "split")):
    """The command-line options ablation.py and levers.py share."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=os.path.join("..", "shared", "data", "gtzan-mini"))
    ap.add_argument("--protocol", default="cv", choices=list(protocols))
    ap.add_argument("--folds", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cache", default=DEFAULT_CACHE)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--json", default=None)
    return ap


def run_cli(description, make_table, *, protocols=("cv", "block", "paper", "split"), script, argv=None):
    """Parse the shared options, build the rows (``make_table(ds, args)``), keep ``--rows``, run them."""
    ap = arguments(description, protocols=protocols)
    # --only: this script's earlier name of the option.
    ap.add_argument("--rows", "--only", dest="rows", type=int, nargs="*",
                    help="row numbers to run, in the order given (default: all)")
    argv = sys.argv[1:] if argv is None else argv
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    ds = load_dataset(args.data)
    folds = protocol_folds(ds, args.protocol, folds=args.folds, repeats=args.repeats)
    table = make_table(ds, args)
    if args.rows:
        table = [table[i] for i in args.rows]
    return run_table(table, ds, folds, args=args, argv=argv, script=script)


def main(argv=None):
    run_cli(__doc__, lambda ds, args: variants(), script=os.path.relpath(__file__), argv=argv)


if __name__ == "__main__":
    main()
