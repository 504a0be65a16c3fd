"""Learn a user's own taxonomy from the genres already in their music files.

A music library is not sorted into genre folders: its labels are the genre tags
people chose. :func:`read_library` reads every file's tags (mutagen, through
:func:`genrevision.apps.tagging.read_tag_fields`: ID3 TCON with ID3v1 numeric
references and several values, Vorbis GENRE, MP4 ``©gen`` and numeric ``gnre``),
merges spellings (:func:`genre_key`), applies the user's map, keeps genres with
enough songs and groups the files by album artist / artist / album, so that no
artist or album is on both sides of any fold. Files without a genre are the
ones to tag.

:func:`train_library` measures the model on the library itself first
(artist/album-grouped cross-validation, out-of-fold probabilities for every
tested file), then fits the final model on every file. The model file carries
what the out-of-fold predictions teach:

- per-genre probability thresholds reaching a target precision
  (:func:`precision_thresholds`), so ``tag`` writes a genre only when it is sure
  enough and lists the rest as "not sure";
- an out-of-distribution check (:func:`novelty`): the cosine distance of a
  file's mean window features (standardised, randomly projected) to the nearest
  training file; music unlike anything in the library (speech, noise) is
  further than the ``NOVELTY_QUANTILE`` (95 %) of the distances of training
  files to their nearest file of *another* group, and is not tagged;
- the out-of-fold probabilities themselves, keyed by each file's audio digest
  (unchanged by tagging), for :func:`audit_library`: files whose genre tag
  disagrees most with the audio, judged by a model that never trained on them
  (and, as a second witness, with the other files of their artist/album).

:func:`write_report` writes what to expect before anything is written: grouped
cross-validated accuracy with its 95 % interval, per-genre recall, precision,
artists and coverage at the target precision, the confusion matrix, and the
genres too small or too confused to tag.

Several genres in one file: the **first** is its label (tag writers, this one
included, put the main genre first); the report counts such files.
"""
from __future__ import annotations

import csv
import dataclasses
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field

import numpy as np

from .._utils.rendering import render
from .._utils.progress import progress_bar
from .._utils.validation import check_scalar
from .._utils.files import feature_cache
from ..model.novelty import NOVELTY_DIMS, novelty, novelty_reference, pooled_windows  # noqa: F401 (NOVELTY_DIMS, novelty: re-exported)

__all__ = [
    "MIN_TRACKS",
    "DEFAULT_PRECISION",
    "genre_key",
    "split_genres",
    "Library",
    "read_library",
    "LibraryReport",
    "train_library",
    "precision_thresholds",
    "novelty",
    "abstention",
    "AuditRow",
    "audit_library",
    "write_audit",
    "write_report",
]

#: A genre needs at least this many songs to be learned (and measured) by default.
MIN_TRACKS = 5
#: Target precision of the genres ``tag`` writes, by default.
DEFAULT_PRECISION = 0.9
#: Outer folds of the grouped cross-validation, by default (fewer when the library has fewer groups).
DEFAULT_FOLDS = 5
#: A threshold must rest on at least this many out-of-fold predictions of its genre.
MIN_SUPPORT = 3
#: Share of in-library music (a new artist's) accepted by the out-of-distribution check.
NOVELTY_QUANTILE = 0.95
_FEATURE_CACHE = feature_cache()  # GENREVISION_CACHE honoured, as everywhere
_SEPARATORS = re.compile(r"\s*[;/,|\x00]\s*")


# ----------------------------------------------------------------------------- reading a library


def genre_key(name: str) -> str:
    """The spelling-free identity of a genre name: case, accents' forms, spaces, hyphens and other
    punctuation ignored, "&" read as "and" ("Hip-Hop", "hip hop", "HipHop" → "hiphop";
    "Drum & Bass" = "drum and bass")."""
    s = unicodedata.normalize("NFKC", str(name)).casefold().replace("&", " and ")
    return re.sub(r"[\W_]+", "", s)


def split_genres(values) -> list[str]:
    """Genre names from tag values: each value split at ; / , | (and NUL), stripped, empty ones and
    repeats (by :func:`genre_key`) left out, order kept."""
    out, seen = [], set()
    for v in values:
        for part in _SEPARATORS.split(str(v)):
            part = part.strip()
            k = genre_key(part)
            if k and k not in seen:
                seen.add(k)
                out.append(part)
    return out


