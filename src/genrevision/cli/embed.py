"""``genrevision embed``: a recipe's features of every track (or window) for other tools."""
from __future__ import annotations

import os
import time

from . import _common as c


def add_parser(sub, fmt) -> None:
    p = sub.add_parser("embed", help="a recipe's features of every track (or window) to Parquet or npz, for other tools",
                       formatter_class=fmt, epilog=c.examples(
                           "genrevision embed ../shared/data/gtzan-mini --out gtzan.parquet",
                           "genrevision embed tracks.csv --out windows.npz --windows --recipe paper",
                           "python -c \"import numpy as np; z = np.load('windows.npz'); print(z['embedding'].shape)\""))
    c.add_data_args(p)
    p.add_argument("--out", required=True, metavar="FILE.parquet|FILE.npz",
                   help="output file: .parquet (needs pyarrow) or .npz; columns path, label, group[, track, "
                        "window_start], embedding")
    p.add_argument("--windows", action="store_true", help="one row per window (with its start in seconds), not per track")
    p.add_argument("--force", action="store_true", help="overwrite --out when it exists")
    c.add_feature_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..apps.embeddings import FORMATS, check_output, embed

    ext = os.path.splitext(args.out)[1].lower()
    if ext not in FORMATS and not os.path.isdir(args.out):
        c.error(f"{args.out}: --out must end in .parquet or .npz")
        return 2
    check_output(args.out, force=args.force)  # before the extraction, not after it
    if ext == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            c.error("Parquet needs pyarrow: pip install pyarrow (or write .npz)")
            return 2
    t0 = time.perf_counter()
    emb = embed(c.dataset(args), recipe=args.recipe, windows=args.windows, cache=args.cache, jobs=args.jobs,
                progress=not args.quiet, backbone=args.backbone)
    path = emb.save(args.out, force=args.force)
    n_tracks = len(set(emb.path.tolist()))
    print(f"{len(emb)} {'window' if args.windows else 'track'} embeddings of {n_tracks} tracks, "
          f"{emb.embedding.shape[1]} dimensions ({emb.meta['recipe']} recipe, {emb.meta['backbone']}) "
          f"in {time.perf_counter() - t0:.1f} s → {path}")
    c.report_failures(emb.failures)
    return 0
