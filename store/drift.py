"""Drift between what a derived store should hold and what it holds: a pure comparison of two id → hash maps.

Reconciliation (store/reconcile.py) reads both sides from Postgres and the store; the rules of what counts as
missing, extra or changed live here, apart from any I/O, so they are unit-tested on plain dicts.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Drift(Generic[K]):
    """Ids that differ, each sorted: expected but absent (`missing`), held but not expected (`extra`), held with
    another hash than expected (`changed`)."""

    missing: tuple[K, ...] = ()
    extra: tuple[K, ...] = ()
    changed: tuple[K, ...] = ()

    def __len__(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.changed)

    def ids(self) -> tuple[K, ...]:
        """Every id that differs, whatever the way."""
        return (*self.missing, *self.extra, *self.changed)

    def without(self, settled: Callable[[K], bool]) -> Drift[K]:
        """The drift less the ids `settled` accepts (changes the outbox is still carrying to the store)."""
        return Drift(
            missing=tuple(k for k in self.missing if not settled(k)),
            extra=tuple(k for k in self.extra if not settled(k)),
            changed=tuple(k for k in self.changed if not settled(k)),
        )


def diff(expected: Mapping[K, Any], actual: Mapping[K, Any], *, order: Callable[[K], Any] = str) -> Drift[K]:
    """Compare the ids and values (content hashes) a store should hold with those it holds. Values are compared
    with `==`, so None (a graph placeholder) and tuples (a vector item's hash and model) work as hashes too."""
    return Drift(
        missing=tuple(sorted((k for k in expected if k not in actual), key=order)),
        extra=tuple(sorted((k for k in actual if k not in expected), key=order)),
        changed=tuple(sorted((k for k in expected if k in actual and expected[k] != actual[k]), key=order)),
    )
