"""Write predicted genres into a music collection's tags, safely, and undo it.

:func:`tag_files` walks files and folders, predicts each file with
:class:`genrevision.apps.engine.PredictionEngine` (worker processes, sampled
segments, a per-file answer cache) and writes the chosen genres with
**mutagen** into a copy of the file that is renamed over it (see :class:`_Copy`: a
kill at any instant leaves the whole old file or the whole new one, and the copy's audio
data is checked to be the original's before the rename):

- MP3, WAV, AIFF: ID3v2.4 ``TCON`` with one value per genre (``id3v23=True``
  writes ID3v2.3 with the values joined by an explicit ``separator``);
- FLAC, Ogg Vorbis, Ogg Opus: one Vorbis comment ``GENRE`` per genre;
- MP4/M4A: the ``©gen`` atom, one value per genre (players read it before a
  numeric ``gnre`` atom, which is left as it is).

Which genres: the model's labels by fused probability (labels mapped to the
same name by ``mapping`` add up), the ``top`` best at or above ``min_prob``,
and always the best one. A file that already has a genre is left alone
(``mode="keep"``), replaced (``"force"``) or merged with ours (``"merge"``,
its own genres first). A read-only file (no write permission bit, even for
root) is reported and left alone; ``pretend=True`` computes everything and
writes nothing.

Abstaining: a model trained on a library's own tags (:mod:`genrevision.apps.library`)
carries per-genre probability thresholds chosen on out-of-fold predictions for a
target precision, and an out-of-distribution check; with it a file whose best
genre is below its threshold, or whose audio is unlike the training library,
is left alone as "not sure" (``precision=`` picks another target).

Undo: before a file is written, one JSON line is appended (and synced) to the
log: the file, its genre field exactly as it was (ID3 frames with their text
encoding and the tag version, Vorbis values and their position, MP4 atoms),
whether it had a tag at all, the genres written, the digest of the audio
data, the model's SHA-256 and the time. :func:`undo` puts every logged file's
genre field back, newest first, and nothing else (a tag we created is removed
only while it holds nothing else); a file whose genre or audio changed since is
left alone unless forced, and a damaged log line is skipped and reported.
"""
from __future__ import annotations

import contextlib
import csv
import datetime
import errno
import io
import json
import math
import os
import signal
import shutil
import stat
import tempfile
import threading
import uuid
from dataclasses import asdict, dataclass, field

from .._utils.rendering import render
from .._utils.validation import check_scalar
from ..errors import TagError
from .._utils.files import printable as _printable

__all__ = [
    "TAG_EXTENSIONS",
    "DEFAULT_TOP",
    "DEFAULT_MIN_PROB",
    "DEFAULT_LOG",
    "TagError",
    "Decision",
    "TagResult",
    "choose_genres",
    "load_mapping",
    "read_genres",
    "read_tag_fields",
    "find_taggable",
    "tag_files",
    "write_predictions",
    "undo",
    "write_report",
]

