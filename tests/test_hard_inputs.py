"""Hard inputs through the CLI and the API: a right answer or one clear line naming the file, never a traceback."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import soundfile as sf

from genrevision import load_model
from genrevision.audio import AudioError
from conftest import run_cli
from test_model import GENRES, SR, genre_paths




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


def test_cli_predict_hard_inputs(model_file, hard_files):
    good, bad = hard_files
    proc = run_cli("predict", *good, *bad, "--model", model_file, "--quiet")
    assert proc.returncode == 0, proc.stderr
    for path, genre in good.items():
        line = next((ln for ln in proc.stdout.splitlines() if ln.startswith(f"{path}: ")), None)
        assert line is not None, (path, proc.stdout, proc.stderr)
        assert line.split(": ", 1)[1].split()[0] == (genre or line.split(": ", 1)[1].split()[0])
        assert line.split(": ", 1)[1].split()[0] in GENRES
    err = proc.stderr.splitlines()
    assert f"{len(bad)} files failed:" in err
    for path, words in bad.items():
        hits = [ln for ln in err if ln.startswith(f"  {path}: ")]
        assert len(hits) == 1 and words in hits[0], (path, proc.stderr)


def test_cli_only_failures_exit_1(model_file, hard_files):
    _, bad = hard_files
    proc = run_cli("predict", *bad, "--model", model_file, "--quiet")
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"{len(bad)} files failed:" in proc.stderr


def test_cli_directory_without_audio(model_file, tmp_path):
    (tmp_path / "readme.txt").write_text("no audio here")
    proc = run_cli("predict", tmp_path, "--model", model_file)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"genrevision: error: {tmp_path}: no audio files found " \
                                  "(looked for .wav, .au, .flac, .ogg, .mp3, .aiff, .aif)"


def test_api_hard_inputs(model_file, hard_files):
    model = load_model(model_file)
    good, bad = hard_files
    for path, genre in good.items():
        pred = model.predict(path)
        assert pred.genre in GENRES and (genre is None or pred.genre == genre), (path, pred)
        assert sum(pred.probabilities.values()) == pytest.approx(1.0)
    for path, words in bad.items():
        with pytest.raises(AudioError) as info:
            model.predict(path)
        msg = str(info.value)
        assert msg.startswith(path) and words in msg and "\n" not in msg


def test_ten_minute_file_bounded_memory(model_file, gtzan_root, tmp_path):
    y, _ = sf.read(genre_paths(gtzan_root, "metal")[4], frames=30 * SR, dtype="float32")
    path = tmp_path / "ten minutes.wav"
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
        for _ in range(20):
            f.write(y)
    del y
    model = load_model(model_file)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    pred = model.predict(path, timeline=True)
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert pred.duration == pytest.approx(600.0, abs=0.01)
    assert len(pred.segments) == 20 and pred.segments[-1][1] == pytest.approx(600.0, abs=0.01)
    assert pred.genre == "metal" and all(s[2] == "metal" for s in pred.segments)
    assert growth_mb < 500, f"peak RSS grew by {growth_mb:.0f} MB"


def test_manifest_with_empty_label_and_single_track_label(gtzan_root, tmp_path):
    rows = ["path,label"]
    for g in ("classical", "metal"):
        for p in genre_paths(gtzan_root, g)[:3]:
            rows.append(f"{p},{g}")
    rows.append(f"{genre_paths(gtzan_root, 'jazz')[0]},")  # a row without a label
    ok = tmp_path / "ok.csv"
    ok.write_text("\n".join(rows) + "\n")
    cache = tmp_path / "cache"
    proc = run_cli("train", ok, "--model", tmp_path / "m.model", "--recipe", "paper", "--cache", cache,
                   "--jobs", "0", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "trained paper model on 6 tracks of 2 genres" in proc.stdout
    assert "1 files failed:" in proc.stderr and "no label (row 8" in proc.stderr
    # One genre with a single track: a clear one-line error, no model written.
    one = tmp_path / "one.csv"
    one.write_text("\n".join(rows[:-1] + [f"{genre_paths(gtzan_root, 'jazz')[1]},opera"]) + "\n")
    proc = run_cli("train", one, "--model", tmp_path / "one.model", "--recipe", "paper", "--cache", cache,
                   "--jobs", "0", "--quiet")
    assert proc.returncode == 2 and not (tmp_path / "one.model").exists()
    assert proc.stderr.strip().endswith("every genre needs at least 2 usable tracks; too few for 'opera' (1)")
    assert len(proc.stderr.strip().splitlines()) == 1


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
