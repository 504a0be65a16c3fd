"""The exceptions genrevision raises on purpose, in one hierarchy.

Every error that describes a bad input (a file, a dataset, a model, a tag) derives
from :class:`GenrevisionError`, and its ``str()`` is one line that names what it is
about and why: the command line prints it as it is (``genrevision: <line>``). Each
class also keeps the built-in base it had before the hierarchy existed
(``ValueError``, ``RuntimeError`` or ``OSError``), so ``except ValueError`` code
written against older versions still catches it, and each stays importable from
the module that raised it first (``genrevision.signal.audio.AudioError``, ...)::

    GenrevisionError
    ├── AudioError           (ValueError)  a file that cannot be used as audio
    ├── DatasetError         (ValueError)  a dataset folder or manifest that cannot be used
    ├── ModelError           (ValueError)  a model file that cannot be used
    ├── TagError             (ValueError)  a file whose tags cannot be read or written
    ├── NotRegularFile       (OSError)     a path that is a FIFO, socket, device or folder
    ├── BackboneUnavailable  (RuntimeError) a CNN whose code or weights are missing here
    └── RayUnavailable       (RuntimeError) Ray (or pyarrow) is not installed
"""
from __future__ import annotations

import errno
import os

__all__ = [
    "GenrevisionError",
    "AudioError",
    "DatasetError",
    "ModelError",
    "TagError",
    "NotRegularFile",
    "BackboneUnavailable",
    "RayUnavailable",
]


class GenrevisionError(Exception):
    """Base of every error genrevision raises about its inputs; ``str(err)`` is one line."""


class _SubjectError(GenrevisionError):
    """"<subject>: <reason>", rebuilt from (subject, reason) when it crosses a process boundary."""

    def __init__(self, subject: str, reason: str):
        self.reason = reason
        super().__init__(f"{subject}: {reason}")

    def __reduce__(self):
        return (type(self), (self._subject(), self.reason))

    def _subject(self) -> str:  # pragma: no cover - overridden
        raise NotImplementedError


def _source_name(source) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return os.fspath(source)


class AudioError(_SubjectError, ValueError):
    """A file that cannot be used as audio; ``str(err)`` is one line naming it."""

    def __init__(self, source, reason: str):
        self.source = _source_name(source)
        super().__init__(self.source, reason)

    def _subject(self) -> str:
        return self.source


class ModelError(_SubjectError, ValueError):
    """A model file that cannot be used; ``str(err)`` is one line "<path>: <reason>"."""

    def __init__(self, path, reason: str):
        self.path = os.fspath(path) if not isinstance(path, str) else path
        super().__init__(self.path, reason)

    def _subject(self) -> str:
        return self.path


class TagError(_SubjectError, ValueError):
    """A file whose tags cannot be read or written; ``str(err)`` is one line "<path>: <reason>"."""

    def __init__(self, path, reason: str):
        self.path = os.fspath(path)
        super().__init__(self.path, reason)

    def _subject(self) -> str:
        return self.path


class DatasetError(GenrevisionError, ValueError):
    """A dataset that cannot be used; the message names the path and the reason."""


class NotRegularFile(GenrevisionError, OSError):
    """A path that exists but is not a regular file (a FIFO, socket, device or folder)."""

    def __init__(self, path, kind: str = ""):
        self.path = path
        self.kind = kind
        what = f" ({kind})" if kind else ""
        OSError.__init__(self, errno.EINVAL, f"not a regular file{what}")

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):
        return (type(self), (self.path, self.kind))


class BackboneUnavailable(GenrevisionError, RuntimeError):
    """The backbone's code or weights are not available on this machine."""


class RayUnavailable(GenrevisionError, RuntimeError):
    """Ray (or pyarrow) is not installed; the message says how to install it."""
