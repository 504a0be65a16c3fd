"""Screening of the fine-tuning lever (issue #16) against the default recipe, on ablation.py's folds.

For each fold of the ``cv`` protocol (or ``--protocol block``/``split``; seed 0, 10 folds × 5 repeats, the folds
benchmarks/ablation.py uses; the first ``--folds`` of them, repeat 0's
first), on the training tracks only:

* default: the frozen Lite2's window features (stage means + maxima +
  penultimate of O|H|P, computed here from the cached frozen activations,
  identical to ``Backbone.features(..., layers="all+max")`` in PyTorch) →
  the default recipe's head (window-level LinearHead, C by inner CV, log-mean
  per track);
* tuned: :class:`genrevision.features.tuning.FineTuner` trains the last stage + head
  conv + a new linear classifier (early stopping on ~10 % of the training
  tracks), then the same head on the tuned network's window features;
* tuned (own classifier): the tuned network's classifier, log-mean per track;
* "+ shifted test windows": the same fitted head also reads the windows
  shifted by 1.5 s (test-time averaging over 19 windows instead of 10);
* default, head trained and tested on offset-0 + shifted windows.

Prints a table with the paired per-fold difference against the default row,
and writes everything (fold accuracies, epochs, CPU seconds, load average,
the command) to ``--json``; resumable per fold.

    nice -n 15 python benchmarks/tuned_screen.py ../shared/data/gtzan-mini --folds 10 \
        --json benchmarks/results/tuned-screen.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

from genrevision.evaluation.dataset import load_dataset
from genrevision._utils.files import feature_cache
from genrevision.evaluation.protocols import make_splits
from genrevision.features.ragged import Ragged
from genrevision.recipes import get_recipe
from genrevision.features.tuning import FineTuner, TunedTail, dataset_activations, tail_features, tail_start, track_tensor

DEFAULT_CACHE = feature_cache()

ROWS = {
    "default": "default recipe (frozen Lite2), 10 windows",
    "default_tta": "default + shifted test windows (19 per track at test)",
    "default_shift_train": "default, head trained and tested on offset-0 + shifted windows",
    "tuned": "last stage + head conv fine-tuned → default linear head",
    "tuned_tta": "fine-tuned + shifted test windows",
    "tuned_own": "fine-tuned network's own linear classifier (log-mean over windows)",
}


def _acc(head, X, y, rec=None, key=None):
    pred = head.predict(X)
    if rec is not None:  # kept to see whether two rows with one accuracy predict the same tracks
        rec.setdefault("pred", {})[key] = [str(p) for p in pred]
    return float(np.mean(pred == y))


def _ragged(feats, idx, *, shifted=None):
    parts = [feats[i] if shifted is None else np.concatenate([feats[i], shifted[i]]) for i in idx]
    return Ragged.from_list(parts)


def frozen_activations(paths, settings, *, cache):
    """Cached frozen-stage activations of every track at offset 0 and shifted by half a window.

    Returns (base, shift, cost): per track ``track_tensor`` tuples, and the
    wall/CPU seconds and load average of reading (or computing) the cache.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    arrays, failures = dataset_activations(paths, settings, cache=cache)
    if failures:
        sys.exit(f"frozen stages failed for {len(failures)} tracks: {failures[:3]}")
    cost = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0, "load_avg": os.getloadavg()}
    views = settings.view_names
    base = [track_tensor(arrays[p], views) for p in paths]
    shift = [track_tensor(arrays[p], views, shifted=True) for p in paths]
    return base, shift, cost