@dataclass
class Library:
    """What :func:`read_library` found.

    Attributes
    ----------
    dataset : Dataset or None
        The labelled files (label = the user's genre, group = album artist/artist/album
        component); None when no genre has enough files.
    untagged : list of str
        Files without a genre: the ones to tag.
    dropped : dict genre → reason
        Genres left out (too few files, mapped to nothing), with their file counts.
    spellings : dict label → list of the spellings merged into it
    several : int
        Files with more than one genre (their first is the label).
    failures : list of (path, reason)
        Files whose tags could not be read.
    mapping : dict genre key → name ("" drops it), as applied
    """

    dataset: object
    untagged: list
    dropped: dict
    spellings: dict
    several: int = 0
    failures: list = field(default_factory=list)
    mapping: dict = field(default_factory=dict)
    fields: dict = field(default_factory=dict)

    def artists(self) -> dict:
        """label → number of groups (artists/albums) it has."""
        ds = self.dataset
        if ds is None:
            return {}
        return {c: int(np.unique(ds.groups[ds.labels == c]).size) for c in ds.classes}


class _Groups:
    """Union-find over artist and album names: files sharing either end up in one group."""

    def __init__(self):
        self.parent: dict = {}

    def find(self, x):
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a, b):
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _normal_mapping(mapping) -> dict:
    if mapping is None:
        return {}
    if isinstance(mapping, (str, os.PathLike)):
        from .tagging import load_mapping

        mapping = load_mapping(mapping, allow_empty=True)
    return {genre_key(k): str(v).strip() for k, v in mapping.items()}


def read_library(inputs, *, mapping=None, min_tracks: int = MIN_TRACKS, progress: bool = True,
                 follow_symlinks: bool = False) -> Library:
    """Read the genres, artists and albums of every music file under ``inputs``.

    Parameters
    ----------
    inputs : path or list of paths (files, folders walked for the formats ``tag`` writes)
    mapping : dict or path, optional
        The user's names: genre (any spelling) → name; several genres may share a name; a
        genre mapped to "" is dropped. A file in :func:`genrevision.apps.tagging.load_mapping`'s format.
    min_tracks : int
        Genres with fewer files are dropped (named in ``Library.dropped``).

    Returns
    -------
    Library. Groups: files sharing an album artist (else artist) or an album are one group
    (connected components); a file with none of them is grouped with its folder (usually its
    album).
    """
    from ..evaluation.dataset import Dataset
    from .tagging import TagError, find_taggable, read_tag_fields

    check_scalar(min_tracks, "min_tracks", kind=int, min=1, whole_floats=True)
    inputs = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    mapping = _normal_mapping(mapping)
    files, failures = find_taggable(inputs, follow_symlinks=follow_symlinks)
    rows, untagged, several, fields = [], [], 0, {}
    for p in progress_bar(files, desc="read tags", unit="file", enabled=progress):
        try:
            f = read_tag_fields(p)
        except TagError as err:
            failures.append((p, err.reason))
            continue
        fields[p] = f
        genres = split_genres(f["genres"])
        if not genres:
            untagged.append(p)
            continue
        several += len(genres) > 1
        rows.append((p, genres[0], f))
    # Labels: the map's name, else the most common spelling of the genre (ties: the first met).
    counts: dict = {}
    for _, g, _ in rows:
        counts.setdefault(genre_key(g), {}).setdefault(g, 0)
        counts[genre_key(g)][g] += 1
    name_of = {k: max(sp.items(), key=lambda kv: kv[1])[0] for k, sp in counts.items()}
    dropped, labelled = {}, []
    for p, g, f in rows:
        k = genre_key(g)
        name = mapping.get(k, name_of[k])
        if not name:
            dropped[name_of[k]] = "mapped to nothing"
            continue
        labelled.append((p, name, f))
    spellings: dict = {}
    for k, sp in counts.items():
        name = mapping.get(k, name_of[k])
        if name:
            spellings.setdefault(name, set()).update(sp)
    sizes: dict = {}
    for _, name, _ in labelled:
        sizes[name] = sizes.get(name, 0) + 1
    small = {n for n, c in sizes.items() if c < min_tracks}
    for n in sorted(small):
        dropped[n] = f"{sizes[n]} file{'s' * (sizes[n] != 1)}, fewer than --min-tracks {min_tracks}"
    labelled = [r for r in labelled if r[1] not in small]
    uf, first_name = _Groups(), {}
    for p, _, f in labelled:
        who = f["album_artist"] or f["artist"]
        keys = [("artist", genre_key(who)) if genre_key(who) else None,
                ("album", genre_key(f["album"])) if genre_key(f["album"]) else None]
        keys = [k for k in keys if k] or [("folder", os.path.dirname(os.path.abspath(p)))]
        for k in keys[1:]:
            uf.union(keys[0], k)
        first_name.setdefault(uf.find(keys[0]), who or f["album"] or os.path.basename(os.path.dirname(p)))
        f["_group_key"] = keys[0]
    groups = []
    for p, _, f in labelled:
        root = uf.find(f.pop("_group_key"))
        # The name of the component's first file, made unique by its root (two artists named alike).
        groups.append(f"{first_name.get(root) or root[1]} [{root[0]}:{root[1][:40]}]")
    ds = None
    if labelled:
        ds = Dataset([p for p, _, _ in labelled], np.array([n for _, n, _ in labelled]), np.array(groups),
                     root=os.fspath(inputs[0]) if len(inputs) == 1 else "library")
    return Library(ds, untagged, dropped, {k: sorted(v) for k, v in spellings.items() if k in set(sizes) - small},
                   several, failures, mapping, fields)


