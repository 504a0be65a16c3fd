"""genrevision.signal.audio: decoding, formats, resampling, errors, segments."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import soxr

from genrevision.signal.audio import AudioError, audio_info, load_audio, normalise

from testkit import fuzz_cases

SR = 22050


def _music_like(sr: int, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A few low partials with a slow envelope: survives lossy codecs."""
    t = np.arange(int(sr * seconds)) / sr
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 1.5 * t)
    y = env * (0.5 * np.sin(2 * np.pi * 220 * t) + 0.3 * np.sin(2 * np.pi * 331 * t + 0.3)
               + 0.2 * np.sin(2 * np.pi * 523 * t + 1.1))
    return (0.7 * y / np.max(np.abs(y))).astype(np.float32)


def _best_corr(a: np.ndarray, b: np.ndarray, max_lag: int = 3000) -> float:
    """Largest normalised correlation of a and b over small lags (codec delays)."""
    n = min(len(a), len(b)) - max_lag
    assert n > 1000
    best = -1.0
    ref = a[max_lag // 2 : max_lag // 2 + n]
    for lag in range(0, max_lag, 1):
        seg = b[lag : lag + n]
        if len(seg) < n:
            break
        c = float(np.dot(ref - ref.mean(), seg - seg.mean()) /
                  (np.linalg.norm(ref - ref.mean()) * np.linalg.norm(seg - seg.mean()) + 1e-12))
        best = max(best, c)
    return best


def _assert_one_line_naming(err: AudioError, path) -> None:
    msg = str(err)
    assert "\n" not in msg
    assert path.name in msg
    assert err.reason and err.reason in msg


# ------------------------------------------------------------------ real GTZAN track


def test_real_gtzan_track(gtzan_root, gtzan_manifest):
    row = gtzan_manifest[0]
    y = load_audio(gtzan_root / row["path"])
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) / SR - row["duration_s"]) < 0.01
    assert 29.9 < len(y) / SR < 30.5
    assert np.max(np.abs(y)) == pytest.approx(1.0, abs=1e-6)
    assert abs(float(np.mean(y))) < 1e-3  # DC removed
    info = audio_info(gtzan_root / row["path"])
    assert info.samplerate == SR and info.channels == 1
    assert info.duration == pytest.approx(row["duration_s"], abs=0.01)


def test_offset_and_duration_read_a_part(gtzan_root):
    path = gtzan_root / "genres/jazz/jazz.00003.wav"
    full = load_audio(path, normalisation="none")
    part = load_audio(path, normalisation="none", offset=5.0, duration=2.0)
    assert len(part) == 2 * SR
    np.testing.assert_allclose(part, full[5 * SR : 7 * SR], atol=1e-7)


# ------------------------------------------------------------------ formats

FORMATS = [
    ("x.wav", "WAV", "PCM_16"),
    ("x_float.wav", "WAV", "FLOAT"),
    ("x_u8.wav", "WAV", "PCM_U8"),
    ("x.flac", "FLAC", "PCM_16"),
    ("x.ogg", "OGG", "VORBIS"),
    ("x.au", "AU", "PCM_16"),
]
if "MP3" in sf.available_formats():
    FORMATS.append(("x.mp3", "MP3", "MPEG_LAYER_III"))


@pytest.mark.parametrize("name,fmt,subtype", FORMATS, ids=[f[0] for f in FORMATS])
def test_formats_decode_to_the_same_signal(write_wav, name, fmt, subtype):
    native = 44100
    y = _music_like(native)
    path = write_wav(name, y, native, format=fmt, subtype=subtype)
    out = load_audio(path)
    ref = normalise(soxr.resample(y, native, SR).astype(np.float32))
    assert out.dtype == np.float32
    assert abs(len(out) - len(ref)) < 0.1 * SR  # lossy codecs may pad a little
    assert np.max(np.abs(out)) == pytest.approx(1.0, abs=1e-6)
    assert _best_corr(ref, out) > 0.95


def test_mp3_is_listed_when_libsndfile_has_it():
    # the module docstring promises MP3 through libsndfile >= 1.1
    if "MP3" in sf.available_formats():
        assert any(f[1] == "MP3" for f in FORMATS)
    else:
        assert not any(f[1] == "MP3" for f in FORMATS)


