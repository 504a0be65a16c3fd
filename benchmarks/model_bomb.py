"""Peak memory of loading model files that are zip bombs (issue 11, case 2).

Plain script (not a test)::

    genrevision train ../shared/data/gtzan-mini --model genres.model
    python benchmarks/model_bomb.py --model genres.model --size-gb 2
    python benchmarks/model_bomb.py --model genres.model --src /path/to/other/checkout/src   # compare

Builds, from a real model file, one bomb per way in: ``meta.json`` inflating
to SIZE of zeros, ``classifier.skops`` inflating to SIZE, a ``classifier.skops``
whose inner skops ``schema.json`` inflates to SIZE (checksums recomputed, as
an attacker would), and a member whose declared size lies. Each is loaded in
a fresh child process (``load_model(..., check_backbone=False)``) after the
real model; the child prints its peak RSS (``ru_maxrss``) after the real model
and after the bomb, the seconds the refusal took and the message.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))

CHILD = r"""
import resource, sys, time
from genrevision import load_model, ModelError
load_model(sys.argv[1], check_backbone=False)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
try:
    load_model(sys.argv[2], check_backbone=False)
    msg = "LOADED (not refused)"
except ModelError as err:
    msg = str(err).split(": ", 1)[1]
except MemoryError:
    msg = "MemoryError"
dt = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"{base:.0f}\t{peak:.0f}\t{dt:.2f}\t{msg}")
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a real model file from `genrevision train`")
    ap.add_argument("--size-gb", type=float, default=2.0, help="what each bomb inflates to (default: %(default)s)")
    ap.add_argument("--src", default=None, help="genrevision sources the children load (default: this checkout's)")
    args = ap.parse_args(argv)

    sys.path[:0] = [os.path.join(HERE, "..", "tests"), os.path.join(HERE, "..", "src")]
    from pathlib import Path

    from test_attacks import _bomb_models

    size = int(args.size_gb * 2**30) >> 20 << 20
    env = dict(os.environ, PYTHONPATH=os.path.abspath(args.src or os.path.join(HERE, "..", "src")))
    with tempfile.TemporaryDirectory() as d:
        bombs = _bomb_models(args.model, Path(d), size)
        print(f"bombs inflating to {size / 2**30:.2f} GB; children load {env['PYTHONPATH']}")
        print(f"load average {os.getloadavg()[0]:.1f}")
        print("bomb\tfile MB\tRSS after real model (MB)\tpeak RSS after bomb (MB)\tgrowth (MB)\tseconds\tanswer")
        for what, path in bombs.items():
            proc = subprocess.run([sys.executable, "-c", CHILD, args.model, path], capture_output=True, text=True,
                                  env=env)
            if proc.returncode != 0:
                print(f"{what}\t-\t-\t-\t-\t-\tchild failed ({proc.returncode}): {proc.stderr.strip()[-300:]}")
                continue
            base, peak, dt, msg = proc.stdout.strip().split("\t", 3)
            mb = os.path.getsize(path) / 2**20
            print(f"{what}\t{mb:.1f}\t{base}\t{peak}\t{float(peak) - float(base):.0f}\t{dt}\t{msg}")


if __name__ == "__main__":
    main()
