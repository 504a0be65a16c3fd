"""genrevision._utils.workers: worker processes stop with SIGTERM and die with a killed parent."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import soundfile as sf

from testkit import SR, real_excerpt, run_cli


def _children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.add(int(entry))
    return out


def _alive(pids) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    alive.add(pid)
        except OSError:
            pass
    return alive


def _wait_for(cond, timeout, step=0.2):
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = cond()
        if got:
            return got
        time.sleep(step)
    return cond()


@pytest.fixture
def twelve_songs(tmp_path, gtzan_root):
    root = tmp_path / "songs"
    for i in range(6):
        for g in ("classical", "metal"):
            (root / g).mkdir(parents=True, exist_ok=True)
            sf.write(root / g / f"{g}{i}.wav", real_excerpt(gtzan_root, f"{g}/{g}.0000{i}.wav", 3.0), SR)
    return root


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_stops_workers_and_keeps_finished_tracks(tmp_path, twelve_songs):
    import signal
    import time

    cache, pngs = tmp_path / "cache", tmp_path / "png"
    cmd = [sys.executable, "-m", "genrevision.cli", "extract", str(twelve_songs), "--cache", str(cache),
           "--recipe", "paper", "--jobs", "2", "--quiet"]
    proc = subprocess.Popen(cmd + ["--save-images", str(pngs)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Workers write each finished track's PNGs (3 per track): stop once three tracks are done.
        assert _wait_for(lambda: len(list(pngs.glob("*.png"))) >= 9 if pngs.exists() else False, 240), "no progress"
        workers = _children(proc.pid)
        assert len(workers) >= 2, workers  # two workers (and multiprocessing's resource tracker)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    assert "Traceback" not in err, err
    assert proc.returncode == 143, (proc.returncode, err)
    assert err.strip().splitlines()[-1] == "genrevision: error: terminated; finished tracks are cached, rerun to resume"
    assert took < 30, f"took {took:.1f} s to stop"
    # The workers are gone with it (multiprocessing's resource tracker follows once its pipe closes).
    assert _wait_for(lambda: not _alive(workers), 10), f"{_alive(workers)} outlived the stopped parent by 10 s"
    # Tracks whose images had reached the parent went through the CNN and into the cache before it exited.
    stored = len([f for _, _, fs in os.walk(cache) for f in fs if f.endswith(".npz")])
    assert 1 <= stored < 12
    again = run_cli(*cmd[3:], timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"({12 - stored} computed, {stored} from cache)" in again.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc, PR_SET_PDEATHSIG")
def test_workers_die_with_a_killed_parent(tmp_path, twelve_songs):
    import signal

    cmd = [sys.executable, "-m", "genrevision.cli", "extract", str(twelve_songs), "--cache", str(tmp_path / "cache"),
           "--recipe", "paper", "--jobs", "2", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # The pool's workers: children that load genrevision.features.extraction (spawned python processes).
        workers = _wait_for(lambda: {c for c in _children(proc.pid)
                                     if b"multiprocessing" in open(f"/proc/{c}/cmdline", "rb").read()}
                            if len(_children(proc.pid)) >= 3 else set(), 240)
        assert len(workers) >= 2, workers
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        left = _wait_for(lambda: not _alive(workers), 10)
    finally:
        proc.kill()
    assert left and _alive(workers) == set(), f"workers {_alive(workers)} still running 10 s after kill -9 of their parent"


def test_a_pool_stopped_while_a_worker_sends_a_large_result_lets_python_exit():
    # Found by CI: `extract --recipe paper` (results carry a track's images) stopped by SIGTERM
    # sometimes never exited. A worker killed mid-send left the executor's manager thread waiting
    # for the rest of the message, and interpreter exit joins that thread. Here both workers are
    # sending 100 MB results back to back when the pool is stopped (without the fix: 6 hangs in 6).
    script = (
        "from concurrent.futures import wait, FIRST_COMPLETED\n"
        "from genrevision._utils.workers import start_pool, stop_pool\n"
        "pool = start_pool(2)\n"
        "futures = [pool.submit(bytes, 100_000_000) for _ in range(8)]\n"
        "wait(futures, return_when=FIRST_COMPLETED)\n"
        "stop_pool(pool)\n"
        "print('stopped', flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "stopped", (proc.returncode, proc.stdout, proc.stderr)
    assert "leaked" not in proc.stderr, proc.stderr
