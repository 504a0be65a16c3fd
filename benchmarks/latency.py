"""Warm prediction latency of one 30 s track, and where it goes.

Plain script (not a test)::

    genrevision train ../shared/data/gtzan-mini --model genres.model
    python benchmarks/latency.py --model genres.model
    python benchmarks/latency.py --model genres.model --track path/to/song.wav --runs 10

Loads the model once, predicts once to warm up (backbone load, ONNX session),
then times ``model.predict(track)`` ``--runs`` times and prints the median and
best, split into feature extraction (:func:`genrevision.features.extraction.extract_track`)
and classification (the fitted heads on those features).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

DEFAULT_TRACK = os.path.join("..", "shared", "data", "gtzan-mini", "genres", "metal", "metal.00008.wav")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model file from `genrevision train`")
    ap.add_argument("--track", default=DEFAULT_TRACK)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args(argv)

    from genrevision import load_model
    from genrevision.features.extraction import extract_track

    t = time.perf_counter()
    model = load_model(args.model)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    model.predict(args.track)
    first_s = time.perf_counter() - t
    total, extract, classify = [], [], []
    bb = model._backbone()
    for _ in range(args.runs):
        t = time.perf_counter()
        pred = model.predict(args.track)
        total.append(time.perf_counter() - t)
        t = time.perf_counter()
        feats = extract_track(args.track, model.settings, backbone=bb)
        extract.append(time.perf_counter() - t)
        t = time.perf_counter()
        model._probas(feats)
        classify.append(time.perf_counter() - t)
    out = {
        "model": args.model, "recipe": model.recipe.name, "backbone": model.backbone_name,
        "track": args.track, "genre": pred.genre, "load_model_s": load_s, "first_predict_s": first_s,
        "warm_predict_median_s": float(np.median(total)), "warm_predict_best_s": float(np.min(total)),
        "extract_median_s": float(np.median(extract)), "classify_median_s": float(np.median(classify)),
        "runs": args.runs, "load_average": os.getloadavg()[0],
    }
    print(f"model {args.model} ({model.recipe.name}, {model.backbone_name}); track {args.track} → {pred.genre}")
    print(f"load model {load_s:.2f} s; first predict (cold) {first_s:.2f} s")
    print(f"warm predict: median {out['warm_predict_median_s']:.2f} s, best {out['warm_predict_best_s']:.2f} s "
          f"over {args.runs} runs (extract {out['extract_median_s']:.2f} s + classify {out['classify_median_s']:.3f} s)")
    print(f"load average during the run: {out['load_average']:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
