from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np

from genrevision.features.backbone import backbone_spec, get_backbone
from genrevision.recipes import get_recipe


def test_the_default_recipe_uses_every_stored_column_without_loading_the_network():
    # Asked by every matrix the default recipe builds: it must not cost a network load (seconds).
    code = ("import sys; from genrevision.recipes import get_recipe; "
            "assert get_recipe('default').columns() is None; assert 'torch' not in sys.modules, 'torch loaded'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_mean_and_max_columns_pick_their_blocks_of_the_stored_layout():
    r = get_recipe("default")
    width = get_backbone(r.features.backbone).features(np.zeros((1, 64, 64), np.float32), layers="all+max").shape[1]
    d = backbone_spec(r.features.backbone).feature_dim
    m = (width - d) // 2  # stored: [stage means (m) | stage maxima (m) | penultimate (d)]
    mean = dataclasses.replace(r, layers="mean").columns()
    maxi = dataclasses.replace(r, layers="max").columns()
    assert list(mean) == list(range(m)) + list(range(2 * m, width))
    assert list(maxi) == list(range(m, width))
    assert dataclasses.replace(r, layers="last").columns() == slice(-d, None)
