"""Accuracy and warnings on the shared tracks degraded to 8-bit and to 8 kHz (issue 11, case 6).

Plain script (not a test)::

    python benchmarks/degraded_audio.py --model genres.model --skip 4

For every genre the model knows, the tracks of ``gtzan-mini`` from number
``--skip`` on (the ones a model trained on the first tracks has not seen) are
written three ways (16-bit 22 kHz as shipped, 8-bit, 16-bit at 8 kHz) and
predicted; the script prints the accuracy of each version and how many
predictions were flagged low-confidence.
"""
from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np

DATA = os.path.join("..", "shared", "data", "gtzan-mini")  # from the repository root, as in the README


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--skip", type=int, default=4, help="tracks per genre the model was trained on (default: %(default)s)")
    ap.add_argument("--per-genre", type=int, default=6)
    args = ap.parse_args(argv)

    import soundfile as sf
    import soxr

    from genrevision import load_model
    from genrevision.evaluation.dataset import load_dataset

    model = load_model(args.model)
    ds = load_dataset(os.path.join(args.data, "genres"))
    picks = []
    for g in model.labels:
        picks += [(p, g) for p in [p for p, lab in zip(ds.paths, ds.labels) if lab == g][args.skip:args.skip + args.per_genre]]
    print(f"model {args.model}: {model.recipe.name} recipe, {len(model.labels)} genres; training audio "
          f"{model.training_audio}")
    print(f"{len(picks)} held-out tracks; load average {os.getloadavg()[0]:.1f}")
    versions = ("16-bit 22 kHz", "8-bit 22 kHz", "16-bit 8 kHz")
    hits = dict.fromkeys(versions, 0)
    flagged = dict.fromkeys(versions, 0)
    with tempfile.TemporaryDirectory() as d:
        for path, genre in picks:
            y, sr = sf.read(path, dtype="float32")
            y = 0.95 * y / max(float(np.abs(y).max()), 1e-9)
            files = {versions[0]: (y, sr, "PCM_16"), versions[1]: (y, sr, "PCM_U8"),
                     versions[2]: (soxr.resample(y, sr, 8000), 8000, "PCM_16")}
            for v, (sig, rate, subtype) in files.items():
                out = os.path.join(d, "track.wav")
                sf.write(out, sig, rate, subtype=subtype)
                pred = model.predict(out)
                hits[v] += pred.genre == genre
                flagged[v] += pred.low_confidence
    for v in versions:
        print(f"{v}: accuracy {hits[v]}/{len(picks)} = {100 * hits[v] / len(picks):.0f} %, "
              f"flagged low-confidence {flagged[v]}/{len(picks)}")


if __name__ == "__main__":
    main()
