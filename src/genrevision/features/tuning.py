"""Fine-tuning the last stage of EfficientNet-Lite on spectrogram windows (issue #16), on a CPU.

The frozen stages run once per window image and are cached; every training
epoch then only pays for the trained tail (the last stage and the 1×1 head
convolution, ~1.2 M weights on Lite2 at a 4×5 map per 128×129 window).

Three pieces, used in this order:

1. :func:`track_activations` — per track and view, for the default windows
   (offset 0, the images :func:`~genrevision.features.prepare_track` makes)
   and for windows shifted by half a window in time: the spatial means and
   maxima of the frozen stages (the default recipe's columns, unchanged by
   tuning) and the activation map at the input of the tail.
   :func:`dataset_activations` caches them per track in a
   :class:`~genrevision.features.store.FeatureStore` (keyed by file content and settings).
2. :class:`FineTuner` — trains a copy of the tail plus a new linear classifier
   on the three views of each window (one shared tail, the three views'
   pooled vectors side by side), with early stopping on an inner validation
   split grouped by track.
3. :meth:`FineTuner.window_features` — window features in the default
   recipe's layout (stage means | stage maxima | penultimate) with the tail's
   columns from the tuned network, for the same linear head as today.

Augmentation, and where it happens (the honest part):

* **input level** (real images through the frozen stages, paid once): the
  windows shifted by half a window in time are part of the training pool.
* **activation level** (at the tail's input, the 4×5 map of a 128×129
  window; cheap, but not the same as transforming the image): a random time
  crop of one column of the map (≈ 0.6 s), masking one time column and/or
  one frequency row of the map (a SpecAugment-like mask on features, closer
  to DropBlock), and mixing a window with a random window of the same genre
  (within-class mixup of activations; the label is unchanged).
* not done: frequency shifts of the input image (each shift needs another
  frozen pass over every window).
"""
from __future__ import annotations

import copy

import numpy as np

from .._utils.early_stopping import EarlyStopping
from .._utils.progress import progress_bar
from .._utils.validation import Interval, validate_params
from . import FeatureSettings, decode_segments, plan_segments, view_images
from ..signal.spectrogram import pick_windows, window_images

__all__ = [
    "FORMAT",
    "stage_ends",
    "tail_start",
    "shifted_track_images",
    "frozen_pass",
    "track_activations",
    "dataset_activations",
    "TunedTail",
    "FineTuner",
    "tail_features",
    "recipe_activations",
    "fit_on_tracks",
    "tuned_track_features",
    "window_mismatch",
    "tuned_backbone",
    "save_tuned",
    "load_tuned",
]

#: Bump when the cached arrays change meaning.
FORMAT = 1


# ----------------------------------------------------------------------------- where the tail starts


def stage_ends(module) -> list[int]:
    """Index of the last block of each stage of an EfficientNet-Lite (as :func:`~genrevision.features.backbone._lite_stages`)."""
    blocks = module._blocks
    return [i for i, b in enumerate(blocks)
            if i + 1 == len(blocks) or blocks[i + 1]._block_args.output_filters != b._block_args.output_filters]


def tail_start(module, *, n_stages: int = 1) -> int:
    """First block of the last ``n_stages`` stages."""
    ends = stage_ends(module)
    if isinstance(n_stages, bool) or not 1 <= int(n_stages) <= len(ends) - 1:
        raise ValueError(f"n_stages must be an integer from 1 to {len(ends) - 1}, got {n_stages!r}")
    return ends[-int(n_stages) - 1] + 1


# ----------------------------------------------------------------------------- window images


def _cut(full: dict, settings: FeatureSettings, *, offset: int, windows=None) -> dict:
    per, hop = settings.window_frames
    out = {}
    for view, img in full.items():
        img = img[:, offset:]
        n_frames = img.shape[1]
        if offset and n_frames < per:
            out[view] = np.zeros((0, img.shape[0], per), np.float32)
            continue
        idx = pick_windows(n_frames, per, hop, windows)
        out[view] = window_images(img, frames_per_window=per, hop_frames=hop, indices=idx).astype(np.float32)
    return out


