"""``genrevision tag``: predicted genres written into the files' tags, and undone."""
from __future__ import annotations

import os
import sys

from .._utils.files import printable
from . import _common as c


def add_parser(sub, fmt) -> None:
    from ..apps.engine import DEFAULT_SEGMENTS
    from ..apps.tagging import DEFAULT_LOG, DEFAULT_MIN_PROB, DEFAULT_TOP

    p = sub.add_parser("tag", help="write predicted genres into the files' tags (ID3, Vorbis comments, MP4); undoable",
                       formatter_class=fmt, epilog=c.examples(
                           "make model   # models/gtzan-shared.model, trained on the shared tracks",
                           "genrevision tag ~/Music --model models/gtzan-shared.model --pretend",
                           "genrevision tag ~/Music --model models/gtzan-shared.model --map genres.json --report tag-report",
                           "genrevision tag --undo ~/.local/share/genrevision/tag-log.jsonl --run last"))
    p.add_argument("inputs", nargs="*", metavar="FILE_OR_FOLDER", help="audio files or folders (walked recursively)")
    p.add_argument("--model", default=None, metavar="FILE", help="model file (e.g. models/gtzan-shared.model from 'make model')")
    p.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="K", help="at most K genres per file (default: %(default)s)")
    p.add_argument("--min-prob", type=float, default=DEFAULT_MIN_PROB, metavar="P",
                   help="genres after the best need probability >= P; the best is always written (default: %(default)s)")
    p.add_argument("--map", default=None, metavar="FILE",
                   help="JSON object or CSV 'label,name': your names for the model's labels (several labels may share "
                        "a name; their probabilities add up)")
    p.add_argument("--pretend", action="store_true", help="print old → new per file, change nothing (no log)")
    have = p.add_mutually_exclusive_group()
    have.add_argument("--keep-existing", action="store_true",
                      help="a file that already has a genre is left alone (the default)")
    have.add_argument("--force", action="store_true", help="replace existing genres (with --undo: restore even "
                                                            "files whose genre changed since)")
    have.add_argument("--merge", action="store_true", help="keep existing genres and add ours after them")
    p.add_argument("--id3v23", action="store_true", help="write ID3v2.3 (old players) instead of ID3v2.4; needs --separator")
    p.add_argument("--separator", default=None, help="with --id3v23: text between genres in the one TCON value, e.g. '; '")
    p.add_argument("--log", default=DEFAULT_LOG, metavar="FILE",
                   help="undo log every run appends to (default: %(default)s)")
    p.add_argument("--undo", default=None, metavar="LOG", help="restore the genre tags a log recorded, newest first")
    p.add_argument("--run", default=None, metavar="ID|last",
                   help="with --undo: only the changes of this run (its id in the log, or 'last')")
    p.add_argument("--follow-symlinks", action="store_true",
                   help="tag the targets of links in the folders that lead outside them (listed and left alone by default)")
    p.add_argument("--report", default=None, metavar="DIR",
                   help="write DIR/report.html (genre chart, low-confidence files, failures) and DIR/decisions.csv")
    p.add_argument("--precision", type=float, default=None, metavar="P",
                   help="(models trained with --labels-from-tags) write a genre only where its out-of-fold precision "
                        "reaches P; others are listed as 'not sure' (default: the precision it was trained for)")
    p.add_argument("--no-abstain", action="store_true",
                   help="(models trained with --labels-from-tags) write the best genre even when not sure")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    c.add_prediction_args(p, segments=str(DEFAULT_SEGMENTS))
    p.set_defaults(func=run)


def run(args) -> int:
    from ..apps import tagging

    if args.undo:
        if args.inputs or args.model:
            c.error("--undo LOG takes no files and no --model: it restores what the log records")
            return 2
        decisions = tagging.undo(args.undo, run=args.run, force=args.force, pretend=args.pretend)
        for d in decisions:
            if d.action in ("restored", "would restore"):
                print(f"{printable(d.path)}: {c.genre_list(d.old)} → {c.genre_list(d.new)}"
                      + ("  (pretend)" if d.action == "would restore" else ""))
        n = {a: sum(d.action == a for d in decisions) for a in ("restored", "would restore", "skipped", "failed")}
        print(f"{'would restore' if args.pretend else 'restored'} {n['would restore' if args.pretend else 'restored']}, "
              f"skipped {n['skipped']}, failed {n['failed']} (of {len(decisions)} changes in {printable(args.undo)})")
        for d in decisions:
            if d.action in ("skipped", "failed"):
                print(f"  {d.action}: {printable(d.path)}: {printable(d.reason)}", file=sys.stderr)
        return 1 if n["failed"] else 0
    if args.run:
        c.error("--run ID goes with --undo LOG")
        return 2
    if not args.inputs or not args.model:
        c.error("tag needs files or folders and --model FILE (or --undo LOG)")
        return 2
    if not os.path.exists(args.model):
        c.error(f"{args.model}: no such model file (make one with: make model, or genrevision train DATA --model FILE)")
        return 2
    mode = "force" if args.force else "merge" if args.merge else "keep"
    res = tagging.tag_files(args.inputs, args.model, top=args.top, min_prob=args.min_prob, mapping=args.map,
                            mode=mode, pretend=args.pretend, id3v23=args.id3v23, separator=args.separator,
                            segments=args.segments, jobs=args.jobs, cache=c.prediction_cache(args), log=args.log,
                            progress=not args.quiet, follow_symlinks=args.follow_symlinks,
                            precision=args.precision, abstain=False if args.no_abstain else None)
    if not res.decisions:
        c.error(f"{', '.join(args.inputs)}: no audio files found (looked for {', '.join(tagging.TAG_EXTENSIONS)})")
        return 2
    for d in res.decisions:
        if d.action in ("tagged", "would tag"):
            flag = "  [low confidence]" if d.low_confidence else ""
            print(f"{printable(d.path)}: {c.genre_list(d.old)} → {c.genre_list(d.new)}{flag}")
    n = {a: res.count(a) for a in ("tagged", "would tag", "unchanged", "skipped", "failed", "not sure")}
    for d in res.decisions:
        if d.action == "not sure":
            print(f"{printable(d.path)}: not sure: {printable(d.reason)}")
    done = f"would tag {n['would tag']} (pretend: nothing written)" if args.pretend else f"tagged {n['tagged']}"
    sure = f", not sure {n['not sure']}" if n["not sure"] else ""
    print(f"{done}{sure}, unchanged {n['unchanged']}, skipped {n['skipped']}, failed {n['failed']} "
          f"(of {len(res.decisions)} files; {res.computed} predicted, {res.cached} from the cache, "
          f"{res.seconds:.1f} s)")
    reasons: dict = {}
    for d in res.decisions:
        if d.action == "skipped":
            reasons[d.reason] = reasons.get(d.reason, 0) + 1
    for why, k in reasons.items():
        print(f"  skipped {k}: {why}")
    if n["tagged"]:
        print(f"undo with: genrevision tag --undo {res.log} [--run {res.run}]")
    if args.report:
        paths = tagging.write_report(res, args.report)
        print(f"report: {paths['html']}, every decision: {paths['csv']}")
    c.report_failures([(d.path, d.reason) for d in res.decisions if d.action == "failed"])
    return 1 if n["failed"] else 0
