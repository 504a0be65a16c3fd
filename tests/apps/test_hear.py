"""The HEAR 2021 API on real GTZAN excerpts: shapes, dtypes, timestamps, determinism, the official validator."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from testkit import real_excerpt

from genrevision.apps import hear

SR = 22050


@pytest.fixture(scope="module")
def model():
    return hear.load_model()


@pytest.fixture(scope="module")
def pair(gtzan_root):
    # Two real 7 s excerpts: two 3 s windows each (the third would run past the end).
    a = real_excerpt(gtzan_root, "classical/classical.00000.wav", 7.0)
    b = real_excerpt(gtzan_root, "metal/metal.00000.wav", 7.0)
    return torch.from_numpy(np.stack([a, b]))


def test_model_attributes(model):
    assert isinstance(model, torch.nn.Module)
    assert model.sample_rate == 22050
    assert isinstance(model.scene_embedding_size, int) and isinstance(model.timestamp_embedding_size, int)
    # Three views side by side of the default recipe's Lite2 window features.
    assert model.scene_embedding_size == model.timestamp_embedding_size > 3000
    assert model.scene_embedding_size % 3 == 0
    assert model.timestamp_hop_ms == pytest.approx(1000 * 129 * 512 / SR)  # 3 s windows of whole STFT frames


def test_timestamp_embeddings(model, pair):
    emb, ts = hear.get_timestamp_embeddings(pair, model)
    assert emb.dtype == torch.float32 and ts.dtype == torch.float32
    assert emb.shape == (2, 2, model.timestamp_embedding_size) and ts.shape == (2, 2)
    # Window centres in milliseconds, increasing at the fixed hop.
    hop = model.timestamp_hop_ms
    np.testing.assert_allclose(ts.numpy(), [[hop / 2, hop * 1.5]] * 2, rtol=1e-6)
    assert torch.isfinite(emb).all() and emb.abs().sum() > 0
    # Two genres give two different embeddings.
    assert not torch.allclose(emb[0], emb[1])
    # Same input, same output; a batch of two equals the two sounds alone.
    emb2, ts2 = hear.get_timestamp_embeddings(pair, model)
    assert torch.equal(emb, emb2) and torch.equal(ts, ts2)
    for i in range(2):
        one, t1 = hear.get_timestamp_embeddings(pair[i : i + 1], model)
        torch.testing.assert_close(one[0], emb[i], rtol=1e-5, atol=1e-5)
        assert torch.equal(t1[0], ts[i])


def test_scene_embeddings_and_short_sounds(model, pair):
    scene = hear.get_scene_embeddings(pair, model)
    assert scene.dtype == torch.float32 and scene.shape == (2, model.scene_embedding_size)
    emb, _ = hear.get_timestamp_embeddings(pair, model)
    torch.testing.assert_close(scene, emb.mean(dim=1))
    # A sound shorter than one window: one embedding, centred on the sound.
    short = pair[:, : SR // 2]
    emb, ts = hear.get_timestamp_embeddings(short, model)
    assert emb.shape == (2, 1, model.timestamp_embedding_size)
    np.testing.assert_allclose(ts.numpy(), [[250.0], [250.0]])
    assert torch.isfinite(emb).all()
    with pytest.raises(ValueError, match="n_sounds, n_samples"):
        hear.get_scene_embeddings(pair[0], model)


def test_model_file(model_file, model):
    from genrevision import load_model

    m = hear.load_model(str(model_file))
    assert m.recipe.features == load_model(model_file).settings
    assert m.scene_embedding_size == model.scene_embedding_size  # same backbone and columns as the default


def test_hear_validator(monkeypatch, capsys):
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        # hearvalidator imports tensorflow at the top but uses it only for TensorFlow models
        # (installed here with --no-deps, see the Makefile); a stand-in tf.Module lets its
        # real checks of a torch module run without a 500 MB dependency.
        fake = types.ModuleType("tensorflow")
        fake.Module = type("Module", (), {})
        monkeypatch.setitem(sys.modules, "tensorflow", fake)
    from hearvalidator.validate import ValidateModel

    ValidateModel("genrevision.apps.hear", model_file_path="", device="cpu")()  # raises ModelError on a failed check
    out = capsys.readouterr().out
    assert "Checking get_scene_embeddings" in out and "Received embedding of shape: torch.Size([8, " in out


def test_long_sound_keeps_a_fixed_hop(model, gtzan_root):
    # 40 s: past the 30 s segments files are read in; the hop must not change at 30 s.
    y = np.concatenate([real_excerpt(gtzan_root, "jazz/jazz.00000.wav", 30.0), real_excerpt(gtzan_root, "jazz/jazz.00001.wav", 10.0)])
    emb, ts = hear.get_timestamp_embeddings(torch.from_numpy(y[None]), model)
    assert emb.shape[1] == ts.shape[1] == 13
    np.testing.assert_allclose(np.diff(ts[0].numpy()), model.timestamp_hop_ms, atol=1e-2)


def test_bad_tensors_are_clear_value_errors(model):
    good = torch.zeros(1, SR).uniform_(-1, 1)
    for audio, says in ((torch.zeros(0, SR), "holds no sounds"),
                        ((good * 32767).to(torch.int16), "must be a float tensor (samples in [-1, 1]), got torch.int16"),
                        (good > 0, "got torch.bool"),
                        (good.to(torch.complex64), "got torch.complex64"),
                        (torch.cat([good, good.clone().index_fill_(1, torch.tensor([5]), float("nan"))]),
                         "sound 1 holds NaN or infinite samples"),
                        (good.clone().index_fill_(1, torch.tensor([0]), float("inf")), "sound 0 holds NaN")):
        for fn in (hear.get_timestamp_embeddings, hear.get_scene_embeddings):
            with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                               .replace("]", r"\]")):
                fn(audio, model)


def test_long_sounds_are_read_in_bounded_pieces(model, gtzan_root):
    """Memory of a 4-minute sound stays that of about a minute (it grew ~105 MB a minute when a sound
    was read in one piece); the windows and their hop are those of one pass over the sound."""
    import tracemalloc

    y = real_excerpt(gtzan_root, "jazz/jazz.00002.wav", 30.0)
    peaks, out = {}, {}
    tracemalloc.start()
    try:
        for minutes in (1, 4):
            sound = torch.from_numpy(np.tile(y, 2 * minutes)[None])
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            out[minutes] = hear.get_timestamp_embeddings(sound, model)
            peaks[minutes] = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peaks[4] < 1.5 * peaks[1], {m: f"{p / 2**20:.0f} MiB" for m, p in peaks.items()}
    emb, ts = out[4]
    assert emb.shape[1] == ts.shape[1] == int((240 * SR - 129 * 512) // (129 * 512)) + 1
    # float32 milliseconds near 240 000 are 1/64 ms apart: the hop is exact to that.
    np.testing.assert_allclose(np.diff(ts[0].numpy().astype(np.float64)), model.timestamp_hop_ms, atol=0.04)
