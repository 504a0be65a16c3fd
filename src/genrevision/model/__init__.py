"""The trained model file: train, save, load and predict (genre_model); how unlike its training
library a file is (novelty, used by library-trained models).

Public names are re-exported here from their modules on first use, so importing the package
stays cheap (no torch/librosa until a name that needs them is used).
"""

from .._utils.lazy import lazy_exports

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
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES, legacy='genre_model')
