"""End to end in a real headless browser: `genrevision serve` on a free port, Debian's Chromium
driven by Playwright, real GTZAN tracks uploaded through the page's file input.

Needs /usr/bin/chromium (`make chromium` installs it; Playwright's own browser download is not used).
The screenshot goes to $GENREVISION_ARTIFACTS/serve.png (else the test's tmp folder); with
$GENREVISION_SERVE_MODEL set, the server uses that model file instead of the small test model.
"""
from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from playwright.sync_api import expect, sync_playwright

from serve_util import free_port
from testkit import SR, genre_paths

CHROMIUM = os.environ.get("GENREVISION_CHROMIUM", "/usr/bin/chromium")
# Quiet, offline, no first-run chores: nothing may leave the machine.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-default-apps",
                 "--disable-extensions", "--metrics-recording-only", "--no-default-browser-check"]


@pytest.fixture(scope="module")
def server(model_file, tmp_path_factory):
    """`genrevision serve` in its own process (real uvicorn), as a user starts it."""
    model = os.environ.get("GENREVISION_SERVE_MODEL") or str(model_file)
    port = free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "genrevision.cli", "serve", "--model", model,
                                 "--host", "127.0.0.1", "--port", str(port), "--max-upload-mb", "8"],
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, f"server exited: {log_path.read_text()}"
            try:
                with urllib.request.urlopen(url + "/api/model", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"server did not start: {log_path.read_text()}"
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log_text = log_path.read_text()
    assert "Traceback" not in log_text, log_text


@pytest.fixture
def artifacts(tmp_path) -> Path:
    d = Path(os.environ.get("GENREVISION_ARTIFACTS") or tmp_path)
    d.mkdir(parents=True, exist_ok=True)
    return d


def spectrograms_loaded(page) -> bool:
    return page.evaluate("() => [...document.querySelectorAll('#spectrograms img')]"
                         ".every(i => i.complete && i.naturalWidth > 0)")


def test_page_in_headless_chromium(server, gtzan_root, tmp_path, artifacts):
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} missing: run `make chromium` (apt-get install chromium)"
    song = genre_paths(gtzan_root, "classical")[6]  # a shared track, held out of the test model
    parts = [sf.read(genre_paths(gtzan_root, g)[i], frames=30 * SR, dtype="float32")[0]
             for g, i in (("classical", 7), ("metal", 4))]
    mix = tmp_path / "classical then metal.wav"
    sf.write(mix, np.concatenate(parts), SR)

    requests, problems = [], []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)

            page.goto(server + "/")
            expect(page.locator("#model-info")).to_contain_text("trained on")
            # Two files through the file input: they queue and are answered one after the other.
            page.set_input_files("#file-input", [str(song), str(mix)])
            expect(page.locator("#queue li")).to_have_count(2)
            expect(page.locator("#queue li.done")).to_have_count(2, timeout=180_000)
            expect(page.locator("#error")).to_be_hidden()

            # The shared track: genre text, three spectrograms, bars, each view's guess, no timeline.
            page.locator("#queue li").nth(0).click()
            expect(page.locator("#result-file")).to_contain_text("classical.00006.wav")
            expect(page.locator("#genre")).to_have_text("classical")
            imgs = page.locator("#spectrograms img")
            expect(imgs).to_have_count(3)
            assert [imgs.nth(i).get_attribute("data-view") for i in range(3)] == ["original", "harmonic", "percussive"]
            page.wait_for_function("() => [...document.querySelectorAll('#spectrograms img')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
            for i in range(3):
                expect(imgs.nth(i)).to_be_visible()
                assert imgs.nth(i).bounding_box()["width"] > 200
            srcs = [imgs.nth(i).get_attribute("src") for i in range(3)]
            assert len(set(srcs)) == 3 and all(re.fullmatch(r"/api/images/[\w-]+/0/\w+\.png", s) for s in srcs), srcs
            labels = page.evaluate("() => fetch('/api/model').then(r => r.json()).then(m => m.labels)")
            expect(page.locator("#bars .row")).to_have_count(len(labels))
            expect(page.locator("#bars .row.top .label")).to_have_text("classical")
            expect(page.locator("#views li")).to_have_count(4)  # O, H, P and the MFCC view
            expect(page.locator("#timeline-box")).to_be_hidden()

            # The long file: a timeline of two 30 s segments; clicking one shows its spectrograms.
            page.locator("#queue li").nth(1).click()
            expect(page.locator("#timeline-box")).to_be_visible()
            buttons = page.locator("#timeline button")
            expect(buttons).to_have_count(2)
            expect(buttons.nth(0)).to_have_text("classical")
            expect(buttons.nth(1)).to_have_text("metal")
            buttons.nth(1).click()
            expect(buttons.nth(1)).to_have_class(re.compile("selected"))
            expect(page.locator("#span")).to_contain_text("0:30–1:00: metal")
            expect(imgs.nth(0)).to_have_attribute("src", re.compile(r"/api/images/[\w-]+/1/original\.png$"))
            page.wait_for_function("() => [...document.querySelectorAll('#spectrograms img')]"
                                   ".every(i => i.complete && i.naturalWidth > 0)")
            assert spectrograms_loaded(page)
            shot = artifacts / "serve.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            print(f"screenshot: {shot}")

            assert problems == [], problems

            # Drag and drop: a file dropped on the box joins the queue like a picked one.
            y = sf.read(genre_paths(gtzan_root, "hiphop")[6], frames=8 * SR, dtype="float32")[0]
            sf.write(tmp_path / "dropped.wav", y, SR)
            data = base64.b64encode((tmp_path / "dropped.wav").read_bytes()).decode()
            page.evaluate("""(b64) => {
                const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
                const dt = new DataTransfer();
                dt.items.add(new File([bytes], "dropped hiphop.wav", {type: "audio/wav"}));
                document.querySelector("#drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
            }""", data)
            expect(page.locator("#queue li.done")).to_have_count(3, timeout=60_000)
            expect(page.locator("#result-file")).to_contain_text("dropped hiphop.wav")
            expect(page.locator("#genre")).to_have_text("hiphop")

            # A bad file: one line in the page, the queue goes on.
            page.set_input_files("#file-input", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                         "buffer": b"not music at all\n" * 100}])
            expect(page.locator("#error")).to_have_text(re.compile(r"^notes\.txt: not a readable audio file"),
                                                        timeout=60_000)
            expect(page.locator("#queue li.failed")).to_have_count(1)
            assert "\n" not in page.locator("#error").inner_text()
            # Too large for this server (--max-upload-mb 8): said before sending a byte.
            page.set_input_files("#file-input", files=[{"name": "huge.wav", "mimeType": "audio/wav",
                                                         "buffer": b"\0" * (9 * 2**20)}])
            expect(page.locator("#error")).to_have_text("huge.wav: too large (9.0 MB; this server takes at most 8 MB)")
            expect(page.locator("#queue li.failed")).to_have_count(2)
            # The browser logs the refused upload itself, nothing else.
            assert [p for p in problems if "status of 415" not in p] == [], problems

            # The API docs render offline too.
            page.goto(server + "/docs")
            expect(page.locator(".opblock").first).to_be_visible(timeout=60_000)
            expect(page.locator("body")).to_contain_text("/api/predict")
        finally:
            browser.close()

    outside = [u for u in requests if not (u.startswith(server + "/") or u.startswith(("data:", "blob:")))]
    assert outside == [], outside
    assert any(u.startswith(server + "/api/images/") for u in requests)
    # Four uploads went out (two picked, one dropped, the text file); the too large one did not.
    assert sum(u == server + "/api/predict" for u in requests) == 4
    assert any("/docs-static/swagger-ui-bundle.js" in u for u in requests)
