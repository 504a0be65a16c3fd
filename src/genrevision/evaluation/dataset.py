"""Datasets: a folder per label (GTZAN's layout included) or a CSV manifest.

A CSV manifest has a header with ``path`` and ``label`` (``genre`` is accepted
for ``label``), and optionally ``group`` (artist, album or source track: what
must stay on one side of a split) and ``split`` (train/valid/test). Relative
paths are resolved against the manifest's folder.
"""
from __future__ import annotations

import csv
import io
import os
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from ..signal.audio import AUDIO_EXTENSIONS
from ..errors import DatasetError
from .._utils.files import NotRegularFile, open_regular

__all__ = ["Dataset", "DatasetError", "load_dataset", "load_mirdata", "canonical_label", "LABEL_ALIASES",
           "find_audio", "find_inputs", "gtzan_track_number"]

#: Label spellings of other sources → GTZAN's folder names (the one place they are mapped):
#: mirdata's gtzan_genre loader calls the hiphop folder "hip-hop".
LABEL_ALIASES = {"hip-hop": "hiphop"}


def canonical_label(label: str) -> str:
    """GTZAN's spelling of a genre label (``"hip-hop"`` → ``"hiphop"``); other labels unchanged."""
    return LABEL_ALIASES.get(label, label)


@dataclass
class Dataset:
    """Tracks with labels and, when known, groups and a fixed split."""

    paths: list[str]
    labels: np.ndarray
    groups: np.ndarray | None = None
    splits: np.ndarray | None = None
    root: str = ""
    problems: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels.tolist()))

    @property
    def track_ids(self) -> np.ndarray:
        """GTZAN track numbers (``blues.00012.wav`` → 12); -1 where a name has none."""
        return np.array([gtzan_track_number(p) for p in self.paths])

    def subset(self, index) -> "Dataset":
        index = np.asarray(index)
        pick = lambda a: None if a is None else a[index]  # noqa: E731
        return Dataset([self.paths[i] for i in index], self.labels[index], pick(self.groups),
                       pick(self.splits), self.root)


def gtzan_track_number(path, *, strict: bool = False) -> int:
    """The GTZAN track number in a file name (``"genres/blues/blues.00012.wav"`` → 12).

    A name that is not ``<genre>.<digits>.<ext>`` gives -1, or with ``strict=True`` a
    ``ValueError`` (:func:`genrevision.evaluation.gtzan_track_number` is the strict form).
    """
    m = re.search(r"\.(\d+)\.[A-Za-z0-9]+$", os.path.basename(os.fspath(path)))
    if m:
        return int(m.group(1))
    if strict:
        raise ValueError(f"cannot parse a GTZAN track number from {os.fspath(path)!r}; "
                         "expected a name like 'blues.00012.wav'.")
    return -1


