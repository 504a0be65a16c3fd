"""Shared fixtures: the real GTZAN subset, synthetic audio files, fast settings."""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SR = 22050


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


def real_excerpt(gtzan_root: Path, rel: str, seconds: float) -> np.ndarray:
    """The first ``seconds`` of a real GTZAN track as float32 (native 22050 Hz)."""
    y, sr = sf.read(gtzan_root / "genres" / rel, frames=int(seconds * SR), dtype="float32")
    assert sr == SR
    return y


@pytest.fixture(scope="session")
def small_settings():
    from genrevision.features import FeatureSettings
    from genrevision.spectrogram import SpectrogramConfig

    return FeatureSettings(segment_seconds=6.0, spectrogram=SpectrogramConfig(max_windows=2))


def run_cli(*args, timeout=300):
    """Run ``genrevision`` in a subprocess; a traceback on stderr is always a failure."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "genrevision.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture(scope="session")
def model_file(gtzan_root, tmp_path_factory):
    """One small default-recipe model, trained once for every CLI and hard-input test."""
    from test_model import small_recipe, train_subset

    d = tmp_path_factory.mktemp("clim")
    return train_subset(gtzan_root, small_recipe(), tmp_path_factory.getbasetemp() / "feature-cache").save(d / "genres.model")
