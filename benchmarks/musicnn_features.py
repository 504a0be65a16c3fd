#!/usr/bin/env python
"""Extract pooled musicnn embeddings for every track of a GTZAN-layout folder.

Standalone: it does NOT import genrevision and is meant to run in its own
virtual environment (musicnn needs TensorFlow 2.x with ``numpy<2``); see
``benchmarks/README.md``.  The output ``.npz`` is read by
``benchmarks/musicnn_compare.py`` in the main environment.

What is extracted
-----------------
``musicnn.extractor.extractor(path, model=..., input_length=3,
input_overlap=False, extract_features=True)`` cuts the track (resampled by
musicnn to 16 kHz, 96-band log-mel) into non-overlapping 3 s patches (10 per
30 s GTZAN track) and returns per-patch activations.  We keep, per track:

* ``penultimate`` -- the 200-unit dense layer right before the tag outputs
  (the usual "musicnn embedding"); this is the headline feature;
* ``max_pool`` / ``mean_pool`` -- the 753-d temporal max / mean pooling of the
  front-end + mid-end feature maps (the input of the back-end dense layers);
* ``taggram`` -- the 50 tag probabilities.

Workaround for a musicnn 0.1.0 (PyPI) bug: its extractor runs the patches in
batches of ``configuration.BATCH_SIZE = 1`` and, for every batch after the
first, concatenates the *first* batch's ``penultimate`` and ``cnn1..3``
activations again (jordipons/musicnn issues #2 and #20), so ``penultimate``
is the first patch repeated and its std over patches is exactly 0.  We raise
``BATCH_SIZE`` so that a whole track is one batch (the first, correct code
path; batch norm runs in inference mode, so batching does not change any
output) and check that no track needed a second batch.

Each is pooled over the patches of a track into ``<layer>_mean`` (D values)
and ``<layer>_meanstd`` (mean then std, 2*D values).

Output arrays: ``paths`` (relative to the dataset root, e.g.
``genres/blues/blues.00000.wav``), ``labels`` (the genre folder name),
``n_patches``, ``seconds`` (extraction wall time per track), the pooled
feature arrays above, ``tags``, and ``meta`` (a JSON string: model,
input_length, versions, dataset root).

Usage::

    /tmp/musicnn-venv/bin/python benchmarks/musicnn_features.py \
        /work/shared/data/gtzan-mini -o /tmp/musicnn_gtzan_mini.npz
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402

AUDIO_EXT = {".wav", ".au", ".mp3", ".flac", ".ogg"}
LAYERS = ("penultimate", "max_pool", "mean_pool")
# Patches per sess.run; a whole track must fit (see the workaround above).
# 4096 patches of 3 s is 3.4 hours of audio.
ONE_BATCH = 4096


def find_tracks(root: Path) -> list[tuple[Path, str]]:
    """Audio files under ``root/genres/<genre>/`` (or ``root/<genre>/``)."""
    base = root / "genres" if (root / "genres").is_dir() else root
    tracks = []
    for genre_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        for f in sorted(genre_dir.iterdir()):
            if f.suffix.lower() in AUDIO_EXT and f.is_file():
                tracks.append((f, genre_dir.name))
    if not tracks:
        raise SystemExit(f"no audio files found under {base}/<genre>/")
    return tracks


def pool(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and mean+std over the first (patch) axis."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    mean = a.mean(axis=0)
    return mean, np.concatenate([mean, a.std(axis=0)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dataset", type=Path,
                    help="dataset root in GTZAN layout (genres/<genre>/<file>)")
    ap.add_argument("-o", "--output", type=Path,
                    default=Path("/tmp/musicnn_features.npz"))
    ap.add_argument("--model", default="MSD_musicnn",
                    help="musicnn model: MSD_musicnn (default), MTT_musicnn, ...")
    ap.add_argument("--input-length", type=float, default=3.0,
                    help="patch length in seconds (default 3)")
    ap.add_argument("--limit", type=int, default=None,
                    help="only the first N tracks (smoke tests)")
    args = ap.parse_args(argv)

    import musicnn
    import musicnn.configuration as musicnn_config
    import tensorflow as tf
    from musicnn.extractor import extractor

    tf.get_logger().setLevel("ERROR")
    musicnn_config.BATCH_SIZE = ONE_BATCH  # workaround, see module docstring
    root = args.dataset.resolve()
    tracks = find_tracks(root)[: args.limit]
    print(f"{len(tracks)} tracks under {root}; model={args.model}", flush=True)

    feats: dict[str, list[np.ndarray]] = {}
    paths, labels, n_patches, seconds = [], [], [], []
    tags = None
    t_all = time.perf_counter()
    for i, (path, genre) in enumerate(tracks):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # musicnn prints progress
            taggram, tags, f = extractor(
                str(path), model=args.model, input_length=args.input_length,
                input_overlap=False, extract_features=True)
        dt = time.perf_counter() - t0
        layers = {name: f[name] for name in LAYERS if name in f}
        if not layers:
            raise SystemExit(f"model {args.model} exposes none of {LAYERS}; "
                             f"got {sorted(f)}")
        layers["taggram"] = taggram
        if np.atleast_2d(taggram).shape[0] > ONE_BATCH:
            raise SystemExit(f"{path}: more than {ONE_BATCH} patches; raise "
                             "ONE_BATCH (musicnn 0.1.0 mangles later batches)")
        for name, a in layers.items():
            m, ms = pool(a)
            feats.setdefault(f"{name}_mean", []).append(m)
            feats.setdefault(f"{name}_meanstd", []).append(ms)
        paths.append(path.relative_to(root).as_posix())
        labels.append(genre)
        n_patches.append(np.atleast_2d(taggram).shape[0])
        seconds.append(dt)
        if i < 2 or (i + 1) % 10 == 0 or i + 1 == len(tracks):
            print(f"[{i + 1}/{len(tracks)}] {paths[-1]}  {dt:.2f} s", flush=True)
    total = time.perf_counter() - t_all

    meta = {
        "model": args.model, "input_length": args.input_length,
        "input_overlap": False, "dataset": str(root),
        "musicnn": getattr(musicnn, "__version__", "0.1.0"),
        "tensorflow": tf.__version__, "numpy": np.__version__,
        "python": sys.version.split()[0], "total_seconds": total,
        "headline_feature": "penultimate_meanstd",
        "musicnn_batch_size": ONE_BATCH,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output, paths=np.array(paths), labels=np.array(labels),
        n_patches=np.array(n_patches), seconds=np.array(seconds),
        tags=np.array(tags), meta=np.array(json.dumps(meta)),
        **{k: np.stack(v).astype(np.float32) for k, v in feats.items()})
    s = np.array(seconds)
    print(f"wrote {args.output}: {len(paths)} tracks, "
          + ", ".join(f"{k} {len(v[0])}" for k, v in feats.items()))
    print(f"extraction time per track: mean {s.mean():.2f} s, median "
          f"{np.median(s):.2f} s (first track incl. model load {s[0]:.2f} s); "
          f"total {total:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
