"""Links: what an attach returns, one class per way the kernel holds an attachment.

cilium/ebpf's link/ package has one file per attach kind; here the kinds differ only in how
they are released, so they share one base whose ``close()`` detaches (idempotent), and whose
owner (the Objects) closes whatever is still attached when it closes:

- ``Link``: a libbpf ``struct bpf_link *`` (tracing, cgroup, netns, iterators, perf events).
- ``FdLink``: a kernel BPF link fd made by BPF_LINK_CREATE (XDP with a mode, tcx).
- ``TcFilterLink``: a filter on a clsact qdisc (tc before tcx), removed with bpf_tc_detach.
- ``ProgAttachLink``: a BPF_PROG_ATTACH attachment (sk_msg/sk_skb to a sockmap).
- ``LinkGroup``: several links made by one call (a perf event on every CPU).
"""

from __future__ import annotations

import ctypes
import os

from . import libbpf

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import TracebackType
    from typing import ClassVar

    from .programs import Program


class Link:
    """An attachment; detaches on close() (idempotent) or when its objects close.

    ``target`` says what it is attached to; ``via`` how (e.g. ``"tcx"`` or ``"clsact"``),
    and ``note`` why, when a fallback was taken.
    """

    via = "link"

    def __init__(self, ptr: int, program: Program, target: str) -> None:
        self._ptr: int | None = ptr
        self.program = program
        self.target = target
        self.note = ""
        self._pin_path: str | None = None  # set by pin(), cleared by unpin()

    @property
    def fd(self) -> int:
        return int(libbpf.lib().bpf_link__fd(self._ptr)) if self._ptr is not None else -1

    @property
    def closed(self) -> bool:
        return self._ptr is None

    def _release(self, handle: int) -> None:
        libbpf.lib().bpf_link__destroy(handle)

    def close(self) -> None:
        handle, self._ptr = self._ptr, None
        if handle is None:
            return
        try:
            self._release(handle)
        finally:
            owner = self.program.owner
            if owner is not None:
                owner._untrack_link(self)

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the link on a bpffs: the program stays attached after this process exits,
        until ``unpin()`` (or the pin file is removed) and the last fd closes.
        ``ebpf_gen.runtime.open_pinned_link(path)`` takes it up again."""
        from .pinning import pin_fd

        what = self._label()
        if self.fd < 0:
            raise TypeError(f"{what}: a {self.via} attachment has no link fd to pin")
        self._pin_path = pin_fd(self.fd, path, what)

    def unpin(self) -> None:
        """Remove the pin file made by ``pin()`` (the link stays while this fd is open)."""
        path, self._pin_path = self._pin_path, None
        if path is None:
            raise ValueError(f"{self._label()}: not pinned")
        os.unlink(path)

    def _label(self) -> str:
        return f"link {self.program.name} -> {self.target}"

    def __enter__(self) -> Link:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else f"fd={self.fd}"
        return f"<{type(self).__name__} {self.program.name} -> {self.target} {state}>"


class FdLink(Link):
    """A BPF link fd from BPF_LINK_CREATE; closing the fd detaches."""

    def __init__(self, fd: int, program: Program, target: str, *, via: str = "link") -> None:
        super().__init__(fd, program, target)
        self.via = via

    @property
    def fd(self) -> int:
        return self._ptr if self._ptr is not None else -1

    def _release(self, handle: int) -> None:
        os.close(handle)


class TcFilterLink(Link):
    """A direct-action filter on a clsact qdisc (tc before tcx).

    The qdisc is removed again when this link created it and its last filter placed here is
    detached; a qdisc that was there before stays.
    """

    via = "clsact"
    # (netns inode, ifindex) -> our filters (either direction) on a qdisc this process made
    _created: ClassVar[dict[tuple[int, int], int]] = {}

    def __init__(
        self,
        program: Program,
        target: str,
        hook: libbpf.BpfTcHook,
        opts: libbpf.BpfTcOpts,
        *,
        created_qdisc: bool,
    ) -> None:
        super().__init__(1, program, target)
        self.hook, self.handle, self.priority = hook, int(opts.handle), int(opts.priority)
        # The ifindex means something only in the network namespace it was attached in,
        # and netlink talks to the calling thread's: keep that namespace to detach there.
        self._netns = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._key = (os.fstat(self._netns).st_ino, int(hook.ifindex))
        if created_qdisc:
            TcFilterLink._created[self._key] = 0
        if self._key in TcFilterLink._created:
            TcFilterLink._created[self._key] += 1

    @property
    def fd(self) -> int:
        return -1  # a tc filter has no fd of its own

    def _release(self, handle: int) -> None:
        try:
            with _in_netns(self._netns):
                self._detach()
        finally:
            os.close(self._netns)

    def _detach(self) -> None:
        lib = libbpf.lib()
        opts = libbpf.BpfTcOpts(
            sz=ctypes.sizeof(libbpf.BpfTcOpts), handle=self.handle, priority=self.priority
        )
        lib.bpf_tc_detach(ctypes.byref(self.hook), ctypes.byref(opts))
        count = TcFilterLink._created.get(self._key)
        if count is None:
            return
        if count > 1:
            TcFilterLink._created[self._key] = count - 1
            return
        del TcFilterLink._created[self._key]
        # BPF_TC_INGRESS | BPF_TC_EGRESS: the whole clsact qdisc, which held only ours.
        whole = libbpf.BpfTcHook(
            sz=ctypes.sizeof(libbpf.BpfTcHook), ifindex=self._key[1], attach_point=3
        )
        lib.bpf_tc_hook_destroy(ctypes.byref(whole))

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else f"handle={self.handle} prio={self.priority}"
        return f"<TcFilterLink {self.program.name} -> {self.target} {state}>"


class ProgAttachLink(Link):
    """A BPF_PROG_ATTACH attachment to ``target_fd`` (a sockmap), undone by BPF_PROG_DETACH."""

    via = "prog_attach"

    def __init__(self, program: Program, target: str, target_fd: int, attach_type: int) -> None:
        super().__init__(os.dup(target_fd), program, target)
        self.attach_type = attach_type

    @property
    def fd(self) -> int:
        return -1

    def _release(self, handle: int) -> None:
        try:
            libbpf.lib().bpf_prog_detach2(self.program.fd, handle, self.attach_type)
        finally:
            os.close(handle)


class LinkGroup(Link):
    """Several links made by one attach (e.g. a perf event per CPU), closed together."""

    via = "group"

    def __init__(self, links: Sequence[Link], program: Program, target: str) -> None:
        super().__init__(0, program, target)
        self.links = tuple(links)

    @property
    def fd(self) -> int:
        return -1

    def _release(self, handle: int) -> None:
        for link in self.links:
            link.close()

    def __len__(self) -> int:
        return len(self.links)

    def __repr__(self) -> str:
        state = "closed" if self._ptr is None else f"{len(self.links)} links"
        return f"<LinkGroup {self.program.name} -> {self.target} {state}>"


CLONE_NEWNET = 0x40000000


class _in_netns:
    """Run a block in network namespace ``fd`` when it is not this thread's already."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.back = -1

    def __enter__(self) -> None:
        here = os.stat("/proc/thread-self/ns/net")
        there = os.fstat(self.fd)
        if (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino):
            return
        self.back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        if _libc().setns(self.fd, CLONE_NEWNET) != 0:
            os.close(self.back)
            self.back = -1
            raise OSError(ctypes.get_errno(), "setns into the tc filter's network namespace")

    def __exit__(self, *exc: object) -> None:
        if self.back >= 0:
            try:
                _libc().setns(self.back, CLONE_NEWNET)
            finally:
                os.close(self.back)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)
