"""Tagging a library: serial prediction of every segment vs the parallel, sampled, cached engine.

Plain script (not a test)::

    python benchmarks/tagging.py                 # 40 songs of 3-5 minutes
    python benchmarks/tagging.py --songs 8 --json out.json
    python benchmarks/tagging.py --model models/gtzan-shared.model   # songs from every track instead

Trains the default recipe on every other track of each genre (features
from the shared feature cache: seconds) and builds a library of full-length
songs from the other half in a temporary folder (never in shared/): each song
concatenates 6-10 held-out GTZAN tracks of one genre (3-5 minutes) and is
written as FLAC. Then, in one run, on the same songs:

* **serial**: one process, every 30 s segment of every song, as ``predict``
  did before the engine (``GenreModel.predict_many``; loading the model
  counted), then the genre written with the same tag writer;
* **engine**: ``genrevision.apps.tagging.tag_files`` (worker processes that each
  load the model once, ``--segments`` sampled segments, a fresh answer cache),
  worker start-up included;

and prints songs/hour of each and their ratio (target: at least 4x), the
agreement of the sampled genres with the all-segment genres (and of both with
the genre the song was made of), the agreement for every other segment count
(computed from the all-segment run's per-segment answers: a sampled prediction
is the length-weighted mean of the segments it reads, so it needs no new
run), and the time of a rerun from the command line with nothing new (target
under 5 s): as is (every song already has a genre) and with ``--force`` (every
answer from the cache). The load average is printed beside the figures: the
machine is shared, so compare the ratio, measured side by side.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))


def _load() -> str:
    return "load average %.2f %.2f %.2f" % os.getloadavg()


def _by_genre(data: str) -> dict[str, list[str]]:
    by_genre: dict[str, list[str]] = {}
    for p in sorted(glob.glob(os.path.join(data, "**", "*.wav"), recursive=True)):
        by_genre.setdefault(os.path.basename(os.path.dirname(p)), []).append(p)
    return by_genre


def split_tracks(data: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(training, held-out) tracks per genre: every other track of each genre."""
    by_genre = _by_genre(data)
    return ({g: ps[0::2] for g, ps in by_genre.items()}, {g: ps[1::2] for g, ps in by_genre.items()})


def train_holdout(train: dict[str, list[str]], path: str) -> str:
    """The default recipe fitted on the training half (features from the shared feature cache)."""
    from genrevision.evaluation.dataset import Dataset
    from genrevision.model.genre_model import train_model

    paths = [p for g in sorted(train) for p in train[g]]
    labels = np.array([g for g in sorted(train) for _ in train[g]])
    train_model(Dataset(paths, labels), recipe="default", progress=False).save(path)
    return path


