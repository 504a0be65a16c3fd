"""``genrevision train``: a model from a labelled dataset, or from a library's own genre tags."""
from __future__ import annotations

import os
import time

from .._utils.files import printable
from . import _common as c


def add_parser(sub, fmt) -> None:
    from ..apps.library import DEFAULT_FOLDS, DEFAULT_PRECISION, MIN_TRACKS

    p = sub.add_parser("train", help="fit a genre model on a labelled dataset and save it to one file",
                       formatter_class=fmt, epilog=c.examples(
                           "genrevision train ../shared/data/gtzan-mini --model genres.model",
                           "genrevision train tracks.csv --model paper.model --recipe paper --paper-weights"))
    c.add_data_args(p, required=True)
    p.add_argument("--model", required=True, metavar="FILE", help="model file to write (e.g. genres.model)")
    p.add_argument("--recipe", default=None, choices=c.RecipeNames(), metavar="RECIPE",
                   help="named configuration of features and classifiers: %(choices)s (default: default; "
                        "library with --labels-from-tags)")
    p.add_argument("--paper-weights", action="store_true",
                   help="fuse views with the paper's fixed weights 0.5/0.1/0.4 instead of the recipe's")
    p.add_argument("--cache", default=c.feature_cache(),
                   help="feature cache folder (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes for decoding/HPSS (default: from the cores and the measured costs; 0: none)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    lib = p.add_argument_group("learning from a library's own genre tags")
    lib.add_argument("--labels-from-tags", action="store_true",
                     help="DATA is your music library: learn from the genres already in its files' tags, grouped "
                          "by album artist/artist/album; cross-validate first, store abstention thresholds")
    lib.add_argument("--map", default=None, metavar="FILE",
                     help="JSON or CSV 'genre,name': your names for the tags' genres (many → one; an empty name drops it)")
    lib.add_argument("--min-tracks", type=int, default=MIN_TRACKS, metavar="N",
                     help="genres with fewer files are dropped, and said so (default: %(default)s)")
    lib.add_argument("--precision", type=float, default=DEFAULT_PRECISION, metavar="P",
                     help="target precision of the genres tag will write (default: %(default)s)")
    lib.add_argument("--folds", type=int, default=DEFAULT_FOLDS, metavar="K",
                     help="artist/album-grouped cross-validation folds (default: %(default)s)")
    lib.add_argument("--report", default=None, metavar="DIR",
                     help="write DIR/report.html (per-genre accuracy, confusion matrix, coverage) and CSVs")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..model.genre_model import train_model

    if args.labels_from_tags:
        return _train_library(args)
    for opt in ("map", "report"):
        if getattr(args, opt):
            c.error(f"--{opt} goes with --labels-from-tags (learning from the genres in a library's tags)")
            return 2
    t0 = time.perf_counter()
    model = train_model(c.dataset(args), recipe=args.recipe or "default", weights="paper" if args.paper_weights else None,
                        cache=args.cache, jobs=args.jobs, progress=not args.quiet)
    path = model.save(args.model)
    dt = time.perf_counter() - t0
    weights = model.weights
    wtxt = ", ".join(f"{k} {v:.2f}" for k, v in weights.items()) if weights else "stacking"
    print(f"trained {model.recipe.name} model on {model.n_train} tracks of {len(model.labels)} genres "
          f"({', '.join(model.labels)}) in {dt:.1f} s → {path}")
    print(f"fusion weights: {wtxt}")
    c.report_failures(model.failures)
    return 0


def _train_library(args) -> int:
    from ..apps import library

    if args.data is None or args.mirdata or args.paper_weights:
        c.error("--labels-from-tags needs a LIBRARY folder (or files) and takes no --mirdata or --paper-weights")
        return 2
    t0 = time.perf_counter()
    lib = library.read_library(args.data, mapping=args.map, min_tracks=args.min_tracks, progress=not args.quiet)
    ds = lib.dataset
    print(f"{printable(args.data)}: {len(ds) if ds is not None else 0} files with a genre, {len(lib.untagged)} without, "
          f"{lib.several} with several (the first is used), {len(lib.failures)} unreadable")
    for name, spell in sorted(lib.spellings.items()):
        arts = lib.artists().get(name, 0)
        print(f"  {printable(name)}: {int((ds.labels == name).sum())} files, {arts} artist/album group"
              f"{'s' * (arts != 1)}" + (f"; spellings merged: {', '.join(map(printable, spell))}" if len(spell) > 1 else ""))
    for g, why in sorted(lib.dropped.items()):
        print(f"  dropped {printable(g)}: {why}")
    # A library model keeps the recording's spectrum in its images (recipe "library"): its "not sure"
    # check needs it; "--recipe default" is only taken when asked for.
    model, report = library.train_library(lib, recipe=args.recipe or "library", precision=args.precision, folds=args.folds,
                                          cache=args.cache, jobs=args.jobs, progress=not args.quiet)
    path = model.save(args.model)
    for line in report.summary_lines():
        print(line)
    print(f"trained {model.recipe.name} model on {model.n_train} files of {len(model.labels)} genres "
          f"in {time.perf_counter() - t0:.1f} s → {path}")
    if args.report:
        paths = library.write_report(report, args.report)
        print(f"report: {paths['html']} (per genre: {paths['genres']})")
    c.report_failures(lib.failures + list(model.failures))
    return 0
