"""`python -m genrevision.cli extract` end to end on a tiny real dataset."""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf

from testkit import SR, Unblock, genre_paths, make_fifo, real_excerpt, run_cli

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


def test_cli_extract_and_predict_refuse_fifo(tmp_path, excerpt, model_file):
    data = tmp_path / "data"
    for g in ("a", "b"):
        (data / g).mkdir(parents=True)
        sf.write(data / g / "ok.wav", excerpt if g == "a" else excerpt[::-1].copy(), SR)
    fifo = make_fifo(data / "a" / "x.wav")
    with Unblock(fifo, after=60):
        proc = run_cli("extract", data, "--cache", tmp_path / "cache", "--jobs", "0", "--quiet", timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "features for 2/3 tracks" in proc.stdout
        assert f"  {fifo}: not a regular file (a named pipe)" in proc.stderr.splitlines()
        proc = run_cli("predict", fifo, data / "a" / "ok.wav", "--model", model_file, "--quiet", timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert f"  {fifo}: not a regular file (a named pipe)" in proc.stderr.splitlines()
        proc = run_cli("predict", data / "a" / "ok.wav", "--model", fifo, "--quiet", timeout=120)
        assert proc.returncode == 2
        assert proc.stderr.strip() == f"genrevision: error: {fifo}: not a regular file (a named pipe)"


def _file_size_limit(limit):
    def apply():
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_cli_extract_with_a_full_cache(tmp_path, three_songs):
    """A cache that fills up after settings.json (files limited to 4 kB): every track still extracted."""
    m = tmp_path / "songs.csv"
    m.write_text("path,label\nc1.wav,classical\nc2.wav,classical\nm1.wav,metal\n")
    cache = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-m", "genrevision.cli", "extract", str(m), "--cache", str(cache),
                           "--recipe", "paper", "--jobs", "0", "--quiet"], capture_output=True, text=True,
                          timeout=300, preexec_fn=_file_size_limit(4096))
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert "features for 3/3 tracks (3 computed, 0 from cache)" in proc.stdout
    assert proc.stderr.splitlines() == [
        f"genrevision: warning: {cache}: cannot write to the feature cache (File too large); going on without "
        "storing features (this run keeps them in memory)",
        f"genrevision: warning: {cache}: features of 3 tracks could not be stored in the cache (File too large); "
        "they were used in this run and will be computed again next time"]
    assert not [f for _, _, fs in os.walk(cache) for f in fs if f.startswith(".tmp-") or f.endswith(".npz")]


def test_two_extract_runs_share_one_cache(gtzan_root, tmp_path):
    for g, i in (("classical", 0), ("classical", 1), ("metal", 0)):
        (tmp_path / "data" / g).mkdir(parents=True, exist_ok=True)
        y, _ = sf.read(genre_paths(gtzan_root, g)[i], frames=3 * SR, dtype="float32")
        sf.write(tmp_path / "data" / g / f"{g}{i}.wav", y, SR)
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "genrevision.cli", "extract", str(tmp_path / "data"), "--cache", str(cache),
           "--jobs", "0", "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "Traceback" not in err, err
        assert "features for 3/3 tracks" in out
    files = [os.path.join(dp, f) for dp, _, fs in os.walk(cache) for f in fs]
    npz = [f for f in files if f.endswith(".npz")]
    assert len(npz) == 3
    assert not [f for f in files if os.path.basename(f).startswith(".tmp-")]
    for f in npz:
        with np.load(f, allow_pickle=False) as z:
            assert set(z.files) >= {"original", "harmonic", "percussive", "mfcc"}
            assert all(np.all(np.isfinite(z[k])) for k in z.files)
        assert zipfile.ZipFile(f).testzip() is None