def test_stereo_48k_becomes_mono_22050(write_wav):
    sr = 48000
    t = np.arange(int(2.5 * sr)) / sr
    left = 0.5 * np.sin(2 * np.pi * 300 * t)
    right = 0.5 * np.sin(2 * np.pi * 300 * t + 0.2)
    path = write_wav("stereo.wav", np.stack([left, right], axis=1), sr, subtype="PCM_16")
    assert audio_info(path).channels == 2
    y = load_audio(path)
    assert y.ndim == 1 and y.dtype == np.float32
    assert abs(len(y) - int(2.5 * SR)) <= 2


def test_resampling_keeps_frequency(write_wav):
    sr = 44100
    t = np.arange(2 * sr) / sr
    path = write_wav("tone.wav", 0.5 * np.sin(2 * np.pi * 1000 * t), sr, subtype="PCM_16")
    y = load_audio(path)
    assert abs(len(y) - 2 * SR) <= 2
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    freqs = np.fft.rfftfreq(len(y), 1 / SR)
    assert abs(freqs[np.argmax(spec)] - 1000.0) < 2.0


def test_rms_and_none_normalisation(write_wav):
    y = _music_like(SR) * 0.3
    path = write_wav("level.wav", y, subtype="FLOAT")
    raw = load_audio(path, normalisation="none")
    np.testing.assert_allclose(raw, y, atol=1e-7)
    rms = load_audio(path, normalisation="rms")
    assert np.sqrt(np.mean(rms.astype(np.float64) ** 2)) == pytest.approx(0.1, rel=1e-3)
    with pytest.raises(ValueError):
        normalise(y, method="loud")


# ------------------------------------------------------------------ errors


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.wav"
    with pytest.raises(AudioError) as ei:
        load_audio(path)
    _assert_one_line_naming(ei.value, path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError) as ei:
        load_audio(path)
    _assert_one_line_naming(ei.value, path)
    assert "empty" in ei.value.reason


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\nsecond line\n" * 20)
    with pytest.raises(AudioError) as ei:
        load_audio(path)
    _assert_one_line_naming(ei.value, path)


def test_truncated_wav(write_wav, tmp_path):
    good = write_wav("good.wav", _music_like(SR), subtype="PCM_16")
    path = tmp_path / "truncated.wav"
    path.write_bytes(good.read_bytes()[:44 + 10])
    with pytest.raises(AudioError) as ei:
        load_audio(path)
    _assert_one_line_naming(ei.value, path)


def test_silence(write_wav):
    path = write_wav("silence.wav", np.zeros(2 * SR, np.float32), subtype="PCM_16")
    with pytest.raises(AudioError) as ei:
        load_audio(path)
    _assert_one_line_naming(ei.value, path)
    assert "silent" in ei.value.reason


def test_nan_samples(write_wav):
    y = _music_like(SR)
    y[1000:1010] = np.nan
    path = write_wav("nan.wav", y, subtype="FLOAT")
    with pytest.raises(AudioError) as ei:
        load_audio(path)
    _assert_one_line_naming(ei.value, path)
    assert "NaN" in ei.value.reason


def test_too_short_clip(write_wav):
    path = write_wav("short.wav", _music_like(SR, seconds=0.2), subtype="PCM_16")
    with pytest.raises(AudioError) as ei:
        load_audio(path)
    _assert_one_line_naming(ei.value, path)
    assert "too short" in ei.value.reason


def test_error_is_a_value_error(tmp_path):
    with pytest.raises(ValueError):
        load_audio(tmp_path / "missing.flac")


def test_bad_sample_rate_argument(write_wav):
    path = write_wav("ok.wav", _music_like(SR), subtype="PCM_16")
    with pytest.raises(ValueError):
        load_audio(path, sr=0)


# ------------------------------------------------------------------ other inputs