#: File name endings walked in folders (formats mutagen tags and the decoder reads; .m4a/.mp4 are
#: tagged when given, but need a decoder this project does not have to be predicted).
TAG_EXTENSIONS = (".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".wav", ".aiff", ".aif")
#: At most this many genres per file by default.
DEFAULT_TOP = 2
#: A genre beyond the best needs at least this probability by default.
DEFAULT_MIN_PROB = 0.25
#: Where every run appends its undo log ($XDG_DATA_HOME honoured).
DEFAULT_LOG = os.path.join(os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share"),
                           "genrevision", "tag-log.jsonl")
_MODES = ("keep", "force", "merge")


# ----------------------------------------------------------------------------- choosing genres


def choose_genres(probabilities: dict, *, top: int = DEFAULT_TOP, min_prob: float = DEFAULT_MIN_PROB,
                  mapping: dict | None = None) -> list[tuple[str, float]]:
    """The genres to write for one file, best first, with their probabilities.

    Parameters
    ----------
    probabilities : dict label → probability
    top : int
        At most this many genres (>= 1).
    min_prob : float in [0, 1]
        Genres after the best need at least this probability; the best is always kept.
    mapping : dict label → name, optional
        The user's names for the model's labels; labels mapped to one name add
        their probabilities; unmapped labels keep their own name.
    """
    check_scalar(top, "top", kind=int, min=1, whole_floats=True)
    check_scalar(min_prob, "min_prob", kind=float, min=0, max=1)
    mapping = mapping or {}
    summed: dict[str, float] = {}
    for label, p in probabilities.items():
        name = mapping.get(label, label)
        summed[name] = summed.get(name, 0.0) + float(p)
    ranked = sorted(summed.items(), key=lambda kv: (-kv[1], kv[0]))
    return [ranked[0]] + [(n, p) for n, p in ranked[1:int(top)] if p >= min_prob]


def load_mapping(path, labels=None, *, allow_empty: bool = False) -> dict[str, str]:
    """A label → name mapping from a JSON object or a two-column CSV (``label,name``; a header is optional).

    Several labels may map to one name. Raises ValueError naming the file for
    a malformed file, an empty name (unless ``allow_empty``: the training map of
    :func:`genrevision.apps.library.read_library`, where a genre mapped to nothing is
    dropped), or (when ``labels`` is given) a label the model does not have.
    """
    path = os.fspath(path)
    from .._utils.files import open_regular

    try:
        with open_regular(path) as f:
            text = f.read(1 << 22).decode("utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such mapping file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read the mapping ({getattr(err, 'strerror', None) or err})") from None
    if text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except ValueError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not all(isinstance(v, str) for v in raw.values()):
            raise ValueError(f"{path}: every value must be a genre name (a string)")
        mapping = {str(k).strip(): v.strip() for k, v in raw.items()}
    else:
        rows = [r for r in csv.reader(io.StringIO(text)) if r and any(c.strip() for c in r)]
        if rows and [c.strip().lower() for c in rows[0][:2]] in (["label", "name"], ["label", "genre"]):
            rows = rows[1:]
        bad = [i for i, r in enumerate(rows, 1) if len(r) != 2]
        if bad:
            raise ValueError(f"{path}: expected JSON {{\"label\": \"name\"}} or CSV rows 'label,name'; "
                             f"row {bad[0]} has {len(rows[bad[0] - 1])} columns")
        mapping = {r[0].strip(): r[1].strip() for r in rows}
    empty = [k for k, v in mapping.items() if not v]
    if empty and not allow_empty:
        raise ValueError(f"{path}: empty genre name for {', '.join(empty)}")
    if labels is not None:
        unknown = sorted(set(mapping) - {str(x) for x in labels})
        if unknown:
            raise ValueError(f"{path}: the model has no label {', '.join(map(repr, unknown))} "
                             f"(its labels: {', '.join(map(str, labels))})")
    return mapping


# ----------------------------------------------------------------------------- reading and writing tags


def _open(path: str, *, shown: str | None = None):
    """The mutagen file object and its tag kind ("id3", "vorbis", "mp4"); errors name ``shown`` (default ``path``)."""
    shown = path if shown is None else shown
    import mutagen
    from mutagen.id3 import ID3FileType
    from mutagen.mp4 import MP4
    from mutagen.ogg import OggFileType

    from .._utils.files import NotRegularFile, check_regular

    try:
        check_regular(path)  # a FIFO named x.mp3 is refused instead of blocking
        f = mutagen.File(path)
    except FileNotFoundError:
        raise TagError(shown, "no such file") from None
    except NotRegularFile as err:
        raise TagError(shown, str(err)) from None
    except PermissionError:
        raise TagError(shown, "cannot read (permission denied)") from None
    except Exception as err:  # noqa: BLE001 - mutagen's errors of a damaged file
        raise TagError(shown, f"cannot read tags ({_why(err)})") from None
    if f is None:
        raise TagError(shown, "not a taggable audio file (unknown format)")
    from mutagen.aiff import AIFF
    from mutagen.flac import FLAC
    from mutagen.wave import WAVE

    if isinstance(f, (ID3FileType, WAVE, AIFF)):
        return f, "id3"
    if isinstance(f, (FLAC, OggFileType)):
        return f, "vorbis"
    if isinstance(f, MP4):
        return f, "mp4"
    raise TagError(shown, f"cannot write genres into {type(f).__name__} files")


def _why(err: BaseException) -> str:
    """mutagen's own reason for a damaged file; its internal errors (an AttributeError from a
    damaged block, a bare ``error``) are not a reason a user can act on."""
    import mutagen

    msg = str(err).splitlines()[0].strip() if str(err) else ""
    if not isinstance(err, mutagen.MutagenError) or not msg or msg == type(err).__name__:
        return "damaged or unsupported tag data"
    return _printable(msg, 200)


def _raw(f, kind: str) -> list[str]:
    """The genre field's values as stored (what undo compares)."""
    if f.tags is None:
        return []
    if kind == "id3":
        return [t for fr in f.tags.getall("TCON") for t in fr.text]
    if kind == "vorbis":
        return [v for k, v in f.tags if k.lower() == "genre"]
    return list(f.tags.get("\xa9gen", []))


def _genres(f, kind: str) -> list[str]:
    """The genres a player shows (ID3 numeric references resolved), empty values left out."""
    if f.tags is None:
        return []
    if kind == "id3":
        out = [g for fr in f.tags.getall("TCON") for g in fr.genres]
    elif kind == "mp4":
        from mutagen.id3 import TCON

        # Players read ©gen and fall back to the numeric (ID3v1) gnre atom.
        out = list(f.tags.get("\xa9gen", [])) or [
            TCON.GENRES[g - 1] for g in f.tags.get("gnre", []) if 0 < g <= len(TCON.GENRES)]
    else:
        out = _raw(f, kind)
    return [g.strip() for g in out if g and g.strip()]


def read_genres(path) -> list[str]:
    """The genres a file already has (empty list when none). Raises :class:`TagError`."""
    f, kind = _open(os.fspath(path))
    return _genres(f, kind)


#: Where each tag kind keeps the fields :func:`read_tag_fields` returns (ID3 frame, Vorbis keys, MP4 atom).
_FIELDS = {"album_artist": ("TPE2", ("albumartist", "album artist", "album_artist"), "aART"),
           "artist": ("TPE1", ("artist",), "\xa9ART"),
           "album": ("TALB", ("album",), "\xa9alb")}


def read_tag_fields(path) -> dict:
    """A file's genres (as :func:`read_genres`) and its first album artist, artist and album
    ("" when absent), the fields a library is grouped by. Raises :class:`TagError`."""
    f, kind = _open(os.fspath(path))
    out = {"genres": _genres(f, kind)}
    for name, (frame, keys, atom) in _FIELDS.items():
        values = []
        if f.tags is not None:
            if kind == "id3":
                values = [t for fr in f.tags.getall(frame) for t in fr.text]
            elif kind == "vorbis":
                values = [v for k, v in f.tags if k.lower() in keys]
            else:
                values = [v for v in f.tags.get(atom, []) if isinstance(v, str)]
        out[name] = next((str(v).strip() for v in values if str(v).strip()), "")
    return out


def _snapshot(f, kind: str) -> dict:
    """Everything undo needs to put the genre field back exactly."""
    had = f.tags is not None
    snap = {"kind": kind, "had_tags": had, "padding": _padding(f)}
    if kind == "id3":
        snap["version"] = list(f.tags.version) if had else None
        snap["frames"] = [{"encoding": int(fr.encoding), "text": list(fr.text)} for fr in f.tags.getall("TCON")] if had else []
    elif kind == "vorbis":
        items = list(f.tags) if had else []
        idx = [i for i, (k, _) in enumerate(items) if k.lower() == "genre"]
        snap["values"] = [(items[i][0], items[i][1]) for i in idx]
        snap["index"] = idx[0] if idx else None
    else:
        snap["gen"] = list(f.tags.get("\xa9gen", [])) if had else []
    return snap


def _padding(f) -> int | None:
    """Bytes of padding after the tags now (None: unknown). Undo writes the same amount back, so
    a restored tag region has its old size (byte for byte where mutagen wrote it in the same order)."""
    from mutagen.flac import FLAC, Padding

    if isinstance(f, FLAC):
        pads = [b.length for b in f.metadata_blocks if isinstance(b, Padding)]
        return sum(pads) if pads else 0  # mutagen always writes a padding block: none comes back as an empty one (4 bytes)
    pad = getattr(f.tags, "_padding", None)  # mutagen's own record of the tag's padding when it read it
    return int(pad) if isinstance(pad, int) else None


def _set_vorbis(f, pairs: list, index) -> None:
    if f.tags is None:
        f.add_tags()
    rest = [(k, v) for k, v in list(f.tags) if k.lower() != "genre"]
    at = len(rest) if index is None else min(int(index), len(rest))
    list.clear(f.tags)
    list.extend(f.tags, rest[:at] + [tuple(p) for p in pairs] + rest[at:])


def _save_id3(f, version: int, sep: str | None, **kw) -> None:
    # v23_sep=None keeps several values apart (as ID3v2.4's NUL separator) when none is asked.
    f.save(v2_version=version, v23_sep=sep, **kw)


def _write(f, kind: str, names: list[str], *, id3v23: bool, separator: str | None) -> None:
    if kind == "id3":
        from mutagen.id3 import TCON

        if f.tags is None:
            f.add_tags()
        f.tags.delall("TCON")
        text = [separator.join(names)] if id3v23 else list(names)
        f.tags.add(TCON(encoding=1 if id3v23 else 3, text=text))  # v2.3 has no UTF-8: UTF-16
        _save_id3(f, 3 if id3v23 else 4, separator if id3v23 else None)
    elif kind == "vorbis":
        idx = [i for i, (k, _) in enumerate(list(f.tags or [])) if k.lower() == "genre"]
        _set_vorbis(f, [("GENRE", n) for n in names], idx[0] if idx else None)
        f.save()
    else:
        if f.tags is None:
            f.add_tags()
        f.tags["\xa9gen"] = list(names)  # a numeric gnre atom stays: ©gen overrides it, and mutagen cannot write it back
        f.save()


def _expected_raw(kind: str, names: list[str], *, id3v23: bool, separator: str | None) -> list[str]:
    return [separator.join(names)] if kind == "id3" and id3v23 else list(names)


def _restore(f, kind: str, snap: dict) -> None:
    """Put the genre field back as the snapshot has it, and nothing else: a tag the run created is
    removed only while it holds nothing but (what remains of) the genre field, so a title added
    since, or any field of a file a forged log line names, is never lost."""
    pad = snap.get("padding")
    kw = {} if pad is None else {"padding": lambda info: pad}
    created = not snap["had_tags"]
    if kind == "id3":
        from mutagen.id3 import TCON

        if f.tags is None:
            f.add_tags()
        f.tags.delall("TCON")
        for fr in snap["frames"]:
            f.tags.add(TCON(encoding=fr["encoding"], text=fr["text"]))
        if created and not f.tags.values() and not f.tags.unknown_frames:
            f.delete()
            return
        version = snap["version"] if snap.get("version") else list(f.tags.version)
        _save_id3(f, int(version[1]), None, **kw)
    elif kind == "vorbis":
        _set_vorbis(f, snap["values"], snap["index"])
        if created and not len(f.tags):
            f.delete()
            return
        f.save(**kw)
    else:
        if f.tags is None:
            f.add_tags()
        if snap["gen"]:
            f.tags["\xa9gen"] = snap["gen"]
        else:
            f.tags.pop("\xa9gen", None)
        if created and not len(f.tags):
            f.delete()
            return
        f.save(**kw)


def _old_raw(snap: dict) -> list[str]:
    if snap["kind"] == "id3":
        return [t for fr in snap["frames"] for t in fr["text"]]
    if snap["kind"] == "vorbis":
        return [v for _, v in snap["values"]]
    return list(snap["gen"])


def _read_only(path: str) -> bool:
    # The write permission bits, not os.access: root may write anything, and a file the
    # user made read-only is left alone all the same.
    st = os.stat(path)
    return not (st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)) or not os.access(path, os.W_OK)


