"""Helpers the tests call directly (fixtures live in conftest.py): the real-track subset a small
model trains on, its recipe, excerpts of real tracks and the CLI in a subprocess."""
from __future__ import annotations

import dataclasses
import io
import os
import threading
import zipfile
from pathlib import Path

import numpy as np
import soundfile as sf

from genrevision import train_model
from genrevision.evaluation.dataset import load_dataset
from genrevision.features.extraction import FeatureSettings
from genrevision.features.store import content_digest
from genrevision.features.ragged import Ragged
from genrevision.recipes import get_recipe
from genrevision.signal.spectrogram import SpectrogramConfig

GENRES = ("classical", "metal", "hiphop")
SR = 22050


def small_recipe(**spec):
    """The default recipe, classifiers included, training on 2 windows per track (test speed only)."""
    base = get_recipe("default")
    fs = base.features.with_(**{f"spec_{k}": v for k, v in dict(max_windows=2, **spec).items()})
    return dataclasses.replace(base, features=fs)


def genre_paths(gtzan_root, genre):
    ds = load_dataset(str(gtzan_root / "genres"))
    return [p for p, lab in zip(ds.paths, ds.labels) if lab == genre]


def train_subset(gtzan_root, recipe, cache):
    ds = load_dataset(str(gtzan_root / "genres"))
    pick = []
    for g in GENRES:
        pick += [i for i, lab in enumerate(ds.labels) if lab == g][:4]
    return train_model(ds.subset(pick), recipe=recipe, cache=str(cache), jobs=0, progress=False)


def real_excerpt(gtzan_root: Path, rel: str, seconds: float) -> np.ndarray:
    """The first ``seconds`` of a real GTZAN track as float32 (native 22050 Hz)."""
    y, sr = sf.read(gtzan_root / "genres" / rel, frames=int(seconds * SR), dtype="float32")
    assert sr == SR
    return y


def ctrl_c_reaches_it() -> None:
    """``preexec_fn`` for a child a test stops with SIGINT: Ctrl-C's default action, as for a command
    typed at a terminal. A suite started in the background without job control (``make test &`` in a
    script, ``nohup``) hands its children SIGINT *ignored*, and Python then never raises
    KeyboardInterrupt: the command would run to its end whatever the test sends."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args, timeout=300):
    """Run ``genrevision`` in a subprocess; a traceback on stderr is always a failure."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "genrevision.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


TINY = FeatureSettings(segment_seconds=3.0, spectrogram=SpectrogramConfig(max_windows=1))


def make_fifo(path) -> str:
    os.mkfifo(path)
    return str(path)


class Unblock:
    """Opens a FIFO for writing after a delay, so code that wrongly blocks on it
    fails its assertions instead of hanging the test run."""

    def __init__(self, fifo, after=15.0):
        self.fifo, self.stop = fifo, threading.Event()
        self.thread = threading.Thread(target=self._run, args=(after,), daemon=True)
        self.thread.start()

    def _run(self, after):
        if not self.stop.wait(after):
            try:  # O_RDWR never blocks on Linux; closing it gives a blocked reader EOF
                os.close(os.open(self.fifo, os.O_RDWR))
            except OSError:
                pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop.set()


def zeros_member(z: zipfile.ZipFile, name: str, size: int) -> None:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_DEFLATED
    with z.open(info, "w", force_zip64=True) as f:  # compressed as it is written: no 2 GB buffer
        chunk = bytes(1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)


def model_members(path) -> dict:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def write_model_zip(path, items: dict, *, bombs: dict | None = None) -> str:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for n, data in items.items():
            if bombs and n in bombs:
                zeros_member(z, n, bombs[n])
            else:
                z.writestr(n, data)
    return str(path)


def rewrite_cache_entry(store, path, change):
    entry = store._file(content_digest(path))
    with np.load(entry) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(entry, "wb") as f:
        np.savez(f, **arrays)
    return entry


