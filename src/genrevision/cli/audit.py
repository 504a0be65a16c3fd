"""``genrevision audit``: the files whose genre tag disagrees most with their audio."""
from __future__ import annotations

import sys

from .._utils.files import printable
from . import _common as c


def add_parser(sub, fmt) -> None:
    from ..apps.engine import DEFAULT_SEGMENTS
    from ..apps.tagging import DEFAULT_LOG

    p = sub.add_parser("audit", help="files whose genre tag disagrees most with their audio (out-of-fold), ranked",
                       formatter_class=fmt, epilog=c.examples(
                           "genrevision train ~/Music --labels-from-tags --model mine.model --report report",
                           "genrevision audit ~/Music --model mine.model --top 20 --csv audit.csv",
                           "genrevision audit ~/Music --model mine.model --write 10   # undo: genrevision tag --undo LOG"))
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_FOLDER", help="the library (folders walked recursively)")
    p.add_argument("--model", required=True, metavar="FILE", help="a model trained with --labels-from-tags")
    p.add_argument("--top", type=int, default=20, metavar="N", help="print the N most doubtful (0: all; default: %(default)s)")
    p.add_argument("--csv", default=None, metavar="FILE", help="write the whole ranked list as CSV")
    p.add_argument("--write", type=int, default=0, metavar="N",
                   help="replace the genre of the N most doubtful files by the suggested one (undo log; default: none)")
    p.add_argument("--pretend", action="store_true", help="with --write: say what would change, write nothing")
    p.add_argument("--log", default=DEFAULT_LOG, metavar="FILE", help="undo log (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    c.add_prediction_args(p, segments=str(DEFAULT_SEGMENTS))
    p.set_defaults(func=run)


def run(args) -> int:
    from ..apps import library

    rows, notes = library.audit_library(args.inputs, args.model, jobs=args.jobs, progress=not args.quiet,
                                        cache=c.prediction_cache(args), segments=args.segments)
    show = rows[:args.top] if args.top else rows
    for i, r in enumerate(show, 1):
        print(f"{i:4d}. {printable(r.path)}: tagged {printable(r.tagged, 80)} ({r.p_tagged:.2f}), sounds like "
              f"{printable(r.suggested, 80)} ({r.p_suggested:.2f}) [{r.source}]")
    print(f"audited {len(rows)} tagged files ({sum(r.source == 'out-of-fold' for r in rows)} out-of-fold, "
          f"{sum(r.source == 'model' for r in rows)} by the model: not trained on them); {len(notes)} not judged")
    if args.csv:
        print(f"ranked list: {library.audit_csv(rows, args.csv)}")
    if args.write:
        res = library.write_audit(rows, args.model, limit=args.write, pretend=args.pretend, log=args.log)
        for d in res.decisions:
            if d.action in ("tagged", "would tag"):
                print(f"{printable(d.path)}: {c.genre_list(d.old)} → {c.genre_list(d.new)}")
        n = res.count("would tag" if args.pretend else "tagged")
        print(f"{'would retag' if args.pretend else 'retagged'} {n} of the {args.write} most doubtful files"
              + ("" if args.pretend or not n else f"; undo with: genrevision tag --undo {res.log} --run {res.run}"))
        c.report_failures([(d.path, d.reason) for d in res.decisions if d.action == "failed"])
    for path, why in notes:
        print(f"  not judged: {printable(path)}: {printable(why)}", file=sys.stderr)
    return 0
