"""Heads and fusion on top of the features: per-view classifiers and windowed heads
(classifiers), attention pooling (attention), late fusion of the views (fusion) and the ragged
window matrix (ragged).

Public names are re-exported here from their modules on first use, so importing the package
stays cheap (no torch/librosa until a name that needs them is used).
"""
import importlib

_SUBMODULES = ('attention', 'classifiers', 'fusion', 'ragged')
_EXPORTS = {
    'AttentionPoolingClassifier': 'attention',
    'LateFusionClassifier': 'fusion',
    'LinearHead': 'classifiers',
    'PAPER_FINETUNE_WEIGHTS': 'fusion',
    'PAPER_WEIGHTS': 'fusion',
    'Ragged': 'ragged',
    'SoftmaxHead': 'classifiers',
    'ViewSVM': 'classifiers',
    'WindowedClassifier': 'classifiers',
    'accepts_groups': 'classifiers',
    'fuse_probabilities': 'fusion',
    'learn_weights': 'fusion',
    'make_inner_cv': 'classifiers',
    'make_views': 'fusion',
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBMODULES))
