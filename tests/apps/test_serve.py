"""The web API (`genrevision.apps.serve`) through FastAPI's TestClient and a real uvicorn, on real GTZAN tracks."""
from __future__ import annotations

import base64
import io
import json
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import soundfile as sf

# The serve extra is a test dependency: a missing one fails here, it is never skipped.
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from testkit import ctrl_c_reaches_it, run_cli  # noqa: E402
from serve_util import multipart, open_upload, read_response, uvicorn_thread  # noqa: E402
from testkit import GENRES, SR, genre_paths  # noqa: E402

from genrevision import load_model  # noqa: E402
from genrevision.apps.serve import IMAGE_MAX_SIZE, create_app, spectrogram_pngs  # noqa: E402

VIEWS = ["original", "harmonic", "percussive"]  # the spectrogram images
HEADS = VIEWS + ["mfcc"]  # what each view's classifier says: the default recipe also has the MFCC view
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def model(model_file):
    return load_model(model_file)


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def client(model, upload_dir):
    app = create_app(model, workers=2, max_queue=8, upload_dir=str(upload_dir))
    with TestClient(app) as c:
        yield c


def track(gtzan_root, genre, index):
    return genre_paths(gtzan_root, genre)[index]


def wav_bytes(y, sr=SR, subtype="PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.asarray(y), sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def post(client, name, data, **params):
    return client.post("/api/predict", files={"file": (name, data, "application/octet-stream")}, params=params)


def one_line_error(r, status):
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str)
    assert "\n" not in body["detail"] and "Traceback" not in body["detail"]
    return body["detail"]


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG_MAGIC)
    with Image.open(io.BytesIO(data)) as im:
        return im.size  # (width, height)


# ----------------------------------------------------------------------------- answers


