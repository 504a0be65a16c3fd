"""Build a manifest of many short clips from the shared GTZAN tracks (a scale test).

Overlapping excerpts of ``--seconds`` (8 s) every ``--hop`` (1.2 s) of each of
the 109 shared tracks, written as 16-bit WAV under ``OUT/clips/<genre>/``, and
``OUT/manifest.csv`` with ``path,label,group`` where the group is the source
track: ``--protocol group`` then keeps every clip of a track on one side of
each fold (clips of one track overlap, so anything else would leak).

    python benchmarks/make_clips.py /tmp/clips            # 2071 clips
    genrevision evaluate /tmp/clips/manifest.csv --protocol group --folds 5 --repeats 1
"""
from __future__ import annotations

import argparse
import csv
import os
import sys

import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "gtzan-mini")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="output folder (created)")
    ap.add_argument("--data", default=DATA, help="GTZAN-layout folder (default: the shared tracks)")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--hop", type=float, default=1.2)
    args = ap.parse_args(argv)
    if args.seconds <= 0 or args.hop <= 0:
        sys.exit("--seconds and --hop must be > 0")

    sys.path.insert(0, os.path.join(HERE, "..", "src"))
    from genrevision.evaluation.dataset import load_dataset

    ds = load_dataset(args.data)
    rows = []
    for path, label in zip(ds.paths, ds.labels):
        y, sr = sf.read(path, dtype="int16")
        n, hop = int(args.seconds * sr), int(args.hop * sr)
        stem = os.path.splitext(os.path.basename(path))[0]
        folder = os.path.join(args.out, "clips", str(label))
        os.makedirs(folder, exist_ok=True)
        for k, start in enumerate(range(0, len(y) - n + 1, hop)):
            name = os.path.join(folder, f"{stem}.clip{k:02d}.wav")
            if not os.path.exists(name):
                sf.write(name, y[start : start + n], sr, subtype="PCM_16")
            rows.append((os.path.relpath(name, args.out), str(label), stem))
    with open(os.path.join(args.out, "manifest.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group"])
        w.writerows(rows)
    groups = len({r[2] for r in rows})
    print(f"{len(rows)} clips of {args.seconds:g} s from {groups} tracks → {os.path.join(args.out, 'manifest.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
