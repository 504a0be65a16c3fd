"""Heads and fusion on top of the features: per-view classifiers and windowed heads
(classifiers), attention pooling (attention) and late fusion of the views (fusion); they learn
from the window matrices of :mod:`genrevision.features.ragged`.

Public names are re-exported here from their modules on first use, so importing the package
stays cheap (no torch/librosa until a name that needs them is used).
"""

from .._utils.lazy import lazy_exports

_SUBMODULES = ('attention', 'classifiers', 'fusion')
_EXPORTS = {
    'AttentionPoolingClassifier': 'attention',
    'LateFusionClassifier': 'fusion',
    'LinearHead': 'classifiers',
    'PAPER_FINETUNE_WEIGHTS': 'fusion',
    'PAPER_WEIGHTS': 'fusion',
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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