def frozen_window_features(base, shift, settings):
    """The default recipe's window features (offset 0, shifted) from the frozen activations.

    An untrained tail gives exactly ``Backbone.features(layers="all+max")``
    (PyTorch), so these are the default features, also for shifted windows.
    """
    from genrevision.features.backbone import Backbone

    bb = Backbone(settings.backbone, engine="torch")
    frozen = TunedTail(bb.module, tail_start(bb.module))
    return [tail_features(frozen, *b) for b in base], [tail_features(frozen, *s) for s in shift]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="?", default=os.path.join("..", "shared", "data", "gtzan-mini"))
    ap.add_argument("--protocol", choices=("cv", "block", "split"), default="cv",
                    help="cv (10×5, seed 0), block (contiguous GTZAN numbers, the artist proxy, 10×5) or split (fault-filtered)")
    ap.add_argument("--folds", type=int, default=10, help="how many folds to run, in order: repeat 0's, then repeat 1's, ...")
    ap.add_argument("--n-splits", type=int, default=10, help="folds per repeat (10 = ablation.py's; fewer only for a smoke run)")
    ap.add_argument("--cache", default=DEFAULT_CACHE)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: on this shared 2-core machine 2 threads trained no faster)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--json", default=None)
    ap.add_argument("--ablation-json", default=os.path.join(os.path.dirname(__file__), "results", "ablation-cv.json"),
                    help="ablation.py's cv JSON: its rows on the same folds are printed beside (not rerun)")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(args.threads)

    recipe = get_recipe("default")
    settings = recipe.features
    ds = load_dataset(args.data)
    y = ds.labels
    split = None
    if args.protocol == "split":
        from genrevision.evaluation.protocols import gtzan_split_labels

        split = gtzan_split_labels(ds.paths, os.path.join(os.path.dirname(os.path.abspath(args.data.rstrip("/"))), "gtzan-splits"))
    folds = make_splits(args.protocol, labels=y, split=split, track_ids=ds.track_ids, n_splits=args.n_splits, n_repeats=5,
                        random_state=0)[: args.folds]

    base, shift, cache_cost = frozen_activations(ds.paths, settings, cache=args.cache)
    f_base, f_shift = frozen_window_features(base, shift, settings)
    tuner_params = dict(backbone=settings.backbone, epochs=args.epochs, threads=args.threads, random_state=0)

    out = {"command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])), "niceness": os.nice(0),
           "protocol": args.protocol, "n_splits": args.n_splits, "seed": 0, "folds_planned": args.folds, "n_tracks": len(y),
           "rows": ROWS, "fine_tuner": FineTuner(**tuner_params).__dict__, "frozen_cache": cache_cost, "per_fold": []}
    if args.json and os.path.exists(args.json):
        with open(args.json) as f:
            prev = json.load(f)
        if (prev.get("fine_tuner"), prev.get("n_splits"), prev.get("protocol", "cv")) == (out["fine_tuner"], args.n_splits, args.protocol):
            out["per_fold"] = prev.get("per_fold", [])
            out["frozen_cache"] = prev.get("frozen_cache", cache_cost)
    done = {r["fold"] for r in out["per_fold"]}

    def save():
        if args.json:
            tmp = args.json + ".tmp"
            with open(tmp, "w") as f:
                json.dump(out, f, indent=2, default=float)
            os.replace(tmp, args.json)

    for k, fold in enumerate(folds):
        if k in done:
            continue
        tr, te = fold.train, fold.test
        rec = {"fold": k, "repeat": int(fold.repeat), "n_train": int(len(tr)), "n_test": int(len(te)), "acc": {}}
        c0 = c = time.process_time()
        head = recipe.make_head().fit(_ragged(f_base, tr), y[tr])
        rec["acc"]["default"] = _acc(head, _ragged(f_base, te), y[te], rec, "default")
        rec["acc"]["default_tta"] = _acc(head, _ragged(f_base, te, shifted=f_shift), y[te], rec, "default_tta")
        rec["default_C"] = head.estimator_.best_params_["C"]
        rec["head_cpu_s"] = time.process_time() - c
        h2 = recipe.make_head().fit(_ragged(f_base, tr, shifted=f_shift), y[tr])
        rec["acc"]["default_shift_train"] = _acc(h2, _ragged(f_base, te, shifted=f_shift), y[te], rec, "default_shift_train")

        c, t = time.process_time(), time.perf_counter()
        tuner = FineTuner(**tuner_params).fit([np.concatenate([base[i][1], shift[i][1]]) for i in tr], y[tr])
        rec["tune_cpu_s"], rec["tune_wall_s"] = time.process_time() - c, time.perf_counter() - t
        rec["load_avg_after_tuning"] = os.getloadavg()
        rec["best_epoch"], rec["history"] = tuner.best_epoch_, tuner.history_
        t_base = [tuner.window_features(*base[i]) for i in range(len(y))]
        t_shift = [tuner.window_features(*shift[i]) for i in range(len(y))]
        head = recipe.make_head().fit(_ragged(t_base, tr), y[tr])
        rec["acc"]["tuned"] = _acc(head, _ragged(t_base, te), y[te], rec, "tuned")
        rec["acc"]["tuned_tta"] = _acc(head, _ragged(t_base, te, shifted=t_shift), y[te], rec, "tuned_tta")
        rec["tuned_C"] = head.estimator_.best_params_["C"]
        own = []
        for i in te:
            p = tuner.predict_proba_windows(base[i][1])
            own.append(tuner.classes_[np.argmax(np.log(np.clip(p, 1e-12, None)).mean(0))])
        rec["acc"]["tuned_own"] = float(np.mean(np.asarray(own) == y[te]))
        rec.setdefault("pred", {})["tuned_own"] = [str(p) for p in own]
        rec["test"] = [int(i) for i in te]
        rec["fold_cpu_s"] = time.process_time() - c0
        out["per_fold"].append(rec)
        save()
        print(f"fold {k}: " + "  ".join(f"{n} {100 * a:.1f}" for n, a in rec["acc"].items())
              + f"  (tuning {rec['tune_cpu_s'] / 60:.1f} CPU min, best epoch {rec['best_epoch']}, load {rec['load_avg_after_tuning'][0]:.1f})",
              flush=True)

    per = sorted(out["per_fold"], key=lambda r: r["fold"])
    ref = np.array([r["acc"]["default"] for r in per])
    print(f"\n{args.protocol} seed 0 (ablation.py's folds), {len(per)} folds of repeats {sorted({r.get('repeat', 0) for r in per})}, "
          f"{len(y)} tracks\n")
    print("| configuration | accuracy (%) | vs default, paired (points, mean ± std over folds) |\n|---|---|---|")
    for key, name in ROWS.items():
        a = np.array([r["acc"][key] for r in per])
        d = a - ref
        diff = "" if key == "default" else f"{100 * d.mean():+.1f} ± {100 * d.std():.1f} (better/worse folds {int((d > 0).sum())}/{int((d < 0).sum())})"
        print(f"| {name} | {100 * a.mean():.1f} ± {100 * a.std():.1f} | {diff} |")
    if args.ablation_json and os.path.exists(args.ablation_json) and args.n_splits == 10 and args.protocol == "cv":
        with open(args.ablation_json) as f:
            abl = json.load(f)
        idx = [r["fold"] for r in per]
        for r in abl.get("rows", []):
            if r["name"].startswith(("default", "views separate, stacking")) and "fold_accuracies" in r:
                a = np.asarray(r["fold_accuracies"])[idx]
                d = a - ref
                print(f"| ablation-cv.json (same folds, not rerun): {r['name'][:60]} | {100 * a.mean():.1f} ± {100 * a.std():.1f} | "
                      f"{100 * d.mean():+.1f} ± {100 * d.std():.1f} (better/worse folds {int((d > 0).sum())}/{int((d < 0).sum())}) |")
    with_pred = [r for r in per if "pred" in r]
    if with_pred:
        n = sum(len(r["test"]) for r in with_pred)
        changed = sum(int(np.sum(np.asarray(r["pred"]["tuned"]) != np.asarray(r["pred"]["default"]))) for r in with_pred)
        print(f"\ntuned vs default head: different predictions on {changed} of {n} test tracks ({len(with_pred)} folds)")
    cpu = [r["tune_cpu_s"] / 60 for r in per]
    print(f"\nfine-tuning: {np.mean(cpu):.1f} CPU min per fold (range {min(cpu):.1f}–{max(cpu):.1f}), "
          f"best epochs {[r['best_epoch'] for r in per]}; frozen-stage cache: {out['frozen_cache']}")


if __name__ == "__main__":
    main()