def shifted_track_images(source, settings: FeatureSettings, *, shift: float = 0.5):
    """Window images of a track at offset 0 and shifted by ``shift`` of a window in time.

    Decodes and separates each segment once. The offset-0 windows are the
    ones :func:`~genrevision.features.prepare_track` makes (same segments,
    same ``max_windows`` choice); the shifted ones are every real window of
    each decoded segment after skipping ``round(shift × frames per window)``
    frames, capped at ``max_windows`` spread evenly.

    Returns
    -------
    base, shifted : dict view → float32 (n, H, W)
    """
    from ..signal.audio import audio_info

    if settings.spectrogram.layout != "windows" or settings.channels != "views" or settings.spectrogram.image_size:
        raise ValueError("shifted_track_images needs the windows layout at native size with one image per view")
    if not 0 < shift < 1:
        raise ValueError(f"shift must be in (0, 1) of a window, got {shift}")
    per, _ = settings.window_frames
    off = int(round(shift * per))
    plan = plan_segments(audio_info(source).duration, settings, max_windows=settings.spectrogram.max_windows)
    base, shifted = [], []
    for seg, y in decode_segments(source, settings, plan):
        full = view_images(y, settings)
        base.append(_cut(full, settings, offset=0, windows=seg.windows))
        shifted.append(_cut(full, settings, offset=off))
    views = list(base[0])
    base = {v: np.concatenate([b[v] for b in base]) for v in views}
    shifted = {v: np.concatenate([s[v] for s in shifted]) for v in views}
    cap = settings.spectrogram.max_windows
    if cap and len(shifted[views[0]]) > cap:
        keep = np.round(np.linspace(0, len(shifted[views[0]]) - 1, cap)).astype(int)
        shifted = {v: s[keep] for v, s in shifted.items()}
    return base, shifted


# ----------------------------------------------------------------------------- frozen stages


def frozen_pass(images: np.ndarray, *, backbone, start: int, batch_size: int = 32):
    """Run the frozen stages (every block before ``start``) once.

    Parameters
    ----------
    images : (N, H, W) float32 in [0, 1]
    backbone : :class:`~genrevision.features.backbone.Backbone` (EfficientNet-Lite, PyTorch module)
    start : int
        First block of the tail (see :func:`tail_start`).

    Returns
    -------
    pooled : (N, 2 × channels of the frozen stages) float32
        Spatial means of the frozen stages' maps, then their maxima.
    act : (N, C, h, w) float32
        Input of the tail.
    """
    import torch

    m = backbone.module
    ends = [e for e in stage_ends(m) if e < start]
    if not ends or ends[-1] != start - 1:
        raise ValueError(f"start={start} is not the first block of a stage")
    pooled, acts = [], []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = backbone.spec.preprocess(images[i : i + batch_size]).to(backbone.device)
            x = m._swish(m._bn0(m._conv_stem(x)))
            maps = []
            for j in range(start):
                x = m._blocks[j](x)
                if j in ends:
                    maps.append(x)
            pooled.append(torch.cat([t.mean(dim=(2, 3)) for t in maps] + [t.amax(dim=(2, 3)) for t in maps], 1).float().cpu().numpy())
            acts.append(x.float().contiguous().cpu().numpy())
    return np.concatenate(pooled), np.concatenate(acts)


def _settings_key(settings: FeatureSettings, start: int, shift: float) -> dict:
    return {"kind": "tuning-activations", "format": FORMAT, "features": settings.to_dict(), "tail_start": int(start),
            "shift": float(shift)}


def track_activations(source, settings: FeatureSettings, *, backbone, start: int, shift: float = 0.5) -> dict:
    """Cached arrays of one track: per view ``V``, ``V.pool``/``V.act`` (offset 0) and
    ``V.pool_shift``/``V.act_shift`` (shifted windows); ``act`` maps are stored as
    (n, C, h·w) and ``"act_hw"`` holds (h, w)."""
    base, shifted = shifted_track_images(source, settings, shift=shift)
    views = list(base)
    counts = [len(base[v]) for v in views] + [len(shifted[v]) for v in views]
    pooled, act = frozen_pass(np.concatenate([base[v] for v in views] + [shifted[v] for v in views]),
                              backbone=backbone, start=start)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    names = [f"{v}" for v in views] + [f"{v}_shift" for v in views]
    out = {"act_hw": np.asarray(act.shape[2:], np.int64)}
    for k, name in enumerate(names):
        view, _, sfx = name.partition("_")
        sfx = "_shift" if sfx else ""
        lo, hi = bounds[k], bounds[k + 1]
        out[f"{view}.pool{sfx}"] = pooled[lo:hi]
        out[f"{view}.act{sfx}"] = act[lo:hi].reshape(hi - lo, act.shape[1], -1)  # 3-D: stored as float32
    return out