# ----------------------------------------------------------------------------- thresholds and novelty


def precision_thresholds(proba, y, classes, precision: float) -> dict:
    """Per genre, the lowest probability at which its out-of-fold predictions reach ``precision``.

    For each genre, the files predicted as it (top class) are sorted by that probability, best
    first; the threshold is the probability of the last file of the longest run from the top
    whose precision, counted with one imaginary wrong guess (right / (n + 1)), is at least
    ``precision`` and that holds at least :data:`MIN_SUPPORT` predictions. The imaginary guess
    keeps a short lucky run from passing: 0.9 needs 9 right of 9, or 18 of 19. None where no
    run qualifies (the genre is too confused, or too rarely predicted, to be written at that
    precision).
    """
    check_scalar(precision, "precision", kind=float, min=0, max=1, include_boundaries="right")
    proba, y = np.asarray(proba, dtype=float), np.asarray(y)
    top = proba.argmax(1)
    out = {}
    for j, c in enumerate(classes):
        sel = np.flatnonzero(top == j)
        p = proba[sel, j]
        order = np.argsort(-p, kind="stable")
        right = (y[sel][order] == c).astype(float)
        run = np.cumsum(right) / np.arange(2, len(right) + 2)
        ok = np.flatnonzero((run >= precision - 1e-12) & (np.arange(1, len(right) + 1) >= MIN_SUPPORT))
        out[str(c)] = float(p[order][ok[-1]]) if ok.size else None
    return out


def abstention(model_path, *, precision: float | None = None):
    """The "is it sure?" test ``tag`` applies: a function prediction → None (write it) or the
    one-line reason it is not sure. Thresholds for ``precision`` are recomputed from the model's
    stored out-of-fold probabilities (None: the precision it was trained for).

    Raises ValueError naming the model when it was not trained on a library's tags.
    """
    from ..model.genre_model import load_model

    model = load_model(model_path, check_backbone=False)
    lib = model.library
    if lib is None:
        raise ValueError(f"{os.fspath(model_path)}: this model cannot abstain (it has no out-of-fold predictions); "
                         "train it on your library with: genrevision train LIBRARY --labels-from-tags --model FILE")
    if precision is None or math.isclose(precision, lib["precision"]):
        precision, thresholds = float(lib["precision"]), lib["thresholds"]
    else:
        a = model.library_arrays
        tested = a["oof_tested"].astype(bool)
        thresholds = precision_thresholds(a["oof_proba"][tested], np.asarray(model.labels)[a["oof_label"][tested]],
                                          model.labels, precision)
        for c in lib.get("never_tested", {}):  # no out-of-fold evidence, whatever the precision
            thresholds[c] = None
    limit = float(lib["novelty_threshold"])

    def sure(pred) -> str | None:
        nov = getattr(pred, "novelty", None)
        if nov is not None and nov > limit:
            return f"unlike the music it learned from (novelty {nov:.2f} > {limit:.2f}): not tagged"
        t = thresholds.get(pred.genre)
        p = float(pred.probabilities.get(pred.genre, 0.0))
        if t is None:
            return (f"{pred.genre} ({p:.2f}) cannot be written at precision {precision:.2f}: its out-of-fold "
                    "predictions never reach it")
        if p < t:
            return f"{pred.genre} {p:.2f} is below its threshold {t:.2f} for precision {precision:.2f}"
        return None

    return sure


# ----------------------------------------------------------------------------- training on a library


def _resampled_groups(right, groups, *, n_boot: int, rng):
    """Right answers and files per group, and ``n_boot`` resamplings of the groups (rows of group
    indices): files of one artist are not independent, so intervals resample whole groups."""
    names, inv = np.unique(groups, return_inverse=True)
    hits, sizes = np.bincount(inv, np.asarray(right, dtype=float)), np.bincount(inv)
    return hits, sizes, rng.integers(0, len(names), size=(n_boot, len(names)))