def find_audio(path: str, *, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[str]:
    """All audio files under ``path`` (recursively, sorted), or ``[path]`` for a file.

    ``extensions``: lower-case file name endings counted as audio.
    """
    if os.path.isfile(path):
        return [path]
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(tuple(extensions)) and not name.startswith("."):
                found.append(os.path.join(dirpath, name))
    return found


def find_inputs(inputs, *, extensions: tuple[str, ...] = AUDIO_EXTENSIONS, follow_symlinks: bool = True,
                symlink_hint: str = "", empty_folders: bool = True) -> tuple[list[str], list[tuple[str, str]]]:
    """(files, [(name, reason)]): the files named in ``inputs`` as given, and the audio files under
    the folders named (:func:`find_audio`, in input order, duplicates kept).

    A name that does not exist is listed with the reason "no such file or folder". Unless
    ``follow_symlinks``, a symbolic link met in a folder whose target lies outside that folder is
    listed with a reason (ending in ``symlink_hint``), not returned: a link can lead anywhere, to
    another user's music or a system file. Without ``empty_folders``, a folder holding no audio
    file raises ValueError (one line naming it and the extensions looked for).
    """
    from .._utils.files import printable

    files, missing = [], []
    for item in inputs:
        item = os.fspath(item)
        if not os.path.exists(item):
            missing.append((item, "no such file or folder"))
        elif os.path.isdir(item):
            found = find_audio(item, extensions=extensions)
            if not found and not empty_folders:
                raise ValueError(f"{item}: no audio files found (looked for {', '.join(extensions)})")
            root = os.path.realpath(item)
            for p in found:
                if not follow_symlinks and os.path.islink(p) and \
                        os.path.commonpath([root, os.path.realpath(p)]) != root:
                    missing.append((p, f"a symbolic link to {printable(os.path.realpath(p))}, outside {item}; "
                                       f"not followed{symlink_hint}"))
                else:
                    files.append(p)
        else:
            files.append(item)
    return files, missing


def _from_folders(root: str) -> Dataset:
    # GTZAN ships as genres/<genre>/...; descend through single wrapper folders.
    base = root
    while True:
        subdirs = [d for d in sorted(os.listdir(base)) if os.path.isdir(os.path.join(base, d))]
        direct_audio = [f for f in os.listdir(base) if f.lower().endswith(AUDIO_EXTENSIONS)]
        if len(subdirs) == 1 and not direct_audio:
            base = os.path.join(base, subdirs[0])
            continue
        break
    paths, labels = [], []
    for label in subdirs:
        for p in find_audio(os.path.join(base, label)):
            paths.append(p)
            labels.append(label)
    if not paths:
        raise DatasetError(f"{root}: no audio files in label folders (expected <label>/<file>.wav|flac|mp3|...)")
    return Dataset(paths, np.array(labels), root=root)


def _from_csv(manifest: str, *, strict: bool) -> Dataset:
    base = os.path.dirname(os.path.abspath(manifest))
    try:
        raw = open_regular(manifest)
    except OSError as err:
        raise DatasetError(f"{manifest}: {err if isinstance(err, NotRegularFile) else f'cannot read ({err.strerror or err})'}") from None
    # utf-8-sig: spreadsheets save a byte-order mark; surrogateescape: a file name
    # that is not valid UTF-8 is carried through byte for byte (os.fsencode gives the bytes back).
    with io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="") as f:
        try:
            reader = csv.DictReader(f)
            cols = [c.strip().lower() for c in (reader.fieldnames or [])]
            if "path" not in cols or not ({"label", "genre"} & set(cols)):
                found = repr(cols) if len(repr(cols)) <= 120 else repr(cols)[:117] + "..."
                raise DatasetError(f"{manifest}: CSV manifest needs columns 'path' and 'label', found {found}")
            rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if isinstance(k, str) and k}
                    for row in reader]
        except csv.Error as err:
            raise DatasetError(f"{manifest}: not a readable CSV manifest (line {reader.line_num}: {err})") from None
    paths, labels, groups, splits, problems = [], [], [], [], []
    seen: dict[str, tuple[int, str, str, str]] = {}  # file → (row, label, group, split) of its first row
    dropped = []
    for i, row in enumerate(rows, start=2):
        path = row["path"]
        label = row.get("label") or row.get("genre") or ""
        full = path if os.path.isabs(path) else os.path.join(base, path)
        if not path:
            problems.append((f"{manifest}:{i}", "empty path"))
            continue
        if not label:
            problems.append((full, f"no label (row {i} of {manifest})"))
            continue
        split = row.get("split", "")
        if split and split not in ("train", "valid", "test"):
            problems.append((full, f"unknown split {split!r} (row {i}; use train, valid or test)"))
            continue
        group = row.get("group", "")
        key = os.path.normcase(os.path.normpath(os.path.abspath(full)))
        if key in seen:
            # The same file twice would sit on both sides of a fold (a leak), and
            # with two labels one of them is wrong: refuse, the user must choose.
            first, *was = seen[key]
            for what, a, b in (("labelled", was[0], label), ("in group", was[1], group), ("in split", was[2], split)):
                if a != b:
                    raise DatasetError(f"{manifest}:{i}: {full} is {what} {b!r} here but {a!r} on row {first}")
            dropped.append(f"row {i} (= row {first}: {path})")
            continue
        seen[key] = (i, label, group, split)
        paths.append(full)
        labels.append(label)
        groups.append(group)
        splits.append(split)
    if dropped:
        warnings.warn(f"{manifest}: dropped {len(dropped)} duplicate row{'s' * (len(dropped) > 1)}: "
                      f"{'; '.join(dropped[:5])}{' ...' if len(dropped) > 5 else ''}", stacklevel=3)
    if strict and problems:
        raise DatasetError("; ".join(f"{p}: {r}" for p, r in problems))
    if not paths:
        raise DatasetError(f"{manifest}: no usable rows")
    return Dataset(
        paths, np.array(labels),
        np.array(groups) if any(groups) else None,
        np.array(splits) if any(splits) else None,
        root=base, problems=problems,
    )