def dataset_activations(paths, settings: FeatureSettings, *, cache: str | None, n_stages: int = 1, shift: float = 0.5,
                        progress: bool = True):
    """:func:`track_activations` of every path, cached per track (resumes where a run stopped).

    ``cache`` is the feature cache folder (None: computed in memory, nothing kept).

    Returns
    -------
    arrays : dict path → arrays (see :func:`track_activations`)
    failures : list of (path, reason)
    """
    from .backbone import Backbone
    from .store import FeatureStore, content_digest

    bb = Backbone(settings.backbone, engine="torch")
    start = tail_start(bb.module, n_stages=n_stages)
    store = FeatureStore(cache, _settings_key(settings, start, shift)) if cache else None

    def valid(a):
        return None if "act_hw" in a and all(f"{v}.act_shift" in a for v in settings.view_names) else "missing arrays"

    out, failures = {}, []
    for p in progress_bar(paths, desc="frozen stages", unit="track", enabled=progress):
        try:
            if store is None:
                out[p] = track_activations(p, settings, backbone=bb, start=start, shift=shift)
                continue
            digest = content_digest(p)
            arrays = store.get(digest, validate=valid, about=p)
            if arrays is None:
                arrays = track_activations(p, settings, backbone=bb, start=start, shift=shift)
                store.put(digest, arrays)
                arrays = store.get(digest) or arrays  # the stored (rounded) numbers, as a later run reads them
            out[p] = arrays
        except Exception as err:  # noqa: BLE001 - a batch goes on and lists what failed
            failures.append((p, f"{type(err).__name__}: {err}"))
    return out, failures


def track_tensor(arrays: dict, views, *, shifted: bool = False):
    """(pooled (n, V, P), act (n, V, C, h, w)) of one track's cached arrays."""
    sfx = "_shift" if shifted else ""
    h, w = (int(v) for v in arrays["act_hw"])
    pool = np.stack([arrays[f"{v}.pool{sfx}"] for v in views], axis=1).astype(np.float32)
    act = np.stack([arrays[f"{v}.act{sfx}"] for v in views], axis=1).astype(np.float32)
    return pool, act.reshape(act.shape[0], act.shape[1], act.shape[2], h, w)


# ----------------------------------------------------------------------------- the trained tail


def _tail_class():
    import torch.nn as nn

    class TunedTail(nn.Module):
        """A trainable copy of the blocks from ``start`` on and the head conv of a (fused) Lite."""

        def __init__(self, module, start: int):
            super().__init__()
            ends = stage_ends(module)
            self.blocks = nn.ModuleList(copy.deepcopy(module._blocks[start:]))
            self.ends = [e - start for e in ends if e >= start]
            self.head = copy.deepcopy(module._conv_head)
            self.bn = copy.deepcopy(module._bn1)
            self.act = copy.deepcopy(module._swish)
            for p in self.parameters():
                p.requires_grad_(True)

        def forward(self, x):
            maps = []
            for j, b in enumerate(self.blocks):
                x = b(x)
                if j in self.ends:
                    maps.append(x)
            x = self.act(self.bn(self.head(x)))
            return maps, x.mean(dim=(2, 3))

    return TunedTail


def TunedTail(module, start: int):  # noqa: N802 - a factory: torch is imported only when needed
    """A trainable copy of an EfficientNet-Lite's blocks from ``start`` on and its head convolution.

    ``forward(act)`` returns (the tail's stage maps, the penultimate vector).
    """
    return _tail_class()(module, start)


def _to_torch(a):
    import torch

    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _check_pools(pools, y) -> None:
    if len(pools) != len(y) or not len(y):
        raise ValueError(f"pools and y must have the same non-zero length, got {len(pools)} and {len(y)}")
    if any(p.ndim != 5 or p.shape[1:] != pools[0].shape[1:] or len(p) == 0 for p in pools):
        raise ValueError("every pool must be a non-empty (n, V, C, h, w) array with the same V, C, h, w")


