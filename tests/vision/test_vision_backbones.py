"""torchvision / timm backbones: the project's real loading code, with weights the tests make.

Runs in ``.venv-vision`` (``make test-vision``): torch 2.14.1 + torchvision 0.29.1 + timm.
Nothing here downloads: every weights file is a randomly initialised state dict
written to a temporary folder, and the offline paths are checked to fail at once.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

try:
    import timm
    import torch
    import torchvision
    from torchvision.models import get_model, get_model_weights
except ImportError as err:  # not a skip: in .venv-vision these tests must run
    pytest.fail(
        f"tests/vision needs torchvision and timm with their matching torch ({err}); "
        "run `make test-vision`, which builds .venv-vision with torch==2.14.1 torchvision==0.29.1 timm",
        pytrace=False,
    )

from genrevision.features import backbone as bb
from genrevision.features.backbone import Backbone, BackboneUnavailable

# name → (penultimate width, width of features(layers="all"))
ARCHS = {
    "alexnet": (4096, 256 + 4096 + 4096),  # conv5 maps, fc6, fc7 (after ReLU)
    "vgg16": (4096, 512 + 4096 + 4096),
    "resnet18": (512, 64 + 128 + 256 + 512 + 512),
    "resnet50": (2048, 256 + 512 + 1024 + 2048 + 2048),
    "mobilenet_v2": (1280, 24 + 32 + 96 + 1280),
}
SIDE = 64


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Two RGB images in [0, 1], (N, H, W, 3)."""
    return np.random.default_rng(0).random((2, SIDE, SIDE, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def weights_files(tmp_path_factory):
    """name → (state-dict file, the torchvision model it came from), made on demand, once."""
    folder = tmp_path_factory.mktemp("tv-weights")
    made: dict = {}

    def make(name: str):
        if name not in made:
            torch.manual_seed(len(name))
            model = get_model(name, weights=None).eval()
            path = folder / f"{name}-random.pth"
            torch.save(model.state_dict(), path)
            made[name] = (path, model)
        return made[name]

    return make


def _reference_input(name: str, images: np.ndarray) -> torch.Tensor:
    """The normalisation torchvision's own ImageNet transforms use, applied independently."""
    tf = get_model_weights(name).DEFAULT.transforms()
    mean = torch.tensor(tf.mean).view(1, 3, 1, 1)
    std = torch.tensor(tf.std).view(1, 3, 1, 1)
    return (torch.from_numpy(images).permute(0, 3, 1, 2) - mean) / std


def _penultimate(name: str, model, x: torch.Tensor) -> torch.Tensor:
    """Penultimate features straight from torchvision's forward (head cut off)."""
    import copy

    m = copy.deepcopy(model).eval()
    if name == "alexnet":
        m.classifier = m.classifier[:6]  # Dropout, fc6, ReLU, Dropout, fc7, ReLU
    elif name == "vgg16":
        m.classifier = m.classifier[:5]  # fc6, ReLU, Dropout, fc7, ReLU
    elif name.startswith("resnet"):
        m.fc = torch.nn.Identity()
    elif name == "mobilenet_v2":
        m.classifier = torch.nn.Identity()
    with torch.inference_mode():
        return m(x)


def _close(a, b, rtol=1e-3):
    a, b = np.asarray(a), np.asarray(b)
    scale = float(np.abs(b).max())
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(scale, 1e-6))


def test_versions():
    assert torch.__version__.startswith("2.14.1"), torch.__version__
    assert torchvision.__version__.startswith("0.29.1"), torchvision.__version__


@pytest.mark.parametrize("name", list(ARCHS))
def test_spec_matches_torchvision_preprocessing(name):
    spec = bb.BACKBONES[name]
    tf = get_model_weights(name).DEFAULT.transforms()
    assert tuple(spec.mean) == pytest.approx(tuple(tf.mean))
    assert tuple(spec.std) == pytest.approx(tuple(tf.std))
    assert spec.input_size == tf.crop_size[0]
    assert spec.feature_dim == ARCHS[name][0]


@pytest.mark.parametrize("name", list(ARCHS))
def test_local_weights_file(name, weights_files, images):
    path, model = weights_files(name)
    dim, all_dim = ARCHS[name]
    b = Backbone(name, weights=str(path))
    assert b.weights_sha256 == bb._sha256(str(path))

    # Loaded strictly: every tensor equals the saved one.
    ref_state = model.state_dict()
    got_state = b.module.state_dict()
    assert set(got_state) == set(ref_state)
    for k, v in ref_state.items():
        assert torch.equal(got_state[k], v), k

    feats = b.features(images)
    assert feats.shape == (2, dim) and feats.dtype == np.float32
    assert np.isfinite(feats).all() and np.abs(feats).max() > 0
    ref = _penultimate(name, model, _reference_input(name, images)).numpy()
    assert ref.shape == (2, dim)
    _close(feats, ref)
    if name in ("alexnet", "vgg16"):
        assert (feats >= 0).all()  # fc7 taken after its ReLU

    every = b.features(images, layers="all")
    assert every.shape == (2, all_dim)
    _close(every[:, -dim:], feats, rtol=1e-5)

    # Grey images go into all three channels.
    grey = images[..., 0]
    _close(b.features(grey), b.features(np.repeat(grey[..., None], 3, axis=-1)), rtol=1e-5)


def test_alexnet_fc6_in_all_layers(weights_files, images):
    path, model = weights_files("alexnet")
    every = Backbone("alexnet", weights=str(path)).features(images, layers="all")
    x = _reference_input("alexnet", images)
    with torch.inference_mode():
        maps = model.features(x)
        fc6 = model.classifier[:3](torch.flatten(model.avgpool(maps), 1))
    _close(every[:, :256], maps.mean(dim=(2, 3)).numpy())
    _close(every[:, 256:256 + 4096], fc6.numpy())


@pytest.mark.parametrize("name", ["alexnet", "resnet18", "mobilenet_v2"])
def test_cached_weights_found_offline(name, weights_files, images, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    hub = torch.hub.get_dir()
    assert hub.startswith(str(tmp_path))
    path, _ = weights_files(name)
    cached = os.path.join(hub, "checkpoints", os.path.basename(get_model_weights(name).DEFAULT.url))
    os.makedirs(os.path.dirname(cached))
    os.symlink(path, cached)

    b = Backbone(name)  # allow_download=False: must come from the cache
    assert b.weights_sha256 == bb._sha256(str(path))
    _close(b.features(images), Backbone(name, weights=str(path)).features(images), rtol=1e-6)


@pytest.mark.parametrize("name", list(ARCHS))
def test_missing_weights_fail_at_once(name, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None, raising=False)
    expected = os.path.join(torch.hub.get_dir(), "checkpoints",
                            os.path.basename(get_model_weights(name).DEFAULT.url))
    t0 = time.perf_counter()
    with pytest.raises(BackboneUnavailable) as info:
        Backbone(name)
    assert time.perf_counter() - t0 < 5
    msg = str(info.value)
    assert expected in msg
    assert "weights=FILE" in msg
    assert not os.path.exists(expected)  # nothing was downloaded


def test_wrong_architecture_names_the_file(weights_files):
    path, _ = weights_files("resnet18")
    with pytest.raises(BackboneUnavailable) as info:
        Backbone("resnet50", weights=str(path))
    assert str(path) in str(info.value)
    assert "resnet50" in str(info.value)


def test_unreadable_weights_file(tmp_path):
    bad = tmp_path / "not-weights.pth"
    bad.write_bytes(b"this is not a state dict")
    with pytest.raises(BackboneUnavailable) as info:
        Backbone("resnet18", weights=str(bad))
    assert str(bad) in str(info.value)


# --------------------------------------------------------------------------- timm


def test_timm_local_weights(tmp_path, images):
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=0).eval()
    path = tmp_path / "timm-resnet18.pth"
    torch.save(model.state_dict(), path)

    b = Backbone("timm:resnet18", weights=str(path))
    feats = b.features(images)
    assert feats.shape == (2, 512)
    x = _reference_input("resnet18", images)
    with torch.inference_mode():
        ref = model.forward_head(model.forward_features(x), pre_logits=True).numpy()
    _close(feats, ref)
    assert b.features(images, layers="all").shape == (2, 512 + 512)


def test_timm_wrong_weights_names_the_file(tmp_path):
    path = tmp_path / "tv-alexnet.pth"
    torch.save(get_model("alexnet", weights=None).state_dict(), path)
    with pytest.raises(BackboneUnavailable) as info:
        Backbone("timm:resnet18", weights=str(path))
    assert str(path) in str(info.value)


_TIMM_OFFLINE = """
import time, sys
t0 = time.perf_counter()
from genrevision.features.backbone import Backbone, BackboneUnavailable
try:
    Backbone("timm:resnet18")
except BackboneUnavailable as err:
    print("UNAVAILABLE", round(time.perf_counter() - t0, 2), err)
    sys.exit(0)
print("LOADED")
sys.exit(1)
"""


@pytest.mark.parametrize("offline_env", ["1", None], ids=["HF_HUB_OFFLINE=1", "HF_HUB_OFFLINE-unset"])
def test_timm_no_cache_fails_at_once(tmp_path, offline_env):
    # A fresh interpreter: huggingface_hub reads HF_HOME / HF_HUB_OFFLINE when it is imported.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env["HF_HOME"] = str(tmp_path / "hf")
    env["TORCH_HOME"] = str(tmp_path / "torch")
    if offline_env:
        env["HF_HUB_OFFLINE"] = offline_env
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _TIMM_OFFLINE], env=env, capture_output=True,
                          text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "UNAVAILABLE" in proc.stdout and "weights=FILE" in proc.stdout
    # the Backbone call itself (after imports) returns within a few seconds
    assert float(proc.stdout.split()[1]) < 30, proc.stdout
    assert elapsed < 90
    assert not any((tmp_path / "hf").rglob("*.safetensors"))


def test_timm_no_cache_in_process(tmp_path, monkeypatch):
    # huggingface_hub already imported without HF_HUB_OFFLINE (as in a notebook): the
    # backbone must still go offline for its own call only, and fail at once.
    import huggingface_hub.constants as hfc

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hfc, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(hfc, "HUGGINGFACE_HUB_CACHE", str(tmp_path / "hf" / "hub"), raising=False)
    t0 = time.perf_counter()
    with pytest.raises(BackboneUnavailable) as info:
        Backbone("timm:resnet18")
    assert time.perf_counter() - t0 < 10
    assert "weights=FILE" in str(info.value)
    # offline only for that call: the process's settings are as they were
    assert "HF_HUB_OFFLINE" not in os.environ
    assert hfc.HF_HUB_OFFLINE is False
