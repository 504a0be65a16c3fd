"""Paper tables, confusion text / PNG and the HTML report."""
import base64
import json
import struct

import numpy as np
import pytest

from genrevision.evaluation.reports import (
    GTZAN_NOTE,
    confusion_png,
    confusion_text,
    paper_table_markdown,
    parse_confusion_text,
    write_report,
)

GENRES = ["blues", "classical", "country", "disco", "hiphop",
          "jazz", "metal", "pop", "reggae", "rock"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

KEYS = ["original", "harmonic", "percussive", "harmonic+percussive", "original+harmonic+percussive"]


def _matrix(seed=0):
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 4, size=(10, 10))
    m[np.diag_indices(10)] += 7
    return m


def _results():
    svm = dict(zip(KEYS, [0.712, 0.601, 0.655, 0.70, 0.793]))
    ft = dict(zip(KEYS, [0.70, 0.58, 0.66, 0.69, 0.75]))
    return {
        "protocol": "cv",
        "n_tracks": 109,
        "backbone": "efficientnet_lite0",
        "rows": {"svm": svm, "finetune": ft},
        "baseline_mfcc": 0.523,
        "default": 0.80,
        "std": {"svm": {k: 0.031 for k in KEYS}, "finetune": {k: 0.02 for k in KEYS},
                "baseline_mfcc": 0.04, "default": 0.03},
        "config": {"n_splits": 10, "weights": [0.5, 0.1, 0.4],
                   "extraction": {"default": {"seconds": 40.0, "computed": 109, "cached": 0, "tracks_per_s": 2.725},
                                  "paper": {"seconds": 0.4, "computed": 0, "cached": 109, "tracks_per_s": None}}},
        "confusion": {
            "svm/original+harmonic+percussive": {"labels": GENRES, "matrix": _matrix(0).tolist()},
            "mfcc": {"labels": GENRES, "matrix": _matrix(1)},
        },
        "ablation": [{"name": "no HPSS", "mean": 0.66, "std": 0.02},
                     {"name": "mel 128", "mean": 0.705, "std": 0.025}],
    }


def _png_size(data):
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_paper_table_svm():
    md = paper_table_markdown(_results(), kind="svm")
    lines = md.splitlines()
    assert lines[0].startswith("| Row")
    assert len(lines) == 2 + 5 + 1
    for name, paper, ours in zip(KEYS, ["68", "59", "64", "69", "78"],
                                 ["71.2 ± 3.1", "60.1 ± 3.1", "65.5 ± 3.1", "70.0 ± 3.1", "79.3 ± 3.1"]):
        row = next(line for line in lines if line.startswith(f"| {name} |"))
        assert f"| {ours} | {paper} |" in row
    assert lines[-1] == "| MFCC baseline | 52.3 ± 4.0 | — |"


def test_paper_table_finetune_and_missing():
    res = _results()
    md = paper_table_markdown(res, kind="finetune")
    assert "| original | 70.0 ± 2.0 | 68 |" in md
    assert "| harmonic | 58.0 ± 2.0 | — |" in md
    assert "| original+percussive | — | 72 |" in md
    res["rows"]["finetune"]["original+percussive"] = 0.74
    assert "| original+percussive | 74.0 ± 2.0 |" not in paper_table_markdown(res, kind="finetune")
    assert "| original+percussive | 74.0 | 72 |" in paper_table_markdown(res, kind="finetune")
    del res["rows"]["finetune"]
    assert "| original | — | 68 |" in paper_table_markdown(res, kind="finetune")
    with pytest.raises(ValueError, match="kind"):
        paper_table_markdown(res, kind="cnn")
    res["rows"]["svm"]["original"] = 68.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        paper_table_markdown(res, kind="svm")


def test_confusion_text_round_trip():
    m = _matrix(3)
    m[0, 0] = 123
    text = confusion_text(m, GENRES)
    lines = text.splitlines()
    assert len({len(line) for line in lines}) == 1  # aligned columns
    back, labels = parse_confusion_text(text)
    assert labels == GENRES
    np.testing.assert_array_equal(back, m)
    with pytest.raises(ValueError, match="square"):
        confusion_text(m[:3], GENRES)


def test_confusion_png(tmp_path):
    path = confusion_png(_matrix(), GENRES, tmp_path / "sub" / "cm.png", title="test")
    data = path.read_bytes()
    w, h = _png_size(data)
    assert w >= 300 and h >= 300
    assert len(data) > 5000


def test_write_report(tmp_path):
    res = _results()
    written = write_report(res, tmp_path / "out")
    out = tmp_path / "out"
    loaded = json.loads((out / "results.json").read_text())
    assert loaded["rows"]["svm"]["original"] == 0.712
    assert loaded["confusion"]["mfcc"]["matrix"] == _matrix(1).tolist()

    md = (out / "tables.md").read_text(encoding="utf-8")
    assert "| original+harmonic+percussive | 79.3 ± 3.1 | 78 |" in md
    assert "| no HPSS | 66.0 ± 2.0 |" in md
    assert "artist" in md
    # Extraction cost in the benchmark's unit, beside the accuracy.
    assert "| Extraction, recipe default (tracks/s) | 2.73 |" in md
    assert "| Extraction, recipe paper (tracks/s) | from the cache (109 tracks) |" in md

    assert set(written["confusion"]) == {"svm/original+harmonic+percussive", "mfcc"}
    for label, files in written["confusion"].items():
        _png_size(files["png"].read_bytes())
        back, labels = parse_confusion_text(files["txt"].read_text())
        np.testing.assert_array_equal(back, np.asarray(res["confusion"][label]["matrix"]))
    assert (out / "confusion_svm_original+harmonic+percussive.png").is_file()

    page = (out / "report.html").read_text(encoding="utf-8")
    assert page.count('src="data:image/png;base64,') == 2
    start = page.index("data:image/png;base64,") + len("data:image/png;base64,")
    b64 = page[start:page.index('"', start)]
    assert base64.b64decode(b64)[:8] == PNG_MAGIC
    assert "<table>" in page and "<td>79.3 ± 3.1</td><td>78</td>" in page
    assert "<td>no HPSS</td>" in page and "MFCC baseline" in page
    assert "optimistic" in page and GTZAN_NOTE.split(":")[0] in page
    assert "<img" in page and 'src="confusion_' not in page  # self-contained


def test_write_report_minimal(tmp_path):
    res = {"protocol": "split", "n_tracks": 5, "backbone": "x",
           "rows": {"svm": {"original": 0.6}}, "baseline_mfcc": None}
    write_report(res, tmp_path)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<td>60.0</td><td>68</td>" in page and "<img" not in page
    with pytest.raises(ValueError, match="missing required keys"):
        write_report({"rows": {}}, tmp_path)