def test_bytes_input(write_wav):
    path = write_wav("bytes.flac", _music_like(SR), subtype="PCM_16")
    from_bytes = load_audio(path.read_bytes())
    from_path = load_audio(path)
    np.testing.assert_array_equal(from_bytes, from_path)
    with pytest.raises(AudioError) as ei:
        load_audio(b"")
    assert "<bytes>" in str(ei.value)
    with pytest.raises(AudioError):
        load_audio(b"garbage that is not audio at all" * 10)


@pytest.mark.parametrize("name", ["my track 01.wav", "Café déjà vu – Łódź 音楽.wav"])
def test_unusual_file_names(write_wav, name):
    path = write_wav(name, _music_like(SR), subtype="PCM_16")
    y = load_audio(path)
    assert len(y) == 2 * SR
    with pytest.raises(AudioError) as ei:
        load_audio(path.with_name("missing " + name))
    assert "missing " + name in str(ei.value)


def test_unknown_length_flac_is_one_line_not_a_huge_allocation(tmp_path, model_file):
    """A FLAC whose STREAMINFO gives 0 samples (legal: "unknown"): libsndfile says 2^63 frames;
    reading it tried to allocate 101 TiB. Now one line, in the API and in predict."""
    from testkit import run_cli

    path = tmp_path / "stream.flac"
    sf.write(path, (0.1 * np.sin(np.arange(3 * 22050) / 5)).astype(np.float32), 22050)
    data = bytearray(path.read_bytes())
    data[8 + 13] &= 0xF0  # STREAMINFO's 36-bit total sample count
    data[8 + 14:8 + 18] = b"\0\0\0\0"
    path.write_bytes(bytes(data))
    for fn in (audio_info, load_audio):
        with pytest.raises(AudioError, match=r"stream.flac: unknown length \(its header gives no sample count"):
            fn(path)
    proc = run_cli("predict", path, "--model", model_file, "--quiet")
    assert proc.returncode != 0 and "MemoryError" not in proc.stderr
    assert f"  {path}: unknown length (its header gives no sample count" in proc.stderr


def test_unreadable_mp3_says_so(tmp_path):
    fake = tmp_path / "song.mp3"
    fake.write_text("this is not an mp3 at all\n" * 40)
    with pytest.raises(AudioError) as info:
        load_audio(fake)
    msg = str(info.value)
    assert msg.startswith(f"{fake}: not a readable audio file (") and "\n" not in msg
    assert "does not exist" not in msg and "pipe" not in msg


_DRIVER = r"""
import json, sys, traceback
from genrevision.signal.audio import AudioError, audio_info, audio_profile, load_audio
from genrevision.evaluation.dataset import DatasetError, load_dataset

for line in sys.stdin:
    kind, path = json.loads(line)
    out = {"path": path, "messages": []}
    try:
        if kind == "audio":
            for call in (audio_info, load_audio, audio_profile):
                try:
                    call(path)
                except AudioError as err:
                    out["messages"].append(str(err))
        else:
            try:
                load_dataset(path)
            except DatasetError as err:
                out["messages"].append(str(err))
    except BaseException:
        out["unexpected"] = traceback.format_exc()
    print(json.dumps(out), flush=True)
"""


def test_fuzz_decoder_and_manifest_reader(tmp_path, excerpt):
    import select
    import time

    rng = np.random.default_rng(11)
    cases = fuzz_cases(tmp_path, excerpt, rng)
    assert len(cases) >= 150
    proc = subprocess.Popen([sys.executable, "-c", _DRIVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for kind, path in cases:
            proc.stdin.write(json.dumps([kind, path]) + "\n")
            proc.stdin.flush()
            deadline = time.monotonic() + 20  # per case: a hang fails here, naming the case
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"{kind} case {path} did not finish in 20 s"
            out = json.loads(proc.stdout.readline())
            assert out["path"] == path and "unexpected" not in out, out.get("unexpected")
            for msg in out["messages"]:
                assert "\n" not in msg and msg.startswith(f"{path}: ") and len(msg) > len(path) + 4, msg
                assert "possibly a pipe" not in msg and "does not exist" not in msg, msg
        proc.stdin.close()
        proc.wait(timeout=30)
    finally:
        proc.kill()
    err = proc.stderr.read()
    assert err == "", err  # nothing from the decoders' C libraries either
