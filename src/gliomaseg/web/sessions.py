"""The scans the server holds for its sessions: freed when a session ends, bounded in memory across sessions.

Gradio keeps a session's ``gr.State`` for an hour after its tab closes (and two hours while open,
our ``time_to_live``), so a server that let Gradio own the arrays grew with every visitor (0.6 ->
3.4 GB over five uploads). The :class:`SessionStore` holds each session's current
:class:`~gliomaseg.web.analysis.Analysis` by Gradio's session id: the page's ``unload`` event (the
tab closed, or a client's heartbeat stream ended) releases its arrays at once, and when the scans
held by all sessions together exceed the store's budget, the least recently used sessions' scans
are released (their page then asks to upload again). With one request at a time on the server,
its memory is then bounded by the model, one request's working memory (bounded by
:class:`~gliomaseg.inference.limits.Limits`) and this budget.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import shutil
import threading
from collections import OrderedDict

from gliomaseg.web.analysis import Analysis

__all__ = ["DEFAULT_SESSION_BUDGET_MB", "SessionStore", "release", "return_memory_to_os"]

log = logging.getLogger(__name__)

#: Memory the scans of all sessions together may hold (the current request's scan is always kept).
DEFAULT_SESSION_BUDGET_MB = 256
_MB = 1024 * 1024


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def return_memory_to_os() -> None:
    """Give freed heap memory back to the operating system (glibc's ``malloc_trim``; a no-op elsewhere).

    Arrays below glibc's mmap threshold (which grows up to 32 MB as large blocks are freed) live on
    the heap, and glibc keeps freed heap pages mapped: without a trim the server's resident memory
    stays at its high-water mark after the arrays are gone.
    """
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def release(analysis: Analysis | None) -> None:
    """Free a scan: its private folder (uploads unpacked, downloads written) and its arrays."""
    if analysis is not None:
        shutil.rmtree(analysis.scan.work, ignore_errors=True)
        analysis.release()


class SessionStore:
    """Each session's current scan, by Gradio session id.

    Args:
        budget_bytes: the most the scans of all sessions may hold together; beyond it the least
            recently used sessions' scans are released (never the one just stored).
    """

    def __init__(self, budget_bytes: int = DEFAULT_SESSION_BUDGET_MB * _MB) -> None:
        self.budget_bytes = budget_bytes
        self._scans: OrderedDict[str, Analysis] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._scans)

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored scans' arrays."""
        with self._lock:
            return sum(a.nbytes for a in self._scans.values())

    def keep(self, session: str, analysis: Analysis | None) -> None:
        """Make ``analysis`` the session's scan (releasing the one it replaces), then keep to the budget."""
        freed: list[Analysis] = []
        with self._lock:
            old = self._scans.pop(session, None)
            if old is not None and old is not analysis:
                freed.append(old)
            if analysis is not None and not analysis.released:
                self._scans[session] = analysis
            total = sum(a.nbytes for a in self._scans.values())
            while total > self.budget_bytes and len(self._scans) > 1:
                oldest, scan = next(iter(self._scans.items()))
                if oldest == session:
                    break
                del self._scans[oldest]
                total -= scan.nbytes
                freed.append(scan)
                log.info("released the scan of an idle session (%.0f MB) to stay within the budget", scan.nbytes / _MB)
        for scan in freed:
            release(scan)
        if freed:
            return_memory_to_os()

    def drop(self, session: str) -> None:
        """The session ended: release its scan now."""
        with self._lock:
            scan = self._scans.pop(session, None)
        if scan is not None:
            release(scan)
            return_memory_to_os()
