"""Small shared helpers: atomic file writes, temporaries of killed processes, and dict round-trips
of settings dataclasses."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from gliomaseg.errors import GliomasegError

__all__ = [
    "SettingsMixin",
    "atomic_write",
    "atomic_write_text",
    "exit_with_parent",
    "non_regular_kind",
    "owner_tag",
    "remove_abandoned",
]

log = logging.getLogger(__name__)

_S = TypeVar("_S", bound="SettingsMixin")

# A temporary's name carries its writer (process id and a hash of the host name), so a later run can
# tell the leftovers of a killed process (safe to delete) from those of a live one on this machine.
_HOST = format(zlib.crc32(socket.gethostname().encode()), "08x")
_TAG = re.compile(r"p(\d+)h([0-9a-f]{8})")
_CLEANED: set[Path] = set()


def non_regular_kind(path: str | Path) -> str | None:
    """What a path that exists but is neither a regular file nor a folder is (``a FIFO (named pipe)``,
    ``a socket``, ``a character device``, ``a block device``), else None. Reading a FIFO would wait
    forever for a writer, so such a path is named for what it is instead of being opened."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    kinds = [
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ]
    return next((name for test, name in kinds if test(mode)), None)


def owner_tag() -> str:
    """``p<pid>h<host hash>``: put in a temporary file or folder's name by the process that writes it."""
    return f"p{os.getpid()}h{_HOST}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def remove_abandoned(folder: str | Path, pattern: str) -> list[Path]:
    """Delete the temporaries in ``folder`` matching ``pattern`` whose writer (see :func:`owner_tag`)
    was a process of this machine that no longer runs.

    Args:
        folder: where to look (nothing happens if it does not exist).
        pattern: a glob for the temporaries' names, e.g. ``".tmp-*"``.

    Returns:
        The removed paths.

    Example:
        >>> import tempfile
        >>> remove_abandoned(tempfile.mkdtemp(), ".tmp-*")
        []
    """
    removed = []
    for path in Path(folder).glob(pattern):
        tag = _TAG.search(path.name)
        if tag is None or tag.group(2) != _HOST or _pid_alive(int(tag.group(1))):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    if removed:
        log.info("removed %d temporary file(s) left by killed runs in %s", len(removed), folder)
    return removed


def exit_with_parent(parent_pid: int, poll_seconds: float = 1.0) -> None:
    """In a worker process: exit as soon as ``parent_pid`` is no longer its parent (the parent died).

    A ``ProcessPoolExecutor`` worker of a killed parent otherwise waits forever on its task queue;
    pass this as the pool's ``initializer`` with ``initargs=(os.getpid(),)``. It polls
    ``os.getppid()`` from a daemon thread, which works on every POSIX system (``prctl`` is Linux-only).
    """

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def atomic_write(path: str | Path, write: Callable[[Path], None], *, suffix: str = ".tmp") -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    A crash leaves either the old file or the new one, never half a file; the temporary file of a
    killed process is removed by the next write into the same folder (see :func:`remove_abandoned`).
    ``suffix`` is the temporary file's ending, for writers that pick the format from it (nibabel).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent not in _CLEANED:
        _CLEANED.add(path.parent)
        remove_abandoned(path.parent, ".*.p*h*.*")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp creates the file 0600; give it the permissions a plain open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        if err.filename is None:  # e.g. a full disk met inside an image library: name the file
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
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


def json_safe(value: Any) -> Any:
    """NaN/inf -> None and numpy scalars -> Python, so ``summary.json`` is strict JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
