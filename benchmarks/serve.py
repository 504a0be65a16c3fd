"""Time and memory of one `POST /api/predict` of the web API, short and long files.

Plain script (not a test)::

    genrevision train ../shared/data/gtzan-mini/genres --model genres.model
    python benchmarks/serve.py --model genres.model                # 30 s track, 10 min and 20 min files
    python benchmarks/serve.py --model genres.model --minutes 5 20 --runs 3

Builds long files by concatenating shared GTZAN tracks (in a temporary folder),
uploads each (streamed) to a real ``genrevision serve`` process on a free
port, and prints per file: the answer's time (median of ``--runs`` after one
warm-up call), the same file through ``model.predict(path, timeline=True)``
alone in this process (what the upload and the images add), the JSON size, and
the server's peak memory (VmHWM) after each file. Twenty minutes is the
server's default longest file (``DEFAULT_MAX_DURATION_S``): its time is the
bound on one call.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import soundfile as sf

GTZAN = os.path.join("..", "shared", "data", "gtzan-mini", "genres")


def _peak_mb(pid: int) -> float:
    """Peak resident memory of a process (VmHWM), MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _long_file(folder: str, minutes: float, tracks: list[str]) -> str:
    path = os.path.join(folder, f"{minutes:g}min.wav")
    need = int(minutes * 60 * 22050)
    with sf.SoundFile(path, "w", samplerate=22050, channels=1, subtype="PCM_16") as out:
        i = 0
        while need > 0:
            y, _ = sf.read(tracks[i % len(tracks)], dtype="float32")
            out.write(y[:need])
            need -= min(need, y.size)
            i += 1
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model file from `genrevision train`")
    ap.add_argument("--data", default=GTZAN, help="GTZAN genres folder (default: %(default)s)")
    ap.add_argument("--minutes", type=float, nargs="*", default=[10.0, 20.0], help="long files to build")
    ap.add_argument("--runs", type=int, default=3, help="timed calls per file (default: %(default)s)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = ap.parse_args(argv)

    import httpx

    from genrevision import load_model

    tracks = sorted(glob.glob(os.path.join(args.data, "*", "*.wav")))
    if not tracks:
        raise SystemExit(f"{args.data}: no GTZAN tracks (*/*.wav) found; give --data")
    model = load_model(args.model)  # here too: predict alone, for comparison
    model.predict(tracks[0])  # warm (CNN, ONNX session), as the server's first call is
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "genrevision.cli", "serve", "--model", args.model,
                               "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = []
    try:
        t = time.perf_counter()
        while True:
            try:
                if httpx.get(url + "/api/model", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
            assert server.poll() is None and time.perf_counter() - t < 300, "the server did not start"
        start_s = time.perf_counter() - t
        print(f"server up in {start_s:.1f} s (model loaded once); peak RSS {_peak_mb(server.pid):.0f} MB")
        with tempfile.TemporaryDirectory() as tmp:
            files = [tracks[len(tracks) // 2]] + [_long_file(tmp, m, tracks) for m in args.minutes]
            for path in files:
                name = os.path.basename(path)
                times, size = [], 0
                for i in range(args.runs + 1):
                    t = time.perf_counter()
                    with open(path, "rb") as f:  # streamed: the client holds no copy either
                        r = httpx.post(url + "/api/predict", files={"file": (name, f)}, timeout=600)
                    dt = time.perf_counter() - t
                    assert r.status_code == 200, r.text
                    size = len(r.content)
                    if i:  # the first call warms the CNN up
                        times.append(dt)
                t = time.perf_counter()
                model.predict(path, timeline=True)
                predict_s = time.perf_counter() - t
                p = r.json()["predictions"][0]
                mb = os.path.getsize(path) / 2**20
                rows.append({"file": name, "duration_s": p["duration"], "segments": len(p["segments"]),
                             "upload_mb": mb, "api_median_s": float(np.median(times)),
                             "api_best_s": float(np.min(times)), "predict_only_s": predict_s,
                             "json_kb": size / 1024, "server_peak_rss_mb": _peak_mb(server.pid)})
                print(f"{name:>18}  {p['duration']:7.1f} s audio  {len(p['segments']):3d} segments  "
                      f"{mb:6.1f} MB upload  API {np.median(times):6.2f} s (best {np.min(times):.2f})  "
                      f"predict alone {predict_s:6.2f} s  JSON {size / 1024:6.1f} kB  "
                      f"server peak RSS {_peak_mb(server.pid):6.0f} MB", flush=True)
    finally:
        server.terminate()
        server.wait(30)
    out = {"model": args.model, "recipe": model.recipe.name, "backbone": model.backbone_name,
           "server_start_s": start_s, "rows": rows, "runs": args.runs, "load_average": os.getloadavg()[0],
           "cpus": os.cpu_count()}
    print(f"load average {out['load_average']:.2f} on {out['cpus']} cores")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
