"""A library teaches the tagger (issue #23): learn from the genre tags, abstain, audit.

Builds a music library from every shared track (gtzan-mini + gtzan-more, 243 files, copies of
the original WAV/FLAC files with genre and artist tags written by mutagen, genres in several
spellings), then:

- removes the genre tag of whole artists, about 30 % of the files (the untagged pile is music
  by artists the tagged part does not have, as when new albums arrive; genres of a single
  artist stay tagged: removing them would leave a genre nothing teaches);
- writes a wrong genre into 5 % of the still-tagged files (the planted mislabels);
- adds two spoken-word files (espeak-ng) and white noise, untagged;
- trains on the tags (``read_library`` + ``train_library``, the "library" recipe, artist-grouped
  5-fold cross-validation), tags the untagged files with abstention at ``--precision``, and
  audits the tagged ones.

It reports the accuracy of the best genre on the untagged music against the truth next to the
cross-validated estimate and its interval, the precision and coverage of what ``tag`` wrote,
the non-music files left "not sure", and how many planted mislabels the audit puts in its top
10 %. The copies' features are not in the shared feature cache (it is keyed by file bytes, and
tags change them): the first run extracts them (~1 file/s), later runs reuse them.

Last line: ``library: tagged N % right, precision P % at coverage C %, mislabels found K of M``.

    python benchmarks/library.py [--work /tmp/genrevision-library] [--json benchmarks/results/library.json]
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))

from genrevision.apps.library import audit_library, read_library, train_library, write_report  # noqa: E402
from genrevision.apps.tagging import tag_files  # noqa: E402

SHARED = os.path.join(HERE, "..", "..", "shared", "data")
SPELLINGS = {"hiphop": ["Hip-Hop", "hip hop", "HipHop", "Hip Hop"], "rock": ["Rock", "rock", "ROCK"],
             "classical": ["Classical", "classical"], "jazz": ["Jazz", "jazz", "JAZZ"]}


def shared_tracks() -> list[tuple[str, str, str]]:
    """(path, genre, artist) of every shared track."""
    out = []
    for sub, name in (("gtzan-mini", "artists.csv"), ("gtzan-more", "manifest.csv")):
        base = os.path.join(SHARED, sub)
        with open(os.path.join(base, name), newline="", encoding="utf-8") as f:
            out += [(os.path.join(base, r["path"]), r["label"], r["group"]) for r in csv.DictReader(f)]
    return out


def plan(tracks, *, untagged: float, wrong: float, seed: int):
    """Which files lose their tag (whole artists) and which get a wrong one."""
    rng = np.random.default_rng(seed)
    genres = sorted({g for _, g, _ in tracks})
    artists_of = {g: sorted({a for _, gg, a in tracks if gg == g}) for g in genres}
    files_of = {}
    for i, (_, g, a) in enumerate(tracks):
        files_of.setdefault((g, a), []).append(i)
    # Artists in random order; an artist loses its tags while its genre keeps 2 tagged artists.
    order = [(g, a) for g in genres for a in artists_of[g]]
    rng.shuffle(order)
    left = {g: len(artists_of[g]) for g in genres}
    drop, target = set(), untagged * len(tracks)
    for g, a in order:
        # Not past the target by more than a small artist's worth (one big artist would be half of it).
        if left[g] > 2 and len(drop) + len(files_of[(g, a)]) <= target + 3:
            drop.update(files_of[(g, a)])
            left[g] -= 1
    kept = [i for i in range(len(tracks)) if i not in drop]
    bad = rng.choice(kept, size=int(round(wrong * len(kept))), replace=False)
    wrong_genre = {int(i): str(rng.choice([g for g in genres if g != tracks[i][1]])) for i in bad}
    return drop, wrong_genre


def spelled(genre: str, rng) -> str:
    options = SPELLINGS.get(genre, [genre.capitalize(), genre])
    return str(options[rng.integers(len(options))])


def build(work: str, tracks, drop, wrong_genre, *, seed: int) -> list[str]:
    """Copies of the shared files with tags; returns each track's path in the library."""
    import mutagen
    import mutagen.id3

    rng = np.random.default_rng(seed + 1)
    lib = os.path.join(work, "library")
    if os.path.isdir(lib):
        shutil.rmtree(lib)
    paths = []
    for i, (src, genre, artist) in enumerate(tracks):
        folder = os.path.join(lib, artist.replace("/", "-"))
        os.makedirs(folder, exist_ok=True)
        dst = os.path.join(folder, os.path.basename(src))
        shutil.copyfile(src, dst)
        tag = None if i in drop else spelled(wrong_genre.get(i, genre), rng)
        f = mutagen.File(dst)
        if f.tags is None:
            f.add_tags()
        who = "" if artist.startswith("unknown") else artist
        if dst.endswith(".wav"):  # an ID3 chunk
            if who:
                f.tags.add(mutagen.id3.TPE1(encoding=3, text=[who]))
            if tag:
                f.tags.add(mutagen.id3.TCON(encoding=3, text=[tag]))
        else:
            if who:
                f.tags["ARTIST"] = [who]
            if tag:
                f.tags["GENRE"] = [tag]
        f.save()
        paths.append(dst)
    other = os.path.join(lib, "spoken word")
    os.makedirs(other, exist_ok=True)
    if shutil.which("espeak-ng"):
        for n, text in enumerate(["Welcome to the evening news. Tonight: the city council votes on the new budget, "
                                  "and the weather turns cold for the weekend.",
                                  "Chapter two. The house stood at the end of the lane, and nobody had lived there "
                                  "for many years. Its windows were dark."]):
            subprocess.run(["espeak-ng", "-w", os.path.join(other, f"talk-{n}.wav"), text], check=True,
                           capture_output=True)
    import soundfile as sf

    sf.write(os.path.join(other, "noise.flac"), 0.2 * np.random.default_rng(seed).standard_normal(22050 * 20),
             22050)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default=os.path.join("/tmp", "genrevision-library"), help="scratch folder (rebuilt)")
    ap.add_argument("--precision", type=float, default=0.9)
    ap.add_argument("--untagged", type=float, default=0.3)
    ap.add_argument("--wrong", type=float, default=0.05)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    tracks = shared_tracks()
    drop, wrong_genre = plan(tracks, untagged=args.untagged, wrong=args.wrong, seed=args.seed)
    paths = build(args.work, tracks, drop, wrong_genre, seed=args.seed)
    truth = {p: g for p, (_, g, _) in zip(paths, tracks)}
    print(f"library: {len(paths)} shared tracks, {len(drop)} untagged ({len(drop) / len(paths):.0%}, whole artists), "
          f"{len(wrong_genre)} mislabelled, plus spoken word and noise")
    lib = read_library(os.path.join(args.work, "library"))
    model, report = train_library(lib, precision=args.precision, folds=args.folds, jobs=args.jobs)
    mpath = model.save(os.path.join(args.work, "library.model"))
    for line in report.summary_lines():
        print(line)
    for path, why in model.failures:
        print(f"  not used: {path}: {why}")
    t_train = time.perf_counter() - t0
    res = tag_files([os.path.join(args.work, "library")], mpath, cache=os.path.join(args.work, "predictions"),
                    jobs=args.jobs,
                    log=os.path.join(args.work, "tag-log.jsonl"))
    music = [d for d in res.decisions if d.path in truth and truth[d.path] and d.action != "skipped"]
    other = [d for d in res.decisions if d.path not in truth]
    key = lambda s: "".join(ch for ch in s.casefold() if ch.isalnum())  # noqa: E731
    right = [key(d.genre) == key(truth[d.path]) for d in music]
    written = [d for d in music if d.action == "tagged"]
    w_right = [key(d.genre) == key(truth[d.path]) for d in written]
    forced = float(np.mean(right)) if right else float("nan")
    prec = float(np.mean(w_right)) if w_right else float("nan")
    cov = len(written) / len(music) if music else float("nan")
    lo, hi = report.accuracy_ci()
    # The report's per-genre recall, weighed by the genres the model gives the untagged files
    # (what a user knows; the truth's mix is shown beside it).
    mix_pred, mix_true = {}, {}
    for d in music:
        mix_pred[d.genre] = mix_pred.get(d.genre, 0) + 1
        g = next(c for c in report.labels if key(c) == key(truth[d.path]))
        mix_true[g] = mix_true.get(g, 0) + 1
    exp, elo, ehi = report.expected_accuracy(mix_pred)
    exp_t, tlo, thi = report.expected_accuracy(mix_true)
    print(f"untagged music: {len(music)} files; best genre right for {forced:.1%}; cross-validated: "
          f"{report.accuracy():.1%} ({lo:.1%}-{hi:.1%}) over the library's genre mix, {exp:.1%} ({elo:.1%}-{ehi:.1%}: "
          f"{'inside' if elo <= forced <= ehi else 'OUTSIDE'}) over the predicted mix of the untagged files "
          f"[{exp_t:.1%} ({tlo:.1%}-{thi:.1%}) over their true mix]")
    # The same figure by artist (each artist once) on both sides: the untagged pile is whole artists,
    # and a file-weighted figure over a few of them moves with its largest one.
    artist_of = {p: a for p, (_, _, a) in zip(paths, tracks)}
    per_artist: dict = {}
    for d, ok in zip(music, right):
        per_artist.setdefault(artist_of[d.path], []).append(ok)
    held_artist = float(np.mean([np.mean(v) for v in per_artist.values()])) if per_artist else float("nan")
    a_acc, a_lo, a_hi = report.artist_accuracy()
    print(f"by artist: untagged files {held_artist:.1%} over {len(per_artist)} artists; cross-validated "
          f"{a_acc:.1%} ({a_lo:.1%}-{a_hi:.1%}: {'inside' if a_lo <= held_artist <= a_hi else 'OUTSIDE'})")
    print(f"written at precision {args.precision}: {len(written)} files ({cov:.1%}), {prec:.1%} right "
          f"(cross-validation expected coverage {report.coverage()[0]:.1%}, precision {report.coverage()[1]:.1%})")
    recall = {r["genre"]: r["recall"] for r in report.per_genre()}
    held: dict = {}
    for d in music:
        g = next(c for c in report.labels if key(c) == key(truth[d.path]))
        h = held.setdefault(g, [0, 0])
        h[0] += key(d.genre) == key(truth[d.path])
        h[1] += 1
    print("per genre, held-out right/files vs cross-validated recall: " + ", ".join(
        f"{g} {a}/{b} vs {100 * recall[g]:.0f} %" for g, (a, b) in sorted(held.items())))
    by_genre: dict = {}
    for d in written:
        r = by_genre.setdefault(d.genre, [0, 0])
        r[0] += key(d.genre) == key(truth[d.path])
        r[1] += 1
    print("written per genre (right/written): " + ", ".join(f"{g} {a}/{b}" for g, (a, b) in sorted(by_genre.items())))
    print("not music: " + ", ".join(f"{os.path.basename(d.path)} {d.action}" for d in other))
    rows, notes = audit_library([os.path.join(args.work, "library")], mpath, cache=None, jobs=args.jobs)
    top = max(1, math.ceil(0.1 * len(rows)))
    planted = {paths[i] for i in wrong_genre}
    judged = planted & {r.path for r in rows}
    found = sum(r.path in planted for r in rows[:top])
    print(f"audit: {len(rows)} tagged files judged ({len(notes)} not: e.g. genres of one artist); "
          f"top 10 % = {top}: {found} of the {len(planted)} planted mislabels ({len(judged)} judged)")
    rep = write_report(report, os.path.join(args.work, "report"), audit=rows)
    print(f"report: {rep['html']}")
    seconds = time.perf_counter() - t0
    load = os.getloadavg()
    print(f"{seconds:.0f} s in all ({t_train:.0f} s reading, extracting, cross-validating and training); "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"files": len(paths), "untagged": len(drop), "mislabelled": len(wrong_genre),
                       "cv_accuracy": report.accuracy(), "cv_ci95": [lo, hi], "untagged_accuracy": forced,
                       "untagged_artist_accuracy": held_artist, "cv_artist_accuracy": [a_acc, a_lo, a_hi],
                       "cv_expected_predicted_mix": [exp, elo, ehi], "cv_expected_true_mix": [exp_t, tlo, thi],
                       "written_per_genre": by_genre, "held_out_per_genre": held,
                       "precision_target": args.precision, "written_precision": prec, "coverage": cov,
                       "cv_coverage": report.coverage()[0], "cv_precision": report.coverage()[1],
                       "not_music": {os.path.basename(d.path): d.action for d in other},
                       "thresholds": model.library["thresholds"], "novelty_threshold": model.library["novelty_threshold"],
                       "audit_top": top, "mislabels_found": found, "mislabels": len(planted), "seconds": seconds,
                       "loadavg": load, "per_genre": report.per_genre()}, fh, indent=2, default=str)
    print(f"library: tagged {100 * forced:.0f} % right, precision {100 * prec:.0f} % at coverage {100 * cov:.0f} %, "
          f"mislabels found {found} of {len(planted)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
