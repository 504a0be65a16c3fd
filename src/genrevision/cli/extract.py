"""``genrevision extract``: CNN features of every track of a dataset, into the feature cache."""
from __future__ import annotations

import time

from . import _common as c


def add_parser(sub, fmt) -> None:
    p = sub.add_parser("extract", help="CNN features of the three views for every track of a dataset",
                       formatter_class=fmt, epilog=c.examples(
                           "genrevision extract ../shared/data/gtzan-mini --save-images spectrograms/",
                           "genrevision extract --mirdata gtzan_genre --data-home ~/mir_datasets",
                           "genrevision extract tracks.csv --engine ray --out features.parquet"))
    c.add_data_args(p)
    p.add_argument("--out", default=None,
                   help="feature store folder (default: --cache), or a FOLDER.parquet of Parquet files (--engine ray)")
    p.add_argument("--save-images", default=None, metavar="DIR", help="also write each track's three spectrograms as PNG")
    c.add_feature_args(p)
    c.add_engine_args(p, gpus=True)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..features.extraction import extract_cached

    parquet = args.out if args.out and args.out.rstrip("/").endswith(".parquet") else None
    if parquet and args.engine != "ray":
        c.error(f"{args.out}: Parquet output needs --engine ray (or give a feature store folder)")
        return 2
    if args.engine == "ray" and args.save_images:
        c.error("--save-images works with --engine local only")
        return 2
    c.require_ray(args)
    _, settings = c.settings(args)
    ds = c.dataset(args)
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
    c.report_failures(ds.problems + res.failures)
    return 0 if ok else 1
