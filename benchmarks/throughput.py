"""Where extraction time goes, and how fast it is end to end.

Plain script (not a test)::

    python benchmarks/throughput.py                 # 20 GTZAN tracks
    python benchmarks/throughput.py --tracks 50 --json out.json
    python benchmarks/throughput.py --engine ray    # Ray engine vs the local process pool, all 109 tracks

``--engine ray`` prints tracks/s of :func:`genrevision.apps.ray_engine.extract_dataset_ray`
on a local Ray runtime against :func:`extract_dataset` (the process pool) on the
same tracks with the default recipe's settings, in one run, their ratio (Ray's
overhead here), the largest difference of their features, and the per-track
costs of the two stages (one thread each) that the README's throughput model
for a catalogue uses. Without ``--engine ray``:

Prints, for the default :class:`genrevision.features.extraction.FeatureSettings`:

* tracks/s of :func:`extract_dataset` end to end (no cache, default jobs);
* seconds per track of each stage (decode, STFT, HPSS masks, mel images,
  MFCC baseline, CNN), measured one after the other in this process;
* peak resident memory (``ru_maxrss`` of this process and of its children);
* the CNN's achieved GFLOP/s (FLOPs of the backbone at the real image size,
  counted with ``torch.utils.flop_counter``) against this machine's own
  float32 matrix-multiply GFLOP/s at the same thread count;
* backbone images/s at 224×224, batch 32;
* warm latency of one 30 s track through :func:`extract_track`;
* each optimisation against the straightforward version, interleaved in the
  same run and reported as a ratio (the machine is shared, so absolute numbers
  drift; ratios measured side by side do not), with the largest difference
  of the numbers it produces.

Runs on older checkouts too (options missing there are skipped), which is how
the "before" table is made.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import sys
import time

import numpy as np


def _tracks(root: str, n: int) -> list[str]:
    by_genre: dict[str, list[str]] = {}
    for p in sorted(glob.glob(os.path.join(root, "**", "*.wav"), recursive=True)
                    + glob.glob(os.path.join(root, "**", "*.au"), recursive=True)):
        by_genre.setdefault(os.path.basename(os.path.dirname(p)), []).append(p)
    out, i = [], 0
    while len(out) < n and any(i < len(v) for v in by_genre.values()):
        out += [v[i] for v in by_genre.values() if i < len(v)]
        i += 1
    return sorted(out[:n])


def _best(fn, repeat: int = 3):
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _interleaved(variants: dict, repeat: int = 3, outputs: dict | None = None) -> dict[str, float]:
    """Best time of each variant, the variants taking turns (same load for all)."""
    best = {k: float("inf") for k in variants}
    for _ in range(repeat):
        for k, fn in variants.items():
            t = time.perf_counter()
            out = fn()
            best[k] = min(best[k], time.perf_counter() - t)
            if outputs is not None:
                outputs[k] = out
    return best


def _peak_rss_mb() -> dict[str, float]:
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 2**20  # Linux: KiB
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale
    return {"self_mb": own, "children_mb": kids}


def _backbone(**kw):
    """A Backbone with the given options, or None when this checkout lacks them."""
    from genrevision.features.backbone import Backbone

    try:
        return Backbone(**kw)
    except TypeError:
        return None


def _matmul_gflops(threads: int) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    t, _ = _best(lambda: torch.mm(a, b), repeat=7)
    return 2 * 2048**3 / t / 1e9


def _cnn_flops(bb, images: np.ndarray, layers: str) -> float:
    """FLOPs of one forward pass over ``images`` (convolutions and matmuls), by PyTorch's counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = bb.spec.preprocess(images)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        bb._stages(bb.module, x)
    return float(counter.get_total_flops())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/work/shared/data/gtzan-mini", help="GTZAN folder (genre sub-folders)")
    ap.add_argument("--tracks", type=int, default=None,
                    help="tracks for the end-to-end run (default: 20; with --engine ray: all)")
    ap.add_argument("--stage-tracks", type=int, default=4, help="tracks for the per-stage profile and comparisons")
    ap.add_argument("--threads", type=int, default=2, help="torch threads for the CNN figures")
    ap.add_argument("--jobs", type=int, default=None, help="extract_dataset jobs (default: its own default)")
    ap.add_argument("--skip-end-to-end", action="store_true")
    ap.add_argument("--compare-jobs", type=int, default=6, metavar="N",
                    help="also time N tracks with jobs=0 against the default jobs (0 = skip)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    ap.add_argument("--engine", choices=["local", "ray"], default="local",
                    help="ray: compare the Ray engine with the local process pool (default --tracks: all)")
    args = ap.parse_args(argv)
    if args.engine == "ray":
        return ray_vs_local(args)
    args.tracks = args.tracks or 20

    import torch

    import genrevision.features.extraction as F
    from genrevision.signal.audio import load_audio
    from genrevision.features.backbone import get_backbone
    from genrevision.signal.baseline import mfcc_features
    from genrevision.signal.separation import VIEWS, hpss_masks, stft_magnitude
    from genrevision.signal.spectrogram import frequency_scale, log_image, window_images

    paths = _tracks(args.data, args.tracks)
    if not paths:
        sys.exit(f"no audio under {args.data}")
    s = F.FeatureSettings()
    res: dict = {"tracks": len(paths), "threads": args.threads, "cpus": os.cpu_count(),
                 "torch": torch.__version__, "settings": "FeatureSettings() defaults",
                 "loadavg_start": os.getloadavg()[0]}
    rows: list[tuple[str, str]] = []

    # ------------------------------------------------------------------ end to end (first: fresh memory figures)
    if not args.skip_end_to_end:
        t = time.perf_counter()
        out = F.extract_dataset(paths, s, store=None, progress=False, **({"jobs": args.jobs} if args.jobs is not None else {}))
        wall = time.perf_counter() - t
        res["end_to_end"] = {"seconds": wall, "tracks_per_s": len(out.features) / wall,
                             "failures": len(out.failures), **_peak_rss_mb()}
        rows.append(("end to end: extract_dataset (no cache)", f"{len(out.features) / wall:.2f} tracks/s "
                     f"({wall:.1f} s for {len(out.features)}; 1000 tracks ≈ {1000 * wall / max(1, len(out.features)) / 60:.1f} min)"))
        rows.append(("  peak RSS after it: main / largest child*", f"{res['end_to_end']['self_mb']:.0f} MB / "
                     f"{res['end_to_end']['children_mb']:.0f} MB"))
        if args.compare_jobs:
            few = paths[: args.compare_jobs]
            F.extract_dataset(few[:1], s, store=None, progress=False, jobs=0)  # warm this process
            jt = _interleaved({"serial (jobs=0)": lambda: F.extract_dataset(few, s, store=None, progress=False, jobs=0),
                               "default jobs": lambda: F.extract_dataset(few, s, store=None, progress=False)}, repeat=1)
            res["jobs_ratio"] = {k: len(few) / v for k, v in jt.items()}
            rows.append((f"  pool vs serial, {len(few)} tracks", f"{len(few) / jt['default jobs']:.2f} vs "
                         f"{len(few) / jt['serial (jobs=0)']:.2f} tracks/s ×{jt['serial (jobs=0)'] / jt['default jobs']:.2f}"))
    torch.set_num_threads(args.threads)

    # ------------------------------------------------------------------ stages, one after the other
    sp = paths[: args.stage_tracks]
    bb = get_backbone(s.backbone)
    stage = {k: 0.0 for k in ("decode", "stft", "hpss_masks", "mel_images", "mfcc_baseline", "cnn")}
    # warm-up: JIT of the running median, ONNX export/session, mel basis
    y0 = load_audio(sp[0], sr=s.sr, normalisation=s.normalisation, duration=s.segment_seconds)
    warm_imgs, _ = F.track_images(y0, s)
    F.images_to_features(warm_imgs, s, backbone=bb)
    frames = int(round(s.spectrogram.window_seconds * s.sr / s.hop_length))
    hop = int(round(s.spectrogram.window_hop_seconds * s.sr / s.hop_length))
    cnn_images = None
    for p in sp:
        t0 = time.perf_counter()
        y = load_audio(p, sr=s.sr, normalisation=s.normalisation, duration=s.segment_seconds)
        t1 = time.perf_counter()
        S = stft_magnitude(y, n_fft=s.n_fft, hop_length=s.hop_length)
        t2 = time.perf_counter()
        mh, mp = hpss_masks(S, kernel_size=s.hpss_kernel, margin=s.hpss_margin)
        t3 = time.perf_counter()
        imgs = {}
        for v, M in zip(VIEWS, (S, S * mh, S * mp)):
            img = log_image(frequency_scale(M, sr=s.sr, n_fft=s.n_fft, config=s.spectrogram), top_db=s.spectrogram.top_db)
            imgs[v] = window_images(img, frames_per_window=frames, hop_frames=hop)
        t4 = time.perf_counter()
        mfcc_features(y, sr=s.sr)
        t5 = time.perf_counter()
        F.images_to_features(imgs, s, backbone=bb)
        t6 = time.perf_counter()
        for k, a, b in zip(stage, (t0, t1, t2, t3, t4, t5), (t1, t2, t3, t4, t5, t6)):
            stage[k] += (b - a) / len(sp)
        cnn_images = np.concatenate([imgs[v] for v in VIEWS])
    res["stage_seconds_per_track"] = stage
    total = sum(stage.values())
    for k, v in stage.items():
        rows.append((f"stage {k}", f"{v:.3f} s/track ({100 * v / total:.0f} %)"))
    rows.append(("stages summed (one process)", f"{total:.3f} s/track"))

    # ------------------------------------------------------------------ HPSS: librosa defaults vs ours
    import librosa
    import scipy.ndimage

    y = load_audio(sp[0], sr=s.sr, duration=s.segment_seconds)
    D = librosa.stft(y, n_fft=s.n_fft, hop_length=s.hop_length)
    S = np.abs(D).astype(np.float32)
    tt = _interleaved({
        "librosa": lambda: librosa.decompose.hpss(D),
        "scipy_median": lambda: (scipy.ndimage.median_filter(S, size=(1, 31), mode="reflect"),
                                 scipy.ndimage.median_filter(S, size=(31, 1), mode="reflect")),
        "ours": lambda: hpss_masks(S, kernel_size=s.hpss_kernel, margin=s.hpss_margin),
    }, repeat=2)
    lh, lp = librosa.decompose.hpss(S, mask=True)
    oh, op = hpss_masks(S, kernel_size=s.hpss_kernel, margin=s.hpss_margin)
    res["hpss"] = {**{f"{k}_s": v for k, v in tt.items()}, "speedup_vs_librosa": tt["librosa"] / tt["ours"],
                   "speedup_vs_scipy_median": tt["scipy_median"] / tt["ours"],
                   "max_abs_mask_diff_vs_librosa": float(max(np.abs(lh - oh).max(), np.abs(lp - op).max()))}
    rows.append(("HPSS librosa.decompose.hpss(D) defaults", f"{tt['librosa']:.3f} s"))
    rows.append(("HPSS scipy median_filter pair (old path)", f"{tt['scipy_median']:.3f} s"))
    rows.append(("HPSS hpss_masks (ours)", f"{tt['ours']:.3f} s → ×{res['hpss']['speedup_vs_librosa']:.1f} vs librosa, "
                 f"×{res['hpss']['speedup_vs_scipy_median']:.1f} vs scipy; mask diff {res['hpss']['max_abs_mask_diff_vs_librosa']:.1e}"))

    # ------------------------------------------------------------------ CNN variants on one track's 30 images
    ref = _backbone(fuse=False, engine="torch") or _backbone()
    fused = _backbone(fuse=True, engine="torch")
    variants = {"plain fp32, batch 32": lambda: ref.features(cnn_images, layers=s.layers),
                "plain fp32, 1 image per pass": lambda: np.concatenate(
                    [ref.features(im[None], layers=s.layers) for im in cnn_images])}
    if fused is not None:
        variants["BN folded (torch)"] = lambda: fused.features(cnn_images, layers=s.layers)
    if getattr(bb, "engine", "torch") != "torch":
        variants[f"default ({bb.engine})"] = lambda: bb.features(cnn_images, layers=s.layers)
    outs: dict = {}
    tt = _interleaved(variants, repeat=3, outputs=outs)
    want = outs["plain fp32, batch 32"]
    base = tt["plain fp32, batch 32"]
    res["cnn_track"] = {}
    for k, v in tt.items():
        diff = float(np.abs(outs[k] - want).max())
        assert diff < 1e-3 * max(1.0, float(np.abs(want).max())), (k, diff)
        res["cnn_track"][k] = {"seconds": v, "images_per_s": len(cnn_images) / v, "speedup": base / v, "max_abs_diff": diff}
        rows.append((f"CNN 30 imgs {cnn_images.shape[1]}×{cnn_images.shape[2]}: {k}",
                     f"{len(cnn_images) / v:.1f} img/s ×{base / v:.2f}  (max diff {diff:.1e})"))

    # ------------------------------------------------------------------ FLOPs and the machine's matmul peak
    flops_img = _cnn_flops(ref, cnn_images[:2], s.layers) / 2
    peak = _matmul_gflops(args.threads)
    achieved = flops_img * res["cnn_track"][min(res["cnn_track"], key=lambda k: res["cnn_track"][k]["seconds"])]["images_per_s"] / 1e9
    res["flops"] = {"gflop_per_image": flops_img / 1e9, "achieved_gflops_best": achieved, "matmul_gflops": peak,
                    "fraction_of_matmul": achieved / peak}
    rows.append(("CNN FLOPs per window image", f"{flops_img / 1e9:.3f} GFLOP"))
    rows.append(("CNN achieved (fastest variant) vs torch.mm 2048²",
                 f"{achieved:.1f} vs {peak:.1f} GFLOP/s ({100 * achieved / peak:.0f} %)"))

    # ------------------------------------------------------------------ 224×224 batch 32
    x224 = np.random.default_rng(0).random((32, 224, 224), dtype=np.float32)
    v224 = {"plain fp32": lambda: ref.features(x224, layers=s.layers)}
    if fused is not None:
        v224["BN folded (torch)"] = lambda: fused.features(x224, layers=s.layers)
    if getattr(bb, "engine", "torch") != "torch":
        bb.features(x224[:1], layers=s.layers)  # export/session for this size, outside the timing
        v224[f"default ({bb.engine})"] = lambda: bb.features(x224, layers=s.layers)
    outs = {}
    tt = _interleaved(v224, repeat=3, outputs=outs)
    res["backbone_224"] = {k: {"images_per_s": 32 / v, "speedup": tt["plain fp32"] / v,
                               "max_abs_diff": float(np.abs(outs[k] - outs["plain fp32"]).max())} for k, v in tt.items()}
    flops224 = _cnn_flops(ref, x224[:1], s.layers)
    for k, v in tt.items():
        rows.append((f"backbone 224×224 batch 32, {args.threads} threads: {k}",
                     f"{32 / v:.1f} img/s ×{tt['plain fp32'] / v:.2f} ({flops224 * 32 / v / 1e9:.1f} GFLOP/s; "
                     f"max diff {res['backbone_224'][k]['max_abs_diff']:.1e})"))

    # ------------------------------------------------------------------ warm single-track latency
    F.extract_track(sp[0], s, backbone=bb)
    lat, _ = _best(lambda: F.extract_track(sp[-1], s, backbone=bb), repeat=3)
    res["warm_extract_track_s"] = lat
    rows.append(("warm extract_track, one 30 s track", f"{lat:.3f} s"))
    res["peak_rss"] = _peak_rss_mb()
    rows.append(("peak RSS of the whole benchmark: main / largest child*", f"{res['peak_rss']['self_mb']:.0f} MB / {res['peak_rss']['children_mb']:.0f} MB"))

    res["loadavg_end"] = os.getloadavg()[0]
    width = max(len(a) for a, _ in rows)
    print(f"genrevision throughput: {len(paths)} tracks, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{args.threads} threads, CNN engine {getattr(bb, 'engine', 'torch')}; load average "
          f"{res['loadavg_start']:.1f} → {res['loadavg_end']:.1f} (other jobs share the cores)")
    for a, b in rows:
        print(f"  {a:<{width}}  {b}")
    print("  * a child's ru_maxrss starts from the parent's size at fork, before exec; spawned workers are ~300 MB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


def _process_tree() -> dict | None:
    """{(pid, start tick): CPU ticks of that process itself} for this process and its descendants (Linux /proc)."""
    if not os.path.isdir("/proc/self"):
        return None
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # fields 3.. of proc(5)
        procs[int(d)] = (int(fields[1]), int(fields[19]), int(fields[11]) + int(fields[12]))  # ppid, start, utime+stime
    tree, grew = {os.getpid()}, True
    while grew:
        new = {pid for pid, (ppid, _, _) in procs.items() if ppid in tree and pid not in tree}
        tree |= new
        grew = bool(new)
    return {(pid, procs[pid][1]): procs[pid][2] for pid in tree if pid in procs}


class _CpuMeter:
    """CPU seconds used by this process and every descendant between enter and exit.

    Under a shared machine's load, wall time measures the neighbours too; CPU
    time measures the work. Polled: Ray's raylet does not collect the CPU
    time of the workers and actors it ends, so each process is followed while
    it lives (at most one poll interval of a process that exits is missed).
    """

    def __init__(self, interval: float = 0.2):
        self.interval, self.seconds = interval, None

    def _poll(self):
        for k, v in (_process_tree() or {}).items():
            self.last[k] = max(v, self.last.get(k, 0))

    def _run(self):
        while not self.stop.wait(self.interval):
            self._poll()

    def __enter__(self):
        import threading

        self.base = _process_tree()
        if self.base is not None:
            self.last, self.stop = dict(self.base), threading.Event()
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.base is not None:
            self.stop.set()
            self.thread.join()
            self._poll()
            ticks = sum(v - self.base.get(k, 0) for k, v in self.last.items())
            self.seconds = ticks / os.sysconf("SC_CLK_TCK")


def ray_vs_local(args) -> dict:
    """tracks/s of the Ray engine and of the local process pool on the same tracks, in one run."""
    import genrevision.features.extraction as F
    from genrevision.features.backbone import get_backbone
    from genrevision.apps.ray_engine import connect, extract_dataset_ray
    from genrevision.recipes import get_recipe

    paths = _tracks(args.data, args.tracks or 10**9)
    s = get_recipe("default").features
    cpus = os.cpu_count()
    res: dict = {"tracks": len(paths), "cpus": cpus, "backbone": s.backbone, "settings": "default recipe"}
    load = [os.getloadavg()[0]]

    t = time.perf_counter()
    with _CpuMeter() as cpu:
        local = F.extract_dataset(paths, s, store=None, progress=False,
                                  **({"jobs": args.jobs} if args.jobs is not None else {}))
    res["local_s"], res["local_cpu_s"] = time.perf_counter() - t, cpu.seconds
    load.append(os.getloadavg()[0])
    t = time.perf_counter()
    connect(num_cpus=cpus)
    res["ray_start_s"] = time.perf_counter() - t
    time.sleep(5)  # let the fresh runtime settle: its start-up is not the engine's work
    t = time.perf_counter()
    with _CpuMeter() as cpu:
        remote = extract_dataset_ray(paths, s, progress=False)
    res["ray_s"], res["ray_cpu_s"] = time.perf_counter() - t, cpu.seconds
    load.append(os.getloadavg()[0])
    diff = max(float(np.abs(remote.features[p][v] - a).max() / max(1e-12, float(np.abs(a).max())))
               for p, f in local.features.items() for v, a in f.items())
    res["max_relative_feature_diff"] = diff
    n = len(local.features)
    assert n == len(remote.features) and not local.failures and not remote.failures

    # Stage costs per track, one thread, in this process: what one CPU core does.
    import torch

    torch.set_num_threads(1)
    bb = get_backbone(s.backbone)
    sample = paths[:: max(1, len(paths) // 8)][:8]
    F.prepared_features([F.prepare_track(sample[0], s)], s, backbone=bb)  # warm: JIT, ONNX session
    prep = cnn = 0.0
    for p in sample:  # CPU time of this one-thread process: the load of others does not inflate it
        t = time.process_time()
        prepared = F.prepare_track(p, s)
        prep += time.process_time() - t
        t = time.process_time()
        F.prepared_features([prepared], s, backbone=bb)
        cnn += time.process_time() - t
    prep, cnn = prep / len(sample), cnn / len(sample)
    t = time.perf_counter()
    mb = sum(os.path.getsize(p) for p in paths) / 2**20
    for p in paths:
        F._digest(p)
    res["sha1_mb_per_s"] = mb / (time.perf_counter() - t)
    res.update(prepare_s_per_track=prep, cnn_s_per_track=cnn, loadavg=load)

    local_tps, ray_tps = n / res["local_s"], n / res["ray_s"]
    res.update(local_tracks_per_s=local_tps, ray_tracks_per_s=ray_tps, ray_over_local=ray_tps / local_tps)
    print(f"genrevision engines: {n} tracks, default recipe ({s.backbone}), {cpus} CPUs; load average "
          f"{load[0]:.1f} → {load[1]:.1f} (local) → {load[2]:.1f} (Ray) (other jobs share the cores)")
    rows = [
        ("local process pool (extract_dataset, default jobs)", f"{local_tps:.2f} tracks/s ({res['local_s']:.1f} s)"),
        (f"Ray engine, local runtime of {cpus} CPUs, default actors", f"{ray_tps:.2f} tracks/s ({res['ray_s']:.1f} s; "
                                                                     f"+{res['ray_start_s']:.1f} s to start Ray, once)"),
        ("ratio Ray / local", f"×{ray_tps / local_tps:.2f} (Ray's overhead here: {100 * (local_tps / ray_tps - 1):+.0f} % time)"),
    ]
    if res["local_cpu_s"] is not None:
        rows += [
            ("CPU seconds per track (all processes): local / Ray",
             f"{res['local_cpu_s'] / n:.2f} / {res['ray_cpu_s'] / n:.2f} s (Ray's overhead in CPU time: "
             f"{100 * (res['ray_cpu_s'] / res['local_cpu_s'] - 1):+.0f} %)"),
        ]
    rows += [
        ("largest feature difference, relative to the view's max", f"{diff:.1e}"),
        ("prepare (decode, HPSS, images, MFCC), CPU time, one thread",
         f"{prep:.3f} s/track → {1 / prep:.2f} tracks/s per core"),
        ("CNN, CPU time, one thread" + (" (ONNX Runtime)" if getattr(bb, "engine", "") == "onnxruntime" else ""),
         f"{cnn:.3f} s/track → {1 / cnn:.2f} tracks/s per one-CPU CNN actor"),
        ("content digest (SHA-1) on the driver, files in page cache", f"{res['sha1_mb_per_s']:.0f} MB/s"),
    ]
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"  {a:<{width}}  {b}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return res


if __name__ == "__main__":  # spawn workers re-import this file: keep the run behind the guard
    main()