def test_predict_shared_track(client, model, gtzan_root, upload_dir):
    path = track(gtzan_root, "classical", 6)  # held out of the fixture's training tracks
    with open(path, "rb") as f:
        r = post(client, "classical.00006.wav", f.read())
    assert r.status_code == 200, r.text
    doc = r.json()
    # The fields of `genrevision predict --format json --timeline`, plus images.
    assert set(doc) == {"model", "labels", "predictions", "failures"}
    assert doc["labels"] == model.labels == sorted(GENRES) and doc["failures"] == []
    assert doc["model"] == "genres.model"
    (p,) = doc["predictions"]
    assert set(p) == {"path", "genre", "probabilities", "views", "duration", "segments", "images"}
    assert p["path"] == "classical.00006.wav"  # the upload's name, never the server's temp path
    assert p["genre"] == "classical" and p["genre"] in doc["labels"]
    assert set(p["probabilities"]) == set(GENRES) and sum(p["probabilities"].values()) == pytest.approx(1.0)
    assert list(p["views"]) == HEADS and all(g in GENRES for g in p["views"].values())
    assert 29.9 < p["duration"] < 30.1
    # Same numbers as the library (and so as the CLI) on the same file.
    ref = model.predict(path, timeline=True).to_dict()
    assert p["genre"] == ref["genre"] and p["views"] == ref["views"]
    for g in GENRES:
        assert p["probabilities"][g] == pytest.approx(ref["probabilities"][g], abs=1e-6)
    (seg,) = p["segments"]
    assert seg["start"] == 0.0 and seg["genre"] == "classical" and seg["images"] == p["images"]
    # The three spectrograms, fetched by URL: PNGs as tall as the model's mel bands; the model reads
    # a file in segments (segment_seconds: 30 s), and the segment read is what is drawn.
    s = model.settings
    span = min(s.segment_seconds or p["duration"], p["duration"])
    width = min(IMAGE_MAX_SIZE[1], 1 + int(round(span * s.sr)) // s.hop_length)
    assert seg["images_span"] == [0.0, pytest.approx(min(span, p["duration"]), abs=1e-3)]
    assert list(p["images"]) == VIEWS
    pngs = {}
    for view, url in p["images"].items():
        assert re.fullmatch(r"/api/images/[A-Za-z0-9_-]+/0/%s\.png" % view, url), url
        img = client.get(url)
        assert img.status_code == 200 and img.headers["content-type"] == "image/png"
        pngs[view] = img.content
        assert png_size(img.content) == (width, s.spectrogram.n_mels)
    assert len(set(pngs.values())) == 3  # three different pictures
    assert list(upload_dir.iterdir()) == []  # the upload is gone once answered


def test_images_are_the_library_spectrograms(client, model, gtzan_root):
    """Inline images: data URLs with the same PNG bytes as the library draws for the signal."""
    from genrevision.signal.audio import load_audio

    path = track(gtzan_root, "hiphop", 6)
    with open(path, "rb") as f:
        r = post(client, "hiphop.wav", f.read(), inline_images="true")
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    s = model.settings
    # What the model reads of a short file: its first segment (the whole file when shorter).
    expected = spectrogram_pngs(load_audio(path, sr=s.sr, normalisation=s.normalisation,
                                           duration=s.segment_seconds), s)
    for view in VIEWS:
        prefix, _, b64 = p["images"][view].partition(",")
        assert prefix == "data:image/png;base64"
        assert base64.b64decode(b64) == expected[view]


def test_timeline_of_a_long_file(client, gtzan_root):
    parts = [sf.read(track(gtzan_root, g, i), frames=30 * SR, dtype="float32")[0]
             for g, i in (("classical", 6), ("metal", 4))]
    r = post(client, "classical then metal.wav", wav_bytes(np.concatenate(parts)))
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    assert [(s["start"], s["end"], s["genre"]) for s in p["segments"]] == [(0.0, 30.0, "classical"),
                                                                           (30.0, 60.0, "metal")]
    first = {v: client.get(u).content for v, u in p["segments"][0]["images"].items()}
    second = {v: client.get(u).content for v, u in p["segments"][1]["images"].items()}
    assert p["images"] == p["segments"][0]["images"]
    assert [s["images_span"][0] for s in p["segments"]] == [0.0, 30.0]
    for v in VIEWS:
        assert first[v].startswith(PNG_MAGIC) and second[v].startswith(PNG_MAGIC) and first[v] != second[v]
    assert client.get(p["images"]["original"].replace("/0/", "/7/")).status_code == 404


def test_model_info(client, model):
    r = client.get("/api/model")
    assert r.status_code == 200
    info = r.json()
    assert info["labels"] == sorted(GENRES) and info["n_train"] == 12
    assert info["recipe"]["name"] == "default" and info["recipe"]["description"]
    assert info["backbone"] == model.backbone_name == "efficientnet_lite2"
    assert info["views"] == HEADS and info["settings"] == model.settings.to_dict()
    assert info["limits"] == {"max_upload_mb": 100.0, "max_duration_s": 1200.0, "workers": 2, "max_queue": 8,
                              "audio_extensions": [".wav", ".au", ".flac", ".ogg", ".mp3", ".aiff", ".aif"]}


def test_eight_concurrent_uploads_answer_as_serial(client, gtzan_root, upload_dir):
    picks = [("classical", 6), ("hiphop", 6), ("metal", 4), ("classical", 7)]
    uploads = []
    for g, i in picks * 2:
        y = sf.read(track(gtzan_root, g, i), frames=8 * SR, dtype="float32")[0]
        uploads.append((f"{g}.{i}.wav", wav_bytes(y)))

    def answer(item):
        r = post(client, *item)
        assert r.status_code == 200, r.text
        (p,) = r.json()["predictions"]
        return p["path"], p["genre"], p["probabilities"], p["views"]

    serial = [answer(u) for u in uploads[:4]] * 2
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(answer, uploads))
    assert len(concurrent) == 8
    for (n1, g1, p1, v1), (n2, g2, p2, v2) in zip(serial, concurrent):
        assert (n1, g1, v1) == (n2, g2, v2)
        assert p1 == pytest.approx(p2, abs=1e-6)
    assert [a[1] for a in serial[:4]] == ["classical", "hiphop", "metal", "classical"]
    assert list(upload_dir.iterdir()) == []


# ----------------------------------------------------------------------------- bad input


@pytest.fixture(scope="module")
def bad_inputs(gtzan_root):
    t = np.arange(int(0.3 * SR)) / SR
    nan = np.sin(2 * np.pi * 440 * np.arange(3 * SR) / SR).astype(np.float32)
    nan[100] = np.nan
    return {
        "empty": ("empty.wav", b"", 422, "empty.wav: empty file (0 bytes)"),
        "text": ("notes.txt", b"these are not the sounds you are looking for\n" * 50, 415,
                 "notes.txt: not a readable audio file"),
        "renamed text": ("song.mp3", b"ID3 but not really an mp3" * 100, 415, "song.mp3: not a readable audio file"),
        "silent": ("silence.wav", wav_bytes(np.zeros(3 * SR, np.float32)), 422, "silence.wav: silent"),
        "too short": ("blip.wav", wav_bytes(0.5 * np.sin(2 * np.pi * 440 * t)), 422, "blip.wav: too short (0.30 s"),
        "nan": ("nan.wav", wav_bytes(nan, subtype="FLOAT"), 422, "nan.wav: contains NaN"),
    }