@dataclass
class LibraryReport:
    """The grouped cross-validation of a library (what to expect before anything is written)."""

    labels: list
    paths: list
    y: np.ndarray
    groups: np.ndarray
    proba: np.ndarray          # out-of-fold probabilities (NaN rows: not tested)
    tested: np.ndarray         # bool: the file was in a test fold
    nearest: np.ndarray        # each file's novelty against files of other groups
    precision: float
    thresholds: dict
    novelty_threshold: float
    folds: int
    library: Library | None = None
    never_tested: dict = field(default_factory=dict)   # genre → its one group
    fold_of: np.ndarray | None = None                    # each file's test fold (-1: never tested)

    @property
    def pred(self) -> np.ndarray:
        out = np.full(len(self.y), "", dtype=object)
        out[self.tested] = np.asarray(self.labels)[self.proba[self.tested].argmax(1)]
        return out

    def accuracy(self) -> float:
        t = self.tested
        return float(np.mean(self.pred[t] == self.y[t])) if t.any() else float("nan")

    def accuracy_ci(self, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
        """95 % interval of the accuracy, resampling whole groups (files of one artist are not
        independent, so a binomial interval would be too narrow)."""
        t = self.tested
        if not t.any():
            return float("nan"), float("nan")
        hits, sizes, pick = _resampled_groups(self.pred[t] == self.y[t], self.groups[t], n_boot=n_boot,
                                              rng=np.random.default_rng(seed))
        accs = hits[pick].sum(1) / sizes[pick].sum(1)
        return float(np.quantile(accs, 0.025)), float(np.quantile(accs, 0.975))

    def artist_accuracy(self, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
        """Accuracy with every artist (group) counting once, and its 95 % interval (artists resampled).

        What a pile of files by new artists, a few files each, approaches. The file-weighted
        :meth:`accuracy` leans on the largest artists, and the fold that tests a genre's
        dominant artist trains without most of that genre's files: it underestimates the model
        fitted on everything (benchmarks/library.py: cross-validated 51.9 % by file, 55.2 % by artist;
        the untagged files 77.3 % by file but 61.8 % by artist: one 10-file artist, all right).
        """
        t = self.tested
        if not t.any():
            return float("nan"), float("nan"), float("nan")
        hits, sizes, pick = _resampled_groups(self.pred[t] == self.y[t], self.groups[t], n_boot=n_boot,
                                              rng=np.random.default_rng(seed))
        per = hits / sizes
        boots = per[pick].mean(1)
        return float(per.mean()), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))

    def expected_accuracy(self, mix: dict, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
        """Accuracy to expect on files of another genre mix (genre → share), from the per-genre
        out-of-fold recall, with its 95 % interval (groups resampled within each genre). The
        library's own accuracy weighs genres by their files here; a pile of new files (e.g. the
        untagged ones, mix = their predicted genres) usually has another mix."""
        rng = np.random.default_rng(seed)
        pred, t = self.pred, self.tested
        total, boots = 0.0, np.zeros(n_boot)
        weight = sum(w for g, w in mix.items() if (t & (self.y == g)).any())
        for g, w in mix.items():
            sel = t & (self.y == g)
            if not sel.any() or not w:
                continue
            hits, sizes, pick = _resampled_groups(pred[sel] == g, self.groups[sel], n_boot=n_boot, rng=rng)
            total += w / weight * hits.sum() / sizes.sum()
            boots += w / weight * hits[pick].sum(1) / sizes[pick].sum(1)
        return float(total), float(np.quantile(boots, 0.025)), float(np.quantile(boots, 0.975))

    def written(self) -> np.ndarray:
        """Tested files ``tag`` would write (best genre at or above its threshold, not novel)."""
        out = np.zeros(len(self.y), dtype=bool)
        t = np.flatnonzero(self.tested)
        for i in t:
            j = int(self.proba[i].argmax())
            thr = self.thresholds.get(self.labels[j])
            out[i] = thr is not None and self.proba[i, j] >= thr and self.nearest[i] <= self.novelty_threshold
        return out

    def coverage(self) -> tuple[float, float]:
        """(share of tested files written, precision of those) at the target precision."""
        w, t = self.written(), self.tested
        if not t.any():
            return float("nan"), float("nan")
        cov = w[t].mean()
        prec = float(np.mean(self.pred[w] == self.y[w])) if w.any() else float("nan")
        return float(cov), prec

    def per_genre(self) -> list[dict]:
        pred, w = self.pred, self.written()
        rows = []
        for c in self.labels:
            mine = self.y == c
            tested = mine & self.tested
            said = (pred == c) & self.tested
            cov_here = (w & mine).sum() / tested.sum() if tested.any() else float("nan")
            recall = float(np.mean(pred[tested] == c)) if tested.any() else float("nan")
            precision = float(np.mean(self.y[said] == c)) if said.any() else float("nan")
            if c in self.never_tested:
                status = f"learned from one artist/album only ({self.never_tested[c]}): never tested, never written"
            elif self.thresholds.get(c) is None:
                status = f"too confused: no threshold reaches precision {self.precision:.2f}; never written"
            elif recall < 0.5:
                status = "unreliable: fewer than half its files recognised"
            else:
                status = "ok"
            rows.append({"genre": c, "files": int(mine.sum()), "artists": int(np.unique(self.groups[mine]).size),
                         "tested": int(tested.sum()), "recall": recall, "precision": precision,
                         "threshold": self.thresholds.get(c), "coverage": float(cov_here), "status": status})
        return rows

    def confusion(self) -> np.ndarray:
        from ..evaluation.protocols import confusion

        t = self.tested
        return confusion(self.y[t], self.pred[t].astype(str), self.labels)

    def summary_lines(self) -> list[str]:
        lo, hi = self.accuracy_ci()
        a_acc, a_lo, a_hi = self.artist_accuracy()
        n_art = np.unique(self.groups[self.tested]).size
        cov, prec = self.coverage()
        lines = [f"artist/album-grouped {self.folds}-fold cross-validation on {int(self.tested.sum())} of "
                 f"{len(self.y)} labelled files: accuracy {100 * self.accuracy():.1f} % "
                 f"(95 % interval {100 * lo:.1f}-{100 * hi:.1f} %, resampling artists)",
                 f"by artist (each of {n_art} artists counts once; what files by new artists approach): "
                 f"{100 * a_acc:.1f} % (95 % interval {100 * a_lo:.1f}-{100 * a_hi:.1f} %)",
                 (f"at precision {self.precision:.2f}: would tag {100 * cov:.1f} % of such files, "
                  f"{100 * prec:.1f} % of them right; the rest are 'not sure'" if cov > 0 else
                  f"at precision {self.precision:.2f}: would tag none of them (every genre is too confused or "
                  "too small; a lower --precision, or more tagged files, lets tag write)")
                 if math.isfinite(cov) else "no file could be tested"]
        for r in self.per_genre():
            if r["status"] != "ok":
                lines.append(f"  {r['genre']}: {r['status']}")
        if self.library is not None:
            for g, why in sorted(self.library.dropped.items()):
                lines.append(f"  {g}: dropped ({why})")
        return lines


def train_library(library: Library, *, recipe="library", precision: float = DEFAULT_PRECISION,
                  folds: int = DEFAULT_FOLDS, cache=_FEATURE_CACHE, jobs=None, progress: bool = True,
                  seed: int = 0):
    """Measure a recipe on a library (grouped cross-validation), then fit it on every labelled file.

    Returns ``(model, report)``: a :class:`~genrevision.model.GenreModel` carrying the
    abstention thresholds for ``precision``, the novelty reference and the out-of-fold
    probabilities (saved with it), and the :class:`LibraryReport`.

    Raises ValueError when the library has no genre with enough files, or too few artists
    for grouped folds.
    """
    from .._utils.audiohash import audio_digest
    from ..evaluation.protocols import make_splits, single_group_classes
    from ..features.extraction import extract_dataset
    from ..model.genre_model import fit_recipe, train_model
    from ..recipes import get_recipe
    from ..features.store import FeatureStore

    precision_thresholds(np.zeros((1, 1)), np.array(["x"]), ["x"], precision)  # parameter errors now
    ds = library.dataset
    if ds is None or len(ds.classes) < 2:
        raise ValueError(f"{ds.root if ds is not None else 'library'}: needs at least 2 genres with enough tagged "
                         f"files to learn from (found {', '.join(ds.classes) if ds is not None else 'none'}; "
                         f"dropped: {', '.join(f'{g} ({w})' for g, w in library.dropped.items()) or 'none'})")
    rec = get_recipe(recipe) if isinstance(recipe, str) else recipe
    store = FeatureStore(cache, rec.features.to_dict()) if cache else None
    res = extract_dataset(list(ds.paths), rec.features, store=store, jobs=jobs, progress=progress)
    keep = [i for i, p in enumerate(ds.paths) if p in res.features]
    ds = dataclasses.replace(ds.subset(keep), problems=list(res.failures))
    feats = [res.features[p] for p in ds.paths]
    y, groups = ds.labels, ds.groups
    labels = sorted(set(y.tolist()))
    once = single_group_classes(y, groups)
    n_groups = np.unique(groups[~np.isin(y, list(once))]).size
    k = int(min(folds, n_groups))
    splits = make_splits("group", labels=y, groups=groups, n_splits=k, n_repeats=1, random_state=seed)
    # make_splits keeps a genre of one group on the training side; a file of that group tagged with
    # another genre (a mislabel, a side project) must stay there too, or its artist is on both sides.
    pinned = np.isin(groups, list(once.values()))
    splits = [f._replace(train=np.union1d(f.train, f.test[pinned[f.test]]), test=f.test[~pinned[f.test]])
              for f in splits]
    strays = np.flatnonzero(pinned & ~np.isin(y, list(once)))
    if strays.size:
        # Those files are judged once more, by a model trained without their whole group (it then
        # knows nothing of that group's own genre: only the strays, tagged otherwise, are scored).
        splits.append(splits[0]._replace(train=np.flatnonzero(~pinned), test=strays))
    proba = np.full((len(y), len(labels)), np.nan)
    fold_of = np.full(len(y), -1)
    judged = np.zeros(len(y), dtype=bool)
    for n, fold in enumerate(progress_bar(splits, desc="grouped cross-validation", unit="fold", enabled=progress)):
        fold_of[fold.test] = n
        # The audit judges a file only where its genre was learned from 2 or more other groups in
        # that fold: with one (or none) its low probability says little about the tag.
        known = {c for c in labels if np.unique(groups[fold.train][y[fold.train] == c]).size >= 2}
        judged[fold.test] = np.isin(y[fold.test], list(known))
        clf, _, _ = fit_recipe(rec, [feats[i] for i in fold.train], y[fold.train], groups=groups[fold.train],
                               progress=False)
        X, _ = rec.matrix([feats[i] for i in fold.test])
        p = clf.predict_proba(X)
        cols = np.searchsorted(labels, [str(c) for c in clf.classes_])
        proba[fold.test] = 0.0
        proba[np.ix_(fold.test, cols)] = p  # a genre absent from a fold's training side gets 0 there
    tested = ~np.isnan(proba).any(1)
    model = train_model(ds, recipe=rec, cache=cache, jobs=jobs, progress=progress)
    views = list(rec.features.view_names)  # the image views: they tell speech and noise from music
    vectors = np.stack([pooled_windows([f], views) for f in feats])
    arrays, nearest = novelty_reference(vectors, groups, seed)
    limit = float(np.quantile(nearest[np.isfinite(nearest)], NOVELTY_QUANTILE)) if np.isfinite(nearest).any() else 1.0
    thresholds = precision_thresholds(proba[tested], y[tested], labels, precision)
    for c in once:  # never tested: no out-of-fold evidence that it can be written at this precision
        thresholds[c] = None
    digests = []
    for p in progress_bar(ds.paths, desc="audio digests", unit="file", enabled=progress):
        digests.append(audio_digest(p))
    report = LibraryReport(labels, list(ds.paths), y, groups, proba, tested, nearest, float(precision), thresholds,
                           limit, k, library, once, fold_of)
    cov, prec = report.coverage()
    lo, hi = report.accuracy_ci()
    model.library = {
        "precision": float(precision), "thresholds": thresholds, "novelty_threshold": limit,
        "novelty_quantile": NOVELTY_QUANTILE, "novelty_views": views, "novelty_seed": int(seed),
        "folds": k, "accuracy": report.accuracy(), "accuracy_ci95": [lo, hi],
        "artist_accuracy": list(report.artist_accuracy()), "coverage": cov,
        "coverage_precision": prec, "mapping": library.mapping, "never_tested": once,
    }
    label_idx = {c: i for i, c in enumerate(labels)}
    arrays.update({"oof_proba": np.nan_to_num(proba).astype(np.float32), "oof_tested": tested,
                   "oof_judged": judged & tested,
                   "oof_label": np.array([label_idx[c] for c in y], dtype=np.int32),
                   "oof_digest": np.array(digests, dtype=str)})
    model.library_arrays = arrays
    return model, report


# ----------------------------------------------------------------------------- audit


@dataclass
class AuditRow:
    """One tagged file: its genre, what the audio suggests, how strongly they disagree."""

    path: str
    tagged: str
    suggested: str
    p_suggested: float
    p_tagged: float
    source: str            # "out-of-fold" (never judged by a model trained on it) or "model" (not in training)
    digest: str = ""
    probabilities: dict = field(default_factory=dict)
    #: Share of the other files of its artist/album group tagged with the same genre, counting the
    #: file itself once ((same + 1) / (others + 1)): 1 for a file alone in its group.
    agreement: float = 1.0

    @property
    def score(self) -> float:
        """Lower = more doubtful: the audio's probability of the tagged genre times the group's agreement."""
        return self.p_tagged * self.agreement


def audit_library(inputs, model_path, *, jobs=None, progress: bool = True, cache="default",
                  segments=None) -> tuple[list, list]:
    """Files whose genre tag disagrees most with their audio, most doubtful first.

    A file the model was trained on is judged by its out-of-fold probabilities (from a fold
    model that never saw its artist), found by its audio digest (tagging does not change it);
    any other file by the model itself. The library's genres are read as at training (the
    model's stored map and spellings). Returns ``(rows, notes)``: rows ranked by the probability
    of the tagged genre times the agreement of the file's artist/album group (the share of the
    group's other files tagged alike: a file whose tag differs from its album's is more
    suspect), lowest first; notes = [(path, reason)] for files not judged (unreadable, a genre
    the model does not know, or a genre its fold learned from fewer than 2 other groups).
    """
    from .._utils.audiohash import audio_digest
    from .engine import DEFAULT_PREDICTION_CACHE, DEFAULT_SEGMENTS, Outcome, PredictionEngine, parse_segments
    from ..model.genre_model import load_model

    model = load_model(model_path, check_backbone=False)
    if model.library is None:
        raise ValueError(f"{os.fspath(model_path)}: this model has no out-of-fold predictions to audit with; "
                         "train it with: genrevision train LIBRARY --labels-from-tags --model FILE")
    lib = read_library(inputs, mapping=model.library.get("mapping") or None, min_tracks=1, progress=progress)
    a = model.library_arrays
    judged = a["oof_judged"] if "oof_judged" in a else a["oof_tested"]
    oof = {str(d): i for i, d in enumerate(a["oof_digest"]) if judged[i]}
    trained = {str(d) for d in a["oof_digest"]}
    by_key = {genre_key(c): c for c in model.labels}
    notes, rows, todo = list(lib.failures), [], []
    ds = lib.dataset
    for p, tagged in zip(ds.paths if ds is not None else [], ds.labels if ds is not None else []):
        label = by_key.get(genre_key(tagged))
        if label is None:
            notes.append((p, f"genre {str(tagged)!r} is not one the model learned; not judged"))
            continue
        try:
            dig = audio_digest(p)
        except OSError as err:
            notes.append((p, f"cannot read ({err.strerror or err})"))
            continue
        if dig in oof:
            probs = dict(zip(model.labels, (float(x) for x in a["oof_proba"][oof[dig]])))
            rows.append(_row(p, label, probs, "out-of-fold", dig))
        elif dig in trained:
            notes.append((p, "its genre had fewer than 2 other artists/albums to learn from in its fold "
                             "(or it is the genre's only one): not judged"))
        else:
            todo.append((p, label, dig))
    if todo:
        engine = PredictionEngine(model_path, jobs=jobs, progress=progress, desc="audit",
                                  segments=DEFAULT_SEGMENTS if segments is None else parse_segments(segments),
                                  cache=DEFAULT_PREDICTION_CACHE if cache == "default" else cache)
        want = {p: (label, dig) for p, label, dig in todo}
        for out in engine.run([p for p, _, _ in todo]):
            if not isinstance(out, Outcome) or not out.ok:
                notes.append((out.path, out.reason))
                continue
            label, dig = want[out.path]
            rows.append(_row(out.path, label, dict(out.prediction.probabilities), "model", dig))
    if ds is not None:
        tags: dict = {}
        for g, lab in zip(ds.groups, ds.labels):
            tags.setdefault(g, []).append(genre_key(lab))
        group_of = dict(zip(ds.paths, ds.groups))
        for r in rows:
            others = list(tags[group_of[r.path]])
            others.remove(genre_key(r.tagged))
            r.agreement = (sum(k == genre_key(r.tagged) for k in others) + 1) / (len(others) + 1)
    rows.sort(key=lambda r: (r.score, r.p_tagged, -r.p_suggested, r.path))
    return rows, notes


def _row(path, label, probs, source, digest) -> AuditRow:
    best = max(probs.items(), key=lambda kv: (kv[1], kv[0]))
    return AuditRow(path, label, best[0], float(best[1]), float(probs.get(label, 0.0)), source, digest, probs)


def write_audit(rows, model_path, *, limit: int | None = None, pretend: bool = False, log=None):
    """Write the suggested genre into the ``limit`` most doubtful files of an audit (all when None)
    whose suggestion differs from their tag, through ``tag``'s crash-safe writer and undo log
    (:func:`genrevision.apps.tagging.write_predictions`). Returns its TagResult."""
    from .engine import Outcome
    from ..model.genre_model import Prediction
    from .tagging import DEFAULT_LOG, write_predictions

    pick = [r for r in rows if r.suggested != r.tagged][:limit]
    outcomes = [Outcome(r.path, Prediction(r.path, r.suggested, dict(r.probabilities), {}), digest=r.digest)
                for r in pick]
    return write_predictions(outcomes, model_path, mode="force", top=1, pretend=pretend,
                             log=DEFAULT_LOG if log is None else log)


def audit_csv(rows, path) -> str:
    """The audit as CSV: rank, path, tagged genre, suggested genre and probabilities, source."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "path", "tagged", "suggested", "p_suggested", "p_tagged", "group_agreement", "score",
                    "source"])
        for i, r in enumerate(rows, 1):
            w.writerow([i, r.path, r.tagged, r.suggested, f"{r.p_suggested:.4f}", f"{r.p_tagged:.4f}",
                        f"{r.agreement:.3f}", f"{r.score:.5f}", r.source])
    return os.fspath(path)


# ----------------------------------------------------------------------------- report


def _pct(x) -> str:
    return "" if x is None or not math.isfinite(x) else f"{100 * x:.1f}"


def write_report(report: LibraryReport, folder, *, audit=None, top: int = 50) -> dict:
    """``report.html`` (summary, per-genre table, confusion matrix, dropped and unreliable genres,
    the most doubtful tags), ``genres.csv``, ``confusion.csv`` and ``out_of_fold.csv`` (every
    tested file's out-of-fold guess); with ``audit`` rows also ``audit.csv``. Returns their paths."""
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    out = {}
    per = report.per_genre()
    out["genres"] = os.path.join(folder, "genres.csv")
    with open(out["genres"], "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["genre", "files", "artists", "tested", "recall", "precision", "threshold", "coverage", "status"])
        for r in per:
            w.writerow([r["genre"], r["files"], r["artists"], r["tested"], _pct(r["recall"]), _pct(r["precision"]),
                        "" if r["threshold"] is None else f"{r['threshold']:.4f}", _pct(r["coverage"]), r["status"]])
        for g, why in sorted((report.library.dropped if report.library else {}).items()):
            w.writerow([g, "", "", "", "", "", "", "", f"dropped: {why}"])
    m = report.confusion()
    out["confusion"] = os.path.join(folder, "confusion.csv")
    with open(out["confusion"], "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["true \\ predicted"] + list(report.labels))
        for c, row in zip(report.labels, m):
            w.writerow([c] + [int(v) for v in row])
    out["out_of_fold"] = os.path.join(folder, "out_of_fold.csv")
    pred = report.pred
    with open(out["out_of_fold"], "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "group", "genre", "predicted", "tested", "novelty"] + [f"p_{c}" for c in report.labels])
        for i, p in enumerate(report.paths):
            w.writerow([p, report.groups[i], report.y[i], pred[i], int(report.tested[i]), f"{report.nearest[i]:.4f}"]
                       + [f"{x:.6f}" if report.tested[i] else "" for x in report.proba[i]])
    if audit is not None:
        out["audit"] = audit_csv(audit, os.path.join(folder, "audit.csv"))
    genre_rows = [[r["genre"], r["files"], r["artists"], r["tested"], _pct(r["recall"]), _pct(r["precision"]),
                   "never" if r["threshold"] is None else f"{r['threshold']:.2f}", _pct(r["coverage"]), r["status"]]
                  for r in per]
    lib = report.library
    library = None if lib is None else {
        "n_labelled": len(report.y), "n_untagged": len(lib.untagged), "several": lib.several,
        "n_failures": len(lib.failures), "spellings": [[k, ", ".join(v)] for k, v in sorted(lib.spellings.items())]}
    audit_rows = None if audit is None else [
        [i, r.path, r.tagged, r.suggested, f"{r.p_suggested:.2f}", f"{r.p_tagged:.2f}", r.source]
        for i, r in enumerate(audit[:top], 1)]
    page = render("library_report.html", summary_lines=report.summary_lines(), precision=report.precision,
                  novelty_threshold=report.novelty_threshold, library=library, genre_rows=genre_rows,
                  labels=list(report.labels), confusion=[(c, [int(v) for v in row]) for c, row in zip(report.labels, m)],
                  most=max(1, int(m.max()) if m.size else 1),
                  dropped=[[g, why] for g, why in sorted((lib.dropped if lib else {}).items())],
                  audit=audit, audit_rows=audit_rows, top=top)
    out["html"] = os.path.join(folder, "report.html")
    with open(out["html"], "w", encoding="utf-8") as fh:
        fh.write(page)
    return out
