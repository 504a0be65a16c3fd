"""Training cost and prediction speed of the ``tuned`` recipe beside the ``default`` one (issue #16).

1. **train**: ``/usr/bin/time -v genrevision train DATA --recipe tuned --model OUT/tuned.model``
   (wall, user + system CPU seconds, peak RSS), with the state of the feature
   cache printed first (how many tracks' frozen features and frozen-stage
   activations are already there: a warm cache skips decoding, HPSS and the
   frozen stages). The default model is trained the same way unless
   ``--default-model`` names one.
2. **predict**: ``genrevision predict`` of ``--tracks`` shared tracks (round
   robin over the genres) with each model and each engine (PyTorch, ONNX
   Runtime), no prediction cache; one warm-up call on one track first (the
   ONNX export of a network, once per tuned network, is timed apart).
   tracks/s = tracks / wall of the whole command (start-up and model loading
   included).

The load average is printed beside every figure (2 shared cores: read
absolute seconds with it; the ratios come from one run).

    nice -n 5 python benchmarks/tuned_speed.py ../shared/data/gtzan-mini --out /tmp/tuned-speed \\
        --json benchmarks/results/tuned-speed.json
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "src")
sys.path.insert(0, SRC)

from genrevision.evaluation.dataset import load_dataset  # noqa: E402
from genrevision._utils.files import feature_cache  # noqa: E402
from genrevision.recipes import get_recipe  # noqa: E402

DATA = os.path.join(HERE, "..", "..", "shared", "data", "gtzan-mini")
CACHE = feature_cache()


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cli(*args, env=None, timed=False):
    """Run the CLI (this checkout's sources); with ``timed``, under /usr/bin/time -v."""
    env = {**os.environ, "PYTHONPATH": os.path.abspath(SRC), **(env or {})}
    cmd = [sys.executable, "-m", "genrevision.cli", *map(str, args)]
    if timed:
        cmd = ["/usr/bin/time", "-v", *cmd]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    out = {"wall_s": round(wall, 2), "load_avg_after": load(), "stdout": proc.stdout}
    if timed:
        def field(name):
            m = re.search(rf"{re.escape(name)}: (.+)", proc.stderr)
            return m.group(1).strip() if m else None

        out.update(user_s=float(field("User time (seconds)")), sys_s=float(field("System time (seconds)")),
                   max_rss_mb=round(int(field("Maximum resident set size (kbytes)")) / 1024, 1))
        out["cpu_s"] = round(out["user_s"] + out["sys_s"], 1)
    return out


def cache_state(paths, cache) -> dict:
    """How many tracks' frozen features and frozen-stage activations the cache holds."""
    from genrevision.features.backbone import get_backbone
    from genrevision.features.store import FeatureStore, content_digest
    from genrevision.features.tuning import _settings_key, tail_start

    rec = get_recipe("tuned")
    frozen = FeatureStore(cache, rec.features.to_dict())
    start = tail_start(get_backbone(rec.features.backbone).module, n_stages=rec.tune["n_stages"])
    acts = FeatureStore(cache, _settings_key(rec.features, start, 0.5))
    digests = [content_digest(p) for p in paths]
    return {"tracks": len(paths), "frozen_features_cached": sum(os.path.exists(frozen._file(d)) for d in digests),
            "activations_cached": sum(os.path.exists(acts._file(d)) for d in digests)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", default=DATA)
    ap.add_argument("--out", default=None, help="folder for the models (default: a temporary folder)")
    ap.add_argument("--cache", default=CACHE)
    ap.add_argument("--default-model", default=None, help="an existing default-recipe model (else trained here)")
    ap.add_argument("--tracks", type=int, default=20, help="tracks predicted per model and engine")
    ap.add_argument("--engines", nargs="+", default=["torch", "onnxruntime"])
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    out_dir = args.out or tempfile.mkdtemp(prefix="tuned-speed-")
    os.makedirs(out_dir, exist_ok=True)
    ds = load_dataset(args.data)
    res = {"command": "python " + " ".join([os.path.relpath(__file__)] + (argv or sys.argv[1:])),
           "cores": os.cpu_count(), "data": os.path.abspath(args.data), "load_avg_start": load()}
    res["cache_before"] = cache_state(ds.paths, args.cache)
    print(f"{len(ds)} tracks; cache before training: {res['cache_before']}; load average {res['load_avg_start']}, "
          f"{os.cpu_count()} cores", flush=True)

    models = {}
    for recipe in ("tuned", "default"):
        path = os.path.join(out_dir, f"{recipe}.model")
        if recipe == "default" and args.default_model:
            models[recipe] = args.default_model
            continue
        r = cli("train", args.data, "--recipe", recipe, "--model", path, "--cache", args.cache, "--quiet", timed=True)
        r["load_avg_before"] = res["load_avg_start"] if recipe == "tuned" else res["train"]["tuned"]["load_avg_after"]
        res.setdefault("train", {})[recipe] = {k: v for k, v in r.items() if k != "stdout"}
        models[recipe] = path
        print(f"train {recipe}: {r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} CPU-s, peak RSS {r['max_rss_mb']:.0f} MB "
              f"(load average after {r['load_avg_after']})", flush=True)

    # Round robin over the genres: every genre in the sample.
    by_genre: dict = {}
    for p, lab in zip(ds.paths, ds.labels):
        by_genre.setdefault(lab, []).append(p)
    sample = [g[i] for i in range(max(map(len, by_genre.values()))) for g in by_genre.values() if i < len(g)]
    sample = sample[: args.tracks]
    res["predict_tracks"] = len(sample)
    genres = {}
    for recipe, path in models.items():
        for engine in args.engines:
            env = {"GENREVISION_ENGINE": engine}
            warm = cli("predict", sample[0], "--model", path, "--no-cache", "--quiet", "--format", "csv", env=env)
            r = cli("predict", *sample, "--model", path, "--no-cache", "--quiet", "--format", "json", env=env)
            preds = json.loads(r["stdout"])["predictions"]
            genres[(recipe, engine)] = [p["genre"] for p in preds]
            entry = {"first_call_wall_s": warm["wall_s"], "wall_s": r["wall_s"],
                     "tracks_per_s": round(len(sample) / r["wall_s"], 3), "load_avg_after": r["load_avg_after"],
                     "right": sum(p["genre"] in os.path.basename(p["path"]) for p in preds)}
            res.setdefault("predict", {}).setdefault(recipe, {})[engine] = entry
            print(f"predict {recipe:8s} {engine:12s}: {len(sample)} tracks in {r['wall_s']:.1f} s = "
                  f"{entry['tracks_per_s']:.2f} tracks/s (first call on 1 track {warm['wall_s']:.1f} s; "
                  f"load average after {r['load_avg_after']})", flush=True)
    for engine in args.engines:
        if ("tuned", engine) in genres and ("default", engine) in genres:
            t, d = res["predict"]["tuned"][engine], res["predict"]["default"][engine]
            ratio = t["tracks_per_s"] / d["tracks_per_s"]
            res["predict"].setdefault("ratio_tuned_vs_default", {})[engine] = round(ratio, 3)
            diff = sum(a != b for a, b in zip(genres[("tuned", engine)], genres[("default", engine)]))
            print(f"{engine}: tuned/default prediction speed {ratio:.2f}x; {diff} of {len(sample)} answers differ")
    res["load_avg_end"] = load()
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
        print(f"→ {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
