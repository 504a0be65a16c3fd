"""CNN features of spectrogram images: extraction settings and the per-track pipeline
(extraction), ImageNet backbones (backbone), the on-disk feature cache (store), fine-tuning
the backbone's last stages (tuning) and the matrix of every track's windows (ragged).

Public names are re-exported here from their modules on first use, so importing the package
stays cheap (no torch/librosa until a name that needs them is used).
"""

from .._utils.lazy import lazy_exports

_SUBMODULES = ('backbone', 'extraction', 'ragged', 'store', 'tuning')
_EXPORTS = {
    'BACKBONES': 'backbone',
    'Backbone': 'backbone',
    'BackboneSpec': 'backbone',
    'BackboneUnavailable': 'backbone',
    'DEFAULT_BACKBONE': 'backbone',
    'DEFAULT_CACHE': 'extraction',
    'ExtractionResult': 'extraction',
    'Ragged': 'ragged',
    'FORMAT': 'tuning',
    'FeatureSettings': 'extraction',
    'FeatureStore': 'store',
    'FineTuner': 'tuning',
    'Segment': 'extraction',
    'TunedTail': 'tuning',
    'atomic_write': 'store',
    'available_backbones': 'backbone',
    'backbone_spec': 'backbone',
    'content_digest': 'store',
    'dataset_activations': 'tuning',
    'decode_segments': 'extraction',
    'extract_cached': 'extraction',
    'extract_cached_many': 'extraction',
    'extract_dataset': 'extraction',
    'extract_many': 'extraction',
    'extract_signal': 'extraction',
    'extract_track': 'extraction',
    'failure_reason': 'extraction',
    'feature_matrix': 'extraction',
    'fit_on_tracks': 'tuning',
    'front_end': 'extraction',
    'frozen_pass': 'tuning',
    'get_backbone': 'backbone',
    'image_features': 'backbone',
    'images_to_features': 'extraction',
    'load_tuned': 'tuning',
    'plan_segments': 'extraction',
    'pool_windows': 'extraction',
    'prepare_track': 'extraction',
    'prepare_tracks': 'extraction',
    'prepared_features': 'extraction',
    'recipe_activations': 'tuning',
    'save_tuned': 'tuning',
    'separate_views': 'extraction',
    'shifted_track_images': 'tuning',
    'stage_ends': 'tuning',
    'tail_features': 'tuning',
    'tail_start': 'tuning',
    'torch_threads': 'backbone',
    'track_activations': 'tuning',
    'track_images': 'extraction',
    'tuned_backbone': 'tuning',
    'tuned_track_features': 'tuning',
    'view_images': 'extraction',
    'window_mismatch': 'tuning',
}
__all__ = sorted(_EXPORTS)
#: Until it became a package, ``genrevision.features`` was today's ``features.extraction``: its other
#: names (private helpers included) still resolve here, with a DeprecationWarning.
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES, legacy='extraction')
