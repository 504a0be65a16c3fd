"""Old import paths of the modules that moved into subpackages (genrevision 0.1.0's flat layout).

``import genrevision.classifiers`` (or ``from genrevision.tagging import tag_files``) still works:
a finder on ``sys.meta_path`` answers the old dotted name with a module that forwards every
attribute, private names included, to the new module, and warns once with a DeprecationWarning
naming the new path. Pickles and skops files that name classes by an old path resolve through it
too. ``genrevision.features``, ``genrevision.model`` and ``genrevision.evaluation`` are packages
now; their ``__init__`` forwards the old module's other names the same way.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types
import warnings

__all__ = ["MOVED", "install"]

#: Old dotted name -> new dotted name.
MOVED = {
    f"genrevision.{old}": f"genrevision.{new}" for old, new in {
        "files": "_utils.files", "workers": "_utils.workers", "audiohash": "_utils.audiohash",
        "audio": "signal.audio", "separation": "signal.separation", "spectrogram": "signal.spectrogram",
        "baseline": "signal.baseline",
        "backbone": "features.backbone", "store": "features.store", "tuning": "features.tuning",
        "classifiers": "learn.classifiers", "attention": "learn.attention", "fusion": "learn.fusion",
        "ragged": "features.ragged",
        "experiment": "evaluation.experiment", "reports": "evaluation.reports", "dataset": "evaluation.dataset",
        "tagging": "apps.tagging", "library": "apps.library", "serve": "apps.serve", "engine": "apps.engine",
        "ray_engine": "apps.ray_engine", "embeddings": "apps.embeddings", "hear": "apps.hear",
    }.items()
}


class _Loader(importlib.abc.Loader):
    def __init__(self, new: str):
        self.new = new

    def create_module(self, spec):
        warnings.warn(f"{spec.name} moved to {self.new}; import it from there", DeprecationWarning,
                      stacklevel=2)  # warnings skips the import machinery's frames
        target = importlib.import_module(self.new)
        module = types.ModuleType(spec.name, f"Deprecated: moved to :mod:`{self.new}`.")

        def __getattr__(name):
            return getattr(target, name)

        def __dir__():
            return dir(target)

        module.__getattr__ = __getattr__
        module.__dir__ = __dir__
        return module

    def exec_module(self, module):
        pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        new = MOVED.get(fullname)
        return importlib.util.spec_from_loader(fullname, _Loader(new)) if new else None


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.append(_Finder())
