"""Lazy re-exports for package ``__init__`` modules (PEP 562).

Importing a package must stay cheap: ``gliomaseg.inference`` is what an ONNX-only deployment
imports, and it must not pull in Lightning, scikit-learn or Albumentations because a sibling
module of another package re-exports something that needs them. Each package lists its public
names and the module that defines each; the module is imported on first access. Python has no
built-in for this (``importlib.util.LazyLoader`` defers whole modules, not names), hence these
few lines.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for a package whose names load on first use.

    Args:
        package: the package's ``__name__``.
        exports: public name -> module that defines it (absolute, or relative with a leading dot).

    Returns:
        ``(__getattr__, __dir__, __all__)`` to assign at the package's top level.

    Example:
        >>> getattr_, dir_, all_ = lazy_exports("gliomaseg.errors", {"GliomasegError": "gliomaseg.errors"})
        >>> getattr_("GliomasegError").__name__
        'GliomasegError'
    """
    names = sorted(exports)

    def __getattr__(name: str) -> Any:
        if name in exports:
            module = importlib.import_module(exports[name], package)
            return getattr(module, name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(names) | set(vars(sys.modules[package])))

    return __getattr__, __dir__, names
