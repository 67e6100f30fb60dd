"""Run-time stand-ins for ``typing.Generic`` and ``typing.TypeVar``.

Importing typing costs a skeleton a few milliseconds, more than the rest of the runtime.
Under a type checker the modules import the real names; at run time ``Handle[int, int]``
only has to produce something that works as a base class, an annotation and a callable,
which ``types.GenericAlias`` does.
"""

from __future__ import annotations

from types import GenericAlias


class Generic:
    """Subscriptable base: ``Generic[K, V]`` as a base class resolves to ``Generic``."""

    __slots__ = ()

    def __class_getitem__(cls, params: object) -> GenericAlias:
        return GenericAlias(cls, params)


def TypeVar(name: str, *constraints: object, **options: object) -> str:
    """Stands for a type parameter by its name; nothing inspects it at run time."""
    return name
