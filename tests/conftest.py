"""Shared fixtures: the real GTZAN subset, synthetic audio files, fast settings, one small model.

Helpers that tests call directly (run_cli, real_excerpt, small_recipe, ...) live in testkit.py."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from testkit import SR, genre_paths, real_excerpt, small_recipe, train_subset  # noqa: F401  (SR: the rate of every synthetic file)


def _find_gtzan() -> Path:
    env = os.environ.get("GENREVISION_GTZAN")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "shared" / "data" / "gtzan-mini",
                   Path("/work/shared/data/gtzan-mini")]
    for c in candidates:
        if (c / "genres").is_dir():
            return c
    return candidates[-1]


GTZAN = _find_gtzan()


@pytest.fixture(scope="session", autouse=True)
def _prediction_cache_in_tmp(tmp_path_factory):
    """CLI runs cache their answers in a folder of this session, not in the user's ~/.cache."""
    os.environ["GENREVISION_PREDICTION_CACHE"] = str(tmp_path_factory.mktemp("prediction-cache"))
    yield


@pytest.fixture(scope="session")
def gtzan_root() -> Path:
    """Folder of gtzan-mini (read-only: never write there)."""
    assert (GTZAN / "genres").is_dir(), f"gtzan-mini not found at {GTZAN}"
    return GTZAN


@pytest.fixture(scope="session")
def gtzan_manifest(gtzan_root) -> list[dict]:
    """Rows of gtzan-mini/manifest.csv (path, genre, sha1, sample_rate, duration_s)."""
    with open(gtzan_root / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        r["sample_rate"] = int(r["sample_rate"])
        r["duration_s"] = float(r["duration_s"])
    return rows


@pytest.fixture
def write_wav(tmp_path):
    """write_wav(name, y, sr=22050, subtype=None, format=None) -> Path inside tmp_path."""

    def _write(name: str, y, sr: int = SR, *, subtype: str | None = None, format: str | None = None) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, np.asarray(y), sr, subtype=subtype, format=format)
        return path

    return _write


@pytest.fixture(scope="session")
def small_settings():
    from genrevision.features.extraction import FeatureSettings
    from genrevision.signal.spectrogram import SpectrogramConfig

    return FeatureSettings(segment_seconds=6.0, spectrogram=SpectrogramConfig(max_windows=2))


@pytest.fixture(scope="session")
def model_file(gtzan_root, tmp_path_factory):
    """One small default-recipe model, trained once for every CLI and hard-input test."""
    d = tmp_path_factory.mktemp("clim")
    return train_subset(gtzan_root, small_recipe(), tmp_path_factory.getbasetemp() / "feature-cache").save(d / "genres.model")


@pytest.fixture(scope="module")
def excerpt(gtzan_root):
    """Four seconds of a real classical track."""
    return real_excerpt(gtzan_root, "classical/classical.00006.wav", 4.0)


@pytest.fixture
def three_songs(tmp_path, gtzan_root):
    """Three short real excerpts (two genres) and a byte-identical copy of the first under another name."""
    out = {}
    for name, rel in (("c1.wav", "classical/classical.00000.wav"), ("c2.wav", "classical/classical.00001.wav"),
                      ("m1.wav", "metal/metal.00000.wav"), ("m2.wav", "metal/metal.00001.wav")):
        sf.write(tmp_path / name, real_excerpt(gtzan_root, rel, 3.0), SR)
        out[name] = tmp_path / name
    (tmp_path / "copy of c1.wav").write_bytes(out["c1.wav"].read_bytes())
    out["copy"] = tmp_path / "copy of c1.wav"
    return out


@pytest.fixture(scope="module")
def degraded(gtzan_root, tmp_path_factory):
    """A held-out classical excerpt as 16-bit 22 kHz, 8-bit 22 kHz and 16-bit 8 kHz WAV."""
    import soxr

    d = tmp_path_factory.mktemp("degraded")
    y = real_excerpt(gtzan_root, "classical/classical.00006.wav", 10.0)
    y = 0.95 * y / np.abs(y).max()
    out = {"clean": d / "clean.wav", "8-bit": d / "eight bit.wav", "8 kHz": d / "eight khz.wav"}
    sf.write(out["clean"], y, SR, subtype="PCM_16")
    sf.write(out["8-bit"], y, SR, subtype="PCM_U8")
    sf.write(out["8 kHz"], soxr.resample(y, SR, 8000), 8000, subtype="PCM_16")
    return {k: str(v) for k, v in out.items()}


@pytest.fixture(scope="module")
def hard_files(gtzan_root, tmp_path_factory):
    """(good, bad): good = {path: expected genre or None}, bad = {path: words of the reason}."""
    d = tmp_path_factory.mktemp("hard")
    classical, _ = sf.read(genre_paths(gtzan_root, "classical")[6], frames=10 * SR, dtype="float32")
    good, bad = {}, {}

    def w(name, y, sr=SR, **kw):
        p = d / name
        sf.write(p, y, sr, **kw)
        return str(p)

    # 8-bit files are written at full scale (a quiet track in 8 bits is mostly quantisation noise).
    good[w("pcm_u8.wav", 0.95 * classical / np.abs(classical).max(), subtype="PCM_U8")] = "classical"
    good[w("float32.wav", classical, subtype="FLOAT")] = "classical"
    stereo = np.stack([classical, classical], axis=1)
    import soxr

    good[w("stereo 48k.wav", soxr.resample(stereo, SR, 48000), 48000)] = "classical"
    good[w("Café del Mar – ñandú ölçü.wav", classical)] = "classical"
    if "MP3" in sf.available_formats():
        good[w("song.mp3", classical, format="MP3")] = "classical"
    full = w("full.wav", classical)
    data = open(full, "rb").read()
    trunc = d / "truncated.wav"
    trunc.write_bytes(data[: len(data) // 2])  # header says 10 s, 5 s of samples remain
    good[str(trunc)] = None  # decodable prefix: any genre is a correct answer
    os.unlink(full)

    bad[str(d / "missing.wav")] = "no such file"
    (d / "zero.wav").write_bytes(b"")
    bad[str(d / "zero.wav")] = "empty file (0 bytes)"
    (d / "text.wav").write_text("this is not audio\n" * 50)
    bad[str(d / "text.wav")] = "not a readable audio file"
    bad[w("silence.wav", np.zeros(5 * SR, np.float32))] = "silent"
    nan = classical[: 3 * SR].copy()
    nan[100], nan[200] = np.nan, np.inf
    bad[w("nan.wav", nan, subtype="FLOAT")] = "NaN or infinite"
    bad[w("tiny.wav", classical[: SR // 10])] = "too short"
    return good, bad
