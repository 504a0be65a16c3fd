"""Train once, predict anywhere: a fitted genre model in one safe file.

:func:`train_model` extracts (cached) features of a labelled dataset with a
recipe and fits the recipe's late-fusion classifier on every track.
:class:`GenreModel` carries everything prediction needs: the recipe (feature
settings included, so a model trained with other settings is applied with
*its* settings), the backbone name and the SHA-256 of its weights, the label
names, the fitted classifier and the package versions it was made with.

File format (a zip, never a pickle)::

    meta.json         format name and version, recipe, feature settings,
                      backbone + weights sha256, labels, fusion weights,
                      view layout, versions, training size, the training
                      audio (sample rates, bit depth, band), the sha256
                      of classifier.skops, and meta_sha256: the sha256 of
                      all the other fields (see :func:`meta_checksum`)
    classifier.skops  skops.io.dumps of the fitted LateFusionClassifier
    views.skops       (recipes that join the views into one classifier) one
                      head per view, fitted on the same tracks, used only to
                      report each view's own guess; its sha256 is in meta.json
    tuned.npz         (recipes with ``tune``) the fine-tuned last stage(s) of
                      the network, plain arrays with a checksum each
                      (:func:`genrevision.features.tuning.save_tuned`, no pickle);
                      its sha256 is in meta.json
    library.npz       (models trained on a library's own tags, see
                      :mod:`genrevision.apps.library`) the out-of-fold
                      probabilities the abstention thresholds and the audit
                      come from, and the reference the out-of-distribution
                      check measures against; plain arrays, no pickle; its
                      sha256 is in meta.json, its settings in meta["library"]

:func:`load_model` checks the zip CRCs, the payload checksum, the format
version and the backbone weights, and loads the classifier with skops using
an explicit allow-list of types (:data:`ALLOWED_TYPES`); anything else is
refused with a one-line :class:`ModelError` "<path>: <reason>".

Three lines::

    from genrevision import load_model
    model = load_model("genres.model")
    print(model.predict("song.mp3").genre)
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import sys
import zipfile
import warnings
from dataclasses import dataclass, field

import numpy as np

from .._utils.progress import progress_bar
from ..signal.audio import AudioError, audio_info
from ..errors import ModelError
from .._utils.files import NotRegularFile, atomic_write, feature_cache, open_regular

__all__ = [
    "ModelError",
    "GenreModel",
    "Prediction",
    "train_model",
    "fit_recipe",
    "load_model",
    "read_meta",
    "recipe_to_dict",
    "recipe_from_dict",
    "environment_versions",
    "ALLOWED_TYPES",
    "FORMAT_VERSION",
    "MAX_MEMBER_BYTES",
    "meta_checksum",
]

#: Name written in meta.json; a zip without it is not a genrevision model.
FORMAT_NAME = "genrevision-model"
#: Bumped when the file layout changes incompatibly (2: windows of any count per track).
FORMAT_VERSION = 2
#: The paper's fusion weights (``weights="paper"``); views not named get 0.
PAPER_FUSION = {"original": 0.5, "harmonic": 0.1, "percussive": 0.4}

#: Types skops may build when loading a classifier: found with
#: ``skops.io.get_untrusted_types`` on real models of every recipe
#: (LinearHead and ViewSVM heads, learned and fixed fusion). Nothing else loads.
ALLOWED_TYPES = [
    "genrevision.learn.classifiers.LinearHead",
    "genrevision.learn.classifiers.ViewSVM",
    "genrevision.learn.classifiers.WindowedClassifier",
    "genrevision.learn.fusion.LateFusionClassifier",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
]

def _current_type_name(name: str) -> str:
    """``name`` (a dotted type a skops payload names) under today's module path: models saved
    before the subpackage move name ``genrevision.learn.classifiers.LinearHead`` and the like."""
    from .._utils.moved import MOVED

    module, _, cls = name.rpartition(".")
    return f"{MOVED[module]}.{cls}" if module in MOVED else name


def _alias_moved_modules(untrusted) -> None:
    """Let skops import the old module paths an old model names without the deprecation warning
    (a user cannot act on it but by retraining): the old name is bound to the new module."""
    import importlib
    import sys

    from .._utils.moved import MOVED

    for name in untrusted:
        module = name.rpartition(".")[0]
        if module in MOVED and module not in sys.modules:
            sys.modules[module] = importlib.import_module(MOVED[module])


#: Largest size a model file's member may inflate to (meta.json, each skops
#: payload, and all the entries inside one skops payload together). Real models
#: are ~2 MB (default recipe, 10 genres); the cap only stops zip bombs.
MAX_MEMBER_BYTES = 64 * 2**20
#: Entries one skops payload may hold (a real one: a few hundred arrays at most).
_MAX_SKOPS_MEMBERS = 10_000

#: Zip members holding fitted estimators → the meta.json key of their SHA-256.
_SHA_KEY = {"classifier.skops": "classifier_sha256", "views.skops": "view_classifier_sha256",
            "tuned.npz": "tuned_sha256", "library.npz": "library_sha256"}

_DEFAULT_CACHE = feature_cache()  # GENREVISION_CACHE honoured, as everywhere


@dataclass
class Prediction:
    """The answer for one file.

    Attributes
    ----------
    path : str
    genre : str  top class of the fused probabilities
    probabilities : dict label → float (sums to 1), fused over the views
    views : dict view → that view's own top guess
    segments : list of (start_s, end_s, genre, probabilities), one per
        segment read (30 s by default; empty for a file of one piece unless
        ``timeline=True`` was asked)
    duration : float, seconds
    warnings : list of str
        Why this input is poorer than the model's training audio (lower bit
        depth, narrower band); any warning makes the prediction low-confidence.
    """

    path: str
    genre: str
    probabilities: dict
    views: dict
    segments: list = field(default_factory=list)
    duration: float = 0.0
    warnings: list = field(default_factory=list)
    #: How unlike the model's training library the audio is (see :func:`genrevision.apps.library.novelty`);
    #: None for a model without a library reference.
    novelty: float | None = None

    @property
    def low_confidence(self) -> bool:
        return bool(self.warnings)

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "genre": self.genre,
            "probabilities": self.probabilities,
            "views": self.views,
            "duration": self.duration,
            "low_confidence": self.low_confidence,
            "warnings": list(self.warnings),
            "segments": [
                {"start": s, "end": e, "genre": g, "probabilities": p} for s, e, g, p in self.segments
            ],
            # Only models trained on a library's tags have it: other answers keep their old shape.
            **({"novelty": self.novelty} if self.novelty is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Prediction":
        """The inverse of :meth:`to_dict` (``low_confidence`` follows from the warnings)."""
        return cls(path=d["path"], genre=d["genre"], probabilities=dict(d["probabilities"]), views=dict(d["views"]),
                   segments=[(s["start"], s["end"], s["genre"], dict(s["probabilities"])) for s in d.get("segments", [])],
                   duration=d.get("duration", 0.0), warnings=list(d.get("warnings", [])),
                   novelty=d.get("novelty") if isinstance(d.get("novelty"), (int, float)) else None)


# ----------------------------------------------------------------------------- recipes <-> JSON


def recipe_to_dict(recipe) -> dict:
    """A :class:`~genrevision.recipes.Recipe` as the JSON-ready dict a model's meta.json (and an
    evaluation's fold keys) hold; :func:`recipe_from_dict` reads it back."""
    out = {}
    for f in dataclasses.fields(recipe):
        v = getattr(recipe, f.name)
        if f.name == "tune" and v is None:
            continue  # recipes without fine-tuning keep the dict (and evaluation fold keys) they had before
        if f.name in ("aggregate", "balance") and v == f.default:
            continue  # added later: left out at its default, so earlier models' and fold files' keys stay the same
        if f.name == "features":
            v = v.to_dict()
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def recipe_from_dict(d: dict):
    """The :class:`~genrevision.recipes.Recipe` of a :func:`recipe_to_dict` dict (unknown keys ignored)."""
    from ..features.extraction import FeatureSettings
    from ..recipes import Recipe

    known = {f.name for f in dataclasses.fields(Recipe)}
    kw = {k: v for k, v in d.items() if k in known}
    kw["features"] = FeatureSettings.from_dict(d["features"])
    if isinstance(kw.get("fusion_weights"), list):
        kw["fusion_weights"] = tuple(kw["fusion_weights"])
    return Recipe(**kw)


