"""Named recipes: feature settings plus how the classifiers are built.

``paper`` reproduces Gwardys & Grzywczak (2014) as closely as this machine
allows: one whole-track linear-frequency spectrogram per view squeezed into a
square image, penultimate-layer features, one RBF-SVM per view, fused with
0.5/0.1/0.4. ``default`` is the best recipe measured on the shared GTZAN
tracks (see docs/results/artist-disjoint.md, "Choosing the default by
cross-artist accuracy"). ``tuned`` is the default recipe on
a network whose last stage is fine-tuned on the training tracks
(:mod:`genrevision.features.tuning`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .features.extraction import FeatureSettings, feature_matrix
from .signal.separation import VIEWS
from .signal.spectrogram import SpectrogramConfig

__all__ = ["Recipe", "RECIPES", "get_recipe"]


@dataclass(frozen=True)
class Recipe:
    """Feature settings and the classification set-up built on them.

    Attributes
    ----------
    features : FeatureSettings
    pooling : {"mean", "meanstd", "windows"}
        How window features become a track row: pooled statistics, or every
        window kept as a row of a :class:`~genrevision.features.ragged.Ragged` matrix
        (the head then learns from windows and averages per track, see
        :class:`~genrevision.learn.classifiers.WindowedClassifier`).
    layers : {"last", "mean", "max", "meanmax"}
        Columns of the stored features the classifiers use: the penultimate
        layer only, or every stage by its spatial mean / maximum / both, plus
        the penultimate layer.
    head : {"svm", "linear", "softmax", "attention"}
        Per-view classifier. "attention" (``pooling="windows"`` only) learns
        how much each window of a track counts
        (:class:`~genrevision.learn.attention.AttentionPoolingClassifier`) instead
        of averaging the windows' log-likelihoods.
    aggregate : {"logmean", "lse"}
        With ``pooling="windows"``: how a track's window log-likelihoods
        become the track's, their mean or a soft maximum whose sharpness is
        chosen on inner folds (see :class:`~genrevision.learn.classifiers.WindowedClassifier`).
    views : {"separate", "concat"}
        One classifier per view with late fusion (the paper), or the three
        views' features side by side for one classifier (early fusion).
    fusion_weights : tuple or "learned" | "stacking" | "uniform"
    hybrid_mfcc : bool
        Add the MFCC baseline as one more view of the late fusion.
    C : float or None
        Fixed inverse regularisation of the linear heads; None chooses it by
        inner cross-validation on the training data (the default). A fixed C
        makes recipes with learned fusion (which fit every head once per inner
        fold) affordable in ablations.
    balance : {"none", "groups"}
        With ``pooling="windows"``: ``"groups"`` gives every group (artist,
        album) of a genre the same total weight in the head's loss, so a
        genre is not learned mostly from its most frequent artist; without
        groups every track is its own group and nothing changes.
    tune : dict or None
        Fine-tune the network's last stage(s) on the training tracks first:
        the :class:`~genrevision.features.tuning.FineTuner` parameters (its backbone is
        the features' one). The window features then come from the tuned
        network (so they depend on the training tracks: a model file carries
        the tuned weights, and evaluation tunes once per fold). None: the
        frozen ImageNet network.
    """

    name: str
    features: FeatureSettings
    pooling: str = "meanstd"
    layers: str = "mean"
    head: str = "svm"
    views: str = "separate"
    fusion_weights: object = "learned"
    hybrid_mfcc: bool = False
    C: float | None = None
    description: str = ""
    aggregate: str = "logmean"
    balance: str = "none"
    # A dict is not hashable: left out of the hash (equality still compares it).
    tune: dict | None = field(default=None, hash=False)

    def __post_init__(self):
        if self.tune is None:
            return
        from .features.tuning import FineTuner

        if not isinstance(self.tune, dict):
            raise ValueError(f"recipe {self.name!r}: tune must be a dict of FineTuner parameters or None, "
                             f"got {type(self.tune).__name__}")
        allowed = set(vars(FineTuner())) - {"backbone", "progress"}
        unknown = sorted(set(self.tune) - allowed)
        if unknown:
            raise ValueError(f"recipe {self.name!r}: unknown fine-tuning parameters {', '.join(unknown)}; "
                             f"valid ones: {', '.join(sorted(allowed))}")
        fs, spec = self.features, self.features.spectrogram
        if spec.layout != "windows" or spec.image_size or fs.channels != "views" or fs.layers != "all+max":
            raise ValueError(f"recipe {self.name!r}: fine-tuning needs window images at native size, one per view, "
                             "and features with layers='all+max'")

    def fine_tuner_params(self, **overrides) -> dict:
        """The :class:`~genrevision.features.tuning.FineTuner` parameters of a recipe with ``tune`` (backbone included)."""
        if self.tune is None:
            raise ValueError(f"recipe {self.name!r} does not fine-tune the network (tune is None)")
        return {**self.tune, "backbone": self.features.backbone, **overrides}

    def columns(self):
        """Column indices of each stored window vector the classifiers use (None = all)."""
        from .features.backbone import backbone_spec

        stored = self.features.layers
        if self.layers not in ("last", "mean", "max", "meanmax"):
            raise ValueError(f"recipe {self.name!r}: layers must be last, mean, max or meanmax, got {self.layers!r}")
        if stored == "last":
            if self.layers != "last":
                raise ValueError(f"recipe {self.name!r}: layers={self.layers!r} needs features with every stage")
            return None
        d = backbone_spec(self.features.backbone).feature_dim
        if self.layers == "last":
            return slice(-d, None)
        if stored == "all":
            if self.layers != "mean":
                raise ValueError(f"recipe {self.name!r}: layers={self.layers!r} needs features with layers='all+max'")
            return None
        # stored "all+max": [stage means (m) | stage maxima (m) | penultimate (d)]
        if self.layers == "meanmax":
            return None  # every column: no need to load the network for the stored width
        width = self._stored_width()
        m = (width - d) // 2
        return {"mean": np.r_[0:m, 2 * m:width], "max": np.r_[m:width]}[self.layers]

    def _stored_width(self) -> int:
        from .features.backbone import get_backbone

        bb = get_backbone(self.features.backbone)
        return bb.features(np.zeros((1, 64, 64), np.float32), layers=self.features.layers).shape[1]

    def view_names(self) -> tuple[str, ...]:
        views = self.features.view_names
        if self.views == "concat" and len(views) > 1:
            views = ("+".join(views),)
        return views + ("mfcc",) if self.hybrid_mfcc else views

    def matrix(self, features: list[dict], *, views: tuple[str, ...] | None = None):
        """X and its view layout from per-track feature dicts.

        X is an ndarray (n_tracks, n_columns) for pooled recipes and a
        :class:`~genrevision.features.ragged.Ragged` matrix of windows for
        ``pooling="windows"``. A joined view ("original+harmonic+percussive")
        puts the views' window features side by side, window by window.
        """
        views = views or self.view_names()
        cols = self.columns()

        def view_array(f, v):
            if "+" in v:
                return np.concatenate([_cols(f[p], cols) for p in v.split("+")], axis=1)
            return _cols(f[v], cols) if f[v].ndim == 2 else f[v]

        prepared = [{v: view_array(f, v) for v in views} for f in features]
        return feature_matrix(prepared, views=views, pooling=self.pooling)

    def make_head(self, kind: str | None = None):
        """A fresh per-view classifier: ``"svm"``, ``"linear"``, ``"softmax"`` (fine-tuning) or ``"attention"``.

        With ``pooling="windows"`` the head is wrapped to learn from windows
        (a per-track vector such as the MFCC view is repeated on each window);
        "attention" takes the windows of each track itself.
        """
        from .learn.classifiers import LinearHead, SoftmaxHead, ViewSVM, WindowedClassifier

        kind = kind or self.head
        if self.aggregate not in ("logmean", "lse"):
            raise ValueError(f"recipe {self.name!r}: aggregate must be 'logmean' or 'lse', got {self.aggregate!r}")
        if kind == "attention":
            if self.pooling != "windows":
                raise ValueError(f"recipe {self.name!r}: head='attention' needs pooling='windows', got {self.pooling!r}")
            from .learn.attention import AttentionPoolingClassifier

            return AttentionPoolingClassifier()
        if kind == "svm":
            head = ViewSVM()
        elif kind == "linear":
            head = LinearHead(C=self.C, C_grid=(3e-4, 1e-3, 3e-3, 1e-2)) if self.pooling == "windows" else LinearHead(C=self.C)
        elif kind == "softmax":
            head = SoftmaxHead()
        else:
            raise ValueError(f"head must be 'svm', 'linear', 'softmax' or 'attention', got {kind!r}")
        if self.balance not in ("none", "groups"):
            raise ValueError(f"recipe {self.name!r}: balance must be 'none' or 'groups', got {self.balance!r}")
        if self.pooling == "windows":
            head = WindowedClassifier(head, aggregate=self.aggregate, balance_groups=self.balance == "groups")
        return head

    def classifier(self, views, *, head: str | None = None, weights=None):
        """The recipe's fused classifier for a view layout from :meth:`matrix`."""
        from .learn.fusion import LateFusionClassifier

        weights = self.fusion_weights if weights is None else weights
        if len(views) == 1 and isinstance(weights, str):
            weights = "uniform"  # one view: nothing to fuse, no inner cross-validation needed
        return LateFusionClassifier(views=tuple(views), estimator=self.make_head(head),
                                    weights=weights)


def _cols(arr, cols):
    return arr if cols is None else arr[:, cols]


PAPER = Recipe(
    name="paper",
    features=FeatureSettings(
        spectrogram=SpectrogramConfig(scale="linear", layout="whole", image_size=(256, 256), top_db=80.0),
        layers="last",
    ),
    pooling="mean",
    layers="last",
    head="svm",
    views="separate",
    fusion_weights=(0.5, 0.1, 0.4),
    description="Gwardys & Grzywczak 2014: whole-track linear STFT image per view, penultimate features, RBF-SVM, 0.5/0.1/0.4",
)

#: The default recipe before issue #21 (chosen on random folds of gtzan-mini): the base of ``tuned``.
FROZEN_WINDOWS = Recipe(
    name="default",
    # Lite2 over Lite0: +2.0 points in the ablation (cv 10×5) for 12 % slower extraction.
    features=FeatureSettings(layers="all+max", backbone="efficientnet_lite2"),
    pooling="windows",
    layers="meanmax",
    head="linear",
    views="concat",
    fusion_weights="uniform",
    description="EfficientNet-Lite2; 3 s log-mel windows; spatial mean and maximum of every CNN stage + penultimate layer of the "
                "original, harmonic and percussive images side by side; a linear head learns from "
                "windows and averages their log-likelihoods per track",
)

# Chosen by cross-artist accuracy (issue #21, benchmarks/new_artists.py): per-band mean removal of
# the images (+ the MFCC view, uniform fusion) beat the frozen-window recipe on both new-artist
# measures: (a) gtzan-mini → gtzan-more 51.5 vs 47.0 %, (b) artist-grouped CV 5×3 79.0 vs 76.5 %
# (paired +2.5 ± 0.8 s.e.); every other lever tried moved (a) or (b) the wrong way (README).
DEFAULT = replace(
    FROZEN_WINDOWS,
    features=FROZEN_WINDOWS.features.with_(spec_band_norm="mean"),
    hybrid_mfcc=True,
    description="EfficientNet-Lite2; 3 s log-mel windows with each band's mean level removed (the recording's long-term "
                "spectrum flattened); spatial mean and maximum of every CNN stage + penultimate layer of the original, "
                "harmonic and percussive images side by side; a linear head learns from windows and averages their "
                "log-likelihoods per track, fused 50/50 with the same head on MFCC + spectral statistics",
)

# For a model learned from a user's library (genrevision train --labels-from-tags): the default
# without the per-band mean removal. Its "not sure" check compares a file's image features with the
# library's, and flattened bands make noise look like music (tests/apps/test_library.py: white noise fell
# below the novelty threshold with band_norm="mean", clearly above it without).
LIBRARY = replace(DEFAULT, name="library", features=FROZEN_WINDOWS.features,
                  description="the default recipe without the per-band mean removal (the images keep the recording's "
                              "spectrum, which the library model's novelty check needs)")


def _tuner_defaults(**changes) -> dict:
    # Every FineTuner parameter spelled out: the recipe (in model files and fold-file keys) then says
    # exactly how it was tuned, even if FineTuner's defaults change later.
    from .features.tuning import FineTuner

    return {k: v for k, v in vars(FineTuner(**changes)).items() if k not in ("backbone", "progress")}


TUNED = replace(
    FROZEN_WINDOWS,
    name="tuned",
    # The settings screened in benchmarks/tuned_screen.py (50 cv folds).
    tune=_tuner_defaults(n_stages=1, epochs=8, patience=3, threads=None),
    description="the default recipe on a network whose last EfficientNet-Lite2 stage and head convolution are "
                "fine-tuned on the training tracks' O/H/P windows (offset-0 and half-window-shifted, activation-level "
                "augmentation, early stopping on held-out training tracks); the linear head then reads the tuned "
                "network's window features",
)

RECIPES = {r.name: r for r in (PAPER, DEFAULT, TUNED, LIBRARY)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(sorted(RECIPES))}")
    return RECIPES[name]
