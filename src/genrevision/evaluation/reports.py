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

Runs of :func:`genrevision.evaluate` add what makes the tables honest:
``n_folds``/``n_repeats`` (every ± is a std over the ``n_folds`` test folds),
``ci95`` (95 % interval of the mean over the repeat means, same layout as
``std``), ``table_recipe``/``table_backbone`` (which recipe and CNN Tables
I-IV show), ``recipes`` (every recipe's rows, scores per fold), confusion
entries with ``title``/``caption``/``n_predictions`` (summed over every test
fold of every repeat) and ``duplicates`` (rows left out because they give
the same predictions as another row on every fold).
"""
from __future__ import annotations

import base64
import io
import json
import math
import os
import re
from pathlib import Path

import numpy as np

from .._utils.rendering import render
from .._utils.files import atomic_write

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
    "results_json",
    "summary_text",
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
    cis = (results.get("ci95") or {}).get(kind) or {}
    with_ci = "ci95" in results
    paper = PAPER_SVM if kind == "svm" else PAPER_FINETUNE
    names = list(ROW_ORDER)
    if kind == "finetune":
        names.append("original+percussive")
    # Rows a pipeline adds beyond the standard ones are still shown.
    names += [name for name in ours if name not in names]
    table = []
    for name in names:
        mean = _check_fraction(f"rows[{kind!r}][{name!r}]", ours.get(name))
        table.append((name, format_accuracy(mean, stds.get(name)), _paper_figure(paper.get(name)))
                     + ((format_interval(cis.get(name)),) if with_ci else ()))
    std_all = results.get("std") or {}
    table.append(
        (
            "MFCC baseline",
            format_accuracy(results.get("baseline_mfcc"), std_all.get("baseline_mfcc")),
            _DASH,
        ) + ((format_interval((results.get("ci95") or {}).get("baseline_mfcc")),) if with_ci else ())
    )
    return table


def format_interval(ci):
    """``[low, high]`` fractions as ``"85.2–92.8"`` percent; ``"—"`` when missing."""
    if not ci or any(_finite(v) is None for v in ci):
        return _DASH
    return f"{100 * float(ci[0]):.1f}\u2013{100 * float(ci[1]):.1f}"


_HEADER = ("Row", "Ours (mean \u00b1 std, %)", "Paper (%)")


def _over(results):
    """What a ± is over, for column headers: e.g. "std over 50 folds"."""
    n = results.get("n_folds")
    if not n:
        return None
    return "one test split, no std" if n == 1 else f"std over {n} folds"


def _header(results):
    over = _over(results)
    if over is None:
        return _HEADER
    head = ("Row", f"Ours (%, mean \u00b1 {over})", "Paper (%)")
    if "ci95" in results:
        r = results.get("n_repeats")
        head += (f"95 % CI of the mean over {r} repeats (%)",)
    return head


def _table_title(results, kind):
    num = "Table I" if kind == "svm" else "Table III"
    what = "RBF-SVM per view on CNN features" if kind == "svm" else "retrained softmax layer (fine-tuned last layer)"
    rec = results.get("table_recipe")
    if rec:
        return f"{num}: {rec} recipe on {results.get('table_backbone', '?')}, {what}"
    return f"{num}: {what}"


def _markdown(header, rows):
    return render("table.md", header=list(header), rows=[list(r) for r in rows]).rstrip("\n")


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
    return _markdown(_header(results), paper_table_rows(results, kind=kind))


def _ablation_rows(ablation):
    rows = []
    with_ci = any(isinstance(item, dict) and "ci95" in item for item in ablation)
    for i, item in enumerate(ablation):
        if not isinstance(item, dict) or "name" not in item:
            raise ValueError(f"ablation[{i}] must be a dict with 'name', 'mean' and 'std'.")
        rows.append((str(item["name"]), format_accuracy(item.get("mean"), item.get("std")))
                    + ((format_interval(item.get("ci95")),) if with_ci else ()))
    return rows


def _ablation_header(ablation, results=None):
    over = _over(results or {}) if results else None
    head = ("Variant", f"Accuracy (%, mean \u00b1 {over})" if over else "Accuracy (mean \u00b1 std, %)")
    if any(isinstance(item, dict) and "ci95" in item for item in ablation):
        head += (f"95 % CI of the mean over {(results or {}).get('n_repeats', '?')} repeats (%)",)
    return head


def ablation_table_markdown(ablation, results=None):
    """Markdown table of ablation entries ``{"name", "mean", "std"[, "ci95"]}``.

    Parameters
    ----------
    ablation : list of dict
    results : dict, optional
        The results dict, for the column headers (what ± is over).

    Returns
    -------
    str
    """
    return _markdown(_ablation_header(ablation, results), _ablation_rows(ablation))


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
    # Lines starting with "#" are the title and caption written above the table.
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
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


def results_json(results, *, indent=2):
    """The results dict as JSON text (NaN → null, numpy → Python)."""
    return json.dumps(_to_jsonable(results), indent=indent, sort_keys=True) + "\n"


def _what_ran(results):
    """One sentence: protocol, folds actually run, what every ± and interval is over."""
    n, r = results.get("n_folds"), results.get("n_repeats")
    if not n:
        return None
    cfg = results.get("config") or {}
    proto = results.get("protocol")
    if proto == "paper":
        how = f"{n} stratified 90/10 splits (one per repeat)"
    elif proto == "split":
        how = "one fixed train/test split"
    else:
        how = f"{cfg.get('folds_per_repeat', '?')} folds \u00d7 {r} repeat{'s' * (r != 1)} = {n} test folds"
    text = f"Protocol {proto}: {how}. Every \u00b1 is the standard deviation over the {n} test folds"
    if n == 1:
        text = f"Protocol {proto}: {how}; one test split, so no \u00b1 and no interval"
    elif r and r > 1:
        text += (f"; the 95 % CI is the t interval of the mean over the {r} repeat means "
                 "(folds of one repeat share tracks, repeats are the independent unit)")
    return text + "."


def _recipes_note(results):
    cfg = (results.get("config") or {}).get("recipes") or {}
    return [f"{name}: {c.get('backbone') or (c.get('features') or {}).get('backbone', '?')}"
            + (f" \u2014 {c['description']}" if c.get("description") else "") for name, c in cfg.items()]


def _duplicates_note(results):
    dups = results.get("duplicates") or []
    if not dups:
        return None
    return ("Rows with the same predictions on every fold are listed once: "
            + "; ".join(f"{d['row']} = {d['same_as']}" for d in dups) + ".")


def summary_text(results):
    """The two paper tables and one line per recipe and the baseline (the CLI's output)."""
    lines = honesty_lines(results)
    for kind in _KINDS:
        if (results.get("rows") or {}).get(kind):
            lines += [_table_title(results, kind), paper_table_markdown(results, kind=kind), ""]
    over = _over(results) or "std over folds"
    for name, rec in (results.get("recipes") or {}).items():
        ci = rec.get("fused_ci95")
        lines.append(f"recipe {name} ({rec.get('backbone', '?')}): fused {format_accuracy(rec['fused'], rec.get('fused_std'))} % "
                     f"({over}" + (f"; 95 % CI of the mean {format_interval(ci)} %" if ci else "") + ")")
    ci = (results.get("ci95") or {}).get("baseline_mfcc")
    lines.append(f"baseline MFCC + spectral: {format_accuracy(results.get('baseline_mfcc'), (results.get('std') or {}).get('baseline_mfcc'))} % "
                 f"({over}" + (f"; 95 % CI of the mean {format_interval(ci)} %" if ci else "") + ")")
    per_class = per_class_lines(results)
    if per_class:
        lines += [""] + per_class
    note = _what_ran(results)
    if note:
        lines.append(note)
    return "\n".join(lines)


def honesty_lines(results) -> list[str]:
    """What the protocol's figures mean (artist-disjoint or optimistic) and the classes it could not test."""
    note = results.get("protocol_note")
    if not note:
        return []
    lines = [f"protocol {results.get('protocol')}: {note}"]
    untested = results.get("untested") or []
    if untested:
        names = ", ".join(f"{u['label']} (only {u['group']})" for u in untested)
        lines.append(f"not testable across artists: {names}; kept on the training side of every fold and left out "
                     f"of the score ({results.get('n_scored_tracks', '?')} of {results.get('n_tracks', '?')} "
                     "tracks scored)")
    return lines + [""]


def per_class_accuracy(entry) -> dict:
    """``{label: (correct, tested)}`` from a pooled confusion entry (rows = true labels)."""
    out = {}
    for lab, row in zip(entry["labels"], entry["matrix"]):
        n = int(sum(row))
        if n:
            out[lab] = (int(row[entry["labels"].index(lab)]), n)
    return out


def per_class_lines(results) -> list[str]:
    """One line per recipe and the baseline: the accuracy of every tested genre (pooled over folds)."""
    lines = []
    for key, entry in (results.get("confusion") or {}).items():
        if not (key.endswith(" fused") or key == "baseline mfcc" or " svm " in key and key.startswith("paper")):
            continue
        acc = per_class_accuracy(entry)
        if acc:
            name = key.replace(" fused", "").replace("baseline mfcc", "baseline MFCC").replace(
                " svm original+harmonic+percussive", " (Table II)")
            lines.append(f"per genre, {name}: " + "  ".join(f"{lab} {100 * c / n:.0f}" for lab, (c, n) in acc.items()))
    return lines


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
    atomic_write(results_path, lambda f: f.write(results_json(results).encode()))
    written["results"] = results_path
    figures = _write_confusions(results, out, dpi=dpi)
    written["confusion"] = {f["label"]: {"txt": f["txt"], "png": f["png"]} for f in figures}
    # One model of the sections; the Markdown and the HTML are two templates over it.
    title, blocks = _report_title(results), _report_blocks(results, figures)
    for key, name, template in (("tables", "tables.md", "evaluation_report.md"),
                                ("html", "report.html", "evaluation_report.html")):
        written[key] = out / name
        written[key].write_text(render(template, title=title, blocks=blocks), encoding="utf-8")
    return written


def _report_title(results) -> str:
    recipes_cfg = (results.get("config") or {}).get("recipes") or {}
    if recipes_cfg:
        return (f"Genre recognition, protocol {results.get('protocol')!s}, {results.get('n_tracks', '?')} tracks, "
                + ", ".join(f"{n} recipe on {c.get('backbone', '?')}" for n, c in recipes_cfg.items()))
    return (f"GTZAN genre recognition, protocol {results.get('protocol')!s}, "
            f"{results.get('n_tracks', '?')} tracks, backbone {results.get('backbone', '?')}")


def _summary_rows(results) -> list[tuple[str, str]]:
    """The report's first table: (item, value) rows saying what ran and how fast."""
    std_all = results.get("std") or {}
    config = results.get("config") or {}
    recipes_cfg = config.get("recipes") or {}
    summary = [("Protocol", str(results.get("protocol")) + (f" ({results['protocol_note']})"
                                                             if results.get("protocol_note") else "")),
               ("Tracks", str(results.get("n_tracks", _DASH)))]
    for u in results.get("untested") or []:
        summary.append((f"Not testable across artists: {u['label']}",
                        f"one artist ({u['group']}, {u['tracks']} tracks): always trained on, never scored"))
    if results.get("n_folds"):
        summary.append(("Test folds run", f"{results['n_folds']} ({results.get('n_repeats', '?')} repeats)"))
    if not recipes_cfg:
        summary.append(("Backbone", str(results.get("backbone", _DASH))))
    for name, c in recipes_cfg.items():
        summary.append((f"Recipe {name}", f"backbone {c.get('backbone', '?')}, head {c.get('head', '?')}, "
                                          f"views {c.get('views', '?')}"))
    if results.get("default") is not None:
        ci = (results.get("ci95") or {}).get("default")
        summary.append(("Default recipe accuracy (%)",
                        format_accuracy(results.get("default"), std_all.get("default"))
                        + (f" (95 % CI of the mean {format_interval(ci)})" if ci else "")))
    for name, t in (config.get("extraction") or {}).items():
        speed = t.get("tracks_per_s")
        summary.append((f"Extraction, recipe {name} (tracks/s)",
                        f"{speed:.2f}" if speed else f"from the cache ({t.get('cached', '?')} tracks)"))
    for name, t in (config.get("fitting") or {}).items():
        summary.append((f"Fitting, {name} (s)", f"{t.get('seconds', 0):.1f} ({t.get('folds_fitted', '?')} folds fitted, "
                                               f"{t.get('folds_loaded', '?')} loaded from a previous run)"))
    return summary


def _write_confusions(results, out: Path, *, dpi) -> list[dict]:
    """confusion_<label>.txt and .png for every confusion matrix; one dict per matrix for the report."""
    figures = []
    for label, entry in (results.get("confusion") or {}).items():
        matrix, labels = np.asarray(entry["matrix"]), list(entry["labels"])
        stem = "confusion_" + _safe_name(label)
        text = confusion_text(matrix, labels)
        txt, png = out / f"{stem}.txt", out / f"{stem}.png"
        txt.write_text("".join(f"# {entry[k]}\n" for k in ("title", "caption") if entry.get(k)) + text,
                       encoding="utf-8")
        png_data = _png_bytes(matrix, labels, title=str(entry.get("title") or label), dpi=dpi)
        png.write_bytes(png_data)
        figures.append({"label": label, "title": str(entry.get("title") or label), "caption": entry.get("caption"),
                        "txt": txt, "png": png, "png_data": png_data, "text": text})
    return figures


def _block(kind, *, html_only=False, **fields) -> dict:
    return {"kind": kind, "html_only": html_only, **fields}


def _report_blocks(results, figures) -> list[dict]:
    """The report as a list of blocks (heading, table, text, note, figure, pre), in order.

    ``evaluation_report.md`` and ``evaluation_report.html`` render the same list; blocks
    with ``html_only`` (the configuration dump) appear in the page only.
    """
    heading = lambda level, text: _block("heading", level=level, text=text)  # noqa: E731
    table = lambda header, rows: _block("table", header=list(header), rows=[list(r) for r in rows])  # noqa: E731
    text = lambda t: _block("text", text=t)  # noqa: E731
    blocks = [heading(1, _report_title(results)), table(("Item", "Value"), _summary_rows(results))]
    ran = _what_ran(results)
    if ran:
        blocks.append(text(ran))
    blocks += [heading(2, _table_title(results, "svm")),
               table(_header(results), paper_table_rows(results, kind="svm")),
               text("Paper fusion weights (original/harmonic/percussive): .5/.1/.4."),
               heading(2, _table_title(results, "finetune")),
               table(_header(results), paper_table_rows(results, kind="finetune")),
               text("Table III of the paper reports only the original view (68) and the "
                    "original+percussive fusion (72).")]
    ablation = results.get("ablation")
    if ablation:
        blocks += [heading(2, "Every row of every recipe"),
                   table(_ablation_header(ablation, results), _ablation_rows(ablation))]
    dup_note = _duplicates_note(results)
    if dup_note:
        blocks.append(text(dup_note))
    blocks += [heading(2, "Note on GTZAN"), _block("note", text=GTZAN_NOTE)]
    if figures:
        blocks.append(heading(2, "Confusion matrices"))
    for f in figures:
        blocks.append(heading(3, f["title"]))
        if f["caption"]:
            blocks.append(text(f"Counts: {f['caption']}."))
        blocks += [_block("figure", label=str(f["label"]), file=f["png"].name,
                          png_base64=base64.b64encode(f["png_data"]).decode("ascii")),
                   _block("pre", text=f["text"])]
    config = results.get("config")
    if config:
        blocks += [_block("heading", html_only=True, level=2, text="Configuration (what ran)"),
                   _block("pre", html_only=True, text=json.dumps(_to_jsonable(config), indent=2, sort_keys=True))]
    return blocks