def fuzz_cases(folder, excerpt, rng) -> list[tuple[str, str]]:
    """(kind, path) of random bytes, truncations and byte flips of real audio files and manifests."""
    cases = []
    originals = {}
    formats = [("wav", "WAV", "PCM_16"), ("flac", "FLAC", "PCM_16"), ("au", "AU", "PCM_16"), ("ogg", "OGG", "VORBIS")]
    if "MP3" in sf.available_formats():
        formats.append(("mp3", "MP3", "MPEG_LAYER_III"))
    for ext, fmt, subtype in formats:
        buf = io.BytesIO()
        sf.write(buf, excerpt[: 2 * SR], SR, format=fmt, subtype=subtype)
        originals[ext] = buf.getvalue()
    manifest = ("path,label,group,split\n" + "".join(f"song{i}.wav,{g},a{i % 3},{s}\n" for i, (g, s) in
                enumerate(zip(["rock", "jazz", "pop"] * 3, ["train", "test", "valid"] * 3)))).encode()
    n = 0

    def add(kind, ext, data):
        nonlocal n
        p = folder / f"case{n:03d}.{ext}"
        p.write_bytes(data)
        cases.append((kind, str(p)))
        n += 1

    for ext, data in originals.items():
        for _ in range(8):  # truncations, the header included
            add("audio", ext, data[: int(rng.integers(1, len(data)))])
        for _ in range(8):  # flipped bytes, often in the header
            bad = bytearray(data)
            for pos in rng.integers(0, min(len(bad), 4096 if rng.random() < 0.5 else len(bad)), size=int(rng.integers(1, 20))):
                bad[pos] = int(rng.integers(0, 256))
            add("audio", ext, bytes(bad))
        for _ in range(3):  # a valid start, then noise
            add("audio", ext, data[: int(rng.integers(4, 200))] + rng.bytes(int(rng.integers(0, 30000))))
        add("audio", ext, rng.bytes(int(rng.integers(1, 50000))))
    for _ in range(12):
        add("manifest", "csv", rng.bytes(int(rng.integers(0, 3000))))
    alphabet = list(b"path,label,group,split,\"\n\r\t ;./\\abc\x00\xef\xbb\xbf\xe9\xff") + list(range(32, 127))
    for _ in range(20):
        add("manifest", "csv", bytes(rng.choice(alphabet, size=int(rng.integers(0, 400))).astype(np.uint8)))
    for _ in range(12):
        add("manifest", "csv", manifest[: int(rng.integers(0, len(manifest)))])
    for _ in range(12):
        bad = bytearray(manifest)
        for pos in rng.integers(0, len(bad), size=int(rng.integers(1, 10))):
            bad[pos] = int(rng.choice(alphabet))
        add("manifest", "csv", bytes(bad))
    return cases


def bags(*, kind, n_tracks=90, n_classes=3, n_windows=6, n_features=12, seed=0):
    """Tracks of windows with a known structure.

    ``"one"``: a single window per track carries the class (marked by feature
    0 > 0); the others carry random classes as strongly, so averaging the
    windows cannot beat much better than a vote of noise. ``"iid"``: every
    window is an independent noisy view of the class, where averaging the
    log-likelihoods (a product of independent evidence) is the right pooling.
    """
    rng = np.random.default_rng(seed)
    y = np.arange(n_tracks) % n_classes
    tracks = []
    for c in y:
        X = rng.normal(size=(n_windows, n_features))
        if kind == "iid":
            X[:, 1 + c] += 0.8
        else:
            X[:, 0] -= 2.0
            X[np.arange(n_windows), 1 + rng.integers(0, n_classes, n_windows)] += 2.5
            k = rng.integers(n_windows)
            X[k, 0] += 4.0
            X[k, 1:1 + n_classes] = rng.normal(size=n_classes)
            X[k, 1 + c] += 2.5
        tracks.append(X)
    return Ragged.from_list(tracks), y
