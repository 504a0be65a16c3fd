"""Audio in, images out: decoding (audio), HPSS views (separation), log-spectrogram images
(spectrogram) and the MFCC baseline (baseline).

Public names are re-exported here from their modules on first use, so importing the package
stays cheap (no torch/librosa until a name that needs them is used).
"""

from .._utils.lazy import lazy_exports

_SUBMODULES = ('audio', 'baseline', 'separation', 'spectrogram')
_EXPORTS = {
    'AUDIO_EXTENSIONS': 'audio',
    'AudioError': 'audio',
    'AudioInfo': 'audio',
    'AudioProfile': 'audio',
    'BASELINE_NAME': 'baseline',
    'SAMPLE_RATE': 'audio',
    'SpectrogramConfig': 'spectrogram',
    'VIEWS': 'separation',
    'audio_info': 'audio',
    'audio_profile': 'audio',
    'frequency_scale': 'spectrogram',
    'hpss_masks': 'separation',
    'load_audio': 'audio',
    'log_image': 'spectrogram',
    'mfcc_feature_names': 'baseline',
    'mfcc_features': 'baseline',
    'normalise': 'audio',
    'quality_warnings': 'audio',
    'resize': 'spectrogram',
    'separate': 'separation',
    'separate_audio': 'separation',
    'stft_magnitude': 'separation',
    'to_png': 'spectrogram',
    'training_audio': 'audio',
    'window_images': 'spectrogram',
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
