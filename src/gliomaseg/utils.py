"""Small shared helpers: atomic file writes, and dict round-trips of settings dataclasses."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from gliomaseg.errors import GliomasegError

__all__ = ["SettingsMixin", "atomic_write", "atomic_write_text"]

_S = TypeVar("_S", bound="SettingsMixin")


def atomic_write(path: str | Path, write: Callable[[Path], None], *, suffix: str = ".tmp") -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    A crash leaves either the old file or the new one, never half a file. ``suffix`` is the
    temporary file's ending, for writers that pick the format from it (nibabel).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp creates the file 0600; give it the permissions a plain open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda p: p.write_text(text))


class SettingsMixin:
    """``to_dict``/``from_dict`` for a settings dataclass (stored in model files, caches, YAML).

    ``from_dict`` rejects unknown keys (a typo must not be ignored silently) and lets missing keys
    take their defaults; the dataclass's own ``__post_init__`` checks the values. Subclasses name
    what their keys are in error messages with ``_SETTING_KIND``.

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass
        ... class Blur(SettingsMixin):
        ...     _SETTING_KIND = "blur setting"
        ...     sigma: float = 1.0
        >>> Blur.from_dict({"sigma": 2.0}).to_dict()
        {'sigma': 2.0}
    """

    _SETTING_KIND: ClassVar[str] = "setting"

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (for JSON/YAML)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_S], data: Mapping[str, Any]) -> _S:
        """Inverse of :meth:`to_dict`; missing keys take their defaults.

        Raises:
            TypeError: ``data`` is not a mapping.
            GliomasegError: unknown keys (the message lists the known ones) or invalid values.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"{cls.__name__}.from_dict expects a mapping, got {type(data).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise GliomasegError(f"unknown {cls._SETTING_KIND}(s) {unknown}; known: {sorted(known)}")
        return cls(**dict(data))
