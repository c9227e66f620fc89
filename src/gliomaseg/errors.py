"""The two exceptions gliomaseg raises for problems the user can fix.

- :class:`GliomasegError` (a :class:`ValueError`): bad input or settings: a corrupt or
  mis-shaped file, an unknown name, an impossible value. The message names the file or value and
  says how to fix it.
- :class:`OutputExistsError` (a :class:`GliomasegError` and a :class:`FileExistsError`): a command
  would replace a file or folder the user has; nothing is overwritten without ``overwrite=True``
  (``--overwrite``).

The ``gliomaseg`` command prints either as one line and exits with status 2; any other exception
is a bug and shows its traceback.

Example:
    >>> from gliomaseg.errors import GliomasegError
    >>> try:
    ...     raise GliomasegError("size=100: must be a multiple of 16 and >= 32")
    ... except ValueError as err:
    ...     print(err)
    size=100: must be a multiple of 16 and >= 32
"""

from __future__ import annotations

__all__ = ["GliomasegError", "OutputExistsError"]


class GliomasegError(ValueError):
    """Bad input or settings; the message names the file or value and the fix."""


class OutputExistsError(GliomasegError, FileExistsError):
    """An output exists and ``overwrite`` was not given."""
