"""How well a recipe works: datasets and manifests (dataset), splits and scoring protocols
(protocols), the evaluation API (experiment) and tables/plots/HTML (reports).

Public names are re-exported here from their modules on first use, so importing the package
stays cheap (no torch/librosa until a name that needs them is used).
A name more than one module defines is not re-exported (import it from its module):
``gtzan_track_number`` here is ``evaluation.protocols``'s (as before the move), not ``evaluation.dataset``'s.
"""

from .._utils.lazy import lazy_exports

_SUBMODULES = ('dataset', 'experiment', 'protocols', 'reports')
_EXPORTS = {
    'Dataset': 'dataset',
    'DatasetError': 'dataset',
    'EvaluationResult': 'experiment',
    'Fold': 'protocols',
    'GTZAN_NOTE': 'reports',
    'HEAD_KIND': 'experiment',
    'LABEL_ALIASES': 'dataset',
    'LEAKY_PROTOCOLS': 'protocols',
    'PAPER_FINETUNE': 'reports',
    'PAPER_SVM': 'reports',
    'PROTOCOLS': 'protocols',
    'ROW_ORDER': 'reports',
    'ablation_table_markdown': 'reports',
    'canonical_label': 'dataset',
    'confusion': 'protocols',
    'confusion_png': 'reports',
    'confusion_text': 'reports',
    'cross_validate_rows': 'protocols',
    'evaluate': 'experiment',
    'evaluate_baseline': 'experiment',
    'evaluate_predictions': 'protocols',
    'evaluate_recipe': 'experiment',
    'find_audio': 'dataset',
    'find_inputs': 'dataset',
    'fold_rows': 'experiment',
    'format_accuracy': 'reports',
    'gtzan_split_labels': 'protocols',
    'gtzan_track_number': 'protocols',
    'load_dataset': 'dataset',
    'load_mirdata': 'dataset',
    'make_splits': 'protocols',
    'oof_confusion': 'protocols',
    'paper_table_markdown': 'reports',
    'paper_table_rows': 'reports',
    'parse_confusion_text': 'reports',
    'pooled_confusion': 'protocols',
    'repeat_summary': 'protocols',
    'results_json': 'reports',
    'single_group_classes': 'protocols',
    'summarise': 'protocols',
    'summary_text': 'reports',
    'write_report': 'reports',
}
__all__ = sorted(_EXPORTS)
#: Until it became a package, ``genrevision.evaluation`` was today's ``evaluation.protocols``: its other
#: names (private helpers included) still resolve here, with a DeprecationWarning.
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, _SUBMODULES, legacy='protocols')
