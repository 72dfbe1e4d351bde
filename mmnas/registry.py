"""Name → constructor registries (DESIGN "Contracts": duplicate and unknown names are loud errors)."""
from __future__ import annotations

import difflib
from typing import Callable, Dict, Iterator, Sequence, TypeVar

T = TypeVar("T", bound=Callable)


def nearest(name: str, choices: Sequence[str], n: int = 3) -> list[str]:
    """The closest valid names to a misspelt one, for error messages."""
    return difflib.get_close_matches(name, list(choices), n=n, cutoff=0.5)


class Registry:
    """A named table of constructors; `register` is a decorator, `get` a checked lookup."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._table: Dict[str, Callable] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def wrap(fn: T) -> T:
            if name in self._table:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._table[name] = fn
            return fn
        return wrap

    def get(self, name: str) -> Callable:
        try:
            return self._table[name]
        except KeyError:
            hint = nearest(name, self.names())
            did = f" Did you mean {', '.join(map(repr, hint))}?" if hint else ""
            raise KeyError(f"unknown {self.kind} {name!r}.{did} Valid: {', '.join(self.names())}.") from None

    def names(self) -> list[str]:
        return sorted(self._table)

    def __contains__(self, name: object) -> bool:
        return name in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