@pytest.mark.parametrize("case", ["empty", "text", "renamed text", "silent", "too short", "nan"])
def test_bad_audio_is_a_4xx_with_one_line(client, bad_inputs, upload_dir, case):
    name, data, status, message = bad_inputs[case]
    detail = one_line_error(post(client, name, data), status)
    assert detail.startswith(message), detail
    assert str(upload_dir) not in detail and "/tmp" not in detail  # no server path leaks
    assert list(upload_dir.iterdir()) == []


def test_bad_requests(client, upload_dir):
    detail = one_line_error(client.post("/api/predict", files={"other": ("a.wav", b"RIFF")}), 422)
    assert detail == "no file in the upload: send multipart/form-data with a field named 'file'"
    detail = one_line_error(client.post("/api/predict", json={"file": "song.mp3"}), 415)
    assert detail == "send the audio file as multipart/form-data in a field named 'file'"
    detail = one_line_error(client.post("/api/predict", content=b"--x\r\nnonsense",
                                        headers={"content-type": "multipart/form-data; boundary=x"}), 422)
    assert detail.startswith("no file in the upload")
    detail = one_line_error(client.post("/api/predict?inline_images=maybe", files={"file": ("a.wav", b"x")}), 422)
    assert detail.startswith("invalid request: inline_images")
    assert one_line_error(client.get("/api/images/nope/0/original.png"), 404).startswith("no such image")
    assert list(upload_dir.iterdir()) == []


def test_hostile_file_name_stays_in_the_private_folder(client, gtzan_root, upload_dir, tmp_path):
    y = sf.read(track(gtzan_root, "metal", 5), frames=8 * SR, dtype="float32")[0]
    r = post(client, "../../../../" + str(tmp_path / "evil.wav"), wav_bytes(y))
    assert r.status_code == 200, r.text
    assert r.json()["predictions"][0]["path"] == "evil.wav"
    assert not (tmp_path / "evil.wav").exists() and list(upload_dir.iterdir()) == []


def test_limits_too_large_and_too_long(model, gtzan_root, tmp_path):
    app = create_app(model, max_upload_mb=0.5, max_duration_s=10, upload_dir=str(tmp_path))
    with TestClient(app) as c:
        big = os.urandom(600 * 1024)
        detail = one_line_error(post(c, "big.wav", big), 413)
        assert detail == "upload too large: more than 0.5 MB (this server's limit)"
        y = sf.read(track(gtzan_root, "classical", 6), frames=11 * SR, dtype="float32")[0]
        detail = one_line_error(post(c, "eleven.wav", wav_bytes(y)), 413)  # under 0.5 MB but 11 s
        assert detail == "eleven.wav: too long (0:11; this server takes at most 0:10)"
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- a real server


def test_too_large_is_refused_while_streaming(model, tmp_path):
    """Chunked upload with no length: the server answers 413 once past the limit, without the rest."""
    app = create_app(model, max_upload_mb=1, upload_dir=str(tmp_path))
    with uvicorn_thread(app) as port:
        head, _, ctype = multipart("huge.wav", b"")
        sock = open_upload(port, content_type=ctype, length=None)
        sent = 0
        chunk = b"\0" * 65536
        with sock:
            sock.sendall(b"%x\r\n%s\r\n" % (len(head), head))
            # 1.5 MB of an "endless" body, then silence: a server that waited for all of it would hang.
            for _ in range(24):
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            status, headers, body = read_response(sock)
    assert status == 413, body
    assert json.loads(body) == {"detail": "upload too large: more than 1 MB (this server's limit)"}
    assert sent == 24 * 65536
    assert list(tmp_path.iterdir()) == []