@contextlib.contextmanager
def _deferred_signals():
    """Hold Ctrl-C and SIGTERM from a file's log line to its rename, so a stop never leaves a change
    logged but not made (a kill -9 cannot be held, and is safe: see :class:`_Copy`); the signal
    takes effect as soon as the file is written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list = []
    old = {sig: signal.signal(sig, lambda signum, frame: caught.append((signum, frame)))
           for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for signum, frame in caught[:1]:
            handler = old[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


# ----------------------------------------------------------------------------- crash-safe writes

#: Temporary copies are named ``.<file name>.gv-XXXX.tmp<ext>`` beside the file (hidden: the folder
#: walk leaves them out; the extension kept: mutagen tells formats partly by it).
_TMP_MID = ".gv-"


def _tmp_glob(path: str) -> str:
    import glob

    folder, name = os.path.split(path)
    return os.path.join(glob.escape(folder), f".{glob.escape(name)}{_TMP_MID}*.tmp{glob.escape(os.path.splitext(name)[1])}")


def _lock(fd: int, *, wait: bool) -> bool:
    """An advisory lock on a temporary copy while it is being written: a killed writer's lock goes
    with it, so a leftover copy that can be locked belongs to no live process."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no leftover clean-up
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except OSError:
        return False


def _remove_leftovers(path: str) -> list[str]:
    """Remove temporary copies of ``path`` left by a killed run (the file itself is whole: the copy
    never replaced it); returns their names."""
    import glob

    gone = []
    for tmp in glob.glob(_tmp_glob(path)):
        try:
            fd = os.open(tmp, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if _lock(fd, wait=False):
                os.unlink(tmp)
                gone.append(tmp)
        except OSError:
            pass
        finally:
            os.close(fd)
    return gone


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:  # pragma: no cover - a folder we just wrote in
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a folder; the rename is done all the same
        pass
    finally:
        os.close(fd)


class _Copy:
    """A tagged copy of a user's file, written beside it and renamed over it.

    The file is copied to a temporary file in its own folder, mutagen writes
    the tags into the copy, the copy's audio is checked against the original's
    (the same :func:`~genrevision._utils.audiohash.audio_digest`), synced, given the
    original's mode, owner and extended attributes, and renamed over the
    original (one atomic ``rename``), then the folder is synced. At every
    instant the path names the whole old file or the whole new one; a kill
    leaves at most a hidden ``.NAME.gv-*.tmp`` copy, removed by the next run
    or undo of that file. The path of a symbolic link is resolved first, so the
    link stays a link.
    """

    def __init__(self, path: str, *, expect_digest: str | None = None):
        from .._utils.audiohash import audio_digest

        self.path = path
        self.real = os.path.realpath(path)
        self.tmp = None
        st = os.stat(self.real)
        if st.st_nlink > 1:
            raise TagError(path, f"has {st.st_nlink} hard links; replacing it would split them, so not tagged")
        self.stat = st
        _remove_leftovers(self.real)
        folder, name = os.path.split(self.real)
        try:
            fd, self.tmp = tempfile.mkstemp(dir=folder or ".", prefix=f".{name}{_TMP_MID}",
                                                          suffix=".tmp" + os.path.splitext(name)[1])
        except PermissionError:
            raise TagError(path, "cannot write in its folder (permission denied); not tagged") from None
        try:
            _lock(fd, wait=True)
            self._fd = fd
            from .._utils.files import open_regular

            with open_regular(self.real) as src, open(os.dup(fd), "wb", closefd=True) as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
            # The bytes this copy holds are the ones checked: a file replaced since it was predicted
            # is refused here, not written with another file's genre.
            self.digest = audio_digest(self.tmp)
            if expect_digest is not None and self.digest != expect_digest:
                raise TagError(path, "its audio changed since it was predicted (replaced while the run went on); "
                                     "not tagged, run again")
        except BaseException:
            self.discard()
            raise

    def open(self):
        """The copy as a mutagen file and its tag kind (see :func:`_open`)."""
        f, kind = _open(self.tmp, shown=self.path)
        _check_tags_kept(self.tmp, kind, shown=self.path)
        return f, kind

    def commit(self) -> None:
        """Check the copy's audio, sync it and rename it over the file."""
        from .._utils.audiohash import audio_digest

        if audio_digest(self.tmp) != self.digest:
            raise TagError(self.path, "writing the tag would change its audio data; not tagged")
        st = self.stat
        try:
            os.chown(self.tmp, st.st_uid, st.st_gid)
        except PermissionError:
            if st.st_uid != os.geteuid():
                raise TagError(self.path, "owned by another user: replacing it would change its owner; not tagged") from None
            with contextlib.suppress(OSError):
                os.chown(self.tmp, -1, st.st_gid)
        shutil.copystat(self.real, self.tmp)  # mode, extended attributes, flags ...
        os.utime(self.tmp)  # ... but the time of this change: players rescan a file whose tags changed
        os.fsync(self._fd)
        now = os.stat(self.real)
        if (now.st_ino, now.st_dev, now.st_size, now.st_mtime_ns) != (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns):
            raise TagError(self.path, "changed while its tags were being written; not tagged, run again")
        os.replace(self.tmp, self.real)
        self.tmp = None
        _fsync_dir(os.path.dirname(self.real))

    def discard(self) -> None:
        if self.tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)
            self.tmp = None
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.discard()


