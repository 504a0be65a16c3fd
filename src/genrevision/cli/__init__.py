"""The ``genrevision`` command: extract, evaluate, train, predict, tag, embed, serve."""
from __future__ import annotations

import argparse
import importlib
import sys

from .._utils.files import printable
from ..errors import GenrevisionError
from ._common import error, examples

__all__ = ["main", "build_parser"]

#: The subcommands, in the order ``--help`` lists them: each is a module of this package with
#: ``add_parser(subparsers, formatter_class)`` and ``run(args) -> exit status``.
COMMANDS = ("extract", "evaluate", "train", "predict", "embed", "tag", "audit", "serve")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="genrevision", description=__doc__, formatter_class=fmt,
                                     epilog=examples("genrevision evaluate ../shared/data/gtzan-mini --out runs/evaluate-cv",
                                                     "genrevision train ../shared/data/gtzan-mini --model genres.model",
                                                     "genrevision predict song.mp3 --model genres.model",
                                                     "genrevision SUBCOMMAND --help"))
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        importlib.import_module(f".{command}", __name__).add_parser(sub, fmt)
    return parser


class _Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the same orderly stop as Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    # One line per warning, naming the file it is about (the message does).
    print(f"genrevision: warning: {printable(str(message).splitlines()[0]) if str(message) else category.__name__}",
          file=sys.stderr)


def _setup_streams() -> None:
    # File names that are not valid UTF-8 reach us as surrogate escapes
    # (os.fsdecode); write them back as the same bytes instead of failing.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and (stream.encoding or "").lower().replace("-", "") == "utf8":
            try:
                stream.reconfigure(errors="surrogateescape")
            except (ValueError, OSError):  # pragma: no cover - detached or closed stream
                pass


def main(argv=None) -> int:
    import signal
    import warnings

    _setup_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.showwarning = _show_warning
    try:
        signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # pragma: no cover - not the main thread (main() called from a thread)
        pass
    try:
        return args.func(args)
    except KeyboardInterrupt as err:
        error(f"{'terminated' if isinstance(err, _Terminated) else 'interrupted'}; "
             "finished tracks are cached" + (", finished folds kept in OUT/folds" if args.command == "evaluate" else "")
             + ", rerun to resume")
        return 143 if isinstance(err, _Terminated) else 130
    except (GenrevisionError, ValueError, RuntimeError, OSError) as err:
        error(_error_line(err))
        return 2


def _error_line(err: BaseException) -> str:
    """The one line printed for an error that ends a command (exit status 2).

    A :class:`~genrevision.errors.GenrevisionError` (audio, dataset, model, tag, ...) is
    one line "<what>: <why>" by contract; other ValueError/RuntimeError/OSError (a bad
    option value, a full disk) print their first line, or their type when they have none.
    """
    text = str(err)
    return text.splitlines()[0] if text else type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
