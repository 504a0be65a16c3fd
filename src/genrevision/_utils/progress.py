"""The one tqdm set-up: every progress bar of genrevision goes to stderr, fits the terminal,
and is off unless asked for (``progress=True``)."""
from __future__ import annotations

import sys

__all__ = ["progress_bar"]


def progress_bar(iterable=None, *, desc: str, unit: str = "it", enabled: bool = True, total=None, initial: int = 0,
                 leave: bool = True):
    """A ``tqdm.auto.tqdm`` bar on stderr (stdout stays for results), resized with the terminal.

    ``enabled=False`` gives a bar that draws nothing but still counts, so callers need no
    second code path. ``iterable``/``total``/``initial``/``leave`` are tqdm's.
    """
    from tqdm.auto import tqdm  # imported on first use: `import genrevision` stays light

    return tqdm(iterable, total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, leave=leave,
                file=sys.stderr, dynamic_ncols=True)