def _frame_ids(raw: bytes) -> list[str] | None:
    """The IDs of the frames in an ID3v2 tag's bytes, read as its header says (None: not ID3v2)."""
    if len(raw) < 10 or raw[:3] != b"ID3":
        return None
    major, flags = raw[3], raw[5]
    size = (raw[6] << 21) | (raw[7] << 14) | (raw[8] << 7) | raw[9]
    data = raw[10:10 + size]
    if major < 4 and flags & 0x80:  # whole-tag unsynchronisation (v2.2/2.3)
        data = data.replace(b"\xff\x00", b"\xff")
    if flags & 0x40 and major >= 3:  # an extended header
        if major == 4:  # its size is syncsafe and counts itself
            data = data[(data[0] << 21) | (data[1] << 14) | (data[2] << 7) | data[3]:]
        else:
            data = data[4 + int.from_bytes(data[:4], "big"):]
    head, idlen = (6, 3) if major == 2 else (10, 4)

    def walk(syncsafe: bool):
        ids, pos = [], 0
        while pos + head <= len(data):
            name = data[pos:pos + idlen]
            if not name.strip(b"\x00"):
                break
            b = data[pos + idlen:pos + idlen + (3 if major == 2 else 4)]
            n = (int.from_bytes(b"\x00" + b, "big") if major == 2 else
                 ((b[0] << 21) | (b[1] << 14) | (b[2] << 7) | b[3]) if syncsafe else int.from_bytes(b, "big"))
            if pos + head + n > len(data):
                return None
            if n:
                ids.append(name.decode("latin-1"))
            pos += head + n
        return ids

    # ID3v2.4 sizes are syncsafe, but some writers put plain ones (mutagen guesses the same way).
    return (walk(True) if major == 4 else None) or walk(False) or []


def _raw_id3(path: str) -> bytes:
    """The bytes of the file's ID3v2 tag (front of an MP3, the ``id3 `` chunk of a WAV/AIFF); b"" when none."""
    from .._utils.audiohash import iff_chunks
    from .._utils.files import open_regular

    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(12)
        if head[:3] == b"ID3":
            n = (head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9]
            f.seek(0)
            return f.read(10 + n)
        if head[:4] in (b"RIFF", b"FORM"):
            fmt = "<I" if head[:4] == b"RIFF" else ">I"
            for start, stop in iff_chunks(f, size, 12, fmt, {b"id3 ", b"ID3 "}):
                f.seek(start + 8)
                return f.read(min(stop - start - 8, 1 << 26))
    return b""


