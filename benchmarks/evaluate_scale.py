"""``evaluate`` on ~2000 short MP3 clips, both recipes, from a cold feature cache (a scale test).

Plain script (not a test)::

    python benchmarks/evaluate_scale.py                   # 2000 clips, 5 folds x 3 repeats
    python benchmarks/evaluate_scale.py --clips 300 --repeats 1 --json out.json

Builds ``--clips`` clips of ``--seconds`` (8 s) from the 243 shared GTZAN
tracks (gtzan-mini and gtzan-more, ``manifests/gtzan-shared.csv``), spread
evenly over each track, resampled to ``--sr`` (48 kHz) and written as MP3
(libsndfile's LAME) under ``--work`` with a manifest whose group is the
source track; then runs ``genrevision.evaluate(manifest, protocol="group",
folds=5, repeats=3)`` with the default and paper recipes, as the CLI's
``genrevision evaluate clips.csv --protocol group --folds 5 --repeats 3``
does, into a fresh feature cache and output folder. Prints extraction
clips/s, the CPU use of this process and all its workers during extraction
and during fitting (sampled from /proc: 2.0 = both cores busy on a 2-core
machine), fitting seconds per recipe and the baseline, and the load average
beside every absolute figure (the machine is shared). Last line:
``evaluate N clips, both recipes: M min``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import threading
import time

import numpy as np

from throughput import _process_tree  # benchmarks/ is sys.path[0] when a benchmark runs

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(HERE, "..", "manifests", "gtzan-shared.csv")
_TICK = os.sysconf("SC_CLK_TCK")


def load() -> str:
    return "%.2f" % os.getloadavg()[0]


def _tree_cpu(seen: dict) -> float:
    """CPU seconds of this process and every live descendant; finished ones keep their last reading in ``seen``."""
    for key, ticks in (_process_tree() or {}).items():  # one /proc reader, throughput.py's
        seen[key] = ticks / _TICK
    return sum(seen.values())


class CpuSampler(threading.Thread):
    """(wall time, CPU seconds of this process tree) every ``every`` seconds."""

    def __init__(self, every=0.5):
        super().__init__(daemon=True)
        self.every, self.samples, self.seen, self.stop = every, [], {}, threading.Event()

    def run(self):
        while not self.stop.is_set():
            self.samples.append((time.perf_counter(), _tree_cpu(self.seen)))
            self.stop.wait(self.every)

    def cores_busy(self, t0, t1):
        s = [x for x in self.samples if t0 <= x[0] <= t1]
        if len(s) < 2:
            return float("nan")
        return (s[-1][1] - s[0][1]) / (s[-1][0] - s[0][0])


def make_clips(work, n_clips, seconds, sr):
    import soundfile as sf
    from scipy.signal import resample_poly

    with open(MANIFEST, newline="", encoding="utf-8") as fh:
        tracks = list(csv.DictReader(fh))
    per = np.full(len(tracks), n_clips // len(tracks))
    per[: n_clips - per.sum()] += 1  # n_clips in all
    folder = os.path.join(work, "clips")
    rows = []
    g = np.gcd(sr, 22050)
    for t, k in zip(tracks, per):
        if k == 0:
            continue
        src = os.path.normpath(os.path.join(os.path.dirname(MANIFEST), t["path"]))
        stem = os.path.splitext(os.path.basename(src))[0]
        names = [os.path.join(folder, t["label"], f"{stem}.{i:02d}.mp3") for i in range(k)]
        if not all(os.path.exists(n) for n in names):
            y, r = sf.read(src, dtype="float32", always_2d=False)
            starts = np.linspace(0, max(0.0, len(y) / r - seconds), k)
            for name, s in zip(names, starts):
                clip = y[int(s * r): int(s * r) + int(seconds * r)]
                clip = resample_poly(clip, sr // g, r // g).astype(np.float32) if r != sr else clip
                os.makedirs(os.path.dirname(name), exist_ok=True)
                sf.write(name + ".tmp", np.clip(clip, -1, 1), sr, format="MP3", subtype="MPEG_LAYER_III")
                os.replace(name + ".tmp", name)
        rows += [(os.path.relpath(n, work), t["label"], stem) for n in names]
    manifest = os.path.join(work, "clips.csv")
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "group"])
        w.writerows(rows)
    return manifest, len(rows)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clips", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--sr", type=int, default=48000, choices=(44100, 48000))
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=None, help="evaluate's jobs (default: its own)")
    ap.add_argument("--work", default=None,
                    help="clips (kept between runs) and runs (default: /tmp/genrevision-evaluate-scale-CLIPS)")
    ap.add_argument("--quiet", action="store_true", help="no progress bars (stderr)")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.work = args.work or f"/tmp/genrevision-evaluate-scale-{args.clips}"

    t = time.perf_counter()
    manifest, n = make_clips(args.work, args.clips, args.seconds, args.sr)
    print(f"{n} MP3 clips of {args.seconds:g} s at {args.sr} Hz ready in {time.perf_counter() - t:.0f} s "
          f"(load {load()}) → {manifest}", flush=True)
    cache, out = os.path.join(args.work, "cache"), os.path.join(args.work, "run")
    for d in (cache, out):
        shutil.rmtree(d, ignore_errors=True)  # cold: nothing cached, nothing to resume

    import genrevision

    sampler = CpuSampler()
    sampler.start()
    t0 = time.perf_counter()
    res = genrevision.evaluate(manifest, protocol="group", recipes=("default", "paper"), folds=args.folds,
                               repeats=args.repeats, cache=cache, jobs=args.jobs, progress=not args.quiet, out=out)
    total = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    ext = res.timings["extraction"]
    fit = res.timings["fitting"]
    ext_s = max(e["seconds"] for e in ext.values())
    fit_s = sum(f["seconds"] for f in fit.values())
    decoded = max(e["computed"] for e in ext.values())
    cores = os.cpu_count()
    busy_ext = sampler.cores_busy(t0, t0 + ext_s)
    busy_fit = sampler.cores_busy(total + t0 - fit_s, t0 + total)
    first = next(iter(ext.values()))
    probe = first.get("probe")
    if probe:
        print(f"extraction workers chosen: {probe['workers']} (measured per clip: prepare {probe['prepare_s']:.2f} s, "
              f"CNN {probe['cnn_s']:.2f} s)")
    else:
        print(f"extraction workers: {first.get('workers')} (not measured)")
    print(f"load average at the end: {' '.join('%.2f' % x for x in os.getloadavg())}")
    print(f"extraction (one pass, both recipes and the baseline): {ext_s:.0f} s, {decoded / ext_s:.1f} clips/s, "
          f"{busy_ext:.2f} of {cores} cores busy (load {load()})")
    for name, f in fit.items():
        print(f"fitting {name}: {f['seconds']:.0f} s ({f['folds_fitted']} folds, "
              f"{f['seconds'] / max(1, f['folds_fitted']):.1f} s/fold)")
    print(f"fitting in all: {fit_s:.0f} s, {busy_fit:.2f} of {cores} cores busy (load {load()})")
    print(f"accuracy: default {res.results['default']:.3f}, paper {res.results['recipes']['paper']['fused']:.3f}, "
          f"baseline {res.results['baseline_mfcc']:.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"clips": n, "sr": args.sr, "extraction_seconds": ext_s, "clips_per_s": decoded / ext_s,
                       "cores_busy_extraction": busy_ext, "cores_busy_fitting": busy_fit,
                       "fitting": fit, "total_seconds": total, "loadavg_end": os.getloadavg()}, fh, indent=1)
    print(f"evaluate {n} clips, both recipes: {total / 60:.1f} min")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
