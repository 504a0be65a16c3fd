"""Applications on top of a model: tagging files (tagging) and auditing/training on a library's
own tags (library), the web page and API (serve, web/), batch prediction engines (engine,
ray_engine), embeddings for other tools (embeddings) and the HEAR 2021 API (hear).

Public names are re-exported here from their modules on first use, so importing the package
stays cheap (no torch/librosa until a name that needs them is used).
A name more than one module defines is not re-exported (import it from its module):
``write_report`` (``apps.library``, ``apps.tagging``).
"""

from .._utils.lazy import lazy_exports

_SUBMODULES = ('embeddings', 'engine', 'hear', 'library', 'ray_engine', 'serve', 'tagging')
_EXPORTS = {
    'AuditRow': 'library',
    'DEFAULT_LOG': 'tagging',
    'DEFAULT_MAX_DURATION_S': 'serve',
    'DEFAULT_MAX_UPLOAD_MB': 'serve',
    'DEFAULT_MIN_PROB': 'tagging',
    'DEFAULT_PRECISION': 'library',
    'DEFAULT_PREDICTION_CACHE': 'engine',
    'DEFAULT_SEGMENTS': 'engine',
    'DEFAULT_TOP': 'tagging',
    'Decision': 'tagging',
    'Embeddings': 'embeddings',
    'EngineStats': 'engine',
    'FORMATS': 'embeddings',
    'GenrevisionEmbedding': 'hear',
    'INSTALL_HINT': 'ray_engine',
    'Library': 'library',
    'LibraryReport': 'library',
    'MIN_TRACKS': 'library',
    'ModelInfo': 'serve',
    'Outcome': 'engine',
    'PARQUET_COLUMNS': 'ray_engine',
    'PredictResponse': 'serve',
    'PredictionCache': 'engine',
    'PredictionEngine': 'engine',
    'RayUnavailable': 'ray_engine',
    'TAG_EXTENSIONS': 'tagging',
    'TagError': 'tagging',
    'TagResult': 'tagging',
    'abstention': 'library',
    'audit_library': 'library',
    'check_output': 'embeddings',
    'choose_genres': 'tagging',
    'connect': 'ray_engine',
    'create_app': 'serve',
    'embed': 'embeddings',
    'extract_dataset_ray': 'ray_engine',
    'find_taggable': 'tagging',
    'genre_key': 'library',
    'get_scene_embeddings': 'hear',
    'get_timestamp_embeddings': 'hear',
    'load_embeddings': 'embeddings',
    'load_mapping': 'tagging',
    'load_model': 'hear',
    'model_digest': 'engine',
    'novelty': 'library',
    'parse_segments': 'engine',
    'precision_thresholds': 'library',
    'predict_files': 'engine',
    'predict_files_ray': 'ray_engine',
    'predict_paths': 'engine',
    'read_genres': 'tagging',
    'read_library': 'library',
    'read_parquet_features': 'ray_engine',
    'read_tag_fields': 'tagging',
    'require_ray': 'ray_engine',
    'run_server': 'serve',
    'spectrogram_pngs': 'serve',
    'split_genres': 'library',
    'tag_files': 'tagging',
    'train_library': 'library',
    'undo': 'tagging',
    'write_audit': 'library',
    'write_predictions': 'tagging',
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES)
