"""`python -m genrevision.cli extract` end to end on a tiny real dataset."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import soundfile as sf

from conftest import real_excerpt

SOURCES = {"jazz": ["jazz.00000.wav", "jazz.00001.wav"], "metal": ["metal.00003.wav", "metal.00004.wav"]}


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory, gtzan_root):
    root = tmp_path_factory.mktemp("tiny") / "genres"
    for genre, names in SOURCES.items():
        (root / genre).mkdir(parents=True)
        for name in names:
            y = real_excerpt(gtzan_root, f"{genre}/{name}", 6.0)
            sf.write(root / genre / name, y, 22050, subtype="PCM_16")
    return root


def _cli(*args, cache):
    env = dict(os.environ, GENREVISION_CACHE=str(cache), PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "genrevision.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300)


def test_extract_then_cache_then_images(tiny_dataset, tmp_path):
    out = tmp_path / "features"
    first = _cli("extract", tiny_dataset, "--out", out, "--quiet", "--jobs", "0", cache=tmp_path / "unused")
    assert first.returncode == 0, first.stderr
    assert "features for 4/4 tracks" in first.stdout
    assert "(4 computed, 0 from cache)" in first.stdout
    assert first.stderr.strip() == ""  # --quiet: no progress bar, no failures
    npz = [f for _, _, fs in os.walk(out) for f in fs if f.endswith(".npz")]
    assert len(npz) == 4
    assert not (tmp_path / "unused").exists()  # --out wins over --cache

    again = _cli("extract", tiny_dataset, "--out", out, "--quiet", "--jobs", "0", cache=tmp_path / "unused")
    assert again.returncode == 0, again.stderr
    assert "features for 4/4 tracks" in again.stdout
    assert "0 computed, 4 from cache" in again.stdout

    images = tmp_path / "png"
    shots = _cli("extract", tiny_dataset, "--out", out, "--quiet", "--jobs", "0", "--save-images", images,
                 cache=tmp_path / "unused")
    assert shots.returncode == 0, shots.stderr
    assert "features for 4/4 tracks" in shots.stdout
    pngs = sorted(os.listdir(images))
    assert len(pngs) == 12
    for names in SOURCES.values():
        for name in names:
            stem = name[:-4]
            for view in ("original", "harmonic", "percussive"):
                png = images / f"{stem}.{view}.png"
                assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_extract_missing_dataset(tmp_path):
    missing = _cli("extract", tmp_path / "no-such-dataset", "--out", tmp_path / "f", "--quiet", "--jobs", "0",
                   cache=tmp_path / "c")
    assert missing.returncode == 2
    err = missing.stderr.strip()
    assert err.startswith("genrevision: error:") and "no-such-dataset" in err and "\n" not in err
