"""genrevision: music genre recognition from spectrogram images with ImageNet CNN features.

Three lines::

    from genrevision import load_model
    model = load_model("genres.model")
    print(model.predict("song.mp3").genre)

For researchers: ``genrevision.evaluate(data, protocol="cv")`` (an
:class:`~genrevision.evaluation.experiment.EvaluationResult`), ``genrevision.embed``
(features of a recipe for other tools), :mod:`genrevision.apps.hear` (the HEAR 2021
API) and ``genrevision.load_mirdata`` (a mirdata index as a dataset).
"""
__version__ = "0.1.0"

__all__ = [
    "__version__",
    "load_model",
    "train_model",
    "GenreModel",
    "Prediction",
    "ModelError",
    "GenrevisionError",
    "extract_track",
    "image_features",
    "evaluate",
    "EvaluationResult",
    "embed",
    "load_mirdata",
]

# The flat layout's module paths (genrevision.classifiers, ...) still import, with a DeprecationWarning.
from ._utils import moved as _moved

_moved.install()

# Imported on first use, so ``import genrevision`` stays cheap (no torch/librosa).
_LAZY = {
    "load_model": "model.genre_model",
    "train_model": "model.genre_model",
    "GenreModel": "model.genre_model",
    "Prediction": "model.genre_model",
    "ModelError": "model.genre_model",
    "GenrevisionError": "errors",
    "extract_track": "features.extraction",
    "image_features": "features.backbone",
    "evaluate": "evaluation.experiment",
    "EvaluationResult": "evaluation.experiment",
    "embed": "apps.embeddings",
    "load_mirdata": "evaluation.dataset",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
