"""Opening user files safely: only regular files, never blocking.

Every path a user hands us (audio, manifests, model files) goes through
:func:`open_regular`. A FIFO, a socket or a device named ``x.wav`` would make
``open()`` or a read block forever (or stream endless data), so the file is
opened with ``O_NONBLOCK`` (an open of a FIFO then returns at once) and
checked with ``fstat`` on the descriptor itself, so a path swapped between a
check and the open cannot slip through.
"""
from __future__ import annotations

import contextlib
import os
import stat
import tempfile

from ..errors import NotRegularFile

__all__ = ["NotRegularFile", "open_regular", "open_regular_fd", "check_regular", "os_reason", "user_cache",
           "printable", "atomic_path", "atomic_write", "feature_cache"]


def user_cache(name: str) -> str:
    """``~/.cache/genrevision/<name>``: the one root of every cache (features, predictions, ONNX graphs)."""
    return os.path.join(os.path.expanduser("~"), ".cache", "genrevision", name)


def feature_cache() -> str:
    """The feature store's folder: ``$GENREVISION_CACHE`` when set, else ``~/.cache/genrevision/features``.

    The one definition of the default every API and command uses (``extract_cached``,
    ``evaluate``, ``train_model``, ``audit``, ``embed``, ``--cache``).
    """
    return os.environ.get("GENREVISION_CACHE") or user_cache("features")


@contextlib.contextmanager
def atomic_path(path, *, suffix: str | None = None):
    """A temporary path beside ``path`` to write; on success it is synced and renamed onto ``path``.

    A reader sees the whole file or none; the temporary file (``.tmp-*``, a name readers of a
    folder skip) is removed on any failure. The file gets the mode ``open()`` would give it (or
    the one ``path`` had). Use it where a library writes to a path (ONNX export, Parquet);
    :func:`atomic_write` where it writes to a file object.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-",
                               suffix=os.path.splitext(path)[1] if suffix is None else suffix)
    try:
        try:  # mkstemp makes 0600
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            mode = 0o666 & ~_umask()
        os.fchmod(fd, mode)
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write(path, write) -> None:
    """``write(f)`` into a temporary file beside ``path``, synced, then renamed onto ``path``:
    a reader sees the whole file or none (the temporary file is removed on any failure)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (os.umask sets it: a race
    with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return ""


def check_regular(path) -> os.stat_result:
    """``os.stat`` of ``path`` (links followed), raising :class:`NotRegularFile` unless it is a regular file.

    Raises FileNotFoundError when it does not exist.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise NotRegularFile(path, _kind(st.st_mode))
    return st


def open_regular_fd(path) -> int:
    """A blocking read-only descriptor of ``path``, refusing anything but a regular file without ever blocking.

    Raises
    ------
    FileNotFoundError, PermissionError, ...
        As ``open`` would.
    NotRegularFile
        The path is a FIFO, socket, device or folder.
    """
    check_regular(path)  # fast refusal with the kind named; the fstat below closes the race
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFile(path, _kind(st.st_mode))
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return fd
    except BaseException:
        os.close(fd)
        raise


def open_regular(path, *, buffering: int = -1):
    """:func:`open_regular_fd` as a binary file object (``io.BufferedReader``)."""
    fd = open_regular_fd(path)
    try:
        return os.fdopen(fd, "rb", buffering=buffering)
    except BaseException:
        os.close(fd)
        raise


def os_reason(err: OSError) -> str:
    """One short reason for an OSError met opening an input file (a batch lists it and goes on)."""
    if isinstance(err, FileNotFoundError):
        return "no such file"
    if isinstance(err, NotRegularFile):
        return "is a directory, not an audio file" if err.kind == "a folder" else str(err)
    return f"cannot read ({err.strerror or err})"


def printable(text, limit: int | None = None) -> str:
    """``text`` safe for one terminal line: control characters (an ANSI escape, a newline in a file
    name) escaped as Python writes them (``\\x1b``), and cut after ``limit`` characters (a tag value read from
    a user's file may be megabytes long)."""
    import unicodedata

    # Control, format (a right-to-left override) and line-breaking characters; a surrogate escape
    # (a file name byte that is not UTF-8) is kept: it is written back as that byte.
    out = "".join(repr(c)[1:-1] if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in str(text))
    return out if limit is None or len(out) <= limit else f"{out[:limit]}… ({len(out)} characters)"
