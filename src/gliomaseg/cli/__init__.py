"""The ``gliomaseg`` command: one thin sub-command per pipeline stage over the library functions.

Each stage has its own module here that registers its sub-commands (nnU-Net style): ``data``
(``synth``, ``download``, ``index``, ``split``, ``cache``), ``train`` (``train``, ``demo``),
``evaluate``, ``predict`` (``predict``, ``export``), ``serve`` (the web viewer), ``explore``, ``study``,
``radiogenomics``, ``models``.

Errors: a :class:`~gliomaseg.errors.GliomasegError` (bad input or settings, refused overwrite), a
missing/unreadable path of the user's or a full or read-only disk prints one line
``gliomaseg CMD: error: ...`` and exits with status 2; anything else is a bug and shows its
traceback (``-v`` shows it for all). Ctrl-C or SIGTERM stops a command cleanly (its temporary files
removed) with one line ``gliomaseg CMD: interrupted...`` and status 130. Output into a closed pipe
(``gliomaseg models --info lgg-unet | head``) ends the command quietly with status 141, as a program
killed by SIGPIPE would. Library warnings (deprecations, adverts) are hidden unless ``-v``.

The grammar every sub-command follows (flags shared by several commands defined once) is in
:mod:`gliomaseg.cli._common`; building the parser imports no heavy library, so ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Sequence

from gliomaseg.cli import data, evaluate, explore, models, predict, radiogenomics, score, serve, study, train
from gliomaseg.cli._common import ExampleFormatter, quiet_library_warnings
from gliomaseg.errors import GliomasegError

__all__ = ["build_parser", "main"]

log = logging.getLogger("gliomaseg")

#: The modules whose ``register(subparsers)`` add sub-commands, in ``--help`` order.
COMMAND_MODULES = (data, train, evaluate, score, predict, serve, explore, study, radiogenomics, models)

#: Errors that are the user's to fix: printed as one line, exit status 2.
USER_ERRORS = (GliomasegError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def build_parser() -> argparse.ArgumentParser:
    """The ``gliomaseg`` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="gliomaseg",
        description=__doc__.splitlines()[0],
        epilog="example:\n  gliomaseg predict --model lgg-unet scan.nii.gz --out pred\n"
        "  gliomaseg COMMAND --help   (each command's flags and an example)",
        formatter_class=ExampleFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gliomaseg`` with ``argv`` (default: the process's); returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    previous = _stop_on_sigterm()
    try:
        with warnings.catch_warnings():
            if not args.verbose:
                quiet_library_warnings()
            args.func(args)
            sys.stdout.flush()  # here, so that a closed pipe is met inside this handler, not at exit
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except (*USER_ERRORS, OSError) as err:
        if args.verbose or (isinstance(err, OSError) and not _is_users_os_error(err)):
            raise
        message = " ".join(str(err).split()) if not isinstance(err, OSError) else _os_error_text(err)
        _close_progress_bars()
        print(f"gliomaseg {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        if args.verbose:
            raise
        _close_progress_bars()
        detail = f": {err}" if str(err) else "; run the same command again to continue where it stopped"
        print(f"gliomaseg {args.command}: interrupted{detail}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _silence_stdout() -> None:
    """Point stdout at /dev/null: the reader of the pipe is gone, and Python's final flush must not
    meet the closed pipe again (it would print "Exception ignored ... BrokenPipeError")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout replaced by a non-file object (e.g. under pytest)
        pass
    finally:
        os.close(devnull)


def _close_progress_bars() -> None:
    """End the progress bars a failed command left open, so that its message starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> signal.Handlers | None:
    """Make SIGTERM stop a command like Ctrl-C does, so its clean-up runs (temporary files, worker pools).

    Python's default for SIGTERM ends the process at once. Returns the previous handler (None when not
    on the main thread, where handlers cannot be set).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


#: OS errors that are the user's to fix (besides USER_ERRORS), with what to do.
_USER_ERRNOS = {
    errno.ENOSPC: "free some space or choose another output folder",
    errno.EDQUOT: "free some space or choose another output folder",
    errno.EROFS: "choose an output folder on a writable disk",
}


def _is_users_os_error(err: OSError) -> bool:
    return isinstance(err, USER_ERRORS) or err.errno in _USER_ERRNOS


def _os_error_text(err: OSError) -> str:
    # "[Errno 2] No such file or directory: 'x'" -> "x: no such file or directory"
    hint = _USER_ERRNOS.get(err.errno or 0)
    suffix = f"; {hint}" if hint else ""
    if err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror.lower()}{suffix}"
    return f"{' '.join(str(err).split())}{suffix}"
