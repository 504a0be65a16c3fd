"""The ``genrevision`` command: extract, evaluate, train, predict, tag, embed, serve."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from .._utils.files import printable, user_cache

__all__ = ["main"]

DEFAULT_DATA = os.path.join("..", "shared", "data", "gtzan-mini")
DEFAULT_CACHE = user_cache("features")


def _err(msg: str) -> None:
    print(f"genrevision: error: {printable(msg)}", file=sys.stderr)


def _report_failures(failures, *, what="files") -> None:
    if failures:
        print(f"{len(failures)} {what} failed:", file=sys.stderr)
        for path, reason in failures:
            print(f"  {printable(path)}: {printable(reason)}", file=sys.stderr)


class _RecipeNames:
    """The recipe names as argparse choices, looked up only when a --recipe is checked or help is
    printed: importing the recipes pulls in the whole feature pipeline (~1.5 s), which commands
    such as a tag rerun never use."""

    def _names(self) -> list[str]:
        from ..recipes import RECIPES

        return sorted(RECIPES)

    def __contains__(self, name) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def __str__(self) -> str:
        return ", ".join(self._names())


def _add_feature_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="default", choices=_RecipeNames(), metavar="RECIPE",
                   help="named configuration of features and classifiers: %(choices)s (default: %(default)s)")
    p.add_argument("--backbone", default=None, help="override the recipe's CNN (e.g. efficientnet_lite1, alexnet, timm:NAME)")
    p.add_argument("--cache", default=os.environ.get("GENREVISION_CACHE", DEFAULT_CACHE),
                   help="feature cache folder, keyed by file content and settings (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes for decoding/HPSS (default: cores - 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _settings(args):
    from ..recipes import get_recipe

    recipe = get_recipe(args.recipe)
    settings = recipe.features
    if args.backbone:
        settings = settings.with_(backbone=args.backbone)
    return recipe, settings


def _dataset(args):
    """The dataset named on the command line: DATA (folder tree or CSV) or --mirdata NAME --data-home DIR."""
    from ..evaluation.dataset import load_dataset, load_mirdata

    if getattr(args, "mirdata", None):
        if args.data not in (None, DEFAULT_DATA):
            raise ValueError(f"give either DATA ({args.data}) or --mirdata, not both")
        return load_mirdata(args.mirdata, data_home=args.data_home, index=args.mirdata_index)
    if args.data is None:
        raise ValueError("no dataset: give DATA (a label-folder tree or CSV manifest) or --mirdata NAME --data-home DIR")
    return load_dataset(args.data)


def _add_data_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument("data", nargs="?", default=None if required else DEFAULT_DATA,
                   help="label-folder tree or CSV manifest (path,label[,group][,split])"
                        + ("" if required else " (default: %(default)s)"))
    p.add_argument("--mirdata", default=None, metavar="NAME",
                   help="read the dataset through a mirdata loader instead, e.g. gtzan_genre (pip install 'genrevision[mirdata]')")
    p.add_argument("--data-home", default=None, metavar="DIR",
                   help="--mirdata: the folder holding the dataset in mirdata's layout (default: mirdata's ~/mir_datasets/NAME)")
    p.add_argument("--mirdata-index", default=None, metavar="FILE",
                   help="--mirdata: a copy of mirdata's index JSON, when mirdata's own is not downloaded")


def _add_engine_args(p: argparse.ArgumentParser, *, gpus: bool) -> None:
    p.add_argument("--engine", default="local", choices=["local", "ray"],
                   help="local: a process pool on this machine; ray: Ray Data on a Ray cluster "
                        "(pip install 'genrevision[ray]') (default: %(default)s)")
    p.add_argument("--address", default=None,
                   help="--engine ray: 'auto' (the cluster this machine joined with ray start), ray://HOST:10001 "
                        "or HOST:6379 (default: start a local Ray runtime on this machine)")
    p.add_argument("--actors", type=int, default=None,
                   help="--engine ray: " + ("CNN actors (default: one per --gpus of the cluster's GPUs, "
                                            "else 1 to one per 2 CPUs)" if gpus else
                                            "prediction actors, one model each (default: one per CPU)"))
    if gpus:
        p.add_argument("--gpus", type=float, default=0,
                       help="--engine ray: GPUs per CNN actor, fractions share one (default: CNN on CPUs)")


def _require_ray(args) -> None:
    """Fail at once, in one line, when --engine ray is asked without Ray installed."""
    if args.engine == "ray":
        from ..apps.ray_engine import require_ray

        require_ray()


def cmd_extract(args) -> int:
    from ..features.extraction import extract_cached

    parquet = args.out if args.out and args.out.rstrip("/").endswith(".parquet") else None
    if parquet and args.engine != "ray":
        _err(f"{args.out}: Parquet output needs --engine ray (or give a feature store folder)")
        return 2
    if args.engine == "ray" and args.save_images:
        _err("--save-images works with --engine local only")
        return 2
    _require_ray(args)
    _, settings = _settings(args)
    ds = _dataset(args)
    cache = args.out or args.cache
    args.cache = cache
    t0 = time.perf_counter()
    if args.engine == "ray":
        from ..apps.ray_engine import extract_dataset_ray
        from ..features.store import FeatureStore

        res = extract_dataset_ray(ds.paths, settings, store=None if parquet else FeatureStore(cache, settings.to_dict()),
                                  out_parquet=parquet, address=args.address, concurrency=args.actors,
                                  num_gpus=args.gpus, keep_features=False, progress=not args.quiet)
    else:
        res = extract_cached(ds.paths, settings, cache=cache, jobs=args.jobs, progress=not args.quiet,
                             save_images=args.save_images)
    dt = time.perf_counter() - t0
    ok = res.computed + res.cached
    print(f"features for {ok}/{len(ds)} tracks ({res.computed} computed, {res.cached} from cache) "
          f"in {dt:.1f} s → {cache}")
    if res.computed:
        print(f"extraction speed: {res.computed / dt:.2f} tracks/s")
    _report_failures(ds.problems + res.failures)
    return 0 if ok else 1


def cmd_evaluate(args) -> int:
    from ..evaluation.experiment import evaluate

    recipes = [args.recipe] + (["paper"] if args.paper_recipe and args.recipe != "paper" else [])
    result = evaluate(_dataset(args), protocol=args.protocol, recipes=recipes, folds=args.folds,
                      repeats=args.repeats, seed=args.seed, cache=args.cache, jobs=args.jobs,
                      progress=not args.quiet, out=args.out, backbone=args.backbone, splits_dir=args.splits_dir)
    print(result.summary())
    print(f"report: {os.path.join(args.out, 'report.html')}")
    fit = result.timings["fitting"]
    loaded = sum(t["folds_loaded"] for t in fit.values())
    if loaded:
        print(f"resumed: {loaded} finished folds loaded from {os.path.join(args.out, 'folds')}")
    _report_failures(result.failures)
    return 0


def cmd_embed(args) -> int:
    from ..apps.embeddings import FORMATS, check_output, embed

    ext = os.path.splitext(args.out)[1].lower()
    if ext not in FORMATS and not os.path.isdir(args.out):
        _err(f"{args.out}: --out must end in .parquet or .npz")
        return 2
    check_output(args.out, force=args.force)  # before the extraction, not after it
    if ext == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            _err("Parquet needs pyarrow: pip install pyarrow (or write .npz)")
            return 2
    t0 = time.perf_counter()
    emb = embed(_dataset(args), recipe=args.recipe, windows=args.windows, cache=args.cache, jobs=args.jobs,
                progress=not args.quiet, backbone=args.backbone)
    path = emb.save(args.out, force=args.force)
    n_tracks = len(set(emb.path.tolist()))
    print(f"{len(emb)} {'window' if args.windows else 'track'} embeddings of {n_tracks} tracks, "
          f"{emb.embedding.shape[1]} dimensions ({emb.meta['recipe']} recipe, {emb.meta['backbone']}) "
          f"in {time.perf_counter() - t0:.1f} s → {path}")
    _report_failures(emb.failures)
    return 0


def cmd_train(args) -> int:
    from ..model.genre_model import train_model

    if args.labels_from_tags:
        return _train_library(args)
    for opt in ("map", "report"):
        if getattr(args, opt):
            _err(f"--{opt} goes with --labels-from-tags (learning from the genres in a library's tags)")
            return 2
    t0 = time.perf_counter()
    model = train_model(_dataset(args), recipe=args.recipe or "default", weights="paper" if args.paper_weights else None,
                        cache=args.cache, jobs=args.jobs, progress=not args.quiet)
    path = model.save(args.model)
    dt = time.perf_counter() - t0
    weights = model.weights
    wtxt = ", ".join(f"{k} {v:.2f}" for k, v in weights.items()) if weights else "stacking"
    print(f"trained {model.recipe.name} model on {model.n_train} tracks of {len(model.labels)} genres "
          f"({', '.join(model.labels)}) in {dt:.1f} s → {path}")
    print(f"fusion weights: {wtxt}")
    _report_failures(model.failures)
    return 0


def _train_library(args) -> int:
    from ..apps import library

    if args.data is None or args.mirdata or args.paper_weights:
        _err("--labels-from-tags needs a LIBRARY folder (or files) and takes no --mirdata or --paper-weights")
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
    _report_failures(lib.failures + list(model.failures))
    return 0


def cmd_audit(args) -> int:
    from ..apps import library

    rows, notes = library.audit_library(args.inputs, args.model, jobs=args.jobs, progress=not args.quiet,
                                        cache=_prediction_cache(args), segments=args.segments)
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
                print(f"{printable(d.path)}: {_genre_list(d.old)} → {_genre_list(d.new)}")
        n = res.count("would tag" if args.pretend else "tagged")
        print(f"{'would retag' if args.pretend else 'retagged'} {n} of the {args.write} most doubtful files"
              + ("" if args.pretend or not n else f"; undo with: genrevision tag --undo {res.log} --run {res.run}"))
        _report_failures([(d.path, d.reason) for d in res.decisions if d.action == "failed"])
    for path, why in notes:
        print(f"  not judged: {printable(path)}: {printable(why)}", file=sys.stderr)
    return 0


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


def cmd_predict(args) -> int:
    from ..evaluation.dataset import find_audio
    from ..model.genre_model import load_model

    if not os.path.exists(args.model):
        _err(f"{args.model}: no such model file (make one with: genrevision train DATA --model {args.model})")
        return 2
    paths, failures = [], []
    for item in args.inputs:
        if not os.path.exists(item):
            failures.append((item, "no such file or folder"))
        elif os.path.isdir(item):
            found = find_audio(item)
            if not found:
                _err(f"{item}: no audio files found (looked for {', '.join(_audio_exts())})")
                return 2
            paths.extend(found)
        else:
            paths.append(item)
    _require_ray(args)
    model = load_model(args.model)
    if args.engine == "ray":
        from ..apps.ray_engine import predict_files_ray

        from ..apps.engine import parse_segments

        preds, fails = predict_files_ray(args.model, paths, timeline=args.timeline, address=args.address,
                                         segments=parse_segments(args.segments),
                                         concurrency=args.actors, progress=not args.quiet)
    else:
        from ..apps.engine import predict_files

        preds, fails, _ = predict_files(args.model, paths, model=model, segments=args.segments,
                                        timeline=args.timeline, jobs=args.jobs, cache=_prediction_cache(args),
                                        progress=not args.quiet)
    failures += fails
    for p in preds:  # on stderr as they happen, whatever the output format
        for w in p.warnings:
            print(f"genrevision: warning: {printable(p.path)}: {printable(w)}", file=sys.stderr)
    labels = [str(c) for c in model.labels]
    if args.format == "json":
        out = {"model": os.path.abspath(args.model), "labels": labels,
               "predictions": [p.to_dict() for p in preds],
               "failures": [{"path": p, "reason": r} for p, r in failures]}
        if not args.timeline:
            for d in out["predictions"]:
                d.pop("segments", None)
        print(json.dumps(out, indent=2))
    elif args.format == "csv":
        _print_csv(preds, labels, model.report_views, timeline=args.timeline)
    else:
        _print_table(preds, timeline=args.timeline)
    sys.stdout.flush()
    _report_failures(failures)
    return 0 if preds else 1


def _prediction_cache(args):
    return None if args.no_cache else args.prediction_cache


def _add_prediction_args(p: argparse.ArgumentParser, *, segments: str) -> None:
    from ..apps.engine import DEFAULT_PREDICTION_CACHE

    p.add_argument("--segments", default=segments, metavar="N|all",
                   help="classify N 30 s segments of each file (the middle one of each of N equal stretches), or 'all' "
                        "(default: %(default)s)")
    p.add_argument("--jobs", type=int, default=None,
                   help="worker processes, each loading the model once (default: one per CPU core; 1: no workers)")
    p.add_argument("--prediction-cache", default=DEFAULT_PREDICTION_CACHE, metavar="DIR",
                   help="answers cached per file (audio data + model hash): a rerun computes only new files "
                        "(default: %(default)s)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the prediction cache")


def _genre_list(names) -> str:
    # Values read from a user's file: one escaped line, each cut at 80 characters.
    return ", ".join(printable(n, 80) for n in names) if names else "(none)"


def cmd_tag(args) -> int:
    from ..apps import tagging

    if args.undo:
        if args.inputs or args.model:
            _err("--undo LOG takes no files and no --model: it restores what the log records")
            return 2
        decisions = tagging.undo(args.undo, run=args.run, force=args.force, pretend=args.pretend)
        for d in decisions:
            if d.action in ("restored", "would restore"):
                print(f"{printable(d.path)}: {_genre_list(d.old)} → {_genre_list(d.new)}"
                      + ("  (pretend)" if d.action == "would restore" else ""))
        n = {a: sum(d.action == a for d in decisions) for a in ("restored", "would restore", "skipped", "failed")}
        print(f"{'would restore' if args.pretend else 'restored'} {n['would restore' if args.pretend else 'restored']}, "
              f"skipped {n['skipped']}, failed {n['failed']} (of {len(decisions)} changes in {printable(args.undo)})")
        for d in decisions:
            if d.action in ("skipped", "failed"):
                print(f"  {d.action}: {printable(d.path)}: {printable(d.reason)}", file=sys.stderr)
        return 1 if n["failed"] else 0
    if args.run:
        _err("--run ID goes with --undo LOG")
        return 2
    if not args.inputs or not args.model:
        _err("tag needs files or folders and --model FILE (or --undo LOG)")
        return 2
    if not os.path.exists(args.model):
        _err(f"{args.model}: no such model file (make one with: make model, or genrevision train DATA --model FILE)")
        return 2
    mode = "force" if args.force else "merge" if args.merge else "keep"
    res = tagging.tag_files(args.inputs, args.model, top=args.top, min_prob=args.min_prob, mapping=args.map,
                            mode=mode, pretend=args.pretend, id3v23=args.id3v23, separator=args.separator,
                            segments=args.segments, jobs=args.jobs, cache=_prediction_cache(args), log=args.log,
                            progress=not args.quiet, follow_symlinks=args.follow_symlinks,
                            precision=args.precision, abstain=False if args.no_abstain else None)
    if not res.decisions:
        _err(f"{', '.join(args.inputs)}: no audio files found (looked for {', '.join(tagging.TAG_EXTENSIONS)})")
        return 2
    for d in res.decisions:
        if d.action in ("tagged", "would tag"):
            flag = "  [low confidence]" if d.low_confidence else ""
            print(f"{printable(d.path)}: {_genre_list(d.old)} → {_genre_list(d.new)}{flag}")
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
    _report_failures([(d.path, d.reason) for d in res.decisions if d.action == "failed"])
    return 1 if n["failed"] else 0


def cmd_serve(args) -> int:
    from ..apps.serve import run_server

    extra = {"allowed_hosts": args.allowed_host} if args.allowed_host else {}
    run_server(args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
               max_duration_s=60 * args.max_minutes, workers=args.workers, max_queue=args.max_queue,
               upload_timeout_s=args.upload_timeout, **extra)
    return 0


def _audio_exts():
    from ..signal.audio import AUDIO_EXTENSIONS

    return AUDIO_EXTENSIONS


def _examples(*lines: str) -> str:
    return "example" + ("s" if len(lines) > 1 else "") + ":\n" + "\n".join(f"  {line}" for line in lines)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="genrevision", description=__doc__, formatter_class=fmt,
                                     epilog=_examples("genrevision evaluate ../shared/data/gtzan-mini --out runs/evaluate-cv",
                                                      "genrevision train ../shared/data/gtzan-mini --model genres.model",
                                                      "genrevision predict song.mp3 --model genres.model",
                                                      "genrevision SUBCOMMAND --help"))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("extract", help="CNN features of the three views for every track of a dataset",
                       formatter_class=fmt, epilog=_examples(
                           "genrevision extract ../shared/data/gtzan-mini --save-images spectrograms/",
                           "genrevision extract --mirdata gtzan_genre --data-home ~/mir_datasets",
                           "genrevision extract tracks.csv --engine ray --out features.parquet"))
    _add_data_args(p)
    p.add_argument("--out", default=None,
                   help="feature store folder (default: --cache), or a FOLDER.parquet of Parquet files (--engine ray)")
    p.add_argument("--save-images", default=None, metavar="DIR", help="also write each track's three spectrograms as PNG")
    _add_feature_args(p)
    _add_engine_args(p, gpus=True)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("evaluate", help="the paper's tables (and ours) under a cross-validation protocol",
                       formatter_class=fmt, epilog=_examples(
                           "genrevision evaluate ../shared/data/gtzan-mini --out runs/evaluate-cv",
                           "genrevision evaluate ../shared/data/gtzan-mini --protocol paper --out runs/evaluate-paper",
                           "genrevision evaluate clips.csv --protocol group --folds 5 --repeats 3 --no-paper-recipe",
                           "(rerun the same command after an interruption: finished folds are loaded from OUT/folds)"))
    _add_data_args(p)
    p.add_argument("--protocol", default="cv", choices=["cv", "paper", "group", "block", "split"],
                   help="cv: stratified k-fold, repeated (every track tested once per repeat); paper: repeated "
                        "stratified 90/10 splits as in the paper; group: folds keep a manifest group together; "
                        "block: contiguous GTZAN track-number blocks per genre; split: the manifest's split column "
                        "or --splits-dir (default: %(default)s)")
    p.add_argument("--out", default="runs/evaluate",
                   help="output folder for results.json, tables, report.html and the finished folds (default: %(default)s)")
    p.add_argument("--folds", type=int, default=10, help="k for cv/group/block (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=5, help="repeats with different seeds (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first repeat (default: %(default)s)")
    p.add_argument("--splits-dir", default=None,
                   help="folder with {train,valid,test}_filtered.txt (fault-filtered GTZAN) for --protocol split")
    p.add_argument("--paper-recipe", action=argparse.BooleanOptionalAction, default=True,
                   help="also run the paper's recipe for Tables I-IV (default: on)")
    _add_feature_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="fit a genre model on a labelled dataset and save it to one file",
                       formatter_class=fmt, epilog=_examples(
                           "genrevision train ../shared/data/gtzan-mini --model genres.model",
                           "genrevision train tracks.csv --model paper.model --recipe paper --paper-weights"))
    _add_data_args(p, required=True)
    p.add_argument("--model", required=True, metavar="FILE", help="model file to write (e.g. genres.model)")
    p.add_argument("--recipe", default=None, choices=_RecipeNames(), metavar="RECIPE",
                   help="named configuration of features and classifiers: %(choices)s (default: default; "
                        "library with --labels-from-tags)")
    p.add_argument("--paper-weights", action="store_true",
                   help="fuse views with the paper's fixed weights 0.5/0.1/0.4 instead of the recipe's")
    p.add_argument("--cache", default=os.environ.get("GENREVISION_CACHE", DEFAULT_CACHE),
                   help="feature cache folder (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes for decoding/HPSS (default: cores - 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    from ..apps.library import DEFAULT_FOLDS, DEFAULT_PRECISION, MIN_TRACKS

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
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("predict", help="genre of audio files (and of every audio file in folders) with a saved model",
                       formatter_class=fmt, epilog=_examples(
                           "genrevision predict song.mp3 music/ --model genres.model",
                           "genrevision predict long-mix.flac --model genres.model --timeline --format csv"))
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_FOLDER", help="audio files or folders (walked recursively)")
    p.add_argument("--model", required=True, metavar="FILE", help="model file written by 'genrevision train'")
    p.add_argument("--format", default="table", choices=["table", "json", "csv"], help="output format (default: %(default)s)")
    p.add_argument("--timeline", action="store_true", help="also the genre of every 30 s segment")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_prediction_args(p, segments="all")
    _add_engine_args(p, gpus=False)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("embed", help="a recipe's features of every track (or window) to Parquet or npz, for other tools",
                       formatter_class=fmt, epilog=_examples(
                           "genrevision embed ../shared/data/gtzan-mini --out gtzan.parquet",
                           "genrevision embed tracks.csv --out windows.npz --windows --recipe paper",
                           "python -c \"import numpy as np; z = np.load('windows.npz'); print(z['embedding'].shape)\""))
    _add_data_args(p)
    p.add_argument("--out", required=True, metavar="FILE.parquet|FILE.npz",
                   help="output file: .parquet (needs pyarrow) or .npz; columns path, label, group[, track, "
                        "window_start], embedding")
    p.add_argument("--windows", action="store_true", help="one row per window (with its start in seconds), not per track")
    p.add_argument("--force", action="store_true", help="overwrite --out when it exists")
    _add_feature_args(p)
    p.set_defaults(func=cmd_embed)

    from ..apps.engine import DEFAULT_SEGMENTS
    from ..apps.tagging import DEFAULT_LOG, DEFAULT_MIN_PROB, DEFAULT_TOP

    p = sub.add_parser("tag", help="write predicted genres into the files' tags (ID3, Vorbis comments, MP4); undoable",
                       formatter_class=fmt, epilog=_examples(
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
    _add_prediction_args(p, segments=str(DEFAULT_SEGMENTS))
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("audit", help="files whose genre tag disagrees most with their audio (out-of-fold), ranked",
                       formatter_class=fmt, epilog=_examples(
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
    _add_prediction_args(p, segments=str(DEFAULT_SEGMENTS))
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("serve", help="a web page and JSON API: drop a song, see its spectrograms, get its genre",
                       formatter_class=fmt, epilog=_examples(
                           "genrevision serve --model genres.model   # then open http://127.0.0.1:8000"))
    p.add_argument("--model", required=True, metavar="FILE", help="model file written by 'genrevision train'")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    p.add_argument("--max-upload-mb", type=float, default=100.0, help="largest upload accepted (default: %(default)g MB)")
    p.add_argument("--max-minutes", type=float, default=20.0,
                   help="longest audio accepted: bounds the time of one request (default: %(default)g)")
    p.add_argument("--workers", type=int, default=1, help="predictions running at once (default: %(default)s)")
    p.add_argument("--max-queue", type=int, default=8, help="requests waiting beside them; more get 503 (default: %(default)s)")
    p.add_argument("--upload-timeout", type=float, default=20.0, metavar="S",
                   help="seconds an upload may take, plus one per 32 KiB received; a slower one gets 408 and "
                        "frees its place (default: %(default)g)")
    p.add_argument("--allowed-host", action="append", default=None, metavar="NAME",
                   help="a host name the page is reached by (repeatable); others get 400. Default: the loopback "
                        "names when listening on loopback, else any")
    p.set_defaults(func=cmd_serve)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same orderly stop as Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    # One line per warning, naming the file it is about (the message does).
    print(f"genrevision: warning: {printable(str(message).splitlines()[0]) if str(message) else category.__name__}",
          file=sys.stderr)


def _setup_streams() -> None:
    # File names that are not valid UTF-8 reach us as surrogate escapes
    # (os.fsdecode); write them back as the same bytes instead of failing.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and (stream.encoding or "").lower().replace("-", "") == "utf8":
            try:
                stream.reconfigure(errors="surrogateescape")
            except (ValueError, OSError):  # pragma: no cover - detached or closed stream
                pass


def main(argv=None) -> int:
    import signal
    import warnings

    _setup_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # pragma: no cover - not the main thread (main() called from a thread)
        pass
    try:
        return args.func(args)
    except KeyboardInterrupt as err:
        _err(f"{'terminated' if isinstance(err, _Terminated) else 'interrupted'}; "
             "finished tracks are cached" + (", finished folds kept in OUT/folds" if args.command == "evaluate" else "")
             + ", rerun to resume")
        return 143 if isinstance(err, _Terminated) else 130
    except (ValueError, RuntimeError, OSError) as err:
        _err(str(err).splitlines()[0] if str(err) else type(err).__name__)
        return 2


if __name__ == "__main__":
    sys.exit(main())
