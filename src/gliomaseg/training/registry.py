"""One registry type for every name -> builder table (models, losses).

Each registry is the only place that lists its names. The keyword arguments a name accepts are
read from its builder's signature, so adding an option to a builder is all it takes to accept it,
and a typo is an error that lists what is accepted.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from gliomaseg.errors import GliomasegError

__all__ = ["Registry"]

T = TypeVar("T")


@dataclass(frozen=True)
class _Entry(Generic[T]):
    builder: Callable[..., T]
    description: str
    options: tuple[str, ...]


class Registry(Generic[T]):
    """Names -> builders of one kind of object.

    Args:
        kind: what the names are, for messages (``"model"``, ``"loss"``).
        fixed: leading builder parameters that every builder takes and that are not options
            (e.g. ``in_channels``); they are left out of the accepted options.

    Example:
        >>> blocks = Registry("block")
        >>> @blocks.register("double", "doubles its input")
        ... def _double(x, scale=2):
        ...     return x * scale
        >>> blocks.create("double", 3, scale=3), blocks.names(), blocks.options("double")
        (9, ['double'], ('scale',))
    """

    def __init__(self, kind: str, fixed: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.fixed = fixed
        self._entries: dict[str, _Entry[T]] = {}

    def register(self, name: str, description: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator adding ``builder`` under ``name``; its keyword parameters become the options."""

        def add(builder: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise GliomasegError(f"{self.kind} {name!r} is registered twice")
            params = inspect.signature(builder).parameters.values()
            options = tuple(
                p.name
                for p in params
                if p.name not in self.fixed and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
            )
            self._entries[name] = _Entry(builder, description, options)
            return builder

        return add

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def options(self, name: str) -> tuple[str, ...]:
        """The keyword options ``name`` accepts."""
        return self._entry(name).options

    def describe(self) -> dict[str, str]:
        """Name -> one-line description, sorted by name."""
        return {name: self._entries[name].description for name in self.names()}

    def create(self, name: str, *args: Any, **options: Any) -> T:
        """Build ``name`` with the fixed ``args`` and keyword ``options``.

        Raises:
            GliomasegError: unknown name (the message lists the valid ones) or options the builder
                does not accept (the message names them and lists the accepted ones).
        """
        entry = self._entry(name)
        unknown = sorted(set(options) - set(entry.options))
        if unknown:
            raise GliomasegError(
                f"{self.kind.capitalize()} {name!r} does not accept {', '.join(map(repr, unknown))}; "
                f"accepted options: {', '.join(entry.options) or 'none'}."
            )
        return entry.builder(*args, **options)

    def _entry(self, name: str) -> _Entry[T]:
        if name not in self._entries:
            raise GliomasegError(f"Unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}.")
        return self._entries[name]
