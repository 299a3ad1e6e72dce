"""One way to look a name up in a table of the package (models, datasets, recipes)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

T = TypeVar("T")


def lookup(table: Mapping[str, T], name: str, what: str) -> T:
    """``table[name]``, or a ``ValueError`` naming ``what`` and listing the choices."""
    if name not in table:
        raise ValueError(f"{what} {name!r} unknown; choose from {sorted(table)}")
    return table[name]
