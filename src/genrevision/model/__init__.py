"""The trained model file: train, save, load and predict (genre_model); how unlike its training
library a file is (novelty, used by library-trained models).

Public names are re-exported here from their modules on first use, so importing the package
stays cheap (no torch/librosa until a name that needs them is used).
"""
import importlib
import warnings

_SUBMODULES = ('genre_model', 'novelty')
_EXPORTS = {
    'ALLOWED_TYPES': 'genre_model',
    'FORMAT_VERSION': 'genre_model',
    'GenreModel': 'genre_model',
    'MAX_MEMBER_BYTES': 'genre_model',
    'ModelError': 'genre_model',
    'Prediction': 'genre_model',
    'environment_versions': 'genre_model',
    'fit_recipe': 'genre_model',
    'load_model': 'genre_model',
    'meta_checksum': 'genre_model',
    'read_meta': 'genre_model',
    'recipe_from_dict': 'genre_model',
    'recipe_to_dict': 'genre_model',
    'train_model': 'genre_model',
}
__all__ = sorted(_EXPORTS)
#: Until it became a package, ``genrevision.model`` was today's ``model.genre_model``: its other
#: names (private helpers included) still resolve here, with a DeprecationWarning.
_LEGACY_MODULE = 'genre_model'


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    if name not in _SUBMODULES and not (name.startswith("__") and name.endswith("__")):
        legacy = importlib.import_module(f".{_LEGACY_MODULE}", __name__)
        if hasattr(legacy, name):
            warnings.warn(f"{__name__}.{name} moved to {legacy.__name__}.{name}; import it from there",
                          DeprecationWarning, stacklevel=2)
            return getattr(legacy, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))
