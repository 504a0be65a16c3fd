"""Training on recording-condition variants of every track: does it help on new artists? (issue #21)

Each training track is also fed to the default recipe as a variant whose recording conditions
differ, the same artist (group) as the original, so no inner or outer split separates them:

* ``slow`` / ``fast``: tape speed 0.94 / 1.06 (pitch and tempo ±1 semitone together);
* ``compress``: tanh saturation (a loud, squashed master);
* ``lowpass``: 6th-order Butterworth at 4 kHz (a band-limited recording);
* ``codec``: MP3 at 24 kb/s (constant; mono at 22 kHz) and back (a low-bit-rate rip: band limit,
  pre-echo, holes in the spectrum).

(EQ and gain are not variants: the default's per-band mean removal cancels a static EQ and a gain
exactly.) Scored as in ``new_artists.py``: (a) trained on gtzan-mini (+ its variants), tested on
gtzan-more's originals; (b) artist-grouped 5-fold CV on the 243 shared tracks, variants of the
training tracks only. Variant features are cached (resumable) under the user cache.

    python benchmarks/recording_conditions.py ",compress,slow+fast" [--only-a] [--repeats 1]

Each comma-separated entry is one row (``+`` joins variants; empty = originals only).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import warnings

import numpy as np
from scipy.signal import butter, resample_poly, sosfilt

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from ablation import dataset_features  # noqa: E402
from new_artists import MANIFEST, per_genre  # noqa: E402

from genrevision.signal.audio import load_audio, normalise  # noqa: E402
from genrevision.evaluation.dataset import load_dataset  # noqa: E402
from genrevision.evaluation.protocols import Fold, make_splits  # noqa: E402
from genrevision.evaluation.experiment import evaluate_recipe  # noqa: E402
from genrevision.features.extraction import extract_cached, extract_signal  # noqa: E402
from genrevision._utils.files import user_cache  # noqa: E402
from genrevision.recipes import get_recipe  # noqa: E402

def _speed(up: int, down: int):
    return lambda y, sr: resample_poly(y, up, down).astype(np.float32)


def _lowpass(y, sr):
    return sosfilt(butter(6, 4000, btype="low", fs=sr, output="sos"), y).astype(np.float32)


def _compress(y, sr):
    return (np.tanh(4 * y) / np.tanh(4)).astype(np.float32)


def _codec(y, sr):
    import io

    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, sr, format="MP3", compression_level=0.9, bitrate_mode="CONSTANT")  # 24 kb/s mono at 22 kHz
    buf.seek(0)
    return sf.read(buf, dtype="float32")[0][: len(y)]


VARIANTS = {"slow": _speed(50, 47), "fast": _speed(50, 53), "compress": _compress, "lowpass": _lowpass,
            "codec": _codec}


def variant_features(paths, variant, settings, cache):
    """Features of every track's ``variant`` (first 30 s), computed once and cached."""
    folder = os.path.join(cache, variant)
    os.makedirs(folder, exist_ok=True)
    out = []
    for i, p in enumerate(paths):
        f = os.path.join(folder, hashlib.sha1(p.encode()).hexdigest()[:16] + ".npz")
        if not os.path.exists(f):
            y = load_audio(p, sr=settings.sr)
            ya = normalise(VARIANTS[variant](y, settings.sr), method=settings.normalisation)
            feats = extract_signal(ya[: 30 * settings.sr], settings)
            np.savez(f + ".tmp.npz", **feats)
            os.replace(f + ".tmp.npz", f)
            if i % 50 == 0:
                print(f"  {variant}: {i + 1}/{len(paths)}", flush=True)
        z = np.load(f)
        out.append({k: z[k] for k in z.files})
    return out


def genres(y, entry) -> str:
    return " ".join(f"{g} {100 * a:.0f}" for g, a in per_genre(y, entry).items())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", help='comma-separated rows, e.g. ",compress,slow+fast" (empty: originals only)')
    ap.add_argument("--only-a", action="store_true", help="only (a), the quick screen")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cache", default=user_cache("recording-conditions"))
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    recipe = get_recipe("default")
    ds = load_dataset(MANIFEST)
    y, groups = np.asarray(ds.labels), np.asarray(ds.groups)
    n = len(y)
    base = dataset_features(extract_cached(ds.paths, recipe.features, cache=user_cache("features"), progress=True),
                            ds.paths)
    mini = np.array(["gtzan-mini" in p for p in ds.paths])
    folds_b = make_splits("group", labels=y, groups=groups, n_splits=5, n_repeats=args.repeats)
    for row in args.rows.split(","):
        variants = [v for v in row.split("+") if v]
        unknown = set(variants) - set(VARIANTS)
        if unknown:
            sys.exit(f"unknown variants {sorted(unknown)}; choose from {sorted(VARIANTS)}")
        feats = list(base)
        for v in variants:
            feats += variant_features(ds.paths, v, recipe.features, os.path.join(args.cache, recipe.name))
        k = 1 + len(variants)
        Y, G = np.tile(y, k), np.tile(groups, k)

        def widen(train):  # a training track brings its variants; tests are originals only
            return np.concatenate([train + j * n for j in range(k)])

        t = time.perf_counter()
        ra, _ = evaluate_recipe(recipe, feats, Y, [Fold(0, widen(np.flatnonzero(mini)), np.flatnonzero(~mini))],
                                progress=False, groups=G)
        ea = ra[recipe.head]["fused"]
        line = f"{'+'.join(variants) or 'originals':>12}: (a) {100 * ea['mean']:.1f} [{genres(Y, ea)}]"
        if not args.only_a:
            rb, _ = evaluate_recipe(recipe, feats, Y, [Fold(f.repeat, widen(f.train), f.test) for f in folds_b],
                                    progress=False, groups=G)
            eb = rb[recipe.head]["fused"]
            line += (f"  (b) {100 * eb['mean']:.1f} ± {100 * eb['std']:.1f} "
                     f"folds {np.round(100 * np.array(eb['fold_accuracies']), 1).tolist()} [{genres(Y, eb)}]")
        print(f"{line}  {time.perf_counter() - t:.0f} s, load average {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
