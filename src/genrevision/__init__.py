"""genrevision: music genre recognition from spectrogram images with ImageNet CNN features.

Three lines::

    from genrevision import load_model
    model = load_model("genres.model")
    print(model.predict("song.mp3").genre)
"""
__version__ = "0.1.0"

__all__ = [
    "__version__",
    "load_model",
    "train_model",
    "GenreModel",
    "Prediction",
    "ModelError",
    "extract_track",
    "image_features",
]

# Imported on first use, so ``import genrevision`` stays cheap (no torch/librosa).
_LAZY = {
    "load_model": "model",
    "train_model": "model",
    "GenreModel": "model",
    "Prediction": "model",
    "ModelError": "model",
    "extract_track": "features",
    "image_features": "backbone",
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
