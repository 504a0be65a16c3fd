"""`genrevision evaluate` from the command line."""
from __future__ import annotations

import json

from testkit import run_cli


def test_evaluate_without_the_paper_recipe_writes_its_report(tmp_path, gtzan_root):
    # It used to run every fold, then die with KeyError: 'svm' at the report stage.
    m = tmp_path / "small.csv"
    rows = [f"{gtzan_root}/genres/{g}/{g}.{i:05d}.wav,{g}" for g in ("classical", "metal", "jazz") for i in range(4)]
    m.write_text("path,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    proc = run_cli("evaluate", m, "--protocol", "cv", "--folds", "2", "--repeats", "1", "--no-paper-recipe",
                   "--out", out, "--cache", tmp_path / "cache", "--quiet", timeout=600)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert set(results["recipes"]) == {"default"}
    assert 0.0 <= results["default"] <= 1.0 and 0.0 <= results["baseline_mfcc"] <= 1.0
    assert (out / "report.html").exists() and "recipe default (efficientnet_lite2): fused" in proc.stdout