def test_full_queue_answers_503(model, gtzan_root, tmp_path):
    """One place (1 worker, no queue): a second request while an upload is under way gets 503."""
    app = create_app(model, workers=1, max_queue=0, upload_dir=str(tmp_path))
    y = sf.read(track(gtzan_root, "classical", 7), frames=8 * SR, dtype="float32")[0]
    head, tail, ctype = multipart("slow.wav", wav_bytes(y))
    import httpx

    with uvicorn_thread(app) as port:
        sock = open_upload(port, content_type=ctype, length=len(head) + len(wav_bytes(y)) + len(tail))
        with sock:
            data = wav_bytes(y)
            sock.sendall(head + data[:1000])  # the first request holds the only place, mid-upload
            deadline = time.monotonic() + 20
            while not list(tmp_path.glob("*/*")):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert app.state.service.in_flight == 1
            # Mid-upload: a private folder (0700) holding the file under a generated name, not "slow.wav".
            (folder,) = tmp_path.iterdir()
            assert folder.name.startswith("genrevision-upload-") and folder.stat().st_mode & 0o777 == 0o700
            assert [f.name for f in folder.iterdir()] == ["upload.wav"]
            r = httpx.post(f"http://127.0.0.1:{port}/api/predict", files={"file": ("b.wav", data)}, timeout=30)
            assert r.status_code == 503 and r.headers["retry-after"] == "5"
            assert r.json() == {"detail": "busy: 1 prediction(s) running and 0 waiting (the server's limit); "
                                          "try again in a moment"}
            sock.sendall(data[1000:] + tail)
            status, _, body = read_response(sock)
        assert status == 200 and json.loads(body)["predictions"][0]["genre"] == "classical"
        # The place is free again.
        r = httpx.post(f"http://127.0.0.1:{port}/api/predict", files={"file": ("b.wav", data)}, timeout=60)
        assert r.status_code == 200
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- page and docs


def test_page_and_docs_are_local(client):
    r = client.get("/")
    assert r.status_code == 200 and "default-src 'self'" in r.headers["content-security-policy"]
    refs = re.findall(r'(?:src|href)="([^"]*)"', r.text)
    assert refs and all(u.startswith("/") and not u.startswith("//") for u in refs), refs
    for u in refs:
        if u.startswith("/static/"):
            asset = client.get(u)
            assert asset.status_code == 200, u
            assert not re.search(rb"https?://|//[a-z0-9.-]+\.[a-z]{2,}/", asset.content.replace(b"http://www.w3.org/2000/svg", b"")), u
    assert 'id="file-input"' in r.text
    docs = client.get("/docs")
    assert docs.status_code == 200
    refs = re.findall(r'(?:src|href)="([^"]*)"', docs.text) + re.findall(r"url: '([^']*)'", docs.text)
    assert refs and all(u.startswith("/") for u in refs), refs
    assert "cdn" not in docs.text and "validatorUrl\": null" in docs.text
    for u in refs:
        assert client.get(u).status_code == 200, u
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert body["properties"]["file"]["format"] == "binary"
    assert {"200", "413", "415", "422", "503"} <= set(spec["paths"]["/api/predict"]["post"]["responses"])
    assert "/api/model" in spec["paths"]


def test_create_app_checks_its_parameters(model, tmp_path):
    from genrevision import ModelError

    with pytest.raises(ValueError, match=r"workers must be an integer in \[1, 32\], got 0"):
        create_app(model, workers=0)
    with pytest.raises(ValueError, match="max_upload_mb must be > 0"):
        create_app(model, max_upload_mb=0)
    with pytest.raises(ValueError, match=r"max_queue must be an integer in \[0, 10000\]"):
        create_app(model, max_queue=-1)
    with pytest.raises(ModelError, match="missing.model: no such model file"):
        create_app(tmp_path / "missing.model")