def load_dataset(path: str, *, strict: bool = False) -> Dataset:
    """Read a dataset from a label-folder tree or a CSV manifest.

    Parameters
    ----------
    path : str
        A folder (``<label>/<files>``, GTZAN's ``genres/<genre>/`` included) or a
        ``.csv`` manifest with columns ``path,label[,group][,split]``.
    strict : bool
        Raise on the first bad manifest row instead of listing it in
        ``Dataset.problems`` and going on with the rest.
    """
    if not os.path.exists(path):
        raise DatasetError(f"{path}: no such file or folder")
    if os.path.isdir(path):
        return _from_folders(path)
    if path.lower().endswith(".csv"):
        return _from_csv(path, strict=strict)
    raise DatasetError(f"{path}: a dataset is a folder of label folders or a .csv manifest")


def load_mirdata(name: str = "gtzan_genre", *, data_home: str | None = None, version: str = "default",
                 index: str | None = None) -> Dataset:
    """A dataset from a mirdata loader: its index, its audio files under ``data_home``, its genre labels.

    Parameters
    ----------
    name : str
        mirdata dataset name, e.g. ``"gtzan_genre"`` (tracks need a ``genre``).
    data_home : str, optional
        Folder holding the dataset in mirdata's layout (for gtzan_genre:
        ``gtzan_genre/genres/<genre>/<genre>.000NN.wav``); default mirdata's
        ``~/mir_datasets/<name>``.
    version : str
        Index version (mirdata's ``"default"``).
    index : str, optional
        A local copy of mirdata's index JSON, when mirdata's own is not
        installed (it is downloaded once by
        ``mirdata.initialize(name).download(["index"])``).

    Returns
    -------
    Dataset
        Tracks of the index whose audio file exists (a warning says how many
        are missing), labels in GTZAN's spelling (see :data:`LABEL_ALIASES`),
        ``root`` = ``data_home``.

    Raises
    ------
    DatasetError
        mirdata not installed, unknown dataset, no index, no genre labels, or
        no audio file present.
    """
    try:
        import mirdata
    except ImportError:
        raise DatasetError("reading a mirdata dataset needs mirdata: pip install 'genrevision[mirdata]'") from None
    if name not in mirdata.list_datasets():
        raise DatasetError(f"unknown mirdata dataset {name!r} (e.g. gtzan_genre; see mirdata.list_datasets())")
    if data_home is not None and not os.path.isdir(data_home):
        raise DatasetError(f"{data_home}: no such folder (the mirdata data home)")
    try:
        mds = mirdata.initialize(name, data_home=data_home, version=version)
    except ValueError as err:
        raise DatasetError(f"mirdata {name}: {err}") from None
    if index is not None:
        if not os.path.isfile(index):
            raise DatasetError(f"{index}: no such index file")
        mds.index_path = os.fspath(index)
    try:
        track_ids = mds.track_ids
    except FileNotFoundError:
        raise DatasetError(f"mirdata's {name} index is not installed: fetch it once with python -c "
                           f"\"import mirdata; mirdata.initialize('{name}').download(['index'])\" "
                           "or pass a copy with --mirdata-index FILE") from None
    except (ValueError, OSError) as err:
        raise DatasetError(f"{index or mds.index_path}: unreadable mirdata index ({err})") from None
    paths, labels, missing = [], [], 0
    for tid in track_ids:
        track = mds.track(tid)
        genre = getattr(track, "genre", None)
        path = getattr(track, "audio_path", None)
        if genre is None:
            raise DatasetError(f"mirdata {name}: track {tid} has no genre label")
        if not path or not os.path.isfile(path):
            missing += 1
            continue
        paths.append(path)
        labels.append(canonical_label(str(genre)))
    if not paths:
        raise DatasetError(f"{mds.data_home}: none of the {len(track_ids)} audio files of mirdata's {name} index "
                           f"is there (expected e.g. {mds.track(track_ids[0]).audio_path if track_ids else '?'})")
    if missing:
        warnings.warn(f"{mds.data_home}: {missing} of the {len(track_ids)} tracks of mirdata's {name} index are "
                      f"missing; using the {len(paths)} present", stacklevel=2)
    return Dataset(paths, np.array(labels), root=mds.data_home)