class FineTuner:
    """Train the last stage(s) of EfficientNet-Lite + a linear classifier on cached activations.

    scikit-learn style: parameters in ``__init__``, ``fit`` learns, fitted
    attributes end in ``_``.

    Parameters
    ----------
    backbone : str
        EfficientNet-Lite registry name (the network the activations came from).
    n_stages : int
        Stages trained (1 = the last stage; the cached activations must match).
    epochs : int
        Largest number of epochs.
    patience : int
        Stop after this many epochs without a lower validation loss; the
        weights of the best epoch are kept.
    windows_per_track : int
        Windows drawn per training track and epoch from its pool (offset-0
        and shifted windows).
    batch_size : int
    lr, head_lr : float
        AdamW learning rates of the tail and of the new classifier.
    weight_decay : float
    dropout : float
        Dropout on the joined penultimate vectors before the classifier.
    mixup : float
        Probability that a training window is mixed with a random window of
        the same genre (activation level; weight of the partner drawn from U(0, 0.5)).
    mask : float
        Probability of masking one time column and, independently, one
        frequency row of the activation map (all views alike).
    crop : float
        Probability that a batch is cropped by one time column of the map.
    val_fraction : float
        Share of each genre's training tracks (at least one track) held out
        for early stopping.
    threads : int or None
        ``torch.set_num_threads`` during fit (None leaves it).
    random_state : int
    progress : bool
    """

    def __init__(self, *, backbone="efficientnet_lite2", n_stages=1, epochs=12, patience=3, windows_per_track=4,
                 batch_size=32, lr=3e-4, head_lr=1e-3, weight_decay=1e-4, dropout=0.3, mixup=0.5, mask=0.5,
                 crop=0.5, val_fraction=0.1, threads=None, random_state=0, progress=False):
        self.backbone = backbone
        self.n_stages = n_stages
        self.epochs = epochs
        self.patience = patience
        self.windows_per_track = windows_per_track
        self.batch_size = batch_size
        self.lr = lr
        self.head_lr = head_lr
        self.weight_decay = weight_decay
        self.dropout = dropout
        self.mixup = mixup
        self.mask = mask
        self.crop = crop
        self.val_fraction = val_fraction
        self.threads = threads
        self.random_state = random_state
        self.progress = progress

    _parameter_constraints = {
        **{name: Interval(int, 1, None, whole_floats=True)
           for name in ("epochs", "patience", "windows_per_track", "batch_size", "n_stages")},
        **{name: Interval(float, 0, None, closed="neither") for name in ("lr", "head_lr")},
        **{name: Interval(float, 0, 1, closed="left") for name in ("dropout", "mixup", "mask", "crop", "weight_decay")},
        "val_fraction": Interval(float, 0, 0.5, closed="neither"),
    }

    def _check_params(self):
        validate_params(self, self._parameter_constraints)

    def _split(self, y, groups, rng):
        """Validation tracks: ~val_fraction of each genre's groups (at least one when a genre has 3+)."""
        val = np.zeros(len(y), bool)
        for c in np.unique(y):
            g = np.unique(groups[y == c])
            if len(g) < 3:
                continue
            k = max(1, int(round(self.val_fraction * len(g))))
            val |= np.isin(groups, rng.choice(g, size=k, replace=False)) & (y == c)
        return val

    def fit(self, pools, y, *, groups=None):
        """Train on the windows of each training track.

        Parameters
        ----------
        pools : list of (n_i, V, C, h, w) float32 arrays
            Tail inputs of the windows each track may be trained on (its
            offset-0 and shifted windows), views in a fixed order.
        y : (n_tracks,) labels
        groups : (n_tracks,), optional
            Tracks sharing a group (an artist) stay on one side of the
            validation split; default: each track its own group.

        Returns
        -------
        self
        """
        import torch

        from .backbone import torch_threads

        self._check_params()
        y = np.asarray(y)
        _check_pools(pools, y)
        groups = np.arange(len(y)) if groups is None else np.asarray(groups)
        with torch_threads(self.threads):
            torch.manual_seed(int(self.random_state))
            rng = np.random.default_rng(self.random_state)
            self.classes_ = np.unique(y)
            yi = np.searchsorted(self.classes_, y)
            val = self._split(yi, groups, rng)
            tail, clf, opt = self._build_network(n_views=pools[0].shape[1])
            val_loss = self._validation_loss(tail, clf, [pools[i] for i in np.flatnonzero(val)], yi[val])
            # At epoch 0 the classifier is random: its loss is no baseline to beat.
            stopper = EarlyStopping(self.patience,
                                    snapshot=lambda: (copy.deepcopy(tail.state_dict()), copy.deepcopy(clf.state_dict())))
            history = []
            bar = progress_bar(range(int(self.epochs)), desc="fine-tuning", unit="epoch", enabled=self.progress)
            for epoch in bar:
                train_loss = self._train_epoch(tail, clf, opt, pools, yi, np.flatnonzero(~val), rng)
                vl = val_loss()
                history.append({"epoch": epoch + 1, "train_loss": train_loss, "val_loss": vl})
                bar.set_postfix(train=f"{train_loss:.3f}", val=f"{vl:.3f}")
                if stopper.update(epoch + 1, vl if val.any() else None):
                    break
            bar.close()
            tail.load_state_dict(stopper.best_state[0])
            clf.load_state_dict(stopper.best_state[1])
            self.tail_, self.classifier_ = tail.eval(), clf.eval()
            self.best_epoch_, self.history_ = stopper.best_epoch, history
            self.val_tracks_ = np.flatnonzero(val)
        return self

    def _build_network(self, *, n_views: int):
        """The tail (the backbone's last ``n_stages``), a new classifier over the views' joined
        penultimate vectors, and AdamW over both (each with its own learning rate)."""
        import torch
        import torch.nn as nn

        from .backbone import Backbone

        bb = Backbone(self.backbone, engine="torch")
        self.start_ = tail_start(bb.module, n_stages=self.n_stages)
        tail = TunedTail(bb.module, self.start_).to(memory_format=torch.channels_last)
        self.width_ = tail.head.weight.shape[0]
        clf = nn.Sequential(nn.Dropout(self.dropout), nn.Linear(n_views * self.width_, len(self.classes_)))
        opt = torch.optim.AdamW([{"params": tail.parameters(), "lr": self.lr},
                                 {"params": clf.parameters(), "lr": self.head_lr}], weight_decay=self.weight_decay)
        return tail, clf, opt

    def _logits(self, tail, clf, x):
        import torch

        b, v = x.shape[:2]
        _, pen = tail(x.reshape(b * v, *x.shape[2:]).contiguous(memory_format=torch.channels_last))
        return clf(pen.reshape(b, v * self.width_))

    def _validation_loss(self, tail, clf, val_pools, val_labels):
        """A function giving the mean loss over every window of the validation tracks (NaN when none)."""
        import torch
        import torch.nn as nn

        if not val_pools:
            return lambda: float("nan")
        val_x = _to_torch(np.concatenate(val_pools))
        val_y = torch.from_numpy(np.concatenate([np.full(len(p), c) for p, c in zip(val_pools, val_labels)]))
        loss_fn = nn.CrossEntropyLoss()

        def loss():
            tail.eval(), clf.eval()
            with torch.inference_mode():
                out = torch.cat([self._logits(tail, clf, val_x[i : i + 128]) for i in range(0, len(val_x), 128)])
                return float(loss_fn(out, val_y))

        return loss

    def _train_epoch(self, tail, clf, opt, pools, yi, tr, rng) -> float:
        """One epoch over ``windows_per_track`` windows drawn from each training track's pool;
        returns the mean training loss."""
        import torch
        import torch.nn as nn

        loss_fn = nn.CrossEntropyLoss()
        by_class = {c: tr[yi[tr] == c] for c in range(len(self.classes_))}
        items = [(i, j) for i in tr
                 for j in rng.choice(len(pools[i]), size=min(self.windows_per_track, len(pools[i])), replace=False)]
        order = rng.permutation(len(items))
        tail.train(), clf.train()
        total, seen = 0.0, 0
        for s in range(0, len(order), self.batch_size):
            batch = [items[k] for k in order[s : s + self.batch_size]]
            x = np.stack([pools[i][j] for i, j in batch])  # (B, V, C, h, w)
            x = self._augment(x, [yi[i] for i, _ in batch], pools, by_class, rng)
            target = torch.from_numpy(yi[[i for i, _ in batch]])
            loss = loss_fn(self._logits(tail, clf, _to_torch(x)), target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
            seen += len(batch)
        return total / seen

    def _augment(self, x, labels, pools, by_class, rng):
        x = x.copy()
        b, _, _, h, w = x.shape
        for k in range(b):
            if self.mixup and rng.random() < self.mixup:
                i = rng.choice(by_class[labels[k]])
                lam = rng.uniform(0.0, 0.5)
                x[k] = (1 - lam) * x[k] + lam * pools[i][rng.integers(len(pools[i]))]
            if self.mask and rng.random() < self.mask:
                x[k, :, :, :, rng.integers(w)] = 0.0  # one time column of the map
            if self.mask and rng.random() < self.mask:
                x[k, :, :, rng.integers(h), :] = 0.0  # one frequency row
        if self.crop and w > 2 and rng.random() < self.crop:
            c = rng.integers(2)
            x = x[..., c : c + w - 1]
        return x

    def _check_fitted(self):
        if not hasattr(self, "tail_"):
            raise RuntimeError("this FineTuner is not fitted yet; call fit first")

    def window_features(self, pooled, act, *, batch_size: int = 128):
        """Window features in the default recipe's layout, views side by side.

        Parameters
        ----------
        pooled : (n, V, P) frozen stage means then maxima (see :func:`frozen_pass`)
        act : (n, V, C, h, w) tail inputs

        Returns
        -------
        (n, V × D) float32: per view [stage means | stage maxima | penultimate],
        the tail's stages and penultimate from the tuned network.
        """
        self._check_fitted()
        return tail_features(self.tail_, pooled, act, batch_size=batch_size)

    def predict_proba_windows(self, act, *, batch_size: int = 128):
        """The tuned network's own classifier on windows, (n, n_classes)."""
        import torch

        self._check_fitted()
        n, v = act.shape[:2]
        out = []
        with torch.inference_mode():
            for i in range(0, n, batch_size):
                x = _to_torch(act[i : i + batch_size])
                b = x.shape[0]
                _, pen = self.tail_(x.reshape(b * v, *x.shape[2:]).contiguous(memory_format=torch.channels_last))
                out.append(torch.softmax(self.classifier_(pen.reshape(b, v * self.width_)), 1).double().numpy())
        return np.concatenate(out)


def tail_features(tail, pooled, act, *, batch_size: int = 128) -> np.ndarray:
    """Window features [stage means | stage maxima | penultimate] per view, views side by side.

    With an untrained :func:`TunedTail` these are the default recipe's
    features of the frozen network (``layers="all+max"``).
    """
    import torch

    n, v = act.shape[:2]
    if pooled.shape[:2] != (n, v):
        raise ValueError(f"pooled {pooled.shape} and act {act.shape} must hold the same windows and views")
    half = pooled.shape[2] // 2
    out = []
    tail.eval()
    with torch.inference_mode():
        for i in range(0, n, batch_size):
            x = _to_torch(act[i : i + batch_size])
            b = x.shape[0]
            maps, pen = tail(x.reshape(b * v, *x.shape[2:]).contiguous(memory_format=torch.channels_last))
            means = torch.cat([m.mean(dim=(2, 3)) for m in maps], 1)
            maxes = torch.cat([m.amax(dim=(2, 3)) for m in maps], 1)
            p = _to_torch(pooled[i : i + batch_size].reshape(b * v, -1))
            f = torch.cat([p[:, :half], means, p[:, half:], maxes, pen], 1)
            out.append(f.reshape(b, -1).numpy())
    return np.concatenate(out).astype(np.float32)


# ----------------------------------------------------------------------------- from cached tracks to a recipe's features


def fit_on_tracks(arrays, y, *, views, groups=None, tracks=None, progress: bool = False, **params) -> "FineTuner":
    """A :class:`FineTuner` fitted on tracks' cached activations (offset-0 and shifted windows).

    Parameters
    ----------
    arrays : list of dict
        :func:`dataset_activations` arrays of the training tracks only.
    y : (n_tracks,) labels
    views : sequence of str
        View order of the network's input (the recipe's ``features.view_names``).
    groups : (n_tracks,), optional
        Kept on one side of the early-stopping split (see :meth:`FineTuner.fit`).
    tracks : sequence of str, optional
        Names of the tracks (recorded as ``tracks_`` on the fitted tuner: which
        tracks it saw).
    progress : bool
        Epoch bar on stderr.
    **params
        :class:`FineTuner` parameters.
    """
    pools = [np.concatenate([track_tensor(a, views)[1], track_tensor(a, views, shifted=True)[1]]) for a in arrays]
    tuner = FineTuner(progress=progress, **params).fit(pools, y, groups=groups)
    tuner.tracks_ = None if tracks is None else [str(t) for t in tracks]
    return tuner


def window_mismatch(arrays: dict, frozen: dict, views) -> str | None:
    """Why a track's cached activations cannot stand for its frozen features (other window count), or None."""
    n, m = len(arrays[f"{views[0]}.pool"]), len(frozen["starts"]) if "starts" in frozen else len(frozen[views[0]])
    return None if n == m else f"{n} windows in the cached activations, {m} in its features (stale cache entry?)"


def recipe_activations(recipe, features: dict, *, cache, progress: bool = True):
    """:func:`dataset_activations` of the tracks a recipe with ``tune`` has frozen features of.

    Parameters
    ----------
    recipe : Recipe with ``tune``
    features : dict path → the track's frozen feature dict
    cache : str or None
    progress : bool

    Returns
    -------
    arrays : dict path → arrays, only tracks whose activations match their features' windows
    failures : list of (path, reason): tracks that failed, or whose cached activations hold
        another number of windows than their features (see :func:`window_mismatch`)
    """
    views = recipe.features.view_names
    arrays, failures = dataset_activations(list(features), recipe.features, cache=cache,
                                           n_stages=recipe.tune.get("n_stages", 1), progress=progress)
    for p, a in list(arrays.items()):
        why = window_mismatch(a, features[p], views)
        if why:
            failures.append((p, why))
            del arrays[p]
    return arrays, failures


def tuned_track_features(tuner, arrays: dict, frozen: dict, views) -> dict:
    """A track's feature dict with every view's window features from the tuned network.

    Parameters
    ----------
    tuner : fitted :class:`FineTuner`
    arrays : the track's :func:`dataset_activations` arrays
    frozen : the track's frozen feature dict (:func:`~genrevision.features.extract_track`):
        its ``starts``, ``mfcc`` and any other per-track entry are kept as they are
    views : sequence of str

    Returns
    -------
    dict in :func:`~genrevision.features.extract_track`'s layout (the offset-0 windows).
    """
    why = window_mismatch(arrays, frozen, views)
    if why:
        raise ValueError(why)
    pooled, act = track_tensor(arrays, views)
    f = tuner.window_features(pooled, act)
    d = f.shape[1] // len(views)
    out = {k: v for k, v in frozen.items() if k not in views}
    out.update({v: f[:, k * d : (k + 1) * d] for k, v in enumerate(views)})
    return out


# ----------------------------------------------------------------------------- using and storing a tuned network


def _tuned_arrays(tuner) -> dict[str, np.ndarray]:
    tuner._check_fitted()
    out = {f"tail/{k}": v.detach().cpu().numpy() for k, v in tuner.tail_.state_dict().items()}
    out.update({f"classifier/{k}": v.detach().cpu().numpy() for k, v in tuner.classifier_.state_dict().items()})
    return out


def _array_digest(a: np.ndarray) -> str:
    import hashlib

    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def tuned_backbone(tuner, *, engine: str | None = None):
    """A :class:`~genrevision.features.backbone.Backbone` whose last stage(s) and head conv are the tuned ones.

    ``features(images, layers="all+max")`` then gives the tuned window
    features in the default layout (what :meth:`FineTuner.window_features`
    gives from cached activations) straight from images, through PyTorch or
    the ONNX Runtime path (exported once per image size; the cache key
    includes the tuned weights, so a tuned and a frozen network never share
    an export).
    """
    import hashlib

    import torch

    from .backbone import Backbone

    tuner._check_fitted()
    bb = Backbone(tuner.backbone, engine=engine)
    if not bb.fused:
        raise ValueError(f"{tuner.backbone}: a tuned network needs the fused EfficientNet-Lite module")
    tail = copy.deepcopy(tuner.tail_).eval()
    for p in tail.parameters():
        p.requires_grad_(False)
    m = bb.module
    for j, block in enumerate(tail.blocks):
        m._blocks[tuner.start_ + j] = block
    m._conv_head = tail.head
    bb.module = m.to(memory_format=torch.channels_last)
    h = hashlib.sha256(bb.weights_sha256.encode())
    for name, a in sorted(_tuned_arrays(tuner).items()):
        if name.startswith("tail/"):
            h.update(_array_digest(a).encode())
    bb.weights_sha256 = h.hexdigest()
    bb._ort_sessions = {}
    return bb


def save_tuned(tuner, path):
    """Write a fitted :class:`FineTuner`'s weights as plain arrays (``.npz``, no pickle), with checksums.

    The header (JSON in the array ``__meta__``) names the backbone, the
    SHA-256 of its ImageNet weights, where the tail starts, the classes and
    the SHA-256 of every array; :func:`load_tuned` checks all of them.

    ``path`` is a file name (written atomically; returned) or a binary file
    object (e.g. ``io.BytesIO``, as a model file's member is made; returned).
    """
    import json
    import os

    from .backbone import get_backbone
    from .store import atomic_write

    arrays = _tuned_arrays(tuner)
    meta = {"format": FORMAT, "kind": "genrevision-tuned-tail", "backbone": tuner.backbone,
            "backbone_sha256": get_backbone(tuner.backbone).weights_sha256, "n_stages": int(tuner.n_stages),
            "start": int(tuner.start_), "classes": [str(c) for c in tuner.classes_], "width": int(tuner.width_),
            "params": {k: v for k, v in vars(tuner).items() if not k.endswith("_") and k != "progress"},
            "sha256": {k: _array_digest(a) for k, a in arrays.items()},
            # How the fit went (reported, not needed to predict).
            "fit": {"best_epoch": getattr(tuner, "best_epoch_", None), "history": getattr(tuner, "history_", None)}}
    blob = np.frombuffer(json.dumps(meta, sort_keys=True, default=str).encode(), np.uint8)
    if hasattr(path, "write"):
        np.savez(path, __meta__=blob, **arrays)
        return path
    path = os.fspath(path)
    atomic_write(path, lambda f: np.savez(f, __meta__=blob, **arrays))
    return path


def load_tuned(path, *, name: str | None = None) -> FineTuner:
    """A fitted :class:`FineTuner` from :func:`save_tuned`'s file.

    ``path`` is a file name, the file's bytes or a binary file object;
    ``name`` is what error messages call it (default: the path, or
    ``"tuned network"``). Raises ValueError "<name>: <reason>" when it is not
    such a file, an array is missing or its checksum differs, or the
    backbone's weights on this machine are not the ones it was tuned from.
    """
    import contextlib
    import io
    import json
    import os
    import zipfile

    import torch
    import torch.nn as nn

    from .backbone import get_backbone
    from .._utils.files import open_regular

    if isinstance(path, (bytes, bytearray, memoryview)):
        opened, path = contextlib.nullcontext(io.BytesIO(bytes(path))), name or "tuned network"
    elif hasattr(path, "read"):
        opened, path = contextlib.nullcontext(path), name or "tuned network"
    else:
        path = os.fspath(path)
        opened, path = open_regular(path), name or path
    try:
        with opened as f, np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop("__meta__").tobytes().decode("utf-8"))
        if not isinstance(meta, dict):
            raise ValueError("header is not an object")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, UnicodeDecodeError, RecursionError) as err:
        raise ValueError(f"{path}: not a tuned-network file ({type(err).__name__})") from None
    if meta.get("kind") != "genrevision-tuned-tail" or meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a tuned-network file of format {FORMAT}")
    sums = meta.get("sha256", {})
    if set(sums) != set(arrays):
        raise ValueError(f"{path}: arrays do not match the header (missing or extra tensors)")
    for k, a in arrays.items():
        if _array_digest(a) != sums[k]:
            raise ValueError(f"{path}: checksum mismatch for {k} (damaged or altered file)")
    try:
        bb = get_backbone(meta["backbone"])  # shared: the tail is a copy of its blocks, the network is not changed
        tuner = FineTuner(**meta["params"])
        start, width = int(meta["start"]), int(meta["width"])
        classes = np.asarray([str(c) for c in meta["classes"]])
        clf_w = arrays["classifier/1.weight"]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path}: not a usable tuned-network file ({type(err).__name__}: {str(err)[:120]})") from None
    if bb.weights_sha256 != meta.get("backbone_sha256"):
        raise ValueError(f"{path}: tuned from other {meta['backbone']} weights than the ones installed here")
    try:
        tail = TunedTail(bb.module, start)
        clf = nn.Sequential(nn.Dropout(tuner.dropout), nn.Linear(clf_w.shape[1], clf_w.shape[0]))
        tail.load_state_dict({k[5:]: torch.from_numpy(a) for k, a in arrays.items() if k.startswith("tail/")}, strict=True)
        clf.load_state_dict({k[11:]: torch.from_numpy(a) for k, a in arrays.items() if k.startswith("classifier/")}, strict=True)
    except (RuntimeError, IndexError, ValueError) as err:
        raise ValueError(f"{path}: weights do not fit {meta['backbone']} ({str(err)[:120]})") from None
    tuner.tail_ = tail.to(memory_format=torch.channels_last).eval()
    tuner.classifier_ = clf.eval()
    tuner.start_, tuner.width_, tuner.classes_ = start, width, classes
    fit = meta.get("fit") if isinstance(meta.get("fit"), dict) else {}
    tuner.best_epoch_, tuner.history_ = fit.get("best_epoch"), fit.get("history")
    return tuner
