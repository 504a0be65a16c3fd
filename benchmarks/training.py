"""Fit time of the default recipe against the number of training tracks.

Training sets of 100 … 5000 tracks are built from the real window features of
the shared GTZAN tracks (cached by ``genrevision extract``): each synthetic
track copies the windows of a random real track with small Gaussian noise
(5 % of each feature's spread) and keeps its genre; its source track is its
group, so the inner cross-validation that chooses C never sees copies of one
track on both sides. What is timed is exactly what ``genrevision train`` does
after extraction: :func:`genrevision.model.genre_model.fit_recipe` (the joined O|H|P
window-level head with its inner search of C, then the per-view heads).

    python benchmarks/training.py                    # 100 500 1000 2000 5000
    python benchmarks/training.py --sizes 100 1000   # a quick look

Prints one line per size, the growth exponent from 1000 to 5000 tracks
(seconds ∝ tracks^k; linear is 1, linear-times-log about 1.1 over that range)
and, last, ``train 1000 tracks: N s``.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

from genrevision.evaluation.dataset import load_dataset  # noqa: E402
from genrevision._utils.files import feature_cache  # noqa: E402
from genrevision.features.extraction import extract_dataset  # noqa: E402
from genrevision.model.genre_model import fit_recipe  # noqa: E402
from genrevision.recipes import get_recipe  # noqa: E402
from genrevision.features.store import FeatureStore  # noqa: E402

DATA = os.path.join(HERE, "..", "..", "shared", "data", "gtzan-mini")
CACHE = feature_cache()


def synthetic(features, labels, n, *, seed=0, noise=0.05):
    """n tracks copied from real ones with noise; returns (features, labels, groups)."""
    rng = np.random.default_rng(seed)
    views = [k for k in features[0] if features[0][k].ndim == 2]
    spread = {v: np.concatenate([f[v] for f in features]).std(axis=0) * noise for v in views}
    src = np.concatenate([rng.permutation(len(features)) for _ in range(n // len(features) + 1)])[:n]
    out = []
    for i in src:
        f = features[i]
        out.append({v: (f[v] + rng.standard_normal(f[v].shape, dtype=np.float32) * spread[v]).astype(np.float32)
                    for v in views})
    return out, np.asarray(labels)[src], src


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 1000, 2000, 5000])
    ap.add_argument("--recipe", default="default")
    args = ap.parse_args(argv)

    recipe = get_recipe(args.recipe)
    ds = load_dataset(args.data)
    store = FeatureStore(CACHE, recipe.features.to_dict())
    res = extract_dataset(ds.paths, recipe.features, store=store, progress=True)
    keep = [i for i, p in enumerate(ds.paths) if p in res.features]
    real = [res.features[ds.paths[i]] for i in keep]
    labels = ds.labels[keep]
    windows = sum(f["original"].shape[0] for f in real)
    print(f"source: {len(real)} real tracks, {windows} windows of {sum(real[0][v].shape[1] for v in ('original', 'harmonic', 'percussive'))} "
          f"features (O|H|P), recipe {recipe.name}, backbone {recipe.features.backbone}")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} cores")
    print(f"{'tracks':>7} {'windows':>8} {'fit s':>8} {'s/1000 tracks':>14} {'C':>7} {'peak RSS GB':>12}")
    times = {}
    for n in args.sizes:
        feats, y, groups = synthetic(real, labels, n)
        t0 = time.perf_counter()
        clf, _, _ = fit_recipe(recipe, feats, y, groups=groups, progress=False)
        dt = time.perf_counter() - t0
        times[n] = dt
        head = clf.estimators_[0].estimator_
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{n:>7} {sum(f['original'].shape[0] for f in feats):>8} {dt:>8.1f} {1000 * dt / n:>14.1f} "
              f"{head.best_params_['C']:>7g} {rss:>12.1f}", flush=True)
        del feats
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if 1000 in times and 5000 in times:
        k = np.log(times[5000] / times[1000]) / np.log(5.0)
        nlogn = np.log(5000 * np.log(5000) / (1000 * np.log(1000))) / np.log(5.0)
        print(f"growth 1000 -> 5000 tracks: x{times[5000] / times[1000]:.2f} time for x5 tracks, "
              f"exponent {k:.2f} (linear 1.00, n log n {nlogn:.2f})")
    if 1000 in times:
        print(f"train 1000 tracks: {times[1000]:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
