"""What the commands share: one-line errors, failure lists, and the arguments several commands take."""
from __future__ import annotations

import argparse
import os
import sys

from .._utils.files import feature_cache, printable

DEFAULT_DATA = os.path.join("..", "shared", "data", "gtzan-mini")
DEFAULT_CACHE = feature_cache()  # GENREVISION_CACHE honoured


def error(msg: str) -> None:
    print(f"genrevision: error: {printable(msg)}", file=sys.stderr)


def report_failures(failures, *, what="files") -> None:
    if failures:
        print(f"{len(failures)} {what} failed:", file=sys.stderr)
        for path, reason in failures:
            print(f"  {printable(path)}: {printable(reason)}", file=sys.stderr)


def genre_list(names) -> str:
    # Values read from a user's file: one escaped line, each cut at 80 characters.
    return ", ".join(printable(n, 80) for n in names) if names else "(none)"


def examples(*lines: str) -> str:
    return "example" + ("s" if len(lines) > 1 else "") + ":\n" + "\n".join(f"  {line}" for line in lines)


class RecipeNames:
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


def add_feature_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", default="default", choices=RecipeNames(), metavar="RECIPE",
                   help="named configuration of features and classifiers: %(choices)s (default: %(default)s)")
    p.add_argument("--backbone", default=None, help="override the recipe's CNN (e.g. efficientnet_lite1, alexnet, timm:NAME)")
    p.add_argument("--cache", default=feature_cache(),
                   help="feature cache folder, keyed by file content and settings (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=None, help="worker processes for decoding/HPSS (default: from the cores and the measured costs; 0: none)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def settings(args):
    from ..recipes import get_recipe

    recipe = get_recipe(args.recipe)
    feature_settings = recipe.features
    if args.backbone:
        feature_settings = feature_settings.with_(backbone=args.backbone)
    return recipe, feature_settings


def dataset(args):
    """The dataset named on the command line: DATA (folder tree or CSV) or --mirdata NAME --data-home DIR."""
    from ..evaluation.dataset import load_dataset, load_mirdata

    if getattr(args, "mirdata", None):
        if args.data not in (None, DEFAULT_DATA):
            raise ValueError(f"give either DATA ({args.data}) or --mirdata, not both")
        return load_mirdata(args.mirdata, data_home=args.data_home, index=args.mirdata_index)
    if args.data is None:
        raise ValueError("no dataset: give DATA (a label-folder tree or CSV manifest) or --mirdata NAME --data-home DIR")
    return load_dataset(args.data)


def add_data_args(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    p.add_argument("data", nargs="?", default=None if required else DEFAULT_DATA,
                   help="label-folder tree or CSV manifest (path,label[,group][,split])"
                        + ("" if required else " (default: %(default)s)"))
    p.add_argument("--mirdata", default=None, metavar="NAME",
                   help="read the dataset through a mirdata loader instead, e.g. gtzan_genre (pip install 'genrevision[mirdata]')")
    p.add_argument("--data-home", default=None, metavar="DIR",
                   help="--mirdata: the folder holding the dataset in mirdata's layout (default: mirdata's ~/mir_datasets/NAME)")
    p.add_argument("--mirdata-index", default=None, metavar="FILE",
                   help="--mirdata: a copy of mirdata's index JSON, when mirdata's own is not downloaded")


def add_engine_args(p: argparse.ArgumentParser, *, gpus: bool) -> None:
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


def require_ray(args) -> None:
    """Fail at once, in one line, when --engine ray is asked without Ray installed."""
    if args.engine == "ray":
        from ..apps.ray_engine import require_ray as require

        require()


def prediction_cache(args):
    return None if args.no_cache else args.prediction_cache


def add_prediction_args(p: argparse.ArgumentParser, *, segments: str) -> None:
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
