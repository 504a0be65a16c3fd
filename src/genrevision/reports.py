"""Tables, confusion matrices and a self-contained HTML report.

The input is the results dict fixed by the product spec::

    {"protocol": str, "n_tracks": int, "backbone": str,
     "rows": {"svm": {row: acc, ...}, "finetune": {row: acc, ...}},
     "baseline_mfcc": acc, "default": acc (optional),
     "std": {"svm": {...}, "finetune": {...}, "baseline_mfcc": s, "default": s},
     "config": {...},
     "confusion": {row_label: {"labels": [...], "matrix": [[...]]}} (optional),
     "ablation": [{"name": ..., "mean": ..., "std": ...}, ...] (optional)}

with accuracies as fractions in [0, 1]; tables show percent with one decimal.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path

import numpy as np

__all__ = [
    "ROW_ORDER",
    "PAPER_SVM",
    "PAPER_FINETUNE",
    "GTZAN_NOTE",
    "format_accuracy",
    "paper_table_rows",
    "paper_table_markdown",
    "ablation_table_markdown",
    "confusion_text",
    "parse_confusion_text",
    "confusion_png",
    "write_report",
]

ROW_ORDER = (
    "original",
    "harmonic",
    "percussive",
    "harmonic+percussive",
    "original+harmonic+percussive",
)

# Gwardys & Grzywczak (2014), Table I (SVM on CNN features), percent.
PAPER_SVM = {
    "original": 68.0,
    "harmonic": 59.0,
    "percussive": 64.0,
    "harmonic+percussive": 69.0,
    "original+harmonic+percussive": 78.0,
}
PAPER_SVM_WEIGHTS = {"original": 0.5, "harmonic": 0.1, "percussive": 0.4}

# Table III (fine-tuned last layer), percent. The paper's fused figure for
# this table is original+percussive, not one of the five standard rows, so
# it is shown as its own extra row.
PAPER_FINETUNE = {
    "original": 68.0,
    "original+percussive": 72.0,
}

GTZAN_NOTE = (
    "GTZAN repeats artists: consecutive track numbers often share an artist "
    "(e.g. blues 00000-00011), and the set holds repeated and mislabelled "
    "tracks (Sturm 2013). Random cross-validation, and the paper's single "
    "random 900/100 split, put the same artist on both sides and are therefore "
    "optimistic; the 'group', 'block' and fault-filtered 'split' protocols keep "
    "artists apart and give the more honest estimate."
)

_DASH = "\u2014"
_KINDS = ("svm", "finetune")


def _check_kind(kind):
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}.")


def _finite(value):
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _check_fraction(name, value):
    value = _finite(value)
    if value is not None and not (0.0 <= value <= 1.0):
        raise ValueError(
            f"{name} must be an accuracy fraction in [0, 1], got {value!r} "
            "(pass 0.68, not 68)."
        )
    return value


def format_accuracy(mean, std=None):
    """Format a fraction as ``"68.2 ± 3.1"`` percent; ``"—"`` when missing.

    Parameters
    ----------
    mean : float or None
        Accuracy as a fraction in [0, 1].
    std : float or None, optional
        Standard deviation as a fraction; omitted when missing.

    Returns
    -------
    str
    """
    mean = _check_fraction("mean", mean)
    if mean is None:
        return _DASH
    std = _finite(std)
    if std is None:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} \u00b1 {100 * std:.1f}"


def _paper_figure(value):
    return _DASH if value is None else f"{value:.0f}"


def paper_table_rows(results, *, kind="svm"):
    """Rows of a paper-layout table as strings: ``[(row, ours, paper), ...]``.

    Parameters
    ----------
    results : dict
        Results dict (see module docstring).
    kind : {"svm", "finetune"}, optional
        Table I (SVM) or Table III (fine-tuned last layer).

    Returns
    -------
    list of tuple of str
        The five view rows, for ``"finetune"`` an extra ``original+percussive``
        row (the paper's fused figure), then the MFCC baseline on the same folds.
    """
    _check_kind(kind)
    ours = (results.get("rows") or {}).get(kind) or {}
    stds = (results.get("std") or {}).get(kind) or {}
    paper = PAPER_SVM if kind == "svm" else PAPER_FINETUNE
    names = list(ROW_ORDER)
    if kind == "finetune":
        names.append("original+percussive")
    # Rows a pipeline adds beyond the standard ones are still shown.
    names += [name for name in ours if name not in names]
    table = []
    for name in names:
        mean = _check_fraction(f"rows[{kind!r}][{name!r}]", ours.get(name))
        table.append((name, format_accuracy(mean, stds.get(name)), _paper_figure(paper.get(name))))
    std_all = results.get("std") or {}
    table.append(
        (
            "MFCC baseline",
            format_accuracy(results.get("baseline_mfcc"), std_all.get("baseline_mfcc")),
            _DASH,
        )
    )
    return table


_HEADER = ("Row", "Ours (mean \u00b1 std, %)", "Paper (%)")


def _markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


def _html_table(header, rows):
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def paper_table_markdown(results, *, kind="svm"):
    """Markdown table in the layout of the paper's Table I or III.

    Parameters
    ----------
    results : dict
        Results dict (see module docstring).
    kind : {"svm", "finetune"}, optional
        ``"svm"``: Table I (paper: 68, 59, 64, 69, 78; fusion weights
        .5/.1/.4). ``"finetune"``: Table III (paper: original 68, fused
        original+percussive 72; other rows not reported).

    Returns
    -------
    str
        A Markdown table with columns row, ours (mean ± std, percent) and
        the paper's figure, ending with the MFCC baseline row.
    """
    return _markdown(_HEADER, paper_table_rows(results, kind=kind))


def _ablation_rows(ablation):
    rows = []
    for i, item in enumerate(ablation):
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError(f"ablation[{i}] must be a dict with 'name', 'mean' and 'std'.")
        rows.append((str(item["name"]), format_accuracy(item.get("mean"), item.get("std"))))
    return rows


def ablation_table_markdown(ablation):
    """Markdown table of ablation entries ``{"name", "mean", "std"}``.

    Parameters
    ----------
    ablation : list of dict

    Returns
    -------
    str
    """
    return _markdown(("Variant", "Accuracy (mean \u00b1 std, %)"), _ablation_rows(ablation))


def _check_matrix(matrix, labels):
    matrix = np.asarray(matrix)
    labels = [str(lab) for lab in labels]
    if matrix.ndim != 2 or matrix.shape != (len(labels), len(labels)):
        raise ValueError(
            f"matrix must be square with one row and column per label ({len(labels)}), "
            f"got shape {matrix.shape}."
        )
    if any(not lab or re.search(r"\s", lab) for lab in labels):
        raise ValueError("labels must be non-empty and contain no whitespace.")
    return matrix, labels


def confusion_text(matrix, labels):
    """Aligned plain-text confusion table (rows: true, columns: predicted).

    Parameters
    ----------
    matrix : array-like of int, shape (k, k)
    labels : sequence of str, length k
        Without whitespace, so the table can be parsed back
        (:func:`parse_confusion_text`).

    Returns
    -------
    str
    """
    matrix, labels = _check_matrix(matrix, labels)
    corner = "true\\pred"
    cells = [[f"{int(v)}" for v in row] for row in matrix]
    first = max(len(corner), *(len(lab) for lab in labels))
    width = max(
        max(len(lab) for lab in labels),
        max((len(c) for row in cells for c in row), default=1),
    )
    lines = [corner.ljust(first) + "".join(" " + lab.rjust(width) for lab in labels)]
    for lab, row in zip(labels, cells):
        lines.append(lab.ljust(first) + "".join(" " + c.rjust(width) for c in row))
    return "\n".join(lines) + "\n"


def parse_confusion_text(text):
    """Parse :func:`confusion_text` output back into ``(matrix, labels)``.

    Parameters
    ----------
    text : str

    Returns
    -------
    matrix : numpy.ndarray of int
    labels : list of str
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("text holds no confusion table.")
    labels = lines[0].split()[1:]
    matrix = []
    for line in lines[1:]:
        parts = line.split()
        matrix.append([int(v) for v in parts[1:]])
    matrix = np.array(matrix, dtype=np.int64)
    if matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"table is not square: {len(labels)} labels, matrix shape {matrix.shape}.")
    return matrix, labels


