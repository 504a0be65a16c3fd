"""``genrevision predict``: the genre of audio files with a saved model."""
from __future__ import annotations

import json
import os
import sys

from .._utils.files import printable
from . import _common as c


def add_parser(sub, fmt) -> None:
    p = sub.add_parser("predict", help="genre of audio files (and of every audio file in folders) with a saved model",
                       formatter_class=fmt, epilog=c.examples(
                           "genrevision predict song.mp3 music/ --model genres.model",
                           "genrevision predict long-mix.flac --model genres.model --timeline --format csv"))
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_FOLDER", help="audio files or folders (walked recursively)")
    p.add_argument("--model", required=True, metavar="FILE", help="model file written by 'genrevision train'")
    p.add_argument("--format", default="table", choices=["table", "json", "csv"], help="output format (default: %(default)s)")
    p.add_argument("--timeline", action="store_true", help="also the genre of every 30 s segment")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    c.add_prediction_args(p, segments="all")
    c.add_engine_args(p, gpus=False)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..apps.engine import predict_paths
    from ..evaluation.dataset import find_inputs
    from ..model.genre_model import read_meta

    if not os.path.exists(args.model):
        c.error(f"{args.model}: no such model file (make one with: genrevision train DATA --model {args.model})")
        return 2
    paths, failures = find_inputs(args.inputs, empty_folders=False)
    c.require_ray(args)
    labels = [str(label) for label in read_meta(args.model)["labels"]]
    preds, fails = predict_paths(args.model, paths, engine=args.engine, segments=args.segments,
                                 timeline=args.timeline, jobs=args.jobs, cache=c.prediction_cache(args),
                                 address=args.address, actors=args.actors, progress=not args.quiet)
    failures += fails
    for p in preds:  # on stderr as they happen, whatever the output format
        for w in p.warnings:
            print(f"genrevision: warning: {printable(p.path)}: {printable(w)}", file=sys.stderr)
    if args.format == "json":
        out = {"model": os.path.abspath(args.model), "labels": labels,
               "predictions": [p.to_dict() for p in preds],
               "failures": [{"path": p, "reason": r} for p, r in failures]}
        if not args.timeline:
            for d in out["predictions"]:
                d.pop("segments", None)
        print(json.dumps(out, indent=2))
    elif args.format == "csv":
        _print_csv(preds, labels, _report_views(args.model, preds), timeline=args.timeline)
    else:
        _print_table(preds, timeline=args.timeline)
    sys.stdout.flush()
    c.report_failures(failures)
    return 0 if preds else 1


def _report_views(model_path, preds) -> list[str]:
    """The views each prediction names (the model's report views); the model is loaded only when
    nothing was predicted (a CSV header still lists them)."""
    if preds:
        return list(preds[0].views)
    from ..model.genre_model import load_model

    return list(load_model(model_path).report_views)


def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 60}:{s % 60:02d}"


def _print_table(preds, *, timeline: bool) -> None:
    for p in preds:
        probs = sorted(p.probabilities.items(), key=lambda kv: -kv[1])
        flag = "  [low confidence]" if p.low_confidence else ""
        print(f"{printable(p.path)}: {p.genre} ({p.probabilities[p.genre]:.2f}){flag}")
        for w in p.warnings:
            print(f"  warning: {w}")
        print("  probabilities: " + "  ".join(f"{k} {v:.3f}" for k, v in probs))
        print("  views: " + "  ".join(f"{k}={v}" for k, v in p.views.items()))
        if timeline:
            print("  timeline:")
            for start, end, genre, pr in p.segments:
                print(f"    {_fmt_time(start)}-{_fmt_time(end)}  {genre} ({pr[genre]:.2f})")


def _print_csv(preds, labels, view_names, *, timeline: bool) -> None:
    import csv

    w = csv.writer(sys.stdout)
    head = ["path", "start_s", "end_s", "genre"] + [f"p_{c}" for c in labels]
    w.writerow(head + [f"view_{v}" for v in view_names] + ["low_confidence", "warnings"])
    for p in preds:
        flag = [int(p.low_confidence), "; ".join(p.warnings)]
        w.writerow([p.path, 0.0, p.duration, p.genre] + [f"{p.probabilities[c]:.6f}" for c in labels]
                   + [p.views.get(v, "") for v in view_names] + flag)
        if timeline:
            for start, end, genre, pr in p.segments:
                w.writerow([p.path, start, end, genre] + [f"{pr[c]:.6f}" for c in labels] + [""] * len(view_names)
                           + flag)
