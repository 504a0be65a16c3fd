"""Opening user files safely: only regular files, never blocking.

Every path a user hands us (audio, manifests, model files) goes through
:func:`open_regular`. A FIFO, a socket or a device named ``x.wav`` would make
``open()`` or a read block forever (or stream endless data), so the file is
opened with ``O_NONBLOCK`` (an open of a FIFO then returns at once) and
checked with ``fstat`` on the descriptor itself, so a path swapped between a
check and the open cannot slip through.
"""
from __future__ import annotations

import errno
import os
import stat

__all__ = ["NotRegularFile", "open_regular", "open_regular_fd", "check_regular", "os_reason", "user_cache",
           "printable"]


def user_cache(name: str) -> str:
    """``~/.cache/genrevision/<name>``: the one root of every cache (features, predictions, ONNX graphs)."""
    return os.path.join(os.path.expanduser("~"), ".cache", "genrevision", name)


class NotRegularFile(OSError):
    """A path that exists but is not a regular file (a FIFO, socket, device or folder)."""

    def __init__(self, path, kind: str = ""):
        self.path = path
        self.kind = kind
        what = f" ({kind})" if kind else ""
        super().__init__(errno.EINVAL, f"not a regular file{what}")

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):
        return (type(self), (self.path, self.kind))


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
