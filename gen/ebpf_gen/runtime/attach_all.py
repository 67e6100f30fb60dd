"""objs.attach_all(): a libbpf skeleton's ``__attach()``, without silent skips."""

from __future__ import annotations

from . import sections
from .errors import AttachError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from .links import Link
    from .objects import ObjectsBase
    from .programs import Program


class AttachAllResult:
    """``links``: what was attached; ``skipped``: {program name: why / what it needs}
    (programs not loaded, and sections that name no target, e.g. ``xdp`` needs
    ``attach_xdp(interface)``)."""

    __slots__ = ("links", "skipped")

    def __init__(self, links: tuple[Link, ...], skipped: dict[str, str]) -> None:
        self.links = links
        self.skipped = skipped

    def __iter__(self) -> Iterable[Link]:
        return iter(self.links)

    def __len__(self) -> int:
        return len(self.links)

    def __repr__(self) -> str:
        left = "; ".join(f"{k}: {v}" for k, v in self.skipped.items())
        return f"<AttachAllResult {len(self.links)} attached" + (
            f", skipped {left}>" if left else ">"
        )


def attach_all(objects: ObjectsBase, programs: Iterable[Program], strict: bool) -> AttachAllResult:
    links: list[Link] = []
    skipped: dict[str, str] = {}
    for program in programs:
        if program.fd < 0:
            skipped[program.name] = "not loaded (autoload off)"
            continue
        need = sections.needs(program.section)
        if need is not None:
            skipped[program.name] = f"section {program.section!r} names no target: use {need}"
            continue
        try:
            links.append(program.attach())
        except AttachError:
            for link in links:
                link.close()
            raise
    if strict and skipped:
        for link in links:
            link.close()
        left = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise AttachError(f"{objects.name}: attach_all left programs unattached: {left}")
    return AttachAllResult(tuple(links), skipped)