def environment_versions() -> dict:
    """Versions of genrevision, numpy, scikit-learn, Python and torch: what a model or an evaluation
    records of the environment that made it."""
    import sklearn

    from .. import __version__

    out = {"genrevision": __version__, "numpy": np.__version__, "sklearn": sklearn.__version__,
           "python": sys.version.split()[0]}
    try:
        import torch

        out["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        out["torch"] = None
    return out


# ----------------------------------------------------------------------------- the model


class GenreModel:
    """A fitted genre classifier plus everything needed to apply it elsewhere.

    Build one with :func:`train_model` or :func:`load_model`.
    """

    def __init__(self, *, recipe, classifier, labels, views, backbone_sha256: str,
                 n_train: int, versions: dict | None = None, failures=None, source: str | None = None,
                 view_classifier=None, training_audio: dict | None = None, tuner=None,
                 library: dict | None = None, library_arrays: dict | None = None):
        self.recipe = recipe
        #: The fitted :class:`~genrevision.features.tuning.FineTuner` of a recipe with ``tune``
        #: (its tail replaces the network's last stage(s) for every prediction), else None.
        self.tuner = tuner
        self._tuned_backbone = None
        self.classifier = classifier
        #: Recipes that join O|H|P into one classifier also carry one head per
        #: view (a LateFusionClassifier), only to report each view's own guess.
        self.view_classifier = view_classifier
        self.labels = [str(x) for x in labels]
        self.views = tuple(tuple(v) for v in views)
        self.backbone_sha256 = backbone_sha256
        self.n_train = int(n_train)
        self.versions = versions or environment_versions()
        #: Training files that could not be used: [(path, reason)].
        self.failures = list(failures or [])
        self.source = source
        #: What the training audio was (sample rates, bit depth, band; see
        #: :func:`genrevision.signal.audio.training_audio`); inputs below it are flagged.
        self.training_audio = dict(training_audio or {})
        #: Models trained on a library's tags (:func:`genrevision.apps.library.train_library`): the
        #: abstention thresholds and out-of-distribution settings (JSON, in meta.json) and their
        #: arrays (out-of-fold probabilities, novelty reference; library.npz). None otherwise.
        self.library = library
        self.library_arrays = library_arrays

    # -- what it is ----------------------------------------------------------

    @property
    def settings(self):
        """The FeatureSettings the model was trained with (and predicts with)."""
        return self.recipe.features

    @property
    def backbone_name(self) -> str:
        return self.recipe.features.backbone

    @property
    def report_views(self) -> tuple[str, ...]:
        """Names of the views whose own guesses :class:`Prediction` reports."""
        src = self.view_classifier if self.view_classifier is not None else self.classifier
        return tuple(str(v) for v in src.view_names_)

    @property
    def weights(self):
        """Fusion weight per view (None for stacking)."""
        w = getattr(self.classifier, "weights_", None)
        return None if w is None else dict(zip(self.classifier.view_names_, (float(x) for x in w)))

    def __repr__(self) -> str:
        return (f"GenreModel(recipe={self.recipe.name!r}, labels={self.labels}, backbone={self.backbone_name!r}, "
                f"n_train={self.n_train})")

    def meta(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "recipe": recipe_to_dict(self.recipe),
            "recipe_name": self.recipe.name,
            "feature_settings": self.recipe.features.to_dict(),
            "backbone": {"name": self.backbone_name, "weights_sha256": self.backbone_sha256},
            "labels": self.labels,
            "views": [list(v) for v in self.views],
            "fusion_weights": self.weights,
            "n_train": self.n_train,
            "versions": self.versions,
            "training_audio": self.training_audio,
            **({"library": self.library} if self.library is not None else {}),
        }

    # -- saving ----------------------------------------------------------------

    def save(self, path) -> str:
        """Write the model file (zip of meta.json + classifier.skops), atomically."""
        import skops.io as sio

        path = os.fspath(path)
        members = {"classifier.skops": self.classifier}
        if self.view_classifier is not None:
            members["views.skops"] = self.view_classifier
        meta = self.meta()
        payloads = {}
        if (self.tuner is None) != (self.recipe.tune is None):
            raise ModelError(path, "cannot save: a recipe with tune needs its fitted tuner, and only such a recipe has one")
        if self.tuner is not None:
            from ..features.tuning import save_tuned

            buf = io.BytesIO()
            save_tuned(self.tuner, buf)
            payloads["tuned.npz"] = buf.getvalue()
            meta[_SHA_KEY["tuned.npz"]] = hashlib.sha256(payloads["tuned.npz"]).hexdigest()
        if (self.library is None) != (self.library_arrays is None):
            raise ModelError(path, "cannot save: library settings and library arrays go together")
        if self.library_arrays is not None:
            buf = io.BytesIO()
            np.savez(buf, **{k: np.asarray(v) for k, v in self.library_arrays.items()})
            payloads["library.npz"] = buf.getvalue()
            meta[_SHA_KEY["library.npz"]] = hashlib.sha256(payloads["library.npz"]).hexdigest()
        for member, est in members.items():
            payloads[member] = sio.dumps(est)
            unknown = sorted(set(sio.get_untrusted_types(data=payloads[member])) - set(ALLOWED_TYPES))
            if unknown:
                raise ModelError(path, f"cannot save: {member} holds types outside the allow-list ({', '.join(unknown)})")
            meta[_SHA_KEY[member]] = hashlib.sha256(payloads[member]).hexdigest()
        # The checksum covers exactly what is stored (JSON round trip: tuples become lists).
        meta = json.loads(json.dumps(meta))
        meta["meta_sha256"] = meta_checksum(meta)
        def write(f):
            with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as z:
                z.writestr("meta.json", json.dumps(meta, indent=2, sort_keys=True))
                for member, payload in payloads.items():
                    z.writestr(member, payload)

        atomic_write(os.path.abspath(path), write)  # synced, then renamed: a reader sees the whole model or none
        return path

    # -- predicting ------------------------------------------------------------

    def feature_backbone(self):
        """The network this model's features come from: the shared frozen one, or (recipes with
        ``tune``) this model's own copy carrying its tuned tail, made once per model."""
        from ..features.backbone import get_backbone

        if self.tuner is None:
            return get_backbone(self.backbone_name)
        if self._tuned_backbone is None:
            from ..features.tuning import tuned_backbone

            # engine=None: the same choice get_backbone makes (GENREVISION_ENGINE, else ONNX Runtime when installed).
            self._tuned_backbone = tuned_backbone(self.tuner)
        return self._tuned_backbone

    def _probas(self, feats: dict):
        X, _ = self.recipe.matrix([feats])
        n_in = getattr(self.classifier, "n_features_in_", X.shape[1])
        if X.shape[1] != n_in:
            raise ValueError(f"features have {X.shape[1]} columns, the classifier expects {n_in}")
        fused = self.classifier.predict_proba(X)[0]
        # The per-view heads of a joined recipe read the same columns, split by view.
        per_view = (self.view_classifier or self.classifier).predict_proba_views(X)
        return fused, {v: p[0] for v, p in per_view.items()}

    def _as_dict(self, p: np.ndarray) -> dict:
        p = np.asarray(p, dtype=np.float64)
        p = p / p.sum()
        return {str(c): float(x) for c, x in zip(self.classifier.classes_, p)}

    def _top(self, p) -> str:
        return str(self.classifier.classes_[int(np.argmax(p))])

    def predict(self, path, *, timeline: bool = False, segments: int | None = None) -> Prediction:
        """Genre of one audio file.

        The file is read in the model's segments (``settings.segment_seconds``,
        30 s by default; a file up to 1.2× that long is one piece, read exactly
        as training tracks were), one decoded at a time so memory stays
        bounded; each segment is classified from all its windows, and the
        file's probabilities are the mean of the segments' (weighted by
        segment length).

        Parameters
        ----------
        path : str or path-like
        timeline : bool
            Also report a file of one piece as one segment.
        segments : int, optional
            Classify at most this many segments, the middle one of each of
            that many equal stretches of the file (a fast look at a long file,
            from its body rather than its intro and outro); None reads them all.

        Raises
        ------
        genrevision.signal.audio.AudioError
            One line naming the file, for input that is not usable audio.
        """
        from ..features.extraction import decode_segments, extract_signal, plan_segments

        path_s = os.fspath(path)
        duration = float(audio_info(path_s).duration)
        settings = self.settings
        plan = plan_segments(duration, settings, max_segments=segments)
        bb = self.feature_backbone()
        found, total, view_sums, weight_sum, seg_feats = [], 0.0, {}, 0.0, []
        for seg, y in decode_segments(path_s, settings, plan):
            seg_len = y.size / settings.sr
            feats = extract_signal(y, settings, backbone=bb, baseline=self.recipe.hybrid_mfcc)
            if self.library_arrays is not None:
                seg_feats.append(feats)
            f, v = self._probas(feats)
            found.append((float(seg.start), round(float(seg.start) + seg_len, 3), self._top(f), self._as_dict(f)))
            total = total + f * seg_len
            for name, p in v.items():
                view_sums[name] = view_sums.get(name, 0.0) + p * seg_len
            weight_sum += seg_len
        fused = total / weight_sum
        return Prediction(
            warnings=self.input_warnings(path_s),
            path=path_s,
            genre=self._top(fused),
            probabilities=self._as_dict(fused),
            views={k: self._top(p / weight_sum) for k, p in view_sums.items()},
            segments=found if (timeline or len(plan) > 1) else [],
            duration=round(duration, 3),
            novelty=self.novelty(seg_feats) if seg_feats else None,
        )

    def novelty(self, features: list[dict]) -> float | None:
        """How unlike this model's training library the windows of ``features`` (per-segment or
        per-track feature dicts of one file) are; None for a model without a library reference."""
        if self.library_arrays is None:
            return None
        from .novelty import novelty

        return novelty(features, self.library, self.library_arrays)

    def input_warnings(self, path) -> list[str]:
        """Why ``path`` is poorer audio than this model was trained on (empty when it is not)."""
        from ..signal.audio import audio_profile, quality_warnings

        return quality_warnings(audio_profile(path), self.training_audio) if self.training_audio else []

    def predict_many(self, paths, *, progress: bool = True, timeline: bool = False, segments: int | None = None):
        """Predict every file; returns (list of Prediction, [(path, reason)] failures)."""
        preds, failures = [], []
        for p in progress_bar(list(paths), desc="predict", unit="file", enabled=progress):
            try:
                preds.append(self.predict(p, timeline=timeline, segments=segments))
            except AudioError as err:
                failures.append((os.fspath(p), err.reason))
            except Exception as err:  # noqa: BLE001 - one bad file must not stop the batch
                msg = str(err).splitlines()[0] if str(err) else ""
                failures.append((os.fspath(p), f"{type(err).__name__}: {msg}".rstrip(": ")))
        return preds, failures


# ----------------------------------------------------------------------------- training


def train_model(data, *, recipe="default", weights=None, cache=_DEFAULT_CACHE, jobs=None,
                progress: bool = True) -> GenreModel:
    """Fit a genre model on every track of a dataset.

    Parameters
    ----------
    data : str or Dataset
        Label-folder tree, CSV manifest (``path,label``) or a loaded
        :class:`~genrevision.evaluation.dataset.Dataset`.
    recipe : str or Recipe
        Named recipe (``"default"``, ``"paper"``, ``"tuned"``) or a Recipe
        object. A recipe with ``tune`` first fine-tunes the network's last
        stage on the tracks (frozen-stage activations cached in ``cache``, see
        :func:`genrevision.features.tuning.dataset_activations`), then fits its head on
        the tuned network's window features; the model carries the tuned weights.
    weights : None, "paper", tuple or dict
        Fusion weights: None = the recipe's; ``"paper"`` = original 0.5,
        harmonic 0.1, percussive 0.4.
    cache : str or None
        Feature store folder (None: no cache).
    jobs : int, optional
        Worker processes for decoding/HPSS (0 = in this process).
    progress : bool
        Progress bar on stderr.

    Returns
    -------
    GenreModel; ``model.failures`` lists training files that could not be
    used (and manifest rows without a label).

    Raises
    ------
    ValueError
        Fewer than 2 genres, or a genre with fewer than 2 usable tracks (the
        fusion weights and the heads' regularisation are chosen by inner
        cross-validation, which needs 2 tracks per genre): the message names
        the genre.
    """
    from ..signal.audio import training_audio
    from ..features.backbone import get_backbone
    from ..evaluation.dataset import Dataset, load_dataset
    from ..features.extraction import extract_dataset
    from ..recipes import get_recipe
    from ..features.store import FeatureStore

    rec = get_recipe(recipe) if isinstance(recipe, str) else recipe
    ds = data if isinstance(data, Dataset) else load_dataset(os.fspath(data))
    name = getattr(ds, "root", "") or (data if isinstance(data, str) else "dataset")
    settings = rec.features
    store = FeatureStore(cache, settings.to_dict()) if cache else None
    res = extract_dataset(list(ds.paths), settings, store=store, jobs=jobs, progress=progress)
    failures = list(getattr(ds, "problems", [])) + list(res.failures)
    keep = [i for i, p in enumerate(ds.paths) if p in res.features]
    acts = {}
    if rec.tune is not None and keep:
        from ..features.tuning import recipe_activations

        acts, bad = recipe_activations(rec, {ds.paths[i]: res.features[ds.paths[i]] for i in keep}, cache=cache,
                                       progress=progress)
        failures += bad
        keep = [i for i in keep if ds.paths[i] in acts]
    if not keep:
        raise ValueError(f"{name}: no usable tracks ({len(failures)} failed)")
    labels = np.asarray(ds.labels)[keep]
    classes, counts = np.unique(labels, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"{name}: needs at least 2 genres, found {classes.size} ({', '.join(map(str, classes))})")
    small = [f"{str(c)!r} ({n})" for c, n in zip(classes, counts) if n < 2]
    if small:
        raise ValueError(f"{name}: every genre needs at least 2 usable tracks; too few for {', '.join(small)}")
    _check_groups_per_genre(name, getattr(ds, "groups", None), keep, labels)
    feats = [res.features[ds.paths[i]] for i in keep]
    if isinstance(weights, str) and weights == "paper":
        weights = {v: w for v, w in PAPER_FUSION.items() if v in rec.view_names()}
    groups = getattr(ds, "groups", None)
    groups = None if groups is None else np.asarray(groups)[keep]
    tuner = None
    if rec.tune is not None:
        from ..features.tuning import fit_on_tracks, tuned_track_features

        kept = [ds.paths[i] for i in keep]
        tuner = fit_on_tracks([acts[p] for p in kept], labels, views=settings.view_names, groups=groups,
                              tracks=kept, progress=progress, **rec.fine_tuner_params())
        feats = [tuned_track_features(tuner, acts[p], f, settings.view_names) for p, f in zip(kept, feats)]
    clf, view_clf, views = fit_recipe(rec, feats, labels, groups=groups, weights=weights, progress=progress)
    return GenreModel(
        recipe=rec, classifier=clf, labels=list(clf.classes_), views=views,
        backbone_sha256=get_backbone(settings.backbone).weights_sha256,
        n_train=len(keep), failures=failures, view_classifier=view_clf,
        training_audio=training_audio([ds.paths[i] for i in keep]), tuner=tuner,
    )


def fit_recipe(recipe, features: list[dict], labels, *, groups=None, weights=None, progress: bool = True):
    """Fit a recipe's classifier on per-track features (the fitting half of :func:`train_model`).

    Parameters
    ----------
    recipe : Recipe
    features : list of per-track feature dicts (see :func:`genrevision.features.extract_track`)
    labels : array-like, one per track
    groups : array-like, optional
        Group per track (artist, album): kept together by the inner cross-validation.
    weights : None, tuple or dict
        Fusion weights (None = the recipe's).
    progress : bool
        Progress bar on stderr, one step per classifier fitted.

    Returns
    -------
    (classifier, view_classifier or None, view layout)
        For recipes that join the views into one classifier, ``view_classifier``
        holds one head per view on the same columns (C fixed to the joined
        head's choice), which only reports each view's own guess.
    """
    import dataclasses

    labels = np.asarray(labels)
    X, views = recipe.matrix(features)
    view_layout = _split_joined(views)
    steps = 1 + (view_layout != views)
    with progress_bar(total=steps, desc="fit", unit="step", enabled=progress) as bar:
        rows = X.data.shape[0] if hasattr(X, "data") else len(X)
        bar.set_postfix_str(f"classifier: {len(X)} tracks, {rows} rows x {X.shape[1]} features")
        clf = _fit(recipe.classifier(views, weights=weights), X, labels, groups)
        bar.update()
        view_clf = None
        if view_layout != views:
            # One head per view on the same columns tells the user what each view says; its C is
            # the joined head's (no second inner search: these heads only report).
            chosen = _chosen_C(clf)
            per_view = dataclasses.replace(recipe, C=chosen) if chosen else recipe
            bar.set_postfix_str(f"per-view heads: {', '.join(n for n, _, _ in view_layout)}")
            view_clf = _fit(per_view.classifier(view_layout, weights="uniform"), X, labels, groups)
            bar.update()
    return clf, view_clf, views


def _chosen_C(clf):
    head = clf.estimators_[0]
    head = getattr(head, "estimator_", head)
    return getattr(head, "best_params_", {}).get("C")


def _split_joined(views) -> tuple:
    """The layout with every joined view ("a+b+c", equal widths side by side) split into its parts."""
    out = []
    for name, start, stop in views:
        parts = name.split("+")
        width = (stop - start) // len(parts)
        out += [(p, start + k * width, start + (k + 1) * width) for k, p in enumerate(parts)]
    return tuple(out)


def _check_groups_per_genre(name, groups, keep, labels) -> None:
    # Inner searches keep a group on one side: a genre of one group is learned but never validated
    # (make_inner_cv keeps it on the training side); at least 2 genres must have 2 groups.
    if groups is None:
        return
    groups = np.asarray(groups)[keep]
    classes, counts = np.unique(labels, return_counts=True)
    sizes = [(c, n, np.unique(groups[labels == c])) for c, n in zip(classes, counts)]
    single = [f"{c} ({n} tracks, all by {g[0]})" for c, n, g in sizes if g.size < 2]
    if sum(g.size >= 2 for _, _, g in sizes) < 2:
        raise ValueError(f"{name}: at least 2 genres need tracks of 2 or more groups (artists/albums) for the "
                         f"grouped inner cross-validation; one group only: {', '.join(single)}; add tracks of other "
                         "artists or leave the group column empty")
    if single:
        warnings.warn(f"{name}: learned from one artist each, so it may recognise the artist rather than the "
                      f"genre: {', '.join(single)}", stacklevel=3)


def _fit(est, X, y, groups):
    import inspect

    if groups is not None and "groups" in inspect.signature(est.fit).parameters:
        return est.fit(X, y, groups=groups)
    return est.fit(X, y)


# ----------------------------------------------------------------------------- loading


def load_model(path, *, check_backbone: bool = True) -> GenreModel:
    """Read a model file written by :meth:`GenreModel.save`, verifying it.

    Raises :class:`ModelError` "<path>: <reason>" for a missing, foreign,
    damaged or too-new file, a classifier of types outside
    :data:`ALLOWED_TYPES`, or backbone weights that differ from this
    machine's.
    """
    path_s = os.fspath(path)
    meta, payloads = _read_verified(path_s)
    return _build_model(path_s, meta, payloads, check_backbone=check_backbone)


def read_meta(path) -> dict:
    """A model file's verified meta.json (labels, recipe, backbone, ...) without loading its classifier.

    Runs every check of :func:`load_model` but the backbone's and the
    classifier's types: cheap (no scikit-learn, no torch), for a process
    that only needs the labels.
    """
    path_s = os.fspath(path)
    meta = _read_verified(path_s)[0]
    if not isinstance(meta.get("labels"), list) or not meta["labels"]:
        raise ModelError(path_s, "damaged (meta.json has no labels)")
    try:
        reads, checked = meta["recipe"]["features"]["backbone"], meta["backbone"]["name"]
    except (KeyError, TypeError):
        reads = checked = None  # load_model names what is missing
    if reads != checked:  # as load_model: the checked weights must be the ones predicting
        raise ModelError(path_s, f"damaged (its recipe reads backbone {reads}, its weights checksum is of {checked})")
    return meta


def _read_verified(path_s: str) -> tuple[dict, dict]:
    try:
        fileobj = open_regular(path_s)
    except FileNotFoundError:
        raise ModelError(path_s, "no such model file") from None
    except NotRegularFile as err:
        raise ModelError(path_s, "is a directory, not a model file" if err.kind == "a folder" else str(err)) from None
    except (OSError, ValueError) as err:
        raise ModelError(path_s, f"cannot read ({getattr(err, 'strerror', None) or err})") from None
    with fileobj:
        if not zipfile.is_zipfile(fileobj):
            raise ModelError(path_s, "not a genrevision model file")
        try:
            with zipfile.ZipFile(fileobj) as z:
                names = set(z.namelist())
                if "meta.json" not in names:
                    raise ModelError(path_s, "not a genrevision model file (no meta.json)")
                # Every member is read within MAX_MEMBER_BYTES (a zip bomb is refused
                # after reading at most that much); the zip CRCs are checked as it reads.
                meta_raw = _read_member(path_s, z, "meta.json")
                payloads = {m: _read_member(path_s, z, m) for m in _SHA_KEY if m in names}
        except ModelError:
            raise
        except Exception as err:  # noqa: BLE001 - zlib/zip errors of a damaged file
            raise ModelError(path_s, f"damaged ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") from None
    try:
        meta = json.loads(meta_raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ModelError(path_s, "damaged (meta.json is not valid JSON)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelError(path_s, "not a genrevision model file")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise ModelError(path_s, "damaged (no format version)")
    if version > FORMAT_VERSION:
        raise ModelError(path_s, f"model format version {version} is newer than this genrevision supports "
                                 f"({FORMAT_VERSION}); upgrade genrevision")
    if version < FORMAT_VERSION:
        raise ModelError(path_s, f"made by an older genrevision (model format {version}, this one reads "
                                 f"{FORMAT_VERSION}); train it again with this version")
    if "classifier.skops" not in payloads:
        raise ModelError(path_s, "damaged (no classifier.skops)")
    for member, key in _SHA_KEY.items():
        if (member in payloads) != (key in meta):
            raise ModelError(path_s, f"damaged ({member} and meta.json disagree)")
        if member in payloads and hashlib.sha256(payloads[member]).hexdigest() != meta[key]:
            raise ModelError(path_s, "damaged (checksum mismatch)")
    if "meta_sha256" not in meta:
        raise ModelError(path_s, "made by an older genrevision (meta.json has no checksum of its settings); "
                                 "retrain it with this version")
    if meta_checksum(meta) != meta["meta_sha256"]:
        raise ModelError(path_s, "damaged (meta.json was changed after saving: its checksum does not match, "
                                 "so its settings are not the ones the classifier was trained with)")
    return meta, payloads


def _build_model(path_s: str, meta: dict, payloads: dict, *, check_backbone: bool) -> GenreModel:
    try:
        recipe = recipe_from_dict(meta["recipe"])
        bb_name = meta["backbone"]["name"]
        bb_sha = meta["backbone"]["weights_sha256"]
        labels, views = meta["labels"], meta["views"]
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(path_s, f"damaged (meta.json: {type(err).__name__} {err})") from None
    if recipe.features.backbone != bb_name:
        # The checked weights must be the ones predicting: otherwise every file fails later with
        # "N columns, expects M" (or, worse, the widths agree and the answers are noise).
        raise ModelError(path_s, f"damaged (its recipe reads backbone {recipe.features.backbone}, its weights "
                                 f"checksum is of {bb_name})")
    if ("tuned.npz" in payloads) != (recipe.tune is not None):
        raise ModelError(path_s, "damaged (tuned.npz and the recipe's tune setting disagree)")
    # Cheap checks first: a bomb inside a skops payload is refused before the backbone loads.
    for member, what in (("classifier.skops", "classifier"), ("views.skops", "view classifier")):
        if member in payloads:
            _check_skops_payload(path_s, payloads[member], what)
    if "tuned.npz" in payloads:
        _check_skops_payload(path_s, payloads["tuned.npz"], "tuned network", kind="npz")
    library, library_arrays = meta.get("library"), None
    if ("library.npz" in payloads) != isinstance(library, dict):
        raise ModelError(path_s, "damaged (library.npz and meta.json's library settings disagree)")
    if "library.npz" in payloads:
        _check_skops_payload(path_s, payloads["library.npz"], "library arrays", kind="npz")
        try:
            with np.load(io.BytesIO(payloads["library.npz"]), allow_pickle=False) as z:
                library_arrays = {k: z[k] for k in z.files}
        except Exception as err:  # noqa: BLE001 - a damaged npz
            raise ModelError(path_s, f"damaged (library.npz unreadable: {type(err).__name__})") from None
    if check_backbone:
        from ..features.backbone import get_backbone

        try:
            local = get_backbone(bb_name).weights_sha256
        except Exception as err:  # noqa: BLE001 - BackboneUnavailable, unknown name
            raise ModelError(path_s, f"needs backbone {bb_name}, not available here ({str(err).splitlines()[0]})") from None
        if local != bb_sha:
            raise ModelError(path_s, f"made with backbone {bb_name} weights {bb_sha}, this machine has {local}")
    tuner = None
    if "tuned.npz" in payloads:
        from ..features.tuning import load_tuned

        try:
            tuner = load_tuned(payloads["tuned.npz"], name="tuned.npz")
        except ValueError as err:  # "tuned.npz: <reason>"
            raise ModelError(path_s, f"damaged ({err})") from None
        if [str(c) for c in tuner.classes_] != [str(x) for x in labels] or tuner.backbone != bb_name:
            raise ModelError(path_s, "damaged (the tuned network's labels or backbone differ from meta.json)")
    clf = _load_estimator(path_s, payloads["classifier.skops"], "classifier")
    view_clf = _load_estimator(path_s, payloads["views.skops"], "view classifier") if "views.skops" in payloads else None
    for est in (clf, view_clf):
        if est is not None and [str(c) for c in getattr(est, "classes_", [])] != [str(x) for x in labels]:
            raise ModelError(path_s, "damaged (classifier labels differ from meta.json)")
    audio = meta.get("training_audio")
    return GenreModel(recipe=recipe, classifier=clf, labels=labels, views=views, backbone_sha256=bb_sha,
                      n_train=meta.get("n_train", 0), versions=meta.get("versions"), source=path_s,
                      view_classifier=view_clf, training_audio=audio if isinstance(audio, dict) else None,
                      tuner=tuner, library=library, library_arrays=library_arrays)


def meta_checksum(meta: dict) -> str:
    """SHA-256 of meta.json's canonical JSON (sorted keys, no spaces), ``meta_sha256`` left out.

    It covers every field that changes predictions (recipe and feature settings,
    backbone, labels, views, fusion weights, the training audio profile) and,
    through ``classifier_sha256``, the fitted classifiers: an edited or damaged
    meta.json is refused. It detects changes, not a forger (who can recompute
    it): only a signature could.
    """
    body = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
                          .encode("ascii")).hexdigest()


def _read_member(path_s: str, z: zipfile.ZipFile, name: str) -> bytes:
    """The bytes of one zip member, refused beyond :data:`MAX_MEMBER_BYTES`.

    The declared size is checked first, then the member is inflated in chunks
    and refused as soon as it passes the cap (a declared size can lie), so a
    few-MB file that inflates to gigabytes costs at most the cap in memory.
    """
    info = z.getinfo(name)
    if info.file_size > MAX_MEMBER_BYTES:
        raise ModelError(path_s, f"refused: {name} inflates to {info.file_size / 2**20:.0f} MB, more than the "
                                 f"{MAX_MEMBER_BYTES // 2**20} MB a model member may hold")
    with z.open(info) as f:
        data = _read_within(f, MAX_MEMBER_BYTES)
    if data is None:
        raise ModelError(path_s, f"refused: {name} inflates to more than the "
                                 f"{MAX_MEMBER_BYTES // 2**20} MB a model member may hold")
    return data


def _read_within(f, budget: int) -> bytes | None:
    """``f`` read to its end in 1 MB chunks, or None as soon as more than ``budget`` bytes come
    out (a zip member's declared size can lie: only counting what inflates bounds the memory)."""
    chunks, total = [], 0
    while chunk := f.read(1 << 20):
        total += len(chunk)
        if total > budget:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _check_skops_payload(path_s: str, payload: bytes, what: str, *, kind: str = "skops") -> None:
    """Bound what skops will inflate: a skops payload is itself a zip (schema.json + arrays).

    skops reads its members whole, so their sizes are checked (declared and
    actual, with the same chunked reads) before skops sees the bytes; the
    members together may hold at most :data:`MAX_MEMBER_BYTES`. The same
    holds for the tuned network's ``.npz`` (``kind="npz"``: a zip that
    ``numpy.load`` inflates member by member).
    """
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as inner:
            infos = inner.infolist()
            if len(infos) > _MAX_SKOPS_MEMBERS:
                raise ModelError(path_s, f"refused: {what} has {len(infos)} entries (at most {_MAX_SKOPS_MEMBERS})")
            declared = sum(i.file_size for i in infos)
            if declared > MAX_MEMBER_BYTES:
                raise ModelError(path_s, f"refused: the {what}'s {kind} entries inflate to {declared / 2**20:.0f} MB, "
                                         f"more than the {MAX_MEMBER_BYTES // 2**20} MB a model member may hold")
            total = 0
            for info in infos:
                with inner.open(info) as f:
                    data = _read_within(f, MAX_MEMBER_BYTES - total)
                if data is None:
                    raise ModelError(path_s, f"refused: the {what}'s {kind} entries inflate to more than "
                                             f"the {MAX_MEMBER_BYTES // 2**20} MB a model member may hold")
                total += len(data)
    except ModelError:
        raise
    except Exception as err:  # noqa: BLE001 - not a zip, bad CRC, bad compression
        raise ModelError(path_s, f"damaged ({what} unreadable: {type(err).__name__})") from None


def _load_estimator(path_s: str, payload: bytes, what: str):
    """A LateFusionClassifier from skops bytes, building only allow-listed types."""
    import skops.io as sio

    from ..learn.fusion import LateFusionClassifier

    try:
        untrusted = sio.get_untrusted_types(data=payload)
    except Exception as err:  # noqa: BLE001
        raise ModelError(path_s, f"damaged ({what} unreadable: {type(err).__name__})") from None
    refused = sorted(t for t in set(untrusted) if _current_type_name(t) not in ALLOWED_TYPES)
    if refused:
        raise ModelError(path_s, f"refused: {what} holds types outside the allow-list ({', '.join(refused)})")
    _alias_moved_modules(untrusted)
    try:
        est = sio.loads(payload, trusted=[t for t in untrusted if _current_type_name(t) in ALLOWED_TYPES])
    except Exception as err:  # noqa: BLE001
        raise ModelError(path_s, f"damaged ({what} unreadable: {type(err).__name__}: "
                                 f"{str(err).splitlines()[0] if str(err) else ''})") from None
    if not isinstance(est, LateFusionClassifier):
        raise ModelError(path_s, f"damaged ({what} is a {type(est).__name__}, not a LateFusionClassifier)")
    return est
