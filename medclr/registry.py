"""A tiny name -> object registry (encoders, poolers, losses, dataset sources are registered by name).

>>> LOSSES: Registry[type] = Registry("loss")
>>> @LOSSES.register("convirt")
... class ConvirtLoss: ...
>>> LOSSES.get("convirt").__name__
'ConvirtLoss'
>>> LOSSES.get("clip")
Traceback (most recent call last):
...
KeyError: "unknown loss 'clip'; valid names: convirt"
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects; registering a name twice is an error, and so is asking for an unknown one."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator that registers its argument under ``name`` and returns it unchanged."""

        def add(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} '{name}' is already registered (by {self._items[name]!r})")
            self._items[name] = obj
            return obj

        return add

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise KeyError(f"unknown {self.kind} '{name}'; valid names: {', '.join(sorted(self._items))}") from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
