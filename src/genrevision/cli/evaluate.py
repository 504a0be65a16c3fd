"""``genrevision evaluate``: the paper's tables (and ours) under a cross-validation protocol."""
from __future__ import annotations

import argparse
import os

from . import _common as c


def add_parser(sub, fmt) -> None:
    p = sub.add_parser("evaluate", help="the paper's tables (and ours) under a cross-validation protocol",
                       formatter_class=fmt, epilog=c.examples(
                           "genrevision evaluate ../shared/data/gtzan-mini --out runs/evaluate-cv",
                           "genrevision evaluate ../shared/data/gtzan-mini --protocol paper --out runs/evaluate-paper",
                           "genrevision evaluate clips.csv --protocol group --folds 5 --repeats 3 --no-paper-recipe",
                           "(rerun the same command after an interruption: finished folds are loaded from OUT/folds)"))
    c.add_data_args(p)
    p.add_argument("--protocol", default="cv", choices=["cv", "paper", "group", "block", "split"],
                   help="cv: stratified k-fold, repeated (every track tested once per repeat); paper: repeated "
                        "stratified 90/10 splits as in the paper; group: folds keep a manifest group together; "
                        "block: contiguous GTZAN track-number blocks per genre; split: the manifest's split column "
                        "or --splits-dir (default: %(default)s)")
    p.add_argument("--out", default="runs/evaluate",
                   help="output folder for results.json, tables, report.html and the finished folds (default: %(default)s)")
    p.add_argument("--folds", type=int, default=10, help="k for cv/group/block (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="repeats with different seeds (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first repeat (default: %(default)s)")
    p.add_argument("--splits-dir", default=None,
                   help="folder with {train,valid,test}_filtered.txt (fault-filtered GTZAN) for --protocol split")
    p.add_argument("--paper-recipe", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the paper's recipe for Tables I-IV (default: on)")
    c.add_feature_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..evaluation.experiment import evaluate

    recipes = [args.recipe] + (["paper"] if args.paper_recipe and args.recipe != "paper" else [])
    result = evaluate(c.dataset(args), protocol=args.protocol, recipes=recipes, folds=args.folds,
                      repeats=args.repeats, seed=args.seed, cache=args.cache, jobs=args.jobs,
                      progress=not args.quiet, out=args.out, backbone=args.backbone, splits_dir=args.splits_dir)
    print(result.summary())
    print(f"report: {os.path.join(args.out, 'report.html')}")
    fit = result.timings["fitting"]
    loaded = sum(t["folds_loaded"] for t in fit.values())
    if loaded:
        print(f"resumed: {loaded} finished folds loaded from {os.path.join(args.out, 'folds')}")
    c.report_failures(result.failures)
    return 0