def _png_bytes(matrix, labels, *, title="", dpi=100):
    # Figure + FigureCanvasAgg directly: no pyplot global state, so this is
    # safe in threads and never changes the user's chosen backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix, labels = _check_matrix(matrix, labels)
    counts = matrix.astype(float)
    sums = counts.sum(axis=1, keepdims=True)
    # Row-normalised colour shows per-genre recall even when genres have
    # different numbers of test tracks.
    norm = np.divide(counts, sums, out=np.zeros_like(counts), where=sums > 0)
    k = len(labels)
    size = max(4.0, 0.55 * k + 2.0)
    fig = Figure(figsize=(size, size * 0.9), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true genre")
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xticklabels(labels, rotation=45, ha="right")
    ax.set_yticklabels(labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title)
    for i in range(k):
        for j in range(k):
            ax.text(
                j, i, f"{int(matrix[i, j])}", ha="center", va="center", fontsize=8,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def confusion_png(matrix, labels, path, *, title="", dpi=100):
    """Write a confusion heat map as PNG.

    Counts are written in the cells, genre names on the axes, and the colour
    is the row-normalised fraction (per-genre recall on the diagonal).

    Parameters
    ----------
    matrix : array-like of int, shape (k, k)
    labels : sequence of str
    path : str or os.PathLike
        Output file; parent folders are created.
    title : str, optional
    dpi : int, optional
        Resolution, between 50 and 600.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    if not (50 <= int(dpi) <= 600):
        raise ValueError(f"dpi must be between 50 and 600, got {dpi!r}.")
    data = _png_bytes(matrix, labels, title=title, dpi=dpi)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _to_jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _safe_name(label):
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", str(label)).strip("_") or "row"


def _check_results(results):
    if not isinstance(results, dict):
        raise ValueError("results must be a dict following the results schema.")
    missing = [k for k in ("protocol", "rows") if k not in results]
    if missing:
        raise ValueError(f"results is missing required keys {missing}.")
    for kind in _KINDS:
        for name, acc in ((results["rows"] or {}).get(kind) or {}).items():
            _check_fraction(f"rows[{kind!r}][{name!r}]", acc)
    for key in ("baseline_mfcc", "default"):
        _check_fraction(key, results.get(key))


def write_report(results, out_dir, *, dpi=100):
    """Write results.json, tables.md, confusion .txt/.png and report.html.

    Parameters
    ----------
    results : dict
        Results dict (see module docstring). Confusion matrices are written
        for every entry of ``results["confusion"]``.
    out_dir : str or os.PathLike
        Output folder; created if needed.
    dpi : int, optional
        Resolution of the confusion PNGs.

    Returns
    -------
    dict
        ``{"results": path, "tables": path, "html": path,
        "confusion": {row_label: {"txt": path, "png": path}}}``.
    """
    _check_results(results)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = {"confusion": {}}

    results_path = out / "results.json"
    results_path.write_text(json.dumps(_to_jsonable(results), indent=2, sort_keys=True) + "\n")
    written["results"] = results_path

    std_all = results.get("std") or {}
    title = (
        f"GTZAN genre recognition, protocol {results.get('protocol')!s}, "
        f"{results.get('n_tracks', '?')} tracks, backbone {results.get('backbone', '?')}"
    )
    summary = [("Protocol", str(results.get("protocol"))),
               ("Tracks", str(results.get("n_tracks", _DASH))),
               ("Backbone", str(results.get("backbone", _DASH)))]
    if results.get("default") is not None:
        summary.append(
            ("Default pipeline accuracy (%)",
             format_accuracy(results.get("default"), std_all.get("default")))
        )

    for name, t in ((results.get("config") or {}).get("extraction") or {}).items():
        speed = t.get("tracks_per_s")
        summary.append((f"Extraction, recipe {name} (tracks/s)",
                        f"{speed:.2f}" if speed else f"from the cache ({t.get('cached', '?')} tracks)"))

    md = [f"# {title}", ""]
    md += [_markdown(("Item", "Value"), summary), ""]
    md += ["## Table I: SVM on CNN features", "", paper_table_markdown(results, kind="svm"), ""]
    md += ["Paper fusion weights (original/harmonic/percussive): .5/.1/.4.", ""]
    md += ["## Table III: fine-tuned last layer", "",
           paper_table_markdown(results, kind="finetune"), ""]
    md += ["Table III of the paper reports only the original view (68) and the "
           "original+percussive fusion (72).", ""]
    ablation = results.get("ablation")
    if ablation:
        md += ["## Ablation", "", ablation_table_markdown(ablation), ""]
    md += ["## Note on GTZAN", "", GTZAN_NOTE, ""]

    images = []
    for label, entry in (results.get("confusion") or {}).items():
        matrix = np.asarray(entry["matrix"])
        labels = list(entry["labels"])
        stem = "confusion_" + _safe_name(label)
        txt = out / f"{stem}.txt"
        txt.write_text(confusion_text(matrix, labels), encoding="utf-8")
        png_data = _png_bytes(matrix, labels, title=str(label), dpi=dpi)
        png = out / f"{stem}.png"
        png.write_bytes(png_data)
        written["confusion"][label] = {"txt": txt, "png": png}
        images.append((label, png_data))
    if images:
        md += ["## Confusion matrices", ""]
        for label, _ in images:
            stem = "confusion_" + _safe_name(label)
            md += [f"### {label}", "", f"![{label}]({stem}.png)", "", "```",
                   (out / f"{stem}.txt").read_text(encoding="utf-8").rstrip("\n"), "```", ""]

    tables_path = out / "tables.md"
    tables_path.write_text("\n".join(md), encoding="utf-8")
    written["tables"] = tables_path

    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;}"
        "table{border-collapse:collapse;margin:1em 0;}"
        "th,td{border:1px solid #999;padding:.3em .7em;text-align:right;}"
        "th:first-child,td:first-child{text-align:left;}"
        ".note{background:#fff6d6;padding:.7em;border-left:4px solid #e0b000;}"
        "pre{background:#f4f4f4;padding:.5em;}</style>",
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
        _html_table(("Item", "Value"), summary),
        "<h2>Table I: SVM on CNN features</h2>",
        _html_table(_HEADER, paper_table_rows(results, kind="svm")),
        "<p>Paper fusion weights (original/harmonic/percussive): .5/.1/.4.</p>",
        "<h2>Table III: fine-tuned last layer</h2>",
        _html_table(_HEADER, paper_table_rows(results, kind="finetune")),
        "<p>Table III of the paper reports only the original view (68) and the "
        "original+percussive fusion (72).</p>",
    ]
    if ablation:
        parts += ["<h2>Ablation</h2>",
                  _html_table(("Variant", "Accuracy (mean \u00b1 std, %)"), _ablation_rows(ablation))]
    parts += ["<h2>Note on GTZAN</h2>", f'<p class="note">{esc(GTZAN_NOTE)}</p>']
    if images:
        parts.append("<h2>Confusion matrices</h2>")
        for label, png_data in images:
            b64 = base64.b64encode(png_data).decode("ascii")
            entry = results["confusion"][label]
            parts += [
                f"<h3>{esc(str(label))}</h3>",
                f'<img alt="confusion {esc(str(label))}" src="data:image/png;base64,{b64}">',
                f"<pre>{esc(confusion_text(entry['matrix'], entry['labels']))}</pre>",
            ]
    config = results.get("config")
    if config:
        parts += ["<h2>Configuration</h2>",
                  f"<pre>{esc(json.dumps(_to_jsonable(config), indent=2, sort_keys=True))}</pre>"]
    parts.append("</body></html>")
    html_path = out / "report.html"
    html_path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    written["html"] = html_path
    return written