def build_library(by_genre: dict[str, list[str]], folder: str, n: int) -> tuple[list[str], dict[str, str]]:
    """n FLAC songs of 3-5 minutes, each from 6-10 tracks of one genre (genres in turn)."""
    import soundfile as sf

    genres = sorted(by_genre)
    os.makedirs(folder, exist_ok=True)
    paths, truth = [], {}
    for i in range(n):
        g = genres[i % len(genres)]
        tracks = by_genre[g]
        k = 6 + (i + i // len(genres)) % 5  # 6..10 tracks: 3..5 minutes
        start = (i // len(genres)) * 3
        parts = [sf.read(tracks[(start + j) % len(tracks)], dtype="float32")[0] for j in range(k)]
        path = os.path.join(folder, f"{i:03d}-{g}.flac")
        sf.write(path, np.concatenate(parts), 22050)
        paths.append(path)
        truth[path] = g
    return paths, truth


def serial(model_path: str, paths: list[str]):
    """Every segment of every song in this one process, then the tag written; the model's
    loading counted, as the engine's workers' is."""
    from genrevision.model.genre_model import load_model
    from genrevision.apps.tagging import _open, _write, choose_genres

    t0 = time.perf_counter()
    model = load_model(model_path)
    preds, failures = model.predict_many(paths, progress=True, timeline=True, segments=None)
    for p in preds:
        f, kind = _open(p.path)
        _write(f, kind, [n for n, _ in choose_genres(p.probabilities)], id3v23=False, separator=None)
    return model, preds, failures, time.perf_counter() - t0


def sampled_genre(pred, n: int, labels, settings) -> str:
    """The genre ``predict(segments=n)`` gives, from an all-segment prediction's segments
    (the same segments, chosen by the same :func:`~genrevision.features.extraction.plan_segments`)."""
    from genrevision.features.extraction import plan_segments

    starts = {float(p.start) for p in plan_segments(pred.duration, settings, max_segments=n)}
    picked = [s for s in pred.segments if float(s[0]) in starts]
    total = sum(np.array([s[3][c] for c in labels]) * (s[1] - s[0]) for s in picked)
    return labels[int(np.argmax(total))]


def _rerun(model_path: str, lib: str, cache: str, log: str, *extra) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "genrevision.cli", "tag", lib, "--model", model_path, "--prediction-cache", cache,
           "--log", log, "--quiet", *extra]
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    summary = [line for line in proc.stdout.splitlines() if "(of " in line]
    return dt, (summary[0] if summary else proc.stdout.strip() + proc.stderr.strip())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--songs", type=int, default=40, help="songs in the library (default: %(default)s)")
    ap.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data", "gtzan-mini"))
    ap.add_argument("--model", default=None,
                    help="model to use (default: the default recipe trained here on every other track of each genre; "
                         "the songs are made of the other half, so the agreement figures are on unseen music)")
    ap.add_argument("--segments", default=None, help="engine's segments per song (default: the engine's default)")
    ap.add_argument("--jobs", type=int, default=None, help="engine's workers (default: one per core)")
    ap.add_argument("--workdir", default=None, help="where to build the library (default: a temporary folder)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    from genrevision.apps.engine import DEFAULT_SEGMENTS, parse_segments
    from genrevision.apps.tagging import read_genres, tag_files

    if args.model and not os.path.exists(args.model):
        print(f"{args.model}: no such model", file=sys.stderr)
        return 2
    segments = DEFAULT_SEGMENTS if args.segments is None else parse_segments(args.segments)
    work = tempfile.mkdtemp(prefix="genrevision-tagbench-", dir=args.workdir)
    out: dict = {"songs": args.songs, "segments": segments, "cpus": os.cpu_count()}
    try:
        train, held_out = split_tracks(args.data)
        if args.model is None:
            print(f"training the default recipe on {sum(map(len, train.values()))} tracks (every other one) ...",
                  flush=True)
            args.model = train_holdout(train, os.path.join(work, "holdout.model"))
            songs_from = held_out
        else:
            songs_from = _by_genre(args.data)
        print(f"building {args.songs} songs from {sum(map(len, songs_from.values()))} tracks in {work} ...  "
              f"({_load()})", flush=True)
        paths, truth = build_library(songs_from, os.path.join(work, "serial"), args.songs)
        shutil.copytree(os.path.join(work, "serial"), os.path.join(work, "engine"))
        epaths = [os.path.join(work, "engine", os.path.basename(p)) for p in paths]
        minutes = [float(__import__("soundfile").info(p).duration) / 60 for p in paths]
        print(f"songs: {len(paths)}, {min(minutes):.1f}-{max(minutes):.1f} min (mean {np.mean(minutes):.1f})")
        print(f"serial: one process, all segments  ({_load()})", flush=True)
        load0 = os.getloadavg()
        model, preds, failures, t_serial = serial(args.model, paths)
        labels = [str(c) for c in model.classifier.classes_]
        assert not failures, failures
        print(f"engine: workers, {segments} segments, fresh cache  ({_load()})", flush=True)
        cache, log = os.path.join(work, "cache"), os.path.join(work, "tag-log.jsonl")
        t0 = time.perf_counter()
        res = tag_files([os.path.join(work, "engine")], args.model, segments=segments, jobs=args.jobs, cache=cache,
                        log=log, progress=True)
        t_engine = time.perf_counter() - t0
        load1 = os.getloadavg()
        assert res.count("tagged") == len(paths), [(d.path, d.reason) for d in res.decisions if d.action != "tagged"]

        all_genre = {os.path.basename(p.path): p.genre for p in preds}
        eng_genre = {os.path.basename(d.path): d.genre for d in res.decisions}
        names = sorted(all_genre)
        agree = np.mean([all_genre[n] == eng_genre[n] for n in names])
        true_all = np.mean([all_genre[n] == truth[os.path.join(work, "serial", n)] for n in names])
        true_eng = np.mean([eng_genre[n] == truth[os.path.join(work, "serial", n)] for n in names])
        written_ok = np.mean([read_genres(p)[:1] == [eng_genre[os.path.basename(p)]] for p in epaths])
        sph_serial, sph_engine = 3600 * len(paths) / t_serial, 3600 * len(paths) / t_engine
        n_segs = np.mean([len(p.segments) for p in preds])
        print()
        print(f"serial  (1 process, all {n_segs:.1f} segments/song): {t_serial:7.1f} s  {sph_serial:7.0f} songs/hour")
        print(f"engine  ({res.workers} workers, {segments} segments/song):  {t_engine:7.1f} s  {sph_engine:7.0f} songs/hour")
        print(f"ratio engine/serial: {sph_engine / sph_serial:.2f}x  (target >= 4x)")
        print(f"load average during the runs: {load0[0]:.2f} at the start, {load1[0]:.2f} at the end; "
              f"{os.cpu_count()} CPUs")
        print(f"agreement of the sampled genre with the all-segment genre: {agree:.1%} of {len(names)} songs")
        print(f"genre the song was made of: all segments {true_all:.1%}, sampled {true_eng:.1%}")
        print(f"tags read back equal the engine's best genre: {written_ok:.0%}")
        print("agreement with all segments by segment count (from the all-segment run's segments):")
        by_n = {}
        for n in range(1, int(max(len(p.segments) for p in preds)) + 1):
            a = np.mean([sampled_genre(p, n, labels, model.settings) == p.genre for p in preds])
            cost = np.mean([min(n, len(p.segments)) / len(p.segments) for p in preds])
            by_n[n] = {"agreement": float(a), "cost_vs_all": float(cost)}
            print(f"  segments={n}: {a:6.1%} agree, {cost:5.1%} of the all-segment work")

        # The same --segments as the engine run: the answer cache is keyed by it.
        seg_arg = ("--segments", "all" if segments is None else str(segments))
        t_keep, s_keep = _rerun(args.model, os.path.join(work, "engine"), cache, log, *seg_arg)
        t_force, s_force = _rerun(args.model, os.path.join(work, "engine"), cache, log, "--force", *seg_arg)
        print(f"rerun, nothing new (CLI, every song already tagged): {t_keep:.2f} s  [{s_keep}]")
        print(f"rerun, nothing new, --force (every answer from the cache): {t_force:.2f} s  [{s_force}]")
        print(f"target < 5 s; {_load()}")
        out.update({"serial_seconds": t_serial, "engine_seconds": t_engine, "serial_songs_per_hour": sph_serial,
                    "engine_songs_per_hour": sph_engine, "ratio": sph_engine / sph_serial,
                    "agreement_sampled_vs_all": float(agree), "accuracy_all": float(true_all),
                    "accuracy_sampled": float(true_eng), "by_segments": by_n, "rerun_seconds": t_keep,
                    "rerun_force_seconds": t_force, "workers": res.workers, "mean_minutes": float(np.mean(minutes)),
                    "loadavg_start": load0, "loadavg_end": load1})
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
