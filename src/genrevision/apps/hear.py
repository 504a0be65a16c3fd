"""The HEAR 2021 API: genrevision's image features as an audio representation.

The common API of the HEAR benchmark (Turian et al., 2022,
https://hearbenchmark.com/hear-api.html), so that the evaluation kit can
compare genrevision's spectrogram-image features with other representations::

    from genrevision import hear
    model = hear.load_model()                                   # the default recipe's features
    emb, ts = hear.get_timestamp_embeddings(audio, model)       # audio: Tensor (n_sounds, n_samples) at 22050 Hz
    scene = hear.get_scene_embeddings(audio, model)             # (n_sounds, model.scene_embedding_size)

What a timestamp embedding is: each sound is cut into the recipe's windows (129
STFT frames, about 3 s, hop the same for the default: the model's ``timestamp_hop_ms``) and each window's
CNN features of the three views (original, harmonic, percussive) are put side
by side, exactly the image rows the recipe's classifier reads (a hybrid recipe's
per-sound MFCC view, as in the default, is left out); its timestamp is the
window's centre in milliseconds. A sound shorter than one window gives one
embedding (its spectrogram repeated to the window's length) centred on the
sound. Sounds of one batch have one length, hence the same number of
timestamps. The scene embedding is the mean of a sound's timestamp embeddings.
Each sound is peak-normalised first, as files are when a track is read, and read in pieces of
:data:`PIECE_WINDOWS` windows that start on the sound's own window grid (a file
is read in 30 s segments), so the hop never changes and memory stays bounded.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

__all__ = ["load_model", "get_timestamp_embeddings", "get_scene_embeddings", "GenrevisionEmbedding"]

SAMPLE_RATE = 22050
#: A long sound is read in pieces of this many windows (about 60 s), each with one window of
#: context on either side that is computed and dropped (the STFT and the harmonic/percussive
#: filters reach across a piece's edge), so memory stays that of one piece, however long the sound.
PIECE_WINDOWS = 20


class GenrevisionEmbedding(torch.nn.Module):
    """A recipe's feature extractor as a HEAR model (no classifier).

    Attributes
    ----------
    sample_rate : int
        22050 Hz (audio at any other rate must be resampled by the caller).
    scene_embedding_size, timestamp_embedding_size : int
        Width of the embeddings (three views × the CNN feature width).
    timestamp_hop_ms : float or None
        Distance between timestamps (None for the whole-track layout: one per sound).
    recipe : Recipe
        Whose features these are (its settings, column choice and views).

    Parameters
    ----------
    recipe : Recipe
    backbone : Backbone, optional
        The network to run (default: the recipe's frozen one). A recipe with
        ``tune`` needs its model's tuned network: use :func:`load_model` with
        the model file.
    """

    def __init__(self, recipe, *, backbone=None):
        super().__init__()
        if recipe.tune is not None and backbone is None:
            raise ValueError(f"recipe {recipe.name!r} fine-tunes the network on labelled tracks: its features come "
                             "from a trained model; pass the model file to genrevision.apps.hear.load_model")
        self._backbone = backbone
        # The CNN views' window features only: a hybrid recipe's MFCC view summarises a whole
        # sound (no timestamps) and would need the whole sound in memory at once.
        self.recipe = replace(recipe, pooling="windows", hybrid_mfcc=False)
        self.settings = recipe.features
        if self.settings.sr != SAMPLE_RATE:
            raise ValueError(f"HEAR models here run at {SAMPLE_RATE} Hz; recipe {recipe.name!r} uses {self.settings.sr}")
        self.sample_rate = SAMPLE_RATE
        spec = self.settings.spectrogram
        per, hop = self.settings.window_frames  # windows are whole STFT frames: 129 × 512 samples ≈ 2.995 s
        self._window_s = per * self.settings.hop_length / SAMPLE_RATE
        # The whole-track layout (the paper recipe) makes one image per sound: one timestamp.
        self.timestamp_hop_ms = 1000.0 * hop * self.settings.hop_length / SAMPLE_RATE if spec.layout == "windows" else None
        # The width, from one real pass (a second of a quiet tone): nothing is guessed.
        probe = 0.1 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE) / SAMPLE_RATE).astype(np.float32)
        width = int(self._windows(probe)[0].shape[1])
        self.scene_embedding_size = width
        self.timestamp_embedding_size = width

    def _windows(self, y: np.ndarray):
        """(n_windows, D) float32 rows and (n_windows,) centres in ms of one mono signal."""
        from ..signal.audio import normalise

        s = self.settings
        y = normalise(y, method=s.normalisation)  # the whole sound's peak, as files are normalised
        feats = self._features(y)
        X, _ = self.recipe.matrix([feats])
        dur = len(y) / s.sr
        if s.spectrogram.layout == "windows" and dur >= self._window_s:
            centres = feats["starts"] + self._window_s / 2
        else:  # one image of the whole sound, or a sound shorter than a window (tiled to one): its middle
            centres = np.full(len(X.data), dur / 2)
        return X.data.astype(np.float32), (1000.0 * centres).astype(np.float32)

    def _features(self, y: np.ndarray) -> dict:
        """The recipe's window features of one normalised sound, a piece at a time.

        Pieces start on window boundaries of the whole sound, so the windows and their hop are the
        ones of one pass over it (as HEAR's timestamps need), not restarted every 30 s as a file's
        segments are."""
        from ..features.extraction import extract_signal
        from ..signal.baseline import mfcc_features

        s = self.settings
        per, hop = s.window_frames
        step = hop * s.hop_length  # samples from one window's start to the next
        core, margin = PIECE_WINDOWS, 1
        if s.spectrogram.layout != "windows" or len(y) <= (core + 2 * margin) * step + per * s.hop_length:
            return extract_signal(y, s, baseline=self.recipe.hybrid_mfcc, backbone=self._backbone)
        parts, first = [], 0
        while True:
            a = max(0, first - margin)  # the piece's first window, context included
            end = min(len(y), (first + core + margin) * step + per * s.hop_length)
            f = extract_signal(y[a * step:end], s, baseline=False, backbone=self._backbone)
            index = a + np.round(f["starts"] * s.sr / step).astype(int)
            last = end == len(y)
            keep = (index >= first) & ((index < first + core) | last)
            parts.append({k: v[keep] for k, v in f.items()} | {"starts": (index[keep] * step / s.sr).astype(np.float32)})
            if last:
                break
            first += core
        feats = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        if self.recipe.hybrid_mfcc:
            feats["mfcc"] = mfcc_features(y, sr=s.sr).astype(np.float32)
        return feats

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return get_scene_embeddings(audio, self)


def load_model(model_file_path: str = "") -> GenrevisionEmbedding:
    """The HEAR model: ``""`` → the default recipe's features; a path → a genrevision model file's.

    Parameters
    ----------
    model_file_path : str
        Empty for the default recipe's backbone features (no classifier), or a
        model file written by ``genrevision train`` (its recipe's feature
        settings, columns and views are used, and the network of a ``tuned``
        model carries its fine-tuned weights; its classifier is not used).
    """
    if model_file_path:
        from ..model.genre_model import load_model as load_genre_model

        genre_model = load_genre_model(model_file_path)
        return GenrevisionEmbedding(genre_model.recipe, backbone=genre_model.feature_backbone())
    from ..recipes import get_recipe

    return GenrevisionEmbedding(get_recipe("default"))


def _check(audio, model):
    if not isinstance(model, GenrevisionEmbedding):
        raise TypeError(f"model must come from genrevision.apps.hear.load_model, got {type(model).__name__}")
    if not isinstance(audio, torch.Tensor) or audio.ndim != 2:
        raise ValueError("audio must be a torch.Tensor of shape (n_sounds, n_samples) at "
                         f"{model.sample_rate} Hz, got {getattr(audio, 'shape', type(audio).__name__)}")
    if not audio.dtype.is_floating_point or audio.dtype.is_complex:
        # int16 PCM would be read as values up to 32767, bool as 0/1: say what is wanted instead.
        raise ValueError(f"audio must be a float tensor (samples in [-1, 1]), got {audio.dtype}; "
                         "convert it, e.g. audio.float() / 32768 for int16 PCM")
    if audio.shape[0] < 1:
        raise ValueError("audio holds no sounds (shape (0, n_samples)); pass at least one")
    if audio.shape[1] < 1:
        raise ValueError("audio must hold at least one sample per sound")
    y = audio.detach().to("cpu", torch.float32).numpy()
    bad = ~np.isfinite(y).all(axis=1)
    if bad.any():
        raise ValueError(f"sound {int(np.argmax(bad))} holds NaN or infinite samples")
    return y


def get_timestamp_embeddings(audio: torch.Tensor, model: GenrevisionEmbedding):
    """Embeddings of each sound's windows and their centres.

    Parameters
    ----------
    audio : torch.Tensor (n_sounds, n_samples), float, at ``model.sample_rate``
    model : from :func:`load_model`

    Returns
    -------
    embeddings : torch.Tensor (n_sounds, n_timestamps, model.timestamp_embedding_size), float32
    timestamps : torch.Tensor (n_sounds, n_timestamps), float32, window centres in milliseconds
    """
    y = _check(audio, model)
    out = [model._windows(sound) for sound in y]
    emb = torch.from_numpy(np.stack([e for e, _ in out])).to(audio.device)
    ts = torch.from_numpy(np.stack([t for _, t in out])).to(audio.device)
    return emb, ts


def get_scene_embeddings(audio: torch.Tensor, model: GenrevisionEmbedding) -> torch.Tensor:
    """One embedding per sound: the mean of its timestamp embeddings.

    Returns
    -------
    torch.Tensor (n_sounds, model.scene_embedding_size), float32
    """
    y = _check(audio, model)
    return torch.from_numpy(np.stack([model._windows(sound)[0].mean(axis=0) for sound in y])).to(audio.device)