def _check_tags_kept(path: str, kind: str, *, shown: str) -> None:
    """Refuse a file whose other tags mutagen would not write back: an ID3 frame it cannot read
    (a bad text encoding, say) is dropped silently when it saves, and a duplicated text frame merged."""
    if kind == "id3":
        from mutagen.id3 import ID3

        raw = _raw_id3(path)
        ids = _frame_ids(raw)
        if not ids:
            return
        try:
            tags = ID3(io.BytesIO(raw), translate=False)
            kept = [fr.FrameID for fr in tags.values()] + [bytes(u[:4]).decode("latin-1") for u in tags.unknown_frames]
        except Exception:  # noqa: BLE001 - mutagen's errors of a damaged tag
            kept = []
        lost = list(ids)
        for k in kept:
            if k in lost:
                lost.remove(k)
        if lost:
            raise TagError(shown, f"its ID3 tag has {len(lost)} frame(s) mutagen cannot keep as they are "
                                  f"({', '.join(sorted(set(map(_printable, lost))))}: malformed or duplicated); "
                                  "not tagged, so nothing is lost")


# ----------------------------------------------------------------------------- the log


class _LogError(OSError):
    """The undo log cannot be written: nothing more may be tagged."""


class _Log:
    """Append-only JSON lines, each synced to disk before the file it describes is written.

    :meth:`open` is called before any prediction, so an unwritable path stops the run at once;
    each run starts on a fresh line, so a line cut short by a crash spoils only itself.
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._f = None

    def open(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        try:
            if os.path.lexists(folder) and not os.path.isdir(folder):
                raise NotADirectoryError(errno.ENOTDIR, "Not a directory")
            os.makedirs(folder, exist_ok=True)
            self._f = open(self.path, "a+b")
            if self._f.seek(0, os.SEEK_END) > 0:
                self._f.seek(-1, os.SEEK_END)
                if self._f.read(1) != b"\n":
                    self._f.write(b"\n")
        except OSError as err:
            self.close()
            raise ValueError(f"{self.path}: cannot write the undo log ({err.strerror or err}); nothing tagged") from None

    def append(self, record: dict) -> None:
        if self._f is None:
            self.open()
        try:
            # ASCII JSON: a file name that is not UTF-8 (surrogate escapes) is written and read back as it is.
            self._f.write(json.dumps(record).encode("ascii") + b"\n")
            self._f.flush()
            os.fsync(self._f.fileno())
        except OSError as err:
            raise _LogError(err.errno, f"cannot write the undo log {self.path} ({err.strerror or err})") from None

    def close(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.close()
            self._f = None


#: Longest undo log line read (a record holds a few genre values; a longer line is skipped).
_MAX_LOG_LINE = 1 << 24


def _read_log(log: str) -> tuple[list[dict], list[tuple[int, str]]]:
    """(records, [(line number, why)] for the lines skipped): a damaged line never blocks the rest."""
    records, bad = [], []
    from .._utils.files import open_regular

    try:
        fh = open_regular(log)
    except FileNotFoundError:
        raise ValueError(f"{log}: no such tag log") from None
    except OSError as err:
        raise ValueError(f"{log}: cannot read the tag log ({err.strerror or err})") from None
    with fh:
        n = 0
        while True:
            line = fh.readline(_MAX_LOG_LINE + 1)
            if not line:
                break
            n += 1
            if len(line) > _MAX_LOG_LINE and not line.endswith(b"\n"):
                while (more := fh.readline(1 << 20)) and not more.endswith(b"\n"):
                    pass
                bad.append((n, "longer than 16 MB"))
                continue
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8", "surrogateescape"))
            except (ValueError, RecursionError):
                bad.append((n, "not JSON (a line cut short or damaged)"))
                continue
            why = _record_problem(rec)
            if why:
                bad.append((n, why))
            else:
                records.append(rec)
    return records, bad


def _record_problem(rec) -> str | None:
    """Why a parsed log line is not a usable record (None when it is)."""
    strs = lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)  # noqa: E731
    if not isinstance(rec, dict):
        return "not a tag log record"
    old = rec.get("old")
    if not isinstance(rec.get("file"), str) or not isinstance(old, dict) or not strs(rec.get("written")):
        return "a record without its file, old tags or written genres"
    kind = old.get("kind")
    if not isinstance(old.get("had_tags"), bool) or kind not in ("id3", "vorbis", "mp4"):
        return "a record without its tag kind"
    if kind == "id3":
        frames, version = old.get("frames"), old.get("version")
        ok = isinstance(frames, list) and all(
            isinstance(fr, dict) and fr.get("encoding") in (0, 1, 2, 3) and strs(fr.get("text")) for fr in frames)
        ok = ok and (version is None or (isinstance(version, list) and len(version) >= 2
                                         and version[1] in (2, 3, 4)))
    elif kind == "vorbis":
        values, index = old.get("values"), old.get("index")
        ok = isinstance(values, list) and all(isinstance(v, list) and len(v) == 2 and strs(v) for v in values)
        ok = ok and (index is None or (isinstance(index, int) and not isinstance(index, bool) and index >= 0))
    else:
        ok = strs(old.get("gen"))
    pad = old.get("padding")
    ok = ok and (pad is None or (isinstance(pad, int) and not isinstance(pad, bool) and 0 <= pad <= 1 << 24))
    return None if ok else f"a {kind} record with missing or malformed fields"


# ----------------------------------------------------------------------------- tagging


@dataclass
class Decision:
    """What happened to one file.

    ``action``: "tagged", "would tag" (pretend), "unchanged" (already has exactly
    these genres), "skipped" (kept its genre), "not sure" (the model abstained:
    below its genre's threshold, or unlike the training library) or "failed";
    ``reason`` says why for the last four.
    """

    path: str
    action: str
    old: list = field(default_factory=list)
    new: list = field(default_factory=list)
    reason: str = ""
    genre: str = ""
    probability: float = float("nan")
    probabilities: dict = field(default_factory=dict)
    low_confidence: bool = False
    warnings: list = field(default_factory=list)
    cached: bool = False
    novelty: float | None = None


@dataclass
class TagResult:
    decisions: list
    model: str
    model_sha256: str
    labels: list
    log: str | None
    pretend: bool
    run: str = ""
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0
    workers: int = 0

    def count(self, action: str) -> int:
        return sum(d.action == action for d in self.decisions)


def _require_mutagen() -> None:
    try:
        import mutagen  # noqa: F401
    except ImportError:
        raise RuntimeError("genrevision tag needs mutagen: pip install 'genrevision[tag]'") from None


def find_taggable(inputs, *, follow_symlinks: bool = False) -> tuple[list[str], list[tuple[str, str]]]:
    """(files, [(input, reason)]): files as given, folders walked for :data:`TAG_EXTENSIONS`.

    A symbolic link met in a folder whose target lies outside that folder is
    listed with a reason, not tagged, unless ``follow_symlinks`` (a link can
    lead anywhere: to another user's music, a system file).
    """
    from ..evaluation.dataset import find_inputs

    files, missing = find_inputs(inputs, extensions=TAG_EXTENSIONS, follow_symlinks=follow_symlinks,
                                 symlink_hint=" (--follow-symlinks tags its target)")
    seen = set()
    return [p for p in files if not (p in seen or seen.add(p))], missing


def tag_files(
    inputs,
    model_path,
    *,
    top: int = DEFAULT_TOP,
    min_prob: float = DEFAULT_MIN_PROB,
    mapping: dict | str | None = None,
    mode: str = "keep",
    pretend: bool = False,
    id3v23: bool = False,
    separator: str | None = None,
    segments=None,
    jobs: int | None = None,
    cache="default",
    log=DEFAULT_LOG,
    progress: bool = True,
    follow_symlinks: bool = False,
    precision: float | None = None,
    abstain: bool | None = None,
) -> TagResult:
    """Predict and write genres for files and folders.

    Parameters
    ----------
    inputs : iterable of paths (files, or folders walked recursively)
    model_path : model file written by :meth:`GenreModel.save`
    top, min_prob, mapping : which genres (see :func:`choose_genres`); ``mapping``
        may be a file (see :func:`load_mapping`)
    mode : {"keep", "force", "merge"}
        A file that already has a genre: left alone, replaced, or merged (its genres first).
    pretend : bool
        Decide everything, write nothing (no tags, no log).
    id3v23 : bool
        Write ID3v2.3 (for old players) with the genres joined by ``separator`` (required).
    segments : int, "all" or None
        30 s segments classified per file (None: :data:`genrevision.apps.engine.DEFAULT_SEGMENTS`).
    jobs : int, optional
        Worker processes (default: one per core).
    cache : str or None
        Prediction cache folder (``"default"``: the engine's; None: none).
    log : str
        Undo log to append to (see :func:`undo`).
    progress : bool
        Progress bar with ETA on stderr.
    follow_symlinks : bool
        Tag the targets of links found in folders that lead outside them (see :func:`find_taggable`).
    precision : float in (0, 1], optional
        A model trained on a library's tags (:func:`genrevision.apps.library.train_library`): write
        a genre only where its out-of-fold precision reaches this (None: the precision the
        model was trained for). An error for other models.
    abstain : bool, optional
        Leave files the model is not sure about untagged, as "not sure" (default: True for a
        model trained on a library's tags; other models cannot abstain).

    Returns
    -------
    TagResult with one :class:`Decision` per file, in input order.

    Notes
    -----
    Every file is written crash-safely: a tagged copy beside it is renamed over it
    (see :class:`_Copy`), so a kill at any instant leaves the old file or the new one.
    """
    from .engine import DEFAULT_PREDICTION_CACHE, DEFAULT_SEGMENTS, PredictionEngine, parse_segments
    from ..model.genre_model import read_meta

    _require_mutagen()
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if id3v23 and not separator:
        raise ValueError("id3v23 needs an explicit separator (e.g. '; ' or '/'): ID3v2.3 holds one text value")
    if separator and not id3v23:
        raise ValueError("separator is used only with id3v23 (ID3v2.4 stores several values as they are)")
    choose_genres({"x": 1.0}, top=top, min_prob=min_prob)  # parameter errors now, not after predicting
    segments = DEFAULT_SEGMENTS if segments is None else parse_segments(segments)
    model_path = os.fspath(model_path)
    meta = read_meta(model_path)
    labels = [str(x) for x in meta["labels"]]
    sure = None
    if abstain or (abstain is None and "library" in meta) or precision is not None:
        from .library import abstention

        sure = abstention(model_path, precision=precision)  # a clear error for a model without a library
    if isinstance(mapping, (str, os.PathLike)):
        mapping = load_mapping(mapping, labels)
    elif mapping:
        unknown = sorted(set(mapping) - set(labels))
        if unknown:
            raise ValueError(f"mapping names labels the model does not have: {', '.join(unknown)}")
    engine = PredictionEngine(model_path, segments=segments, jobs=jobs, progress=progress, desc="tag",
                              cache=DEFAULT_PREDICTION_CACHE if cache == "default" else cache)
    files, missing = find_taggable(inputs, follow_symlinks=follow_symlinks)
    result = TagResult([], model_path, engine.model_sha256, labels, None if pretend else os.fspath(log),
                       pretend)
    by_path: dict[str, Decision] = {}
    for p, reason in missing:
        by_path[p] = Decision(p, "failed", reason=reason)
    todo = []
    for p in files:
        if not pretend:
            _remove_leftovers(os.path.realpath(p))  # copies a killed run left beside the file
        try:
            f, kind = _open(p)
        except TagError as err:
            by_path[p] = Decision(p, "failed", reason=err.reason)
            continue
        old = _genres(f, kind)
        if old and mode == "keep":
            by_path[p] = Decision(p, "skipped", old=old, reason="already has a genre (--force replaces, --merge adds)")
        elif not pretend and _read_only(p):
            by_path[p] = Decision(p, "failed", old=old, reason="read-only file (no write permission); not tagged")
        else:
            todo.append(p)
    try:
        _write_all(engine.run(todo) if todo else iter(()), todo, by_path, result, mapping=mapping, top=top,
                   min_prob=min_prob, mode=mode, pretend=pretend, id3v23=id3v23, separator=separator, log=log,
                   model_sha256=engine.model_sha256, sure=sure)
    finally:
        st = engine.stats
        result.computed, result.cached, result.seconds, result.workers = st.computed, st.cached, st.seconds, st.workers
        order = [p for p, _ in missing] + files
        result.decisions = [by_path[p] for p in order if p in by_path]
    return result


def write_predictions(outcomes, model_path, *, mode: str = "force", top: int = 1, min_prob: float = DEFAULT_MIN_PROB,
                      mapping: dict | None = None, pretend: bool = False, id3v23: bool = False,
                      separator: str | None = None, log=DEFAULT_LOG) -> TagResult:
    """Write genres already decided elsewhere (e.g. the audit's out-of-fold suggestions) exactly as
    :func:`tag_files` writes them: crash-safe copies, an undo log line before each file.

    ``outcomes``: :class:`genrevision.apps.engine.Outcome` objects whose ``prediction`` holds the
    probabilities to choose from (:func:`choose_genres`) and whose ``digest`` is the audio digest
    they were computed for (a file whose audio changed since is refused). Returns a TagResult.
    """
    from .engine import model_digest

    _require_mutagen()
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
    choose_genres({"x": 1.0}, top=top, min_prob=min_prob)
    outcomes = list(outcomes)
    model_path = os.fspath(model_path)
    from ..model.genre_model import read_meta

    labels = [str(x) for x in read_meta(model_path)["labels"]]
    result = TagResult([], model_path, model_digest(model_path), labels, None if pretend else os.fspath(log), pretend)
    by_path: dict[str, Decision] = {}
    todo = [o.path for o in outcomes]
    try:
        _write_all(iter(outcomes), todo, by_path, result, mapping=mapping, top=top, min_prob=min_prob, mode=mode,
                   pretend=pretend, id3v23=id3v23, separator=separator, log=log, model_sha256=result.model_sha256,
                   sure=None)
    finally:
        result.decisions = [by_path[p] for p in todo if p in by_path]
    return result


def _write_all(outcomes, todo, by_path, result, *, log, model_sha256, **kw) -> None:
    """_apply every outcome under one run id and one undo log (opened before the first answer,
    so an unwritable log stops the run before anything is predicted or written)."""
    run_id = result.run = uuid.uuid4().hex[:12]
    tag_log = None if kw["pretend"] else _Log(log)
    if tag_log is not None and todo:
        tag_log.open()
    try:
        for out in outcomes:
            if not out.ok:
                by_path[out.path] = Decision(out.path, "failed", reason=out.reason)
                continue
            try:
                by_path[out.path] = _apply(out, log=tag_log, run_id=run_id, model_path=result.model,
                                           model_sha256=model_sha256, **kw)
            except _LogError as err:
                # Without its log line no file may be written: stop predicting, and say so for each file left.
                for p in todo:
                    if p not in by_path:
                        by_path[p] = Decision(p, "failed", reason=f"not tagged: {err.strerror}")
                break
    finally:
        if tag_log is not None:
            tag_log.close()


def _apply(out, *, mapping, top, min_prob, mode, pretend, id3v23, separator, log, run_id, model_path,
           model_sha256, sure=None) -> Decision:
    pred = out.prediction
    chosen = choose_genres(pred.probabilities, top=top, min_prob=min_prob, mapping=mapping)
    d = Decision(out.path, "", genre=chosen[0][0], probability=chosen[0][1], probabilities=dict(pred.probabilities),
                 low_confidence=pred.low_confidence, warnings=list(pred.warnings), cached=out.cached,
                 novelty=getattr(pred, "novelty", None))
    doubt = sure(pred) if sure is not None else None
    if doubt:
        d.action, d.reason = "not sure", doubt
        with contextlib.suppress(TagError):
            d.old = read_genres(out.path)
        return d
    try:
        # Read again now: the file may have changed while it was being predicted.
        f, kind = _open(out.path)
        d.old = _genres(f, kind)
        names = [n for n, _ in chosen]
        if mode == "merge":
            have = {g.casefold() for g in d.old}
            names = d.old + [n for n in names if n.casefold() not in have]
        elif mode == "keep" and d.old:
            d.action, d.reason = "skipped", "already has a genre (--force replaces, --merge adds)"
            return d
        d.new = names
        if [g.casefold() for g in d.old] == [n.casefold() for n in names]:
            d.action, d.reason = "unchanged", "already has exactly these genres"
            return d
        if pretend:
            d.action = "would tag"
            return d
        if _read_only(out.path):
            d.action, d.reason = "failed", "read-only file (no write permission); not tagged"
            return d
        with _Copy(out.path, expect_digest=out.digest) as copy:
            g, kind = copy.open()
            if _raw(g, kind) != _raw(f, kind):
                raise TagError(out.path, "its genre changed while the run went on; not tagged, run again")
            record = {"run": run_id, "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                      "file": os.path.abspath(out.path), "old": _snapshot(g, kind), "new": names,
                      "written": _expected_raw(kind, names, id3v23=id3v23, separator=separator),
                      "id3": ("2.3" if id3v23 else "2.4") if kind == "id3" else None, "audio": copy.digest,
                      "model": os.path.abspath(model_path), "model_sha256": model_sha256,
                      "probabilities": {n: round(p, 6) for n, p in chosen}}
            with _deferred_signals():
                log.append(record)  # first, synced: a crash after it leaves a line undo recognises and skips
                _write(g, kind, names, id3v23=id3v23, separator=separator)
                copy.commit()
        d.action = "tagged"
    except _LogError:
        raise
    except TagError as err:
        d.action, d.reason = "failed", err.reason
    except PermissionError:
        d.action, d.reason = "failed", "cannot write (permission denied); not tagged"
    except OSError as err:  # a full disk, say: the copy is removed, the file is as it was
        d.action, d.reason = "failed", f"cannot write ({err.strerror or err}); not tagged"
    except Exception as err:  # noqa: BLE001 - mutagen's errors; one file must not stop the batch
        d.action, d.reason = "failed", f"cannot write tags ({_why(err)})"
    return d


# ----------------------------------------------------------------------------- undo


def undo(log, *, run: str | None = None, force: bool = False, pretend: bool = False) -> list[Decision]:
    """Put back the genre field of every file in a tag log, newest change first.

    A file is restored only while its genre field still holds what the run
    wrote and its audio is the audio that was tagged (``force=True`` restores
    it anyway); only the genre field is written (a tag the run created is
    removed while it holds nothing else), crash-safely as :func:`tag_files`
    writes. ``run``: only that run's changes (its id from the log, or
    ``"last"``). A line of the log that is damaged or cut short is skipped and
    reported as a failed change naming its line; the others are undone.
    Returns one :class:`Decision` per change ("restored", "would restore",
    "skipped" or "failed").
    """
    _require_mutagen()
    log = os.fspath(log)
    records, bad = _read_log(log)
    if run is not None:
        wanted = (records[-1].get("run") if records else None) if run == "last" else run
        if not any(r.get("run") == wanted for r in records):
            raise ValueError(f"{log}: no run {run!r} in the tag log")
        records = [r for r in records if r.get("run") == wanted]
    out = [Decision(f"{log}:{n}", "failed", reason=f"line {n} skipped: {why}") for n, why in bad]
    for rec in reversed(records):
        path, snap = rec["file"], rec["old"]
        d = Decision(path, "", new=_old_raw(snap))
        try:
            _undo_one(rec, d, force=force, pretend=pretend)
        except TagError as err:
            d.action, d.reason = "failed", err.reason
        except PermissionError:
            d.action, d.reason = "failed", "cannot write (permission denied)"
        except OSError as err:
            d.action, d.reason = "failed", f"cannot write ({err.strerror or err})"
        except Exception as err:  # noqa: BLE001
            d.action, d.reason = "failed", f"cannot write tags ({_why(err)})"
        out.append(d)
    return out


def _undo_one(rec: dict, d: Decision, *, force: bool, pretend: bool) -> None:
    from .._utils.audiohash import audio_digest

    path, snap = rec["file"], rec["old"]
    if not pretend:
        _remove_leftovers(os.path.realpath(path))
    f, kind = _open(path)
    now = d.old = _raw(f, kind)
    logged = rec.get("audio")  # logs before version 0.x have no digest: nothing to compare
    if kind != snap["kind"]:
        d.action, d.reason = "failed", f"is now a {kind} file, the log has {snap['kind']} tags"
    elif isinstance(logged, str) and audio_digest(path) != logged and not force:
        d.action, d.reason = "skipped", ("its audio is not the audio that was tagged (replaced, re-encoded or "
                                         "damaged since); --force restores the genre anyway")
    elif now == _old_raw(snap):
        d.action, d.reason = "skipped", "already as before"
    elif now != rec["written"] and not force:
        d.action, d.reason = "skipped", (f"genre changed since tagging (now {_printable(', '.join(now), 80) or 'none'}); "
                                         "--force restores it")
    elif pretend:
        d.action = "would restore"
    elif _read_only(path):
        d.action, d.reason = "failed", "read-only file (no write permission)"
    else:
        with _Copy(path) as copy:
            g, kind = copy.open()
            if _raw(g, kind) != now:
                raise TagError(path, "its genre changed while undo ran; not restored, run undo again")
            with _deferred_signals():
                _restore(g, kind, snap)
                copy.commit()
        d.action = "restored"


# ----------------------------------------------------------------------------- report


def write_report(result: TagResult, folder) -> dict[str, str]:
    """``report.html`` (genre distribution chart, low-confidence files, failures) and
    ``decisions.csv`` (every file's decision) in ``folder``; returns their paths."""
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    csv_path = os.path.join(folder, "decisions.csv")
    labels = list(result.labels)
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "action", "reason", "old_genres", "new_genres", "top_label", "probability",
                    "low_confidence", "warnings", "cached"] + [f"p_{c}" for c in labels])
        for d in result.decisions:
            w.writerow([d.path, d.action, d.reason, "; ".join(d.old), "; ".join(d.new), d.genre,
                        "" if math.isnan(d.probability) else f"{d.probability:.4f}", int(d.low_confidence),
                        "; ".join(d.warnings), int(d.cached)]
                       + [f"{d.probabilities[c]:.6f}" if c in d.probabilities else "" for c in labels])
    counts: dict[str, int] = {}
    for d in result.decisions:
        if d.action in ("tagged", "would tag", "unchanged") and d.genre:
            counts[d.genre] = counts.get(d.genre, 0) + 1
    low = [d for d in result.decisions if d.genre and (d.low_confidence or d.probability < 0.5)]
    failed = [d for d in result.decisions if d.action == "failed"]
    by_action: dict[str, int] = {}
    for d in result.decisions:
        by_action[d.action] = by_action.get(d.action, 0) + 1
    chart, bars = _bar_chart(counts)
    page = render("tag_report.html", pretend=result.pretend, n_files=len(result.decisions),
                  by_action=sorted((a, n) for a, n in by_action.items()), model=result.model,
                  model_sha256=result.model_sha256, computed=result.computed, cached=result.cached, log=result.log,
                  chart=chart, bars=bars, low=low, failed=failed)
    html_path = os.path.join(folder, "report.html")
    with open(html_path, "w", encoding="utf-8") as fh:
        fh.write(page)
    return {"html": html_path, "csv": csv_path}


def _bar_chart(counts: dict[str, int]) -> tuple[dict, list[dict]]:
    """The inline SVG bar chart's size and bars (no script, no network): most files first."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    most, row, left, width = max(counts.values(), default=1), 22, 140, 400
    bars = []
    for i, (name, n) in enumerate(items):
        y, w = i * row, max(1, round(width * n / most))
        bars.append({"name": name, "n": n, "label_x": left - 6, "text_y": y + 15, "x": left, "y": y + 3, "w": w,
                     "h": row - 6, "count_x": left + w + 4})
    return {"width": left + width + 50, "height": len(items) * row}, bars


def decision_dict(d: Decision) -> dict:
    """A JSON-able view of a decision."""
    out = asdict(d)
    if math.isnan(out["probability"]):
        out["probability"] = None
    return out

