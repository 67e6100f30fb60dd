"""Line layout the way ruff format (black style) does it, for the expressions we emit.

Python has no gofmt to lean on, so the generator lays out its own lines: an expression that
fits stays on one line; a call that does not fit first moves its arguments to one indented
line, then to one per line with a trailing comma; a list/dict/tuple literal or an import that
does not fit goes straight to one item per line. Comments force one item per line.
"""

from __future__ import annotations

from dataclasses import dataclass

LINE_LENGTH = 100


@dataclass(frozen=True)
class Atom:
    text: str
    comment: str = ""  # written after the item's trailing comma: "item,  # comment"


@dataclass(frozen=True)
class Group:
    open: str  # "check_layout(", "offsets={", "["
    items: tuple[Node, ...]
    close: str  # ")", "}", "]"
    call: bool  # arguments of a call (may hug on one indented line) vs a literal

    @property
    def has_comment(self) -> bool:
        return any(isinstance(i, Atom) and i.comment for i in self.items)


Node = Atom | Group


def flat(node: Node) -> str:
    if isinstance(node, Atom):
        return node.text
    if len(node.items) == 1 and node.open.endswith("(") and not node.call:
        return f"{node.open}{flat(node.items[0])},{node.close}"  # a one-element tuple
    return node.open + ", ".join(flat(i) for i in node.items) + node.close


def lines(node: Node, *, indent: int = 0, lead: str = "", trail: str = "") -> list[str]:
    """``lead`` + ``node`` + ``trail`` laid out from column ``indent``."""
    pad = " " * indent
    one = pad + lead + flat(node) + trail
    if isinstance(node, Atom):
        comment = node.comment
        if not comment and len(one) > LINE_LENGTH:
            comment = "noqa: E501"  # an unsplittable item (a long C name): ruff leaves it too
        return [one + (f"  # {comment}" if comment else "")]
    if len(one) <= LINE_LENGTH and not node.has_comment:
        return [one]
    inner = " " * (indent + 4)
    if node.call and not node.has_comment:
        hug = inner + ", ".join(flat(i) for i in node.items)
        if len(hug) <= LINE_LENGTH:
            return [pad + lead + node.open, hug, pad + node.close + trail]
    out = [pad + lead + node.open]
    for item in node.items:
        out.extend(lines(item, indent=indent + 4, trail=","))
    out.append(pad + node.close + trail)
    return out


def text(node: Node, *, indent: int = 0, lead: str = "", trail: str = "") -> str:
    """Like ``lines`` without the first line's indentation (the template supplies it)."""
    return "\n".join(lines(node, indent=indent, lead=lead, trail=trail))[indent:]
