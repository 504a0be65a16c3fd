"""Plumbing shared by every layer: regular-file opening, atomic writes and the caches (files),
worker processes (workers), the audio-stream digest (audiohash), progress bars (progress),
parameter validation (validation), early stopping (early_stopping) and the HTML/Markdown
templates (rendering). Nothing here knows about genres.

Public names are re-exported here from their modules on first use, so importing the package
stays cheap (no torch/librosa until a name that needs them is used).
"""

from .lazy import lazy_exports

_SUBMODULES = ('audiohash', 'early_stopping', 'files', 'progress', 'rendering', 'validation', 'workers')
_EXPORTS = {
    'NotRegularFile': 'files',
    'atomic_path': 'files',
    'atomic_write': 'files',
    'check_scalar': 'validation',
    'feature_cache': 'files',
    'progress_bar': 'progress',
    'validate_params': 'validation',
    'audio_digest': 'audiohash',
    'audio_ranges': 'audiohash',
    'check_regular': 'files',
    'die_with_parent': 'workers',
    'iff_chunks': 'audiohash',
    'open_regular': 'files',
    'open_regular_fd': 'files',
    'os_reason': 'files',
    'printable': 'files',
    'start_pool': 'workers',
    'stop_pool': 'workers',
    'threads_per_worker': 'workers',
    'user_cache': 'files',
    'worker_init': 'workers',
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