def test_cli_serve(model_file, tmp_path):
    proc = run_cli("serve", "--model", tmp_path / "missing.model", "--port", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"genrevision: error: {tmp_path / 'missing.model'}: no such model file"
    proc = run_cli("serve", "--model", model_file, "--workers", "0")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "genrevision: error: workers must be an integer in [1, 32], got 0"
    proc = run_cli("serve", "--help")
    assert proc.returncode == 0
    for opt in ("--model", "--host", "--port", "--max-upload-mb", "--max-minutes", "--workers", "--max-queue"):
        assert opt in proc.stdout


def test_silent_segment_of_a_long_file_is_left_out(client, gtzan_root):
    """A long file with a silent 30 s stretch: the model skips that segment, the page shows the others."""
    music = sf.read(track(gtzan_root, "metal", 5), frames=30 * SR, dtype="float32")[0]
    y = np.concatenate([music, np.zeros(30 * SR, np.float32), music])
    r = post(client, "gap.wav", wav_bytes(y))
    assert r.status_code == 200, r.text
    (p,) = r.json()["predictions"]
    assert [s["start"] for s in p["segments"]] == [0.0, 60.0]
    assert all(list(s["images"]) == VIEWS for s in p["segments"])
    assert p["segments"][1]["images_span"] == [60.0, pytest.approx(90.0, abs=1e-3)]


# ----------------------------------------------------------------------------- issue #22: bounds and origins


def test_slow_uploads_lose_their_place(model, gtzan_root, tmp_path):
    """Slowloris: clients trickling a byte a second hold every place (1 worker, 1 waiting); after
    upload_timeout_s they get 408 and the places are free: a real upload is answered, not 503."""
    import threading

    import httpx

    app = create_app(model, workers=1, max_queue=1, upload_dir=str(tmp_path), upload_timeout_s=2)
    data = wav_bytes(sf.read(track(gtzan_root, "classical", 7), frames=5 * SR, dtype="float32")[0])
    head, tail, ctype = multipart("slow.wav", data)
    answers = []

    def trickle(port):
        with open_upload(port, content_type=ctype, length=len(head) + len(data) + len(tail)) as sock:
            sock.sendall(head)
            try:
                for i in range(12):  # a byte a second, for longer than the test waits
                    sock.sendall(data[i:i + 1])
                    time.sleep(1)
            except OSError:  # the server answered and closed
                pass
            answers.append(read_response(sock))

    with uvicorn_thread(app) as port:
        slow = [threading.Thread(target=trickle, args=(port,)) for _ in range(2)]
        for t in slow:
            t.start()
        deadline = time.monotonic() + 10
        while app.state.service.in_flight < 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        r = httpx.post(f"http://127.0.0.1:{port}/api/predict", files={"file": ("b.wav", data)}, timeout=30)
        assert r.status_code == 503  # both places held ...
        time.sleep(2.5)
        r = httpx.post(f"http://127.0.0.1:{port}/api/predict", files={"file": ("b.wav", data)}, timeout=60)
        assert r.status_code == 200, r.text  # ... until their time ran out, while they still trickle
        for t in slow:
            t.join(20)
    assert [a[0] for a in answers] == [408, 408]
    assert json.loads(answers[0][2])["detail"].startswith("upload too slow: ")


def test_foreign_host_and_cross_origin_posts_are_refused(model_file, gtzan_root):
    """`genrevision serve` on loopback answers only to loopback names (DNS rebinding) and refuses a
    POST from another origin's page; its own page's requests work."""
    import signal
    import subprocess
    import sys

    import httpx
    from serve_util import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "genrevision.cli", "serve", "--model", str(model_file), "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=ctrl_c_reaches_it)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/api/model", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode()[-2000:]
            time.sleep(0.2)
        r = httpx.get(f"{url}/api/model", headers={"Host": "evil.example"}, timeout=10)
        assert r.status_code == 400 and r.json() == {"detail": "this server does not answer for host 'evil.example'"}
        assert httpx.get(f"http://localhost:{port}/api/model", timeout=10).status_code == 200
        data = wav_bytes(np.zeros(SR, np.float32))
        r = httpx.post(f"{url}/api/predict", files={"file": ("a.wav", data)},
                       headers={"Origin": "http://evil.example"}, timeout=10)
        assert r.status_code == 403 and "cross-origin" in r.json()["detail"]
        r = httpx.post(f"{url}/api/predict", files={"file": ("a.wav", data)},
                       headers={"Origin": f"http://127.0.0.1:{port}"}, timeout=60)
        assert r.status_code == 422 and "silent" in r.json()["detail"]  # past the guard: the audio's own answer
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_unknown_length_flac_is_a_one_line_422(client, gtzan_root):
    y = sf.read(track(gtzan_root, "classical", 7), frames=3 * SR, dtype="float32")[0]
    buf = io.BytesIO()
    sf.write(buf, y, SR, format="FLAC")
    data = bytearray(buf.getvalue())
    data[8 + 13] &= 0xF0  # STREAMINFO's 36-bit sample count: 0 means "unknown" (legal)
    data[8 + 14:8 + 18] = b"\0\0\0\0"
    r = post(client, "stream.flac", bytes(data))
    assert one_line_error(r, 422).startswith("stream.flac: unknown length (its header gives no sample count")
