"""The ``gliomaseg`` command: one thin sub-command per pipeline stage over the library functions.

Each stage has its own module here that registers its sub-commands (nnU-Net style): ``data``
(``synth``, ``download``, ``index``, ``split``, ``cache``), ``train`` (``train``, ``demo``),
``evaluate``, ``predict`` (``predict``, ``export``), ``serve`` (the web viewer), ``explore``, ``study``,
``radiogenomics``, ``models``.

Errors: a :class:`~gliomaseg.errors.GliomasegError` (bad input or settings, refused overwrite) or a
missing/unreadable path of the user's prints one line ``gliomaseg CMD: error: ...`` and exits
with status 2; anything else is a bug and shows its traceback (``-v`` shows it for all).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from gliomaseg.cli import data, evaluate, explore, models, predict, radiogenomics, serve, study, train
from gliomaseg.errors import GliomasegError

__all__ = ["build_parser", "main"]

log = logging.getLogger("gliomaseg")

#: The modules whose ``register(subparsers)`` add sub-commands, in ``--help`` order.
COMMAND_MODULES = (data, train, evaluate, predict, serve, explore, study, radiogenomics, models)

#: Errors that are the user's to fix: printed as one line, exit status 2.
USER_ERRORS = (GliomasegError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def build_parser() -> argparse.ArgumentParser:
    """The ``gliomaseg`` argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="gliomaseg", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``gliomaseg`` with ``argv`` (default: the process's); returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        args.func(args)
    except USER_ERRORS as err:
        if args.verbose:
            raise
        message = " ".join(str(err).split()) if not isinstance(err, OSError) else _os_error_text(err)
        print(f"gliomaseg {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


def _os_error_text(err: OSError) -> str:
    # "[Errno 2] No such file or directory: 'x'" -> "x: no such file or directory"
    if err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror.lower()}"
    return str(err)
